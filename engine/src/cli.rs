//! Command-line arguments. Hand-parsed: the surface is small, and a parser
//! crate would cost more build time than this file.

use std::net::SocketAddr;
use std::path::PathBuf;

pub const HELP: &str = "\
tollgate: an AI gateway: one layer every LLM request passes through

USAGE:
    tollgate [serve] [OPTIONS]     run the gateway (the default command)
    tollgate check-config FILE     validate a configuration file and exit
    tollgate reload [--admin IP:PORT] [--token-file FILE]
                                   ask a running gateway to reload (its admin
                                   listener, 127.0.0.1:9090 by default); exits 1
                                   with every problem when it refuses; the admin
                                   token is read from FILE (default: the file
                                   named by $TOLLGATE_ADMIN_TOKEN_FILE)
    tollgate keygen --team TEAM --name NAME [--config FILE]
                                   make a new virtual key: prints the key once,
                                   and the [[keys]] entry (its SHA-256) to paste
                                   into the configuration; with --config, checks
                                   that the team exists
    tollgate keygen --admin        make an admin token: prints the token once and
                                   the [server] admin_tokens entry (its SHA-256)
    tollgate keygen --viewer TEAM[,TEAM...]
                                   make a viewer token, which sees only these
                                   teams' figures on the dashboard: prints the
                                   token once and its [[server.viewer_tokens]] entry
    tollgate report [--dir DIR | FILE...] [--since DATE] [--until DATE]
                    [--by team,model,key,provider,run] [--format table|csv|json]
                    [--guardrails]
                                   usage, cost and latency from the request records:
                                   one sentence per group, then a table (DATE is
                                   YYYY-MM-DD, UTC, or Unix milliseconds);
                                   with --guardrails, the audit listing: every
                                   request that met a guardrail (when, team, key,
                                   model, rules and actions; never the text)
    tollgate --help | --version

With no --config, tollgate runs on its bundled defaults (examples/tollgate.toml):
a gateway on 127.0.0.1:8080 in front of the bundled mock upstream, which it
serves itself, so it works on a fresh machine with no provider account.

OPTIONS (serve):
    -c, --config FILE      configuration file (TOML; see docs/configuration.md)
    --listen ADDR          listen address, overriding [server].listen (port 0 picks one)
    --admin-listen ADDR    admin listener address, overriding [server].admin_listen;
                           \"off\" disables it
    --workers N            worker threads, one per core, overriding [server].workers
                           (0: one per available core)
    --driver DRIVER        IO driver: auto (io_uring, falling back to epoll where the
                           kernel or container blocks it), io-uring, or epoll [default: auto]
    --log LEVEL            log filter: error, warn, info, debug, trace, or a tracing
                           filter such as tollgate_engine=debug [default: info; env RUST_LOG]
    -h, --help             print this help
    -V, --version          print the version

SIGNALS:
    SIGTERM, SIGINT        stop accepting, let in-flight requests finish (up to
                           [server.timeouts].drain_ms), exit 0
    SIGHUP                 reload the configuration file (as POST /admin/reload)

ENDPOINTS (each /v1 request needs `Authorization: Bearer tg-...` or `x-api-key`):
    POST /v1/chat/completions   OpenAI chat completions, JSON or SSE (\"stream\": true)
    POST /v1/responses          OpenAI Responses API (OpenAI-style providers), JSON or SSE
    POST /v1/completions        OpenAI legacy completions (OpenAI-style providers), JSON or SSE
    POST /v1/embeddings         OpenAI embeddings (OpenAI-style providers)
    POST /v1/messages           Anthropic messages, JSON or SSE
    POST /v1/messages/count_tokens  Anthropic's token count (free; the gateway's own count for other providers)
    GET  /v1/models             the models the key may use
    GET  /healthz               liveness
    GET  /readyz                readiness (503 while draining)
ADMIN ENDPOINTS ([server].admin_listen, loopback by default):
    POST /admin/reload          reload the configuration; 400 with every problem if invalid
    GET  /admin/config          loaded file, SHA-256, load time, generation
    GET  /metrics               Prometheus text format
    GET  /                      the live dashboard (polls GET /admin/stats, JSON)

