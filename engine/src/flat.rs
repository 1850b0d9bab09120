//! A record line read back as one flat row: the columns ClickHouse's
//! table stores ([`crate::clickhouse`]), the explorer's local index keeps
//! ([`crate::record_index`]) and the explorer lists, in one order.
//!
//! Read by structure (serde: members in any order, any whitespace,
//! unknown members skipped unread), borrowing from the line where no
//! escape needs undoing.

use std::borrow::Cow;

/// The columns of a flat row, in the order pages, CSV and JSON lines give
/// them (ClickHouse's table has these, the day and the record).
pub const COLUMNS: [&str; 25] = [
    "ts",
    "id",
    "team",
    "key",
    "run",
    "model",
    "provider",
    "upstream_model",
    "status",
    "stream",
    "end",
    "attempts",
    "tokens_prompt",
    "tokens_completion",
    "tokens_cached",
    "cost_micro_usd",
    "latency_ms",
    "upstream_ms",
    "ttft_ms",
    "gateway_ms",
    "bytes_in",
    "bytes_out",
    "cache",
    "guardrail_rules",
    "guardrail_actions",
];

/// What a row takes from a record.
#[derive(serde::Deserialize, Default)]
#[serde(default)]
pub struct Record<'a> {
    #[serde(borrow)]
    id: Option<Cow<'a, str>>,
    ts: u64,
    #[serde(borrow)]
    team: Option<Cow<'a, str>>,
    #[serde(borrow)]
    key: Option<Cow<'a, str>>,
    #[serde(borrow)]
    run: Option<Cow<'a, str>>,
    #[serde(borrow)]
    model: Option<Cow<'a, str>>,
    #[serde(borrow)]
    provider: Option<Cow<'a, str>>,
    #[serde(borrow)]
    upstream_model: Option<Cow<'a, str>>,
    status: u16,
    stream: bool,
    #[serde(borrow)]
    end: Option<Cow<'a, str>>,
    attempts: Vec<serde::de::IgnoredAny>,
    tokens: Option<Tokens>,
    cost_micro_usd: Option<u64>,
    latency_ms: Option<Latency>,
    bytes_in: u64,
    bytes_out: u64,
    #[serde(borrow)]
    cache: Option<CacheOutcome<'a>>,
    #[serde(borrow)]
    guardrails: Option<Guardrails<'a>>,
}

#[derive(serde::Deserialize, Default, Clone, Copy)]
#[serde(default)]
struct Tokens {
    prompt: u64,
    completion: u64,
    cached: u64,
}

#[derive(serde::Deserialize, Default, Clone, Copy)]
#[serde(default)]
struct Latency {
    total: f64,
    upstream: f64,
    ttft: f64,
    gateway: f64,
}

#[derive(serde::Deserialize, Default)]
#[serde(default)]
struct CacheOutcome<'a> {
    #[serde(borrow)]
    outcome: Option<Cow<'a, str>>,
}

#[derive(serde::Deserialize, Default)]
#[serde(default)]
struct Guardrails<'a> {
    #[serde(borrow)]
    hits: Vec<GuardHit<'a>>,
}

#[derive(serde::Deserialize, Default)]
#[serde(default)]
struct GuardHit<'a> {
    #[serde(borrow)]
    rule: Option<Cow<'a, str>>,
    #[serde(borrow)]
    action: Option<Cow<'a, str>>,
}

/// A record's flat row: absent text is empty, absent numbers zero.
#[derive(serde::Serialize, Debug, PartialEq)]
pub struct Flat<'r> {
    pub ts: u64,
    pub id: &'r str,
    pub team: &'r str,
    pub key: &'r str,
    pub run: &'r str,
    pub model: &'r str,
    pub provider: &'r str,
    pub upstream_model: &'r str,
    pub status: u16,
    pub stream: u8,
    pub end: &'r str,
    pub attempts: u8,
    pub tokens_prompt: u64,
    pub tokens_completion: u64,
    pub tokens_cached: u64,
    pub cost_micro_usd: u64,
    pub latency_ms: f64,
    pub upstream_ms: f64,
    pub ttft_ms: f64,
    pub gateway_ms: f64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub cache: &'r str,
    pub guardrail_rules: Vec<&'r str>,
    pub guardrail_actions: Vec<&'r str>,
}

/// A field's text, or empty.
fn s<'r>(v: &'r Option<Cow<'_, str>>) -> &'r str {
    v.as_deref().unwrap_or("")
}

impl<'a> Record<'a> {
    /// `None` for a line that is not a record (never written by this
    /// gateway, but never a reason to stop).
    pub fn parse(line: &'a [u8]) -> Option<Record<'a>> {
        serde_json::from_str(std::str::from_utf8(line).ok()?).ok()
    }

    pub fn flat(&self) -> Flat<'_> {
        let (tokens, latency) = (self.tokens.unwrap_or_default(), self.latency_ms.unwrap_or_default());
        let hits = self.guardrails.as_ref().map_or(&[][..], |g| &g.hits[..]);
        Flat {
            ts: self.ts,
            id: s(&self.id),
            team: s(&self.team),
            key: s(&self.key),
            run: s(&self.run),
            model: s(&self.model),
            provider: s(&self.provider),
            upstream_model: s(&self.upstream_model),
            status: self.status,
            stream: u8::from(self.stream),
            end: s(&self.end),
            attempts: self.attempts.len().min(255) as u8,
            tokens_prompt: tokens.prompt,
            tokens_completion: tokens.completion,
            tokens_cached: tokens.cached,
            cost_micro_usd: self.cost_micro_usd.unwrap_or(0),
            latency_ms: latency.total,
            upstream_ms: latency.upstream,
            ttft_ms: latency.ttft,
            gateway_ms: latency.gateway,
            bytes_in: self.bytes_in,
            bytes_out: self.bytes_out,
            cache: self.cache.as_ref().map_or("", |c| s(&c.outcome)),
            guardrail_rules: hits.iter().map(|h| s(&h.rule)).collect(),
            guardrail_actions: hits.iter().map(|h| s(&h.action)).collect(),
        }
    }
}

