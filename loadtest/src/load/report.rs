//! What a run prints and writes: a summary table, JSON for machines, an
//! HdrHistogram percentile distribution (`.hgrm`), an SVG of latency by
//! percentile, and, for two runs side by side, the latency one added.

use std::fmt::Write as _;

use hdrhistogram::Histogram;

use super::Measured;

/// The percentiles every report lists.
pub const PERCENTILES: &[f64] = &[50.0, 90.0, 99.0, 99.9, 100.0];

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// The summary table.
pub fn summary(name: &str, m: &Measured) -> String {
    let mut out = String::new();
    let secs = m.elapsed.as_secs_f64().max(1e-9);
    let _ =
        writeln!(out, "{name}: {} requests in {:.1} s, {:.0} req/s", m.requests(), secs, m.requests() as f64 / secs);
    let statuses: Vec<String> = m.statuses.iter().map(|(s, n)| format!("{s}: {n}")).collect();
    let _ = writeln!(out, "  successes {}  errors {}  statuses {{{}}}", m.successes(), m.errors, statuses.join(", "));
    for (label, h) in [("latency", &m.latency), ("ttft", &m.ttft), ("event gap", &m.gaps)] {
        if h.is_empty() {
            continue;
        }
        let cols: Vec<String> = PERCENTILES
            .iter()
            .map(|p| {
                let tag = if *p == 100.0 { "max".to_string() } else { format!("p{p}") };
                format!("{tag} {:.3}", ms(h.value_at_quantile(p / 100.0)))
            })
            .collect();
        let _ = writeln!(out, "  {label:<9} ms  {}", cols.join("  "));
    }
    out
}

/// The run as JSON (latencies in microseconds).
pub fn json(m: &Measured) -> String {
    let hist = |h: &Histogram<u64>| {
        let pct: Vec<String> =
            PERCENTILES.iter().map(|p| format!("\"p{p}\":{}", h.value_at_quantile(p / 100.0))).collect();
        format!("{{\"count\":{},\"mean\":{:.1},{}}}", h.len(), h.mean(), pct.join(","))
    };
    let statuses: Vec<String> = m.statuses.iter().map(|(s, n)| format!("\"{s}\":{n}")).collect();
    format!(
        "{{\"requests\":{},\"seconds\":{:.3},\"requests_per_second\":{:.1},\"successes\":{},\"errors\":{},\"statuses\":{{{}}},\"latency_us\":{},\"ttft_us\":{},\"event_gap_us\":{}}}\n",
        m.requests(),
        m.elapsed.as_secs_f64(),
        m.requests() as f64 / m.elapsed.as_secs_f64().max(1e-9),
        m.successes(),
        m.errors,
        statuses.join(","),
        hist(&m.latency),
        hist(&m.ttft),
        hist(&m.gaps)
    )
}

/// The classic HdrHistogram percentile distribution, in milliseconds, which
/// the HdrHistogram plotter reads.
pub fn hgrm(h: &Histogram<u64>) -> String {
    let mut out = String::from("       Value     Percentile TotalCount 1/(1-Percentile)\n\n");
    // TotalCount is cumulative: the values at or below this row's, as the
    // format (and the tools that merge or plot it) read it.
    let mut total = 0u64;
    for v in h.iter_quantiles(5) {
        total += v.count_since_last_iteration();
        let q = v.quantile_iterated_to();
        let inv = if q < 1.0 { format!("{:14.2}", 1.0 / (1.0 - q)) } else { String::new() };
        let _ = writeln!(out, "{:12.3} {:14.12} {:10} {inv}", ms(v.value_iterated_to()), q, total);
    }
    let _ = writeln!(
        out,
        "#[Mean    = {:12.3}, StdDeviation   = {:12.3}]\n#[Max     = {:12.3}, Total count    = {:12}]",
        h.mean() / 1000.0,
        h.stdev() / 1000.0,
        ms(h.max()),
        h.len()
    );
    out
}

