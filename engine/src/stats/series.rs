//! The dashboard's history: what the node served, kept in memory by
//! (team, key, model, provider) in ten-second buckets for the last hour
//! and five-minute buckets for the last day, and read back summed over any
//! filter of those four (`GET /admin/series`).
//!
//! Each core counts a [`Point`] per label set it served since its last
//! hand-off (`CoreStats::count`, one hash-map entry per request, no lock);
//! the merger adds the points to the bucket of the hand-off's time in both
//! rings ([`Series::add`]). Latency is kept as a [`Coarse`] histogram:
//! four buckets per power of two (a quantile within 12.5% of the truth),
//! only the buckets that were hit, so that a quiet label set in a bucket
//! costs tens of bytes, not a full histogram. Memory: about 200 bytes per
//! label set seen in a bucket, over 648 buckets; 100 label sets busy all
//! day come to about 13 MB. A bucket holds at most [`LABELS_MAX`] label
//! sets as they are; past that, a new one's key is folded into
//! `(other keys)` (its team, model and provider kept, so that a viewer's
//! scope still holds), and past twice that, everything into `(other)`: a
//! gateway with thousands of keys keeps at most about 35 MB of history.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;

/// What one label set did in a bucket.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Point {
    pub requests: u64,
    /// Answers 429 (limits and budgets), other 4xx, and 5xx.
    pub limited: u64,
    pub client_errors: u64,
    pub server_errors: u64,
    pub tokens_in: u64,
    pub tokens_out: u64,
    pub cost_micro_usd: u64,
    pub guard_hits: u64,
    pub cache_hits: u64,
    pub cache_misses: u64,
    /// Whole request, and what the gateway added (requests that went
    /// upstream).
    pub latency: Coarse,
    pub gateway: Coarse,
}

impl Point {
    pub fn add(&mut self, o: &Point) {
        self.requests += o.requests;
        self.limited += o.limited;
        self.client_errors += o.client_errors;
        self.server_errors += o.server_errors;
        self.tokens_in += o.tokens_in;
        self.tokens_out += o.tokens_out;
        self.cost_micro_usd += o.cost_micro_usd;
        self.guard_hits += o.guard_hits;
        self.cache_hits += o.cache_hits;
        self.cache_misses += o.cache_misses;
        self.latency.merge(&o.latency);
        self.gateway.merge(&o.gateway);
    }

    /// Counts an answer's status.
    pub fn status(&mut self, status: u16) {
        match status {
            429 => self.limited += 1,
            400..=499 => self.client_errors += 1,
            500.. => self.server_errors += 1,
            _ => {}
        }
    }
}

/// A sparse log histogram of microseconds: four buckets per power of two,
/// only those hit, in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Coarse(Vec<(u8, u32)>);

impl Coarse {
    /// The bucket of `micros`: four per power of two.
    fn bucket(micros: u64) -> u8 {
        let m = micros.max(1);
        let log = 63 - m.leading_zeros() as u64;
        let quarter = if log >= 2 { (m >> (log - 2)) & 3 } else { (m << (2 - log)) & 3 };
        (log * 4 + quarter) as u8
    }

    /// The middle of bucket `b`, in microseconds.
    fn value(b: u8) -> f64 {
        let (log, quarter) = (u32::from(b) / 4, f64::from(b % 4));
        2f64.powi(log as i32) * (1.0 + (quarter + 0.5) / 4.0)
    }

    pub fn record(&mut self, micros: u64) {
        let b = Self::bucket(micros);
        match self.0.binary_search_by_key(&b, |&(k, _)| k) {
            Ok(i) => self.0[i].1 = self.0[i].1.saturating_add(1),
            Err(i) => self.0.insert(i, (b, 1)),
        }
    }

    pub fn merge(&mut self, o: &Coarse) {
        for &(b, n) in &o.0 {
            match self.0.binary_search_by_key(&b, |&(k, _)| k) {
                Ok(i) => self.0[i].1 = self.0[i].1.saturating_add(n),
                Err(i) => self.0.insert(i, (b, n)),
            }
        }
    }

