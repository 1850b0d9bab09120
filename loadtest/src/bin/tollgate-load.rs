//! `tollgate-load`: the bundled load generator.

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use bytes::Bytes;
use tollgate_loadtest::load::{self, report, LoadOptions, Measured};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const HELP: &str = "\
tollgate-load: an HTTP/1.1 keep-alive load generator for chat completions

USAGE:
    tollgate-load [run] --url URL [OPTIONS]
    tollgate-load compare --direct URL --through URL [OPTIONS]
                         the same load straight to an upstream and through a
                         gateway, one after the other, and the added latency
                         at each percentile
    tollgate-load sweep --url URL --slo-p99-ms MS [OPTIONS]
                         capacity planning: raise the open-loop rate step by
                         step until p99 passes the objective (or errors or
                         the rate falls behind), report the highest rate that
                         held, per core, and the cores a target load needs

OPTIONS:
    --url URL              http://host:port/path to load
    -c, --connections N    keep-alive connections [default: 16]
    -t, --threads N        threads, each with its own runtime [default: 1]
    -R, --rate R           open loop: R requests/s in all, on a fixed schedule;
                           latency counts from each request's intended send time,
                           so stalls are not hidden (no coordinated omission).
                           Without it: closed loop, as fast as answers come
    -d, --duration SECS    measured time [default: 10]
    --warmup SECS          unmeasured time first [default: 2]
    -n, --requests N       stop after N measured requests
    --timeout SECS         per-request time-out, counted as an error [default: 30]
    --key KEY              send Authorization: Bearer KEY
    -H, --header 'K: V'    an extra request header (repeatable)
    --model NAME           model in the built-in body [default: gpt-4o-mini]
    --prompt-bytes N       size of the built-in prompt [default: 100]
    --stream               ask for an SSE stream (measures time to first token
                           and gaps between events)
    --body-file FILE       send this body instead of the built-in one
    --json FILE            write the result as JSON
    --hgrm FILE            write the latency percentile distribution
    --svg FILE             write latency by percentile as SVG
    -q, --quiet            no progress line

SWEEP OPTIONS:
    --slo-p99-ms MS        the latency objective at p99 [default: 3]
    --start-rate R         first rate [default: 1000]
    --step-factor F        each rate is the last times F [default: 1.5]
    --max-rate R           stop here even if the objective holds [default: 1000000]
    --cores N              cores the system under test used, for per-core
                           figures [default: 1]
    --target-load R        a load to plan for: cores needed and headroom
    --rounds N             runs per rate; a step is judged on the run with the
                           median p99, so that one stalled second on a noisy
                           machine fails one run, not the sweep [default: 1]
    -h, --help             print this help
";

struct Args {
    load: LoadOptions,
    compare: Option<(SocketAddr, String, SocketAddr, String)>,
    sweep: Option<Sweep>,
    json: Option<String>,
    hgrm: Option<String>,
    svg: Option<String>,
}

fn main() {
    let args = match parse(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("tollgate-load: {e}\n\n{HELP}");
            std::process::exit(2);
        }
    };
    let code = match (&args.compare, &args.sweep) {
        (Some(pair), _) => compare(&args, pair),
        (None, Some(sweep)) => run_sweep(&args, sweep),
        (None, None) => single(&args),
    };
    std::process::exit(code);
}

fn single(args: &Args) -> i32 {
    let m = match load::run(&args.load) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("tollgate-load: {e}");
            return 1;
        }
    };
    print!("{}", report::summary("run", &m));
    write_outputs(args, &[("run", &m)]);
    i32::from(m.successes() == 0)
}

fn compare(
    args: &Args,
    (direct, direct_path, through, through_path): &(SocketAddr, String, SocketAddr, String),
) -> i32 {
    let mut results = Vec::new();
    for (name, addr, path) in [("direct", direct, direct_path), ("through", through, through_path)] {
        let mut opts = args.load.clone();
        opts.target = *addr;
        opts.request = rewrite_target(&opts.request, path);
        eprintln!("{name}: {addr}{path}");
        match load::run(&opts) {
            Ok(m) => results.push((name, m)),
            Err(e) => {
                eprintln!("tollgate-load: {e}");
                return 1;
            }
        }
    }
    for (name, m) in &results {
        print!("{}", report::summary(name, m));
    }
    println!("added latency (through - direct):");
    print!("{}", report::added(&results[0].1, &results[1].1));
    let refs: Vec<(&str, &Measured)> = results.iter().map(|(n, m)| (*n, m)).collect();
    write_outputs(args, &refs);
    0
}

fn write_outputs(args: &Args, runs: &[(&str, &Measured)]) {
    let write = |path: &Option<String>, text: String| {
        if let Some(p) = path {
            if let Err(e) = std::fs::write(p, text) {
                eprintln!("tollgate-load: cannot write {p}: {e}");
            }
        }
    };
    let last = runs.last().expect("one run").1;
    write(&args.json, runs.iter().map(|(_, m)| report::json(m)).collect());
    write(&args.hgrm, report::hgrm(&last.latency));
    write(&args.svg, report::svg(&runs.iter().map(|(n, m)| (*n, &m.latency)).collect::<Vec<_>>()));
}

