//! The `tollgate` binary: argument parsing and dispatch; everything else
//! lives in the library.

use std::path::Path;
use tollgate_engine::cli::{self, Command, HELP};

use tollgate_policy::config::ProcessEnv;
use tollgate_policy::keys::{hash_key, hex, key_from_random, KEY_RANDOM_BYTES};
use tollgate_policy::Config;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let code = match cli::parse(std::env::args().skip(1)) {
        Ok(Command::Help) => {
            print!("{HELP}");
            0
        }
        Ok(Command::Version) => {
            println!("tollgate {}", env!("CARGO_PKG_VERSION"));
            0
        }
        Ok(Command::CheckConfig(path)) => match Config::load(&path, &ProcessEnv) {
            Ok(c) => {
                println!("{}: ok ({} providers, {} models)", path.display(), c.providers.len(), c.routes.all().len());
                0
            }
            Err(e) => {
                eprintln!("{e}");
                2
            }
        },
        Ok(Command::Keygen { team, name, config }) => keygen(&team, &name, config.as_deref()),
        Ok(Command::Report { dir, files, since, until, by, format, guardrails }) => {
            report(dir, files, since, until, by, &format, guardrails)
        }
        Ok(Command::Serve(args)) => tollgate_engine::server::serve(args),
        Ok(Command::Reload { admin, token_file }) => reload(admin, token_file.as_deref()),
        Ok(Command::AdminKeygen) => admin_keygen(),
        Ok(Command::ViewerKeygen(teams)) => viewer_keygen(&teams),
        Err(msg) => {
            eprintln!("tollgate: {msg}");
            2
        }
    };
    std::process::exit(code);
}

/// Prints a new key once, with the configuration entry that holds its hash.
fn keygen(team: &str, name: &str, config: Option<&Path>) -> i32 {
    if let Some(path) = config {
        match Config::load(path, &ProcessEnv) {
            Ok(c) if c.team(team).is_none() => {
                let teams: Vec<&str> = c.teams.iter().map(|t| t.name.as_str()).collect();
                eprintln!("{}: no team {team:?}; teams: {}", path.display(), teams.join(", "));
                return 2;
            }
            Ok(_) => {}
            Err(e) => {
                eprintln!("{e}");
                return 2;
            }
        }
    }
    let mut random = [0u8; KEY_RANDOM_BYTES];
    if let Err(e) = getrandom::fill(&mut random) {
        eprintln!("tollgate keygen: the OS random source failed: {e}");
        return 1;
    }
    let key = key_from_random(&random);
    let hash = hex(&hash_key(key.as_bytes()));
    println!("{key}");
    println!();
    println!("# The key above is shown only this once: give it to its owner now.");
    println!("# Add this entry to the configuration, then reload (kill -HUP, or POST /admin/reload):");
    println!("[[keys]]");
    println!("name = {name:?}");
    println!("team = {team:?}");
    println!("sha256 = \"{hash}\"");
    0
}

/// A new token with its own prefix (so that an admin's or a viewer's is
/// never taken for a client key, nor one for the other), printed once; its
/// hash, or `None` when the OS random source failed (said on stderr).
fn new_token(prefix: &str) -> Option<String> {
    let mut random = [0u8; KEY_RANDOM_BYTES];
    if let Err(e) = getrandom::fill(&mut random) {
        eprintln!("tollgate keygen: the OS random source failed: {e}");
        return None;
    }
    let token = format!("{prefix}-{}", hex(&random));
    println!("{token}");
    println!();
    Some(hex(&hash_key(token.as_bytes())))
}

/// Prints a new admin token once, with the `[server] admin_tokens` entry
/// that holds its hash.
fn admin_keygen() -> i32 {
    let Some(hash) = new_token("tga") else { return 1 };
    println!("# The token above is shown only this once: keep it in a file only the operators can read");
    println!("# (TOLLGATE_ADMIN_TOKEN_FILE, for `tollgate reload`). Add its hash under [server], then reload:");
    println!("admin_tokens = [\"{hash}\"]");
    0
}

/// Prints a new viewer token once, with the `[[server.viewer_tokens]]`
/// entry that holds its hash and teams.
fn viewer_keygen(teams: &[String]) -> i32 {
    let Some(hash) = new_token("tgv") else { return 1 };
    println!("# The token above is shown only this once: give it to whoever may see these teams' figures");
    println!("# (open http://<admin address>/#token=<token>). Add this entry to the configuration, then reload:");
    println!("[[server.viewer_tokens]]");
    println!("token = \"{hash}\"");
    let quoted: Vec<String> = teams.iter().map(|t| format!("{t:?}")).collect();
    println!("teams = [{}]", quoted.join(", "));
    0
}