    /// The `q` quantile in milliseconds; `None` when empty.
    pub fn quantile_ms(&self, q: f64) -> Option<f64> {
        let total: u64 = self.0.iter().map(|&(_, n)| u64::from(n)).sum();
        if total == 0 {
            return None;
        }
        let rank = ((q * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for &(b, n) in &self.0 {
            seen += u64::from(n);
            if seen >= rank {
                return Some(Self::value(b) / 1000.0);
            }
        }
        self.0.last().map(|&(b, _)| Self::value(b) / 1000.0)
    }
}

/// A point's labels: team, key, model, provider (`-` for none).
pub type Labels = (String, String, String, String);

/// Label sets a bucket keeps as they are (see the module's doc).
pub const LABELS_MAX: usize = 128;

/// One ring of buckets.
struct Ring {
    step_s: u64,
    len: usize,
    buckets: VecDeque<(u64, BTreeMap<Labels, Point>)>,
}

impl Ring {
    fn add(&mut self, labels: &Labels, p: &Point, now_s: u64) {
        let start = now_s - now_s % self.step_s;
        if self.buckets.back().is_none_or(|(t, _)| *t < start) {
            self.buckets.push_back((start, BTreeMap::new()));
        }
        // A hand-off stamped a moment before the newest bucket began goes
        // in the newest: it is never more than a merge interval late.
        let (_, bucket) = self.buckets.back_mut().expect("pushed above");
        let folded;
        let labels = match bucket.len() {
            n if n < LABELS_MAX || bucket.contains_key(labels) => labels,
            n if n < 2 * LABELS_MAX => {
                folded = (labels.0.clone(), "(other keys)".to_string(), labels.2.clone(), labels.3.clone());
                &folded
            }
            _ => {
                let other = || "(other)".to_string();
                folded = (other(), other(), other(), other());
                &folded
            }
        };
        match bucket.get_mut(labels) {
            Some(e) => e.add(p),
            None => {
                bucket.insert(labels.clone(), p.clone());
            }
        }
        let oldest = start.saturating_sub(self.step_s * (self.len as u64 - 1));
        while self.buckets.front().is_some_and(|(t, _)| *t < oldest) {
            self.buckets.pop_front();
        }
    }
}

/// Which ring a query reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Window {
    /// The last hour in ten-second buckets.
    Hour,
    /// The last day in five-minute buckets.
    Day,
}

/// A query's filter: each field, when set, must match exactly; `scope`
/// (a viewer's teams) limits the teams seen at all.
#[derive(Clone, Debug, Default)]
pub struct Filter<'a> {
    pub team: Option<&'a str>,
    pub key: Option<&'a str>,
    pub model: Option<&'a str>,
    pub provider: Option<&'a str>,
    pub scope: Option<&'a [String]>,
}

impl Filter<'_> {
    fn in_scope(&self, l: &Labels) -> bool {
        in_scope(self.scope, &l.0)
    }

    fn matches(&self, l: &Labels) -> bool {
        self.in_scope(l)
            && self.team.is_none_or(|t| t == l.0)
            && self.key.is_none_or(|k| k == l.1)
            && self.model.is_none_or(|m| m == l.2)
            && self.provider.is_none_or(|p| p == l.3)
    }
}

/// Whether a caller limited to `scope` (a viewer's teams; `None`: every
/// team) sees `team`'s figures.
pub fn in_scope(scope: Option<&[String]>, team: &str) -> bool {
    scope.is_none_or(|s| s.iter().any(|t| t == team))
}

/// The node's history.
pub struct Series {
    hour: Ring,
    day: Ring,
}

impl Default for Series {
    fn default() -> Series {
        Series {
            hour: Ring { step_s: 10, len: 360, buckets: VecDeque::new() },
            day: Ring { step_s: 300, len: 288, buckets: VecDeque::new() },
        }
    }
}

impl Series {
    /// Adds a core's point for `labels`, counted by `now_s` (Unix seconds).
    pub fn add(&mut self, labels: &Labels, p: &Point, now_s: u64) {
        self.hour.add(labels, p, now_s);
        self.day.add(labels, p, now_s);
    }

