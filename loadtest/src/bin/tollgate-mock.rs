//! `tollgate-mock`: the bundled OpenAI-compatible mock upstream.

use std::time::Duration;

use tollgate_loadtest::mock::{self, Behavior, Failure, MockOptions, TlsFiles};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const HELP: &str = "\
tollgate-mock: an OpenAI-compatible mock upstream for tests and benchmarks

USAGE:
    tollgate-mock [OPTIONS]

OPTIONS:
    --listen ADDR          address to listen on [default: 127.0.0.1:9000; port 0 picks one]
    --threads N            server threads, each with its own SO_REUSEPORT listener [default: 1]
    --reply-words N        words per reply [default: 16]
    --latency-ms N         delay before each response head [default: 0]
    --chunks N             content events per streamed reply [default: 8]
    --chunk-delay-ms N     delay between streamed events [default: 0]
    --fail WHAT            misbehave: a status code (500, 429...), reset, hang, trickle, reset-mid-stream
    --fail-rate R          fraction of requests that misbehave, 0.0 to 1.0 [default: 1.0]
    --aws-secret S         Bedrock: check each request's SigV4 signature with this secret (403 as AWS
                           when it does not hold), and serve it as an instance role's at /latest/...
    --split                split each SSE event, inside a UTF-8 character, across two writes
    --tls-cert FILE        serve HTTPS with this PEM certificate chain (needs --tls-key)
    --tls-key FILE         the PEM private key for --tls-cert
    -h, --help             print this help

Each request may override these with x-mock-* headers (x-mock-latency-ms,
x-mock-reply-words, x-mock-chunks, x-mock-chunk-delay-ms, x-mock-fail,
x-mock-split, x-mock-echo: body|head, x-mock-reply, x-mock-tool: NAME,
x-mock-cache: READ,WRITE). Prints `tollgate-mock listening on
http://ADDR` once it accepts connections, and with TLS a line `TLS session
resumed` each time a client comes back with a session.
";

fn main() {
    let opts = match parse_args(std::env::args().skip(1)) {
        Ok(o) => o,
        Err(msg) => {
            eprintln!("tollgate-mock: {msg}\n\n{HELP}");
            std::process::exit(2);
        }
    };
    match mock::start(&opts) {
        Ok(handle) => {
            let scheme = if opts.tls.is_some() { "https" } else { "http" };
            println!("tollgate-mock listening on {scheme}://{}", handle.addr);
            loop {
                std::thread::park();
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
            eprintln!("tollgate-mock: {e}: stop it or choose another --listen address");
            std::process::exit(1);
        }
        Err(e) => {
            eprintln!("tollgate-mock: cannot listen on {}: {e}", opts.listen);
            std::process::exit(1);
        }
    }
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<MockOptions, String> {
    let mut opts = MockOptions {
        listen: "127.0.0.1:9000".parse().expect("literal"),
        threads: 1,
        behavior: Behavior::default(),
        tls: None,
    };
    let (mut cert, mut key) = (None, None);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
        fn num<T: std::str::FromStr>(name: &str, v: String) -> Result<T, String> {
            v.parse().map_err(|_| format!("{name}: {v:?} is not a number"))
        }
        let b = &mut opts.behavior;
        match arg.as_str() {
            "-h" | "--help" => {
                print!("{HELP}");
                std::process::exit(0);
            }
            "--listen" => opts.listen = value("--listen")?.parse().map_err(|_| "--listen needs IP:port".to_string())?,
            "--threads" => opts.threads = num("--threads", value("--threads")?)?,
            "--reply-words" => b.reply_words = num("--reply-words", value("--reply-words")?)?,
            "--latency-ms" => b.latency = Duration::from_millis(num("--latency-ms", value("--latency-ms")?)?),
            "--chunks" => b.stream_chunks = num("--chunks", value("--chunks")?)?,
            "--chunk-delay-ms" => {
                b.chunk_delay = Duration::from_millis(num("--chunk-delay-ms", value("--chunk-delay-ms")?)?)
            }
            "--fail" => {
                let v = value("--fail")?;
                b.failure = Some(Failure::parse(&v).ok_or_else(|| format!("--fail: unknown failure {v:?}"))?);
            }
            "--fail-rate" => b.failure_rate = num("--fail-rate", value("--fail-rate")?)?,
            "--split" => b.split_writes = true,
            // Leaked once: the mock's whole life.
            "--aws-secret" => b.aws_secret = Some(Box::leak(value("--aws-secret")?.into_boxed_str())),
            "--tls-cert" => cert = Some(value("--tls-cert")?.into()),
            "--tls-key" => key = Some(value("--tls-key")?.into()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    opts.tls = match (cert, key) {
        (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
        (None, None) => None,
        _ => return Err("--tls-cert and --tls-key go together".to_string()),
    };
    Ok(opts)
}