/// What `sweep` looks for.
struct Sweep {
    slo_p99_us: u64,
    start: f64,
    factor: f64,
    max: f64,
    cores: f64,
    target: Option<f64>,
    rounds: usize,
}

fn run_sweep(args: &Args, sweep: &Sweep) -> i32 {
    println!("{:>10} {:>10} {:>9} {:>9} {:>8}  verdict", "rate", "achieved", "p50_ms", "p99_ms", "errors");
    let mut best: Option<f64> = None;
    let mut points = Vec::new();
    let mut rate = sweep.start;
    while rate <= sweep.max {
        let mut opts = args.load.clone();
        opts.rate = Some(rate);
        opts.progress = false;
        let mut runs = Vec::with_capacity(sweep.rounds.max(1));
        for _ in 0..sweep.rounds.max(1) {
            match load::run(&opts) {
                Ok(m) => runs.push(m),
                Err(e) => {
                    eprintln!("tollgate-load: {e}");
                    return 1;
                }
            }
        }
        // The run with the median p99 speaks for the step (the upper
        // median when the count is even: never the kinder of two).
        runs.sort_by_key(|m| m.latency.value_at_quantile(0.99));
        let m = runs.swap_remove(runs.len() / 2);
        let achieved = m.requests() as f64 / m.elapsed.as_secs_f64().max(1e-9);
        let p99 = m.latency.value_at_quantile(0.99);
        let error_share = m.errors as f64 / m.requests().max(1) as f64;
        let non_2xx = m.requests() - m.successes();
        let held = p99 <= sweep.slo_p99_us && error_share < 0.01 && non_2xx == 0 && achieved >= 0.95 * rate;
        println!(
            "{rate:>10.0} {achieved:>10.0} {:>9.3} {:>9.3} {:>8}  {}",
            m.latency.value_at_quantile(0.5) as f64 / 1000.0,
            p99 as f64 / 1000.0,
            m.errors + non_2xx,
            if held { "holds" } else { "fails" }
        );
        points.push((achieved, p99));
        if !held {
            break;
        }
        best = Some(rate);
        rate *= sweep.factor.max(1.01);
    }
    let write = |path: &Option<String>, text: String| {
        if let Some(p) = path {
            if let Err(e) = std::fs::write(p, text) {
                eprintln!("tollgate-load: cannot write {p}: {e}");
            }
        }
    };
    write(&args.svg, report::sweep_svg(&points, sweep.slo_p99_us));
    let slo_ms = sweep.slo_p99_us as f64 / 1000.0;
    let Some(best) = best else {
        println!("no rate held p99 under {slo_ms} ms; start lower (--start-rate)");
        return 1;
    };
    let per_core = best / sweep.cores.max(1.0);
    println!("highest rate with p99 under {slo_ms} ms: {best:.0} req/s ({per_core:.0} req/s per core)");
    if let Some(target) = sweep.target {
        let cores = (target / per_core).ceil().max(1.0);
        println!(
            "{target:.0} requests/s at p99 under {slo_ms} ms: {cores:.0} core{}, {:.1}x headroom",
            if cores == 1.0 { "" } else { "s" },
            per_core * cores / target
        );
    }
    0
}

/// Splits `http://host:port/path`.
fn parse_url(url: &str) -> Result<(SocketAddr, String, String), String> {
    let rest = url.strip_prefix("http://").ok_or_else(|| format!("{url:?}: only http:// URLs are supported"))?;
    let (authority, path) = rest.find('/').map_or((rest, "/"), |i| (&rest[..i], &rest[i..]));
    let addr = authority
        .to_socket_addrs()
        .map_err(|e| format!("{authority}: {e}"))?
        .next()
        .ok_or_else(|| format!("{authority}: no address"))?;
    Ok((addr, authority.to_string(), path.to_string()))
}

fn rewrite_target(request: &Bytes, path: &str) -> Bytes {
    let text = String::from_utf8_lossy(request);
    let (line, rest) = text.split_once("\r\n").unwrap_or((&text, ""));
    let method = line.split(' ').next().unwrap_or("POST");
    Bytes::from(format!("{method} {path} HTTP/1.1\r\n{rest}"))
}