/// A text a CSV file holds, made safe for a spreadsheet: one that begins
/// with `=`, `+`, `-`, `@`, a tab or a carriage return is a formula to
/// Excel and LibreOffice, quoted or not, so it gets a `'` before it (what
/// OWASP advises). A tenant writes some of the texts an audit export
/// holds (a model name a route refused, a run id): found by a review, a
/// `=HYPERLINK(...)` model ran in the auditor's spreadsheet.
pub fn spreadsheet_text(v: &str) -> std::borrow::Cow<'_, str> {
    // A lone `-` (the records' "none") is no formula.
    if v == "-" {
        return v.into();
    }
    match v.as_bytes().first() {
        Some(b'=' | b'+' | b'-' | b'@' | b'\t' | b'\r') => format!("'{v}").into(),
        _ => v.into(),
    }
}

/// The condition [`spreadsheet_text`] tests, as a ClickHouse expression
/// of text column `c` that writes it so (for the explorer's CSV export,
/// which ClickHouse formats). Named apart from the column: an alias of a
/// column's own name would stand for it in the query's filters too (the
/// viewer's teams among them).
pub fn spreadsheet_sql(c: &str) -> String {
    format!("if(match({c}, '^[-=+@\\t\\r]') AND {c} != '-', concat('\\'', {c}), {c}) AS csv_{c}")
}

impl Flat<'_> {
    /// One CSV line in [`COLUMNS`]' order, as ClickHouse's `CSV` writes
    /// one: text quoted with its quotes doubled, lists as `['a','b']`;
    /// text made safe for a spreadsheet ([`spreadsheet_text`]).
    pub fn write_csv(&self, out: &mut String) {
        use std::fmt::Write;
        let text = |out: &mut String, v: &str| {
            out.push('"');
            out.push_str(&spreadsheet_text(v).replace('"', "\"\""));
            out.push('"');
        };
        let list = |out: &mut String, v: &[&str]| {
            let inner: Vec<String> =
                v.iter().map(|x| format!("'{}'", x.replace('\\', "\\\\").replace('\'', "\\'"))).collect();
            text(out, &format!("[{}]", inner.join(",")));
        };
        let _ = write!(out, "{},", self.ts);
        for v in [self.id, self.team, self.key, self.run, self.model, self.provider, self.upstream_model] {
            text(out, v);
            out.push(',');
        }
        let _ = write!(out, "{},{},", self.status, self.stream);
        text(out, self.end);
        let _ = write!(
            out,
            ",{},{},{},{},{},{},{},{},{},{},{},",
            self.attempts,
            self.tokens_prompt,
            self.tokens_completion,
            self.tokens_cached,
            self.cost_micro_usd,
            self.latency_ms,
            self.upstream_ms,
            self.ttft_ms,
            self.gateway_ms,
            self.bytes_in,
            self.bytes_out
        );
        text(out, self.cache);
        out.push(',');
        list(out, &self.guardrail_rules);
        out.push(',');
        list(out, &self.guardrail_actions);
        out.push('\n');
    }
}

/// The CSV header line.
pub fn csv_header() -> String {
    let mut h: String = COLUMNS.iter().map(|c| format!("\"{c}\"")).collect::<Vec<_>>().join(",");
    h.push('\n');
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_in_any_order_and_spacing_read_the_same() {
        let compact = br#"{"id":"tg-1","ts":5,"team":"a","status":200,"tokens":{"prompt":3,"completion":2},"guardrails":{"hits":[{"rule":"pii.email","action":"flag"}]},"cache":{"outcome":"hit"},"latency_ms":{"total":1.5}}"#;
        let spaced = b"{ \"latency_ms\" : { \"total\" : 1.5 } , \"cache\":{\"outcome\":\"hit\",\"x\":[1]},\n \"guardrails\": {\"hits\": [ {\"action\":\"flag\", \"rule\":\"pii.email\"} ]}, \"tokens\": {\"completion\":2, \"prompt\":3}, \"status\":200, \"team\":\"a\", \"ts\":5, \"id\":\"tg-1\", \"unknown\":{\"deep\":[{}]}}";
        let (a, b) = (Record::parse(compact).unwrap(), Record::parse(spaced).unwrap());
        assert_eq!(a.flat(), b.flat());
        assert_eq!(a.flat().guardrail_rules, ["pii.email"]);
        assert!(Record::parse(b"{\"ts\":\"soon\"}").is_none());
        assert!(Record::parse(b"\xff").is_none());
    }

    #[test]
    fn csv_quotes_text_and_lists() {
        let line =
            br#"{"id":"x","ts":1,"team":"a\"b","status":200,"guardrails":{"hits":[{"rule":"o'k","action":"flag"}]}}"#;
        let r = Record::parse(line).unwrap();
        let mut out = String::new();
        r.flat().write_csv(&mut out);
        assert!(out.starts_with("1,\"x\",\"a\"\"b\","), "{out}");
        assert!(out.ends_with(",\"['o\\'k']\",\"['flag']\"\n"), "{out}");
        assert_eq!(out.matches(',').count(), COLUMNS.len() - 1, "{out}");
        assert_eq!(csv_header().matches(',').count() + 1, COLUMNS.len());
    }
}