EXIT CODES:
    0 clean shutdown or valid configuration; 1 runtime failure (for example the
    address is in use); 2 invalid configuration or arguments
";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Driver {
    Auto,
    IoUring,
    Epoll,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServeArgs {
    pub config: Option<PathBuf>,
    pub listen: Option<SocketAddr>,
    /// `Some(None)`: disabled.
    pub admin_listen: Option<Option<SocketAddr>>,
    pub workers: Option<usize>,
    pub driver: Driver,
    pub log: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    Serve(ServeArgs),
    CheckConfig(PathBuf),
    Keygen {
        team: String,
        name: String,
        config: Option<PathBuf>,
    },
    Report {
        dir: Option<PathBuf>,
        files: Vec<PathBuf>,
        since: Option<String>,
        until: Option<String>,
        by: Vec<String>,
        format: String,
        /// The audit listing of guardrail hits instead of the usage report.
        guardrails: bool,
    },
    /// Asks a running gateway's admin listener to reload, and exits
    /// non-zero when it refuses (systemd's `ExecReload` sees the failure).
    Reload {
        admin: std::net::SocketAddr,
        /// The file holding the admin token, if any.
        token_file: Option<PathBuf>,
    },
    /// A new admin token.
    AdminKeygen,
    /// A new viewer token for these teams.
    ViewerKeygen(Vec<String>),
    Help,
    Version,
}

pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Command, String> {
    let mut args = args.into_iter().peekable();
    match args.peek().map(String::as_str) {
        Some("check-config") => {
            args.next();
            let file = args.next().ok_or("check-config needs a FILE")?;
            if let Some(extra) = args.next() {
                return Err(format!("unexpected argument {extra:?}"));
            }
            return Ok(Command::CheckConfig(file.into()));
        }
        Some("keygen") => {
            args.next();
            if args.peek().map(String::as_str) == Some("--admin") {
                args.next();
                if let Some(extra) = args.next() {
                    return Err(format!("keygen --admin: unexpected argument {extra:?}"));
                }
                return Ok(Command::AdminKeygen);
            }
            if args.peek().map(String::as_str) == Some("--viewer") {
                args.next();
                let teams = args.next().ok_or("keygen --viewer needs TEAM[,TEAM...], the teams it sees")?;
                if let Some(extra) = args.next() {
                    return Err(format!("keygen --viewer: unexpected argument {extra:?}"));
                }
                let teams: Vec<String> =
                    teams.split(',').map(str::trim).filter(|t| !t.is_empty()).map(String::from).collect();
                if teams.is_empty() {
                    return Err("keygen --viewer needs TEAM[,TEAM...], the teams it sees".into());
                }
                return Ok(Command::ViewerKeygen(teams));
            }
            let (mut team, mut name, mut config) = (None, None, None);
            while let Some(arg) = args.next() {
                let mut value = |flag: &str| args.next().ok_or_else(|| format!("{flag} needs a value"));
                match arg.as_str() {
                    "--team" => team = Some(value("--team")?),
                    "--name" => name = Some(value("--name")?),
                    "-c" | "--config" => config = Some(PathBuf::from(value("--config")?)),
                    other => return Err(format!("keygen: unknown argument {other:?}")),
                }
            }
            let team = team.ok_or("keygen needs --team TEAM")?;
            let name = name.ok_or("keygen needs --name NAME")?;
            return Ok(Command::Keygen { team, name, config });
        }
        Some("report") => {
            args.next();
            let (mut dir, mut files, mut since, mut until, mut by, mut format) =
                (None, Vec::new(), None, None, Vec::new(), "table".to_string());
            let mut guardrails = false;
            while let Some(arg) = args.next() {
                let mut value = |flag: &str| args.next().ok_or_else(|| format!("{flag} needs a value"));
                match arg.as_str() {
                    "--dir" => dir = Some(PathBuf::from(value("--dir")?)),
                    "--since" => since = Some(value("--since")?),
                    "--until" => until = Some(value("--until")?),
                    "--by" => by.extend(value("--by")?.split(',').map(str::to_string)),
                    "--format" => format = value("--format")?,
                    "--guardrails" => guardrails = true,
                    f if f.starts_with('-') => return Err(format!("report: unknown argument {f:?}")),
                    file => files.push(PathBuf::from(file)),
                }
            }
            return Ok(Command::Report { dir, files, since, until, by, format, guardrails });
        }
        Some("reload") => {
            args.next();
            let mut admin: std::net::SocketAddr = "127.0.0.1:9090".parse().map_err(|_| "default admin address")?;
            let mut token_file = std::env::var_os("TOLLGATE_ADMIN_TOKEN_FILE").map(PathBuf::from);
            while let Some(arg) = args.next() {
                match arg.as_str() {
                    "--admin" => {
                        let v = args.next().ok_or("--admin needs IP:PORT")?;
                        admin = v.parse().map_err(|_| format!("--admin {v:?} is not IP:PORT"))?;
                    }
                    "--token-file" => token_file = Some(PathBuf::from(args.next().ok_or("--token-file needs FILE")?)),
                    other => return Err(format!("reload: unknown argument {other:?}")),
                }
            }
            return Ok(Command::Reload { admin, token_file });
        }
        Some("serve") => {
            args.next();
        }
        _ => {}
    }
    let mut serve =
        ServeArgs { config: None, listen: None, admin_listen: None, workers: None, driver: Driver::Auto, log: None };
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "-V" | "--version" => return Ok(Command::Version),
            "-c" | "--config" => serve.config = Some(value("--config")?.into()),
            "--listen" => {
                let v = value("--listen")?;
                serve.listen = Some(v.parse().map_err(|_| format!("--listen {v:?}: write it as IP:port"))?);
            }
            "--admin-listen" => {
                let v = value("--admin-listen")?;
                serve.admin_listen = Some(match v.as_str() {
                    "off" | "none" => None,
                    _ => Some(v.parse().map_err(|_| format!("--admin-listen {v:?}: write it as IP:port, or off"))?),
                });
            }
            "--workers" => {
                let v = value("--workers")?;
                serve.workers = Some(v.parse().map_err(|_| format!("--workers {v:?}: not a number"))?);
            }
            "--driver" => {
                serve.driver = match value("--driver")?.as_str() {
                    "auto" => Driver::Auto,
                    "io-uring" | "io_uring" | "uring" => Driver::IoUring,
                    "epoll" | "legacy" => Driver::Epoll,
                    other => return Err(format!("--driver {other:?}: use auto, io-uring or epoll")),
                }
            }
            "--log" => serve.log = Some(value("--log")?),
            other => return Err(format!("unknown argument {other:?}; see tollgate --help")),
        }
    }
    Ok(Command::Serve(serve))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<Command, String> {
        parse(s.split_whitespace().map(String::from))
    }

    #[test]
    fn table() {
        assert_eq!(p("--help"), Ok(Command::Help));
        assert_eq!(p("check-config a.toml"), Ok(Command::CheckConfig("a.toml".into())));
        let Ok(Command::Serve(s)) = p("serve --config x.toml --listen 127.0.0.1:0 --workers 2 --driver epoll") else {
            panic!()
        };
        assert_eq!(s.config, Some("x.toml".into()));
        assert_eq!(s.workers, Some(2));
        assert_eq!(s.driver, Driver::Epoll);
        assert!(p("--listen nope").unwrap_err().contains("IP:port"));
        assert!(p("--bogus").unwrap_err().contains("unknown argument"));
        assert!(p("--workers").unwrap_err().contains("needs a value"));
        assert_eq!(
            p("keygen --team t --name n"),
            Ok(Command::Keygen { team: "t".into(), name: "n".into(), config: None })
        );
        assert!(p("keygen --team t").unwrap_err().contains("--name"));
        let Ok(Command::Serve(s)) = p("--admin-listen off") else { panic!() };
        assert_eq!(s.admin_listen, Some(None));
    }
}