    /// `{"window":"hour","step_s":10,"buckets":[...],"labels":{...}}`:
    /// every bucket of the window up to `now_s` (empty ones too, so that
    /// a chart's x axis is time), each summed over the label sets `f`
    /// matches; `labels` lists the values seen in scope, for the filters.
    pub fn json(&self, window: Window, f: &Filter<'_>, now_s: u64) -> String {
        let ring = match window {
            Window::Hour => &self.hour,
            Window::Day => &self.day,
        };
        let step = ring.step_s;
        let last = now_s - now_s % step;
        let first = last.saturating_sub(step * (ring.len as u64 - 1));
        let mut out = String::with_capacity(64 * ring.len);
        let name = if window == Window::Hour { "hour" } else { "day" };
        let _ = write!(out, "{{\"window\":\"{name}\",\"step_s\":{step},\"buckets\":[");
        let mut stored = ring.buckets.iter().peekable();
        let mut seen: [std::collections::BTreeSet<&str>; 4] = Default::default();
        for (i, t) in (first..=last).step_by(step as usize).enumerate() {
            let mut sum = Point::default();
            while let Some((bt, points)) = stored.peek() {
                if *bt > t {
                    break;
                }
                if *bt == t {
                    for (l, p) in points.iter().filter(|(l, _)| f.in_scope(l)) {
                        seen[0].insert(&l.0);
                        seen[1].insert(&l.1);
                        seen[2].insert(&l.2);
                        seen[3].insert(&l.3);
                        if f.matches(l) {
                            sum.add(p);
                        }
                    }
                }
                stored.next();
            }
            if i > 0 {
                out.push(',');
            }
            write_point(&mut out, t, &sum);
        }
        out.push_str("],\"labels\":{");
        for (i, (field, values)) in ["teams", "keys", "models", "providers"].iter().zip(&seen).enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(out, "\"{field}\":[");
            for (j, v) in values.iter().enumerate() {
                if j > 0 {
                    out.push(',');
                }
                push_json_string(&mut out, v);
            }
            out.push(']');
        }
        out.push_str("}}");
        out
    }
}

fn write_point(out: &mut String, t: u64, p: &Point) {
    let ms = |v: Option<f64>| v.map_or("null".to_string(), |v| format!("{v:.3}"));
    let _ = write!(
        out,
        "{{\"t\":{t},\"requests\":{},\"errors\":{{\"429\":{},\"4xx\":{},\"5xx\":{}}},\"tokens_in\":{},\"tokens_out\":{},\"cost_usd\":{},\"guardrail_hits\":{},\"cache_hits\":{},\"cache_misses\":{},\"p50_ms\":{},\"p99_ms\":{},\"gateway_p50_ms\":{},\"gateway_p99_ms\":{}}}",
        p.requests,
        p.limited,
        p.client_errors,
        p.server_errors,
        p.tokens_in,
        p.tokens_out,
        p.cost_micro_usd as f64 / 1e6,
        p.guard_hits,
        p.cache_hits,
        p.cache_misses,
        ms(p.latency.quantile_ms(0.5)),
        ms(p.latency.quantile_ms(0.99)),
        ms(p.gateway.quantile_ms(0.5)),
        ms(p.gateway.quantile_ms(0.99)),
    );
}

