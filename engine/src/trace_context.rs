//! A request's place in a trace: its W3C `traceparent` read (or a new
//! trace begun), sampled or not, and the ids of the gateway's spans for
//! it. Child span ids are derived from the request's span id and a salt
//! (the attempt's index, the phase), not drawn and stored: the trace keeps
//! one id, and the upstream request and the exporter compute the same
//! child id from it.

use std::cell::Cell;

use tollgate_policy::keys::hex_into;

/// A request's place in a trace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Context {
    pub trace_id: [u8; 16],
    /// The client's span (from its `traceparent`), when it sent one, or
    /// the gateway's own span a request made by the gateway hangs under.
    pub parent: Option<[u8; 8]>,
    /// The parent is another process's (the client's).
    pub remote: bool,
    /// The gateway's span for the request.
    pub span: [u8; 8],
    /// W3C trace flags; bit 0: sampled.
    pub flags: u8,
}

/// Salts of the child spans: attempts use their index (0..10).
pub const SALT_GUARDRAILS: u64 = 0x100;
pub const SALT_CACHE: u64 = 0x200;

impl Context {
    /// The request's context: the client's trace continued when its
    /// `traceparent` is valid (and sampled as it says), else a new trace,
    /// sampled at `ratio` by its id.
    pub fn start(traceparent: Option<&[u8]>, ratio: f64, rng: &Cell<u64>) -> Context {
        let random = || crate::splitmix(crate::next_random(rng));
        let span = nonzero(random().to_be_bytes());
        match traceparent.and_then(parse_traceparent) {
            Some((trace_id, parent, flags)) => {
                Context { trace_id, parent: Some(parent), remote: true, span, flags: flags & 1 }
            }
            None => {
                let mut trace_id = [0u8; 16];
                trace_id[..8].copy_from_slice(&random().to_be_bytes());
                trace_id[8..].copy_from_slice(&random().to_be_bytes());
                if trace_id == [0; 16] {
                    trace_id[15] = 1;
                }
                let flags = u8::from(sampled_by_id(&trace_id, ratio));
                Context { trace_id, parent: None, remote: false, span, flags }
            }
        }
    }

    pub fn sampled(&self) -> bool {
        self.flags & 1 == 1
    }

    /// The id of a child span of the request's.
    pub fn child(&self, salt: u64) -> [u8; 8] {
        let root = u64::from_be_bytes(self.span);
        nonzero(crate::splitmix(root ^ salt.wrapping_add(1).wrapping_mul(0x9e37_79b9_7f4a_7c15)).to_be_bytes())
    }

    /// The context of a request the gateway makes on this one's behalf
    /// (a semantic lookup's embedding call): same trace, under `parent`.
    pub fn nested(&self, parent: [u8; 8], salt: u64) -> Context {
        Context { parent: Some(parent), remote: false, span: self.child(salt), ..*self }
    }

    /// `traceparent` naming `span` as the parent (version 00).
    pub fn traceparent(&self, span: [u8; 8]) -> [u8; 55] {
        let mut out = [b'-'; 55];
        out[..2].copy_from_slice(b"00");
        hex_into(&self.trace_id, &mut out[3..35]);
        hex_into(&span, &mut out[36..52]);
        hex_into(&[self.flags], &mut out[53..55]);
        out
    }
}

/// The request's one `traceparent`: with several, none (W3C: a new trace).
pub fn traceparent_of(head: &tollgate_protocol::http1::RequestHead) -> Option<&[u8]> {
    let mut all = head.headers().filter(|(n, _)| n.eq_ignore_ascii_case(b"traceparent")).map(|(_, v)| v);
    match (all.next(), all.next()) {
        (Some(v), None) => Some(v),
        _ => None,
    }
}

/// Parses a W3C `traceparent` (trace-context level 1): `00-<32 hex>-<16
/// hex>-<2 hex>`, lowercase; a later version is read by its first four
/// fields when what follows them starts with `-`. `None` for anything
/// else (version `ff`, an all-zero id, uppercase, a wrong length), which
/// starts a new trace, as the specification says.
pub fn parse_traceparent(value: &[u8]) -> Option<([u8; 16], [u8; 8], u8)> {
    let v = value.trim_ascii();
    if v.len() < 55 || v[2] != b'-' || v[35] != b'-' || v[52] != b'-' {
        return None;
    }
    let version = unhex::<1>(&v[..2])?[0];
    match version {
        0 if v.len() != 55 => return None,
        0xff => return None,
        _ if v.len() > 55 && v[55] != b'-' => return None,
        _ => {}
    }
    let trace_id = unhex::<16>(&v[3..35])?;
    let parent = unhex::<8>(&v[36..52])?;
    let flags = unhex::<1>(&v[53..55])?[0];
    (trace_id != [0; 16] && parent != [0; 8]).then_some((trace_id, parent, flags))
}