fn built_in_body(model: &str, prompt_bytes: usize, stream: bool) -> String {
    const SENTENCE: &str = "Summarise the quarterly report for the finance team and list the three largest costs. ";
    let prompt: String = SENTENCE.chars().cycle().take(prompt_bytes.max(1)).collect();
    format!(r#"{{"model":"{model}","stream":{stream},"messages":[{{"role":"user","content":"{prompt}"}}]}}"#)
}

fn parse(args: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut args = args.peekable();
    let mut mode = "run";
    if let Some(m) = args.peek().filter(|a| matches!(a.as_str(), "run" | "compare" | "sweep")).cloned() {
        mode = match m.as_str() {
            "compare" => "compare",
            "sweep" => "sweep",
            _ => "run",
        };
        args.next();
    }
    let (mut url, mut direct, mut through) = (None, None, None);
    let (mut connections, mut threads, mut rate) = (16usize, 1usize, None);
    let (mut duration, mut warmup, mut requests, mut timeout) = (10.0f64, 2.0f64, None, 30.0f64);
    let (mut key, mut headers, mut model, mut prompt_bytes, mut stream, mut body_file) =
        (None, Vec::new(), "gpt-4o-mini".to_string(), 100usize, false, None);
    let (mut json, mut hgrm, mut svg, mut progress) = (None, None, None, true);
    let mut sweep =
        Sweep { slo_p99_us: 3000, start: 1000.0, factor: 1.5, max: 1_000_000.0, cores: 1.0, target: None, rounds: 1 };
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
        fn num<T: std::str::FromStr>(name: &str, v: String) -> Result<T, String> {
            v.parse().map_err(|_| format!("{name}: {v:?} is not a number"))
        }
        match arg.as_str() {
            "-h" | "--help" => {
                print!("{HELP}");
                std::process::exit(0);
            }
            "--url" => url = Some(value("--url")?),
            "--direct" => direct = Some(value("--direct")?),
            "--through" => through = Some(value("--through")?),
            "-c" | "--connections" => connections = num("--connections", value("--connections")?)?,
            "-t" | "--threads" => threads = num("--threads", value("--threads")?)?,
            "-R" | "--rate" => rate = Some(num("--rate", value("--rate")?)?),
            "-d" | "--duration" => duration = num("--duration", value("--duration")?)?,
            "--warmup" => warmup = num("--warmup", value("--warmup")?)?,
            "-n" | "--requests" => requests = Some(num("--requests", value("--requests")?)?),
            "--timeout" => timeout = num("--timeout", value("--timeout")?)?,
            "--key" => key = Some(value("--key")?),
            "-H" | "--header" => headers.push(value("--header")?),
            "--model" => model = value("--model")?,
            "--prompt-bytes" => prompt_bytes = num("--prompt-bytes", value("--prompt-bytes")?)?,
            "--stream" => stream = true,
            "--body-file" => body_file = Some(value("--body-file")?),
            "--json" => json = Some(value("--json")?),
            "--hgrm" => hgrm = Some(value("--hgrm")?),
            "--svg" => svg = Some(value("--svg")?),
            "-q" | "--quiet" => progress = false,
            "--slo-p99-ms" => sweep.slo_p99_us = (num::<f64>("--slo-p99-ms", value("--slo-p99-ms")?)? * 1000.0) as u64,
            "--start-rate" => sweep.start = num("--start-rate", value("--start-rate")?)?,
            "--step-factor" => sweep.factor = num("--step-factor", value("--step-factor")?)?,
            "--max-rate" => sweep.max = num("--max-rate", value("--max-rate")?)?,
            "--cores" => sweep.cores = num("--cores", value("--cores")?)?,
            "--target-load" => sweep.target = Some(num("--target-load", value("--target-load")?)?),
            "--rounds" => sweep.rounds = num::<usize>("--rounds", value("--rounds")?)?.max(1),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    let first_url = match mode {
        "compare" => direct.clone().ok_or("compare needs --direct URL and --through URL")?,
        _ => url.ok_or("--url is required")?,
    };
    let (target, authority, path) = parse_url(&first_url)?;
    let body = match body_file {
        Some(f) => std::fs::read_to_string(&f).map_err(|e| format!("--body-file {f}: {e}"))?,
        None => built_in_body(&model, prompt_bytes, stream),
    };
    let mut head = format!("POST {path} HTTP/1.1\r\nHost: {authority}\r\nContent-Type: application/json\r\n");
    if let Some(k) = key {
        head.push_str(&format!("Authorization: Bearer {k}\r\n"));
    }
    for h in headers {
        head.push_str(&h);
        head.push_str("\r\n");
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    let compare = match mode {
        "compare" => {
            let (d, _, dp) = parse_url(&first_url)?;
            let (t, _, tp) = parse_url(&through.ok_or("compare needs --through URL")?)?;
            Some((d, dp, t, tp))
        }
        _ => None,
    };
    let secs = |s: f64| Duration::from_secs_f64(s.max(0.0));
    Ok(Args {
        sweep: (mode == "sweep").then_some(sweep),
        load: LoadOptions {
            target,
            request: Bytes::from(head),
            connections: connections.max(1),
            threads: threads.max(1),
            rate,
            duration: secs(duration),
            warmup: secs(warmup),
            requests,
            timeout: secs(timeout),
            progress,
        },
        compare,
        json,
        hgrm,
        svg,
    })
}
