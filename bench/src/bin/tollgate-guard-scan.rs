//! The guardrail scan alone, for instruction counts: scans 64 KiB of the
//! guard bench's clean English prose (or a file given as the argument)
//! ten times with every detector on. `bench/scripts/callgrind-guard.sh`
//! counts the instructions of `scan_it` under callgrind, which repeat run
//! after run where timings on this machine wander: how a new phrase or
//! anchor is checked for what it costs clean text.

use tollgate_bench::GUARD_PROSE as PROSE;
use tollgate_policy::guard::{injection, Action, Detector, Direction, Findings, Guard, ProfileSpec};

#[inline(never)]
fn scan_it(g: &Guard, t: &[u8], f: &mut Findings) -> usize {
    f.clear();
    g.scan(t, Direction::Request, true, f);
    f.file(0);
    f.all.len()
}
fn main() {
    let mut spec = ProfileSpec { name: "b".into(), injection_threshold: injection::THRESHOLD, ..Default::default() };
    for d in Detector::ALL {
        spec.actions[d as usize] = Some(Action::Flag);
    }
    let g = Guard::compile(&spec).unwrap();
    let file = std::env::args().nth(1);
    let t: Vec<u8> = match file {
        Some(f) => std::fs::read(f).unwrap(),
        None => PROSE.repeat(64 * 1024 / PROSE.len() + 1).into_bytes()[..64 * 1024].to_vec(),
    };
    let mut f = Findings::default();
    let mut n = 0;
    for _ in 0..10 {
        n += scan_it(&g, &t, &mut f);
    }
    println!("{n}");
}