/// Whether a new trace is kept at `ratio`: its id's last 56 bits (the
/// random part W3C level 2 promises) against the ratio, so that every
/// node decides alike for one id.
pub fn sampled_by_id(trace_id: &[u8; 16], ratio: f64) -> bool {
    let mut low = [0u8; 8];
    low[1..].copy_from_slice(&trace_id[9..]);
    let r = u64::from_be_bytes(low);
    (r as f64) < ratio * (1u64 << 56) as f64
}

fn nonzero(id: [u8; 8]) -> [u8; 8] {
    if id == [0; 8] {
        [0, 0, 0, 0, 0, 0, 0, 1]
    } else {
        id
    }
}

/// Lowercase hex only: W3C forbids uppercase in `traceparent`.
fn unhex<const N: usize>(s: &[u8]) -> Option<[u8; N]> {
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    if s.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (i, o) in out.iter_mut().enumerate() {
        *o = digit(s[2 * i])? << 4 | digit(s[2 * i + 1])?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn traceparent_table() {
        let (t, p, f) = parse_traceparent(GOOD.as_bytes()).unwrap();
        assert_eq!(t[0], 0x4b);
        assert_eq!(t[15], 0x36);
        assert_eq!(p, [0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7]);
        assert_eq!(f, 1);
        // Optional whitespace around the value is the header's, not the value's.
        assert!(parse_traceparent(format!("  {GOOD}\t").as_bytes()).is_some());
        // A later version: its first four fields, when a `-` follows them.
        assert!(parse_traceparent(format!("cc{}-what-the-future-holds", &GOOD[2..]).as_bytes()).is_some());
        assert!(parse_traceparent(format!("cc{}", &GOOD[2..]).as_bytes()).is_some());
        for bad in [
            "",
            "00",
            &GOOD[..54],
            &format!("{GOOD}-"),
            &format!("{GOOD}0"),
            &format!("cc{}x", &GOOD[2..]),
            &format!("ff{}", &GOOD[2..]),
            &GOOD.to_uppercase(),
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7_01",
            "0x-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0\u{e9}",
            // Multi-byte UTF-8 where a hex digit or a dash belongs.
            "00-4bf92f3577b34da6a3ce929d0e0e47\u{e9}-00f067aa0ba902b7-01",
        ] {
            assert!(parse_traceparent(bad.as_bytes()).is_none(), "{bad:?}");
        }
        // Every byte string up to the valid length, cut anywhere: no panic.
        for n in 0..=GOOD.len() {
            let _ = parse_traceparent(&GOOD.as_bytes()[..n]);
        }
    }

    #[test]
    fn continues_the_clients_trace_and_names_the_attempt_upstream() {
        let rng = Cell::new(0x1234_5678_9abc_def1);
        let c = Context::start(Some(GOOD.as_bytes()), 0.0, &rng);
        assert_eq!(c.parent, Some([0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7]));
        assert!(c.sampled(), "the client's sampled flag wins over the ratio");
        let attempt = c.child(0);
        assert_ne!(attempt, c.span);
        assert_ne!(attempt, c.child(1));
        assert_ne!(c.child(SALT_GUARDRAILS), c.child(SALT_CACHE));
        let tp = c.traceparent(attempt);
        let (t, p, f) = parse_traceparent(&tp).unwrap();
        assert_eq!((t, p, f), (c.trace_id, attempt, 1));
        assert!(std::str::from_utf8(&tp).unwrap().starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
        // Not sampled by the client: not sampled here either.
        let off = Context::start(Some(GOOD.replace("-01", "-00").as_bytes()), 1.0, &rng);
        assert!(!off.sampled());
    }

    #[test]
    fn new_traces_are_sampled_at_the_ratio() {
        let rng = Cell::new(42);
        let n = 20_000;
        let kept = (0..n).filter(|_| Context::start(None, 0.25, &rng).sampled()).count();
        // 5,000 expected; a binomial's standard deviation here is ~61.
        assert!((4_700..=5_300).contains(&kept), "{kept}");
        assert!((0..1000).all(|_| Context::start(None, 1.0, &rng).sampled()));
        assert!((0..1000).all(|_| !Context::start(None, 0.0, &rng).sampled()));
        let a = Context::start(None, 1.0, &rng);
        let b = Context::start(None, 1.0, &rng);
        assert_ne!(a.trace_id, b.trace_id);
        assert_eq!(a.parent, None);
    }
}