fn push_json_string(out: &mut String, s: &str) {
    let mut b = bytes::BytesMut::new();
    tollgate_protocol::openai::write_json_string(&mut b, s);
    out.push_str(&String::from_utf8_lossy(&b));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(team: &str, key: &str) -> Labels {
        (team.into(), key.into(), "m".into(), "p".into())
    }

    #[test]
    fn coarse_quantiles_are_within_an_eighth() {
        let mut h = Coarse::default();
        for v in 1..=10_000u64 {
            h.record(v * 100);
        }
        for (q, truth) in [(0.5, 500.0), (0.9, 900.0), (0.99, 990.0)] {
            let got = h.quantile_ms(q).unwrap();
            assert!((got - truth).abs() / truth <= 0.125, "q{q}: {got} ms for {truth}");
        }
        // Every bucket is one of four per power of two, in order.
        let mut last = 0;
        for m in [1u64, 2, 3, 4, 5, 7, 8, 1_000, 1 << 40, u64::MAX] {
            let b = Coarse::bucket(m);
            assert!(b >= last, "{m}");
            let v = Coarse::value(b);
            assert!(v >= m as f64 * 0.85 && v <= m as f64 * 1.2 + 1.0, "{m} → {v}");
            last = b;
        }
        let mut a = Coarse::default();
        a.record(10);
        a.merge(&h);
        assert_eq!(a.0.iter().map(|&(_, n)| u64::from(n)).sum::<u64>(), 10_001);
        assert_eq!(Coarse::default().quantile_ms(0.5), None);
    }

    #[test]
    fn buckets_keep_their_window_and_filters_sum_what_matches() {
        let mut s = Series::default();
        let now = 1_800_000_007;
        let p = |n| Point { requests: n, cost_micro_usd: n * 1_000, ..Point::default() };
        s.add(&labels("a", "k1"), &p(1), now - 3_700);
        s.add(&labels("a", "k1"), &p(2), now - 15);
        s.add(&labels("a", "k2"), &p(3), now - 5);
        s.add(&labels("b", "k3"), &p(4), now - 4);
        let v: serde_json::Value = serde_json::from_str(&s.json(Window::Hour, &Filter::default(), now)).unwrap();
        let buckets = v["buckets"].as_array().unwrap();
        assert_eq!(buckets.len(), 360);
        let total: u64 = buckets.iter().map(|b| b["requests"].as_u64().unwrap()).sum();
        assert_eq!(total, 9, "the hour-old point has left the hour");
        assert_eq!(buckets[359]["requests"], 7);
        assert_eq!(buckets[359]["t"], now - now % 10);
        let day: serde_json::Value = serde_json::from_str(&s.json(Window::Day, &Filter::default(), now)).unwrap();
        let total: u64 = day["buckets"].as_array().unwrap().iter().map(|b| b["requests"].as_u64().unwrap()).sum();
        assert_eq!(total, 10, "the day keeps it");

        let only = |f: Filter| -> u64 {
            let v: serde_json::Value = serde_json::from_str(&s.json(Window::Hour, &f, now)).unwrap();
            v["buckets"].as_array().unwrap().iter().map(|b| b["requests"].as_u64().unwrap()).sum()
        };
        assert_eq!(only(Filter { team: Some("a"), ..Filter::default() }), 5);
        assert_eq!(only(Filter { key: Some("k2"), ..Filter::default() }), 3);
        assert_eq!(only(Filter { model: Some("other"), ..Filter::default() }), 0);
        // A viewer of team b sees b, whatever it asks for, and only b's
        // labels.
        let scope = ["b".to_string()];
        assert_eq!(only(Filter { scope: Some(&scope), ..Filter::default() }), 4);
        assert_eq!(only(Filter { team: Some("a"), scope: Some(&scope), ..Filter::default() }), 0);
        let v: serde_json::Value =
            serde_json::from_str(&s.json(Window::Hour, &Filter { scope: Some(&scope), ..Filter::default() }, now))
                .unwrap();
        assert_eq!(v["labels"]["teams"], serde_json::json!(["b"]));
        assert_eq!(v["labels"]["keys"], serde_json::json!(["k3"]));
    }

    #[test]
    fn a_bucket_folds_label_sets_past_its_bound_and_keeps_every_count() {
        let mut s = Series::default();
        let now = 1_800_000_007;
        let one = Point { requests: 1, ..Point::default() };
        for k in 0..3 * LABELS_MAX {
            s.add(&labels("a", &format!("k{k}")), &one, now);
        }
        let bucket = &s.hour.buckets.back().unwrap().1;
        assert!(bucket.len() <= 2 * LABELS_MAX + 1, "{}", bucket.len());
        assert_eq!(bucket.values().map(|p| p.requests).sum::<u64>(), 3 * LABELS_MAX as u64, "nothing lost");
        assert!(bucket.contains_key(&labels("a", "(other keys)")));
        // A label set already kept goes on being kept as it is.
        s.add(&labels("a", "k0"), &one, now);
        assert_eq!(s.hour.buckets.back().unwrap().1[&labels("a", "k0")].requests, 2);
    }

    #[test]
    fn statuses_fall_in_their_class() {
        let mut p = Point::default();
        for s in [200, 429, 400, 403, 502, 504] {
            p.status(s);
        }
        assert_eq!((p.limited, p.client_errors, p.server_errors), (1, 2, 2));
    }
}