/// Latency by percentile on a log scale of 1/(1-p), one line per run.
pub fn svg(runs: &[(&str, &Histogram<u64>)]) -> String {
    const W: f64 = 720.0;
    const H: f64 = 360.0;
    const PAD: f64 = 50.0;
    let nines = 5.0; // up to 99.999%
    let max_ms = runs.iter().map(|(_, h)| ms(h.max())).fold(0.001, f64::max) * 1.1;
    let x = |q: f64| PAD + (W - 2.0 * PAD) * ((1.0 / (1.0 - q.min(0.99999))).log10() / nines);
    let y = |v: f64| H - PAD - (H - 2.0 * PAD) * (v / max_ms);
    let colors = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"];
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
    );
    for (i, label) in ["0%", "90%", "99%", "99.9%", "99.99%", "99.999%"].iter().enumerate() {
        let xi = PAD + (W - 2.0 * PAD) * (i as f64 / nines);
        let _ = writeln!(out, "<line x1=\"{xi}\" y1=\"{PAD}\" x2=\"{xi}\" y2=\"{}\" stroke=\"#ddd\"/><text x=\"{xi}\" y=\"{}\" text-anchor=\"middle\">{label}</text>", H - PAD, H - PAD + 16.0);
    }
    let _ = writeln!(out, "<text x=\"{PAD}\" y=\"{}\">latency (ms), max {:.2}</text>", PAD - 10.0, max_ms);
    for (i, (name, h)) in runs.iter().enumerate() {
        let points: Vec<String> = h
            .iter_quantiles(5)
            .map(|v| format!("{:.1},{:.1}", x(v.quantile_iterated_to()), y(ms(v.value_iterated_to()))))
            .collect();
        let color = colors[i % colors.len()];
        let _ = writeln!(
            out,
            "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2\" points=\"{}\"/>",
            points.join(" ")
        );
        let _ = writeln!(
            out,
            "<text x=\"{}\" y=\"{}\" fill=\"{color}\">{name}</text>",
            W - PAD - 120.0,
            PAD + 16.0 * (i as f64 + 1.0)
        );
    }
    out.push_str("</svg>\n");
    out
}

/// The latency `through` added over `direct` at each percentile.
pub fn added(direct: &Measured, through: &Measured) -> String {
    let mut out = String::from("  percentile    direct ms   through ms     added ms\n");
    for p in PERCENTILES {
        let (d, t) = (direct.latency.value_at_quantile(p / 100.0), through.latency.value_at_quantile(p / 100.0));
        let tag = if *p == 100.0 { "max".to_string() } else { format!("p{p}") };
        let _ = writeln!(out, "  {tag:>10} {:12.3} {:12.3} {:12.3}", ms(d), ms(t), ms(t) - ms(d));
    }
    out
}

/// p99 latency against achieved throughput, one point per sweep step, with
/// the objective as a horizontal line.
pub fn sweep_svg(points: &[(f64, u64)], slo_us: u64) -> String {
    const W: f64 = 720.0;
    const H: f64 = 360.0;
    const PAD: f64 = 60.0;
    let max_x = points.iter().map(|p| p.0).fold(1.0, f64::max) * 1.1;
    let max_y = points.iter().map(|p| ms(p.1)).fold(ms(slo_us), f64::max) * 1.1;
    let x = |v: f64| PAD + (W - 2.0 * PAD) * (v / max_x);
    let y = |v: f64| H - PAD - (H - 2.0 * PAD) * (v / max_y);
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
    );
    let _ = writeln!(
        out,
        "<text x=\"{PAD}\" y=\"{}\">p99 latency (ms) against requests/s; max {max_y:.2} ms, {max_x:.0} req/s</text>",
        PAD - 20.0
    );
    let slo = y(ms(slo_us));
    let _ = writeln!(out, "<line x1=\"{PAD}\" y1=\"{slo}\" x2=\"{}\" y2=\"{slo}\" stroke=\"#d62728\" stroke-dasharray=\"6 4\"/><text x=\"{}\" y=\"{}\" fill=\"#d62728\">objective</text>", W - PAD, W - PAD - 60.0, slo - 6.0);
    let _ =
        writeln!(out, "<line x1=\"{PAD}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#999\"/>", H - PAD, W - PAD, H - PAD);
    let pts: Vec<String> = points.iter().map(|(r, p)| format!("{:.1},{:.1}", x(*r), y(ms(*p)))).collect();
    let _ =
        writeln!(out, "<polyline fill=\"none\" stroke=\"#1f77b4\" stroke-width=\"2\" points=\"{}\"/>", pts.join(" "));
    for (r, p) in points {
        let _ = writeln!(out, "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"#1f77b4\"/>", x(*r), y(ms(*p)));
    }
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each row's TotalCount is the histogram's own count of values at or
    /// below the row's value (hdrhistogram's iteration), and the last row's
    /// is the total.
    #[test]
    fn hgrm_total_count_is_cumulative() {
        let mut h = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).expect("histogram");
        for v in [120u64, 250, 250, 900, 1_500, 40_000, 40_000, 2_000_000] {
            h.record(v).expect("in range");
        }
        let text = hgrm(&h);
        let rows: Vec<(f64, u64)> = text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty() && !l.contains("Value"))
            .map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f[0].parse().expect("value"), f[2].parse().expect("count"))
            })
            .collect();
        assert!(!rows.is_empty());
        let mut last = 0;
        for (value_ms, total) in &rows {
            assert!(*total >= last, "non-decreasing: {text}");
            last = *total;
            let at_or_below = h.count_between(0, (value_ms * 1000.0).round() as u64);
            assert_eq!(*total, at_or_below, "row {value_ms} ms: {text}");
        }
        assert_eq!(last, h.len());
    }
}