fn report(
    dir: Option<std::path::PathBuf>,
    mut files: Vec<std::path::PathBuf>,
    since: Option<String>,
    until: Option<String>,
    by: Vec<String>,
    format: &str,
    guardrails: bool,
) -> i32 {
    use tollgate_engine::report::{self, By, Format, ReportOptions};
    let fail = |msg: String| {
        eprintln!("tollgate report: {msg}");
        2
    };
    if let Some(d) = dir {
        match report::files_in(&d) {
            Ok(f) => files.extend(f),
            Err(e) => return fail(format!("{}: {e}", d.display())),
        }
    }
    if files.is_empty() {
        return fail("no record files: give --dir DIR (the [logging] dir) or FILE...".into());
    }
    let time = |s: Option<String>, flag: &str| match s {
        None => Ok(None),
        Some(s) => {
            report::parse_time(&s).map(Some).ok_or_else(|| format!("{flag} {s:?}: use YYYY-MM-DD or Unix milliseconds"))
        }
    };
    let (since_ms, until_ms) = match (time(since, "--since"), time(until, "--until")) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => return fail(e),
    };
    let mut groups = Vec::new();
    for b in &by {
        match By::parse(b) {
            Some(g) => groups.push(g),
            None => return fail(format!("--by {b:?}: use team, model, key, provider or run")),
        }
    }
    // A run is named within its team: two teams may use the same id.
    if let Some(at) = groups.iter().position(|g| *g == By::Run) {
        if !groups.contains(&By::Team) {
            groups.insert(at, By::Team);
        }
    }
    let format = match format {
        "table" => Format::Table,
        "csv" => Format::Csv,
        "json" => Format::Json,
        other => return fail(format!("--format {other:?}: use table, csv or json")),
    };
    let opts = ReportOptions { inputs: files, since_ms, until_ms, by: groups, format };
    if guardrails {
        let mut out = std::io::stdout().lock();
        return match report::audit(&opts, &mut out) {
            Ok(_) => 0,
            Err(e) => fail(e.to_string()),
        };
    }
    match report::build(&opts) {
        Ok(r) => {
            print!("{}", report::render(&r, &opts));
            if r.bad_lines > 0 {
                eprintln!("tollgate report: {} of {} lines were not records and were skipped", r.bad_lines, r.lines);
            }
            0
        }
        Err(e) => fail(e.to_string()),
    }
}

/// `tollgate reload`: POST /admin/reload; 0 when the gateway took the new
/// configuration, 1 (with every problem printed) when it refused it or
/// could not be reached.
fn reload(admin: std::net::SocketAddr, token_file: Option<&Path>) -> i32 {
    use std::io::{Read, Write};
    let token = match token_file.map(std::fs::read_to_string) {
        None => None,
        Some(Ok(t)) => Some(t.trim().to_string()),
        Some(Err(e)) => {
            eprintln!(
                "tollgate: cannot read the admin token file {}: {e}",
                token_file.unwrap_or(Path::new("")).display()
            );
            return 1;
        }
    };
    let authorization = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    let result = (|| -> std::io::Result<String> {
        let mut c = std::net::TcpStream::connect_timeout(&admin, std::time::Duration::from_secs(5))?;
        c.set_read_timeout(Some(std::time::Duration::from_secs(30)))?;
        write!(
            c,
            "POST /admin/reload HTTP/1.1\r\nHost: {}\r\n{authorization}Content-Length: 0\r\nConnection: close\r\n\r\n",
            admin.ip()
        )?;
        let mut answer = String::new();
        c.read_to_string(&mut answer)?;
        Ok(answer)
    })();
    match result {
        Ok(answer) => {
            let ok = answer.starts_with("HTTP/1.1 200");
            let body = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b);
            if ok {
                println!("{body}");
                0
            } else if answer.starts_with("HTTP/1.1 401") {
                eprintln!("tollgate: the admin listener refused the admin token (give --token-file, or set TOLLGATE_ADMIN_TOKEN_FILE): {body}");
                1
            } else {
                eprintln!("tollgate: reload refused, the old configuration keeps serving: {body}");
                1
            }
        }
        Err(e) => {
            eprintln!("tollgate: cannot reach the admin listener at {admin}: {e}");
            1
        }
    }
}
