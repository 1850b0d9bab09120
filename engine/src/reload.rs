//! Configuration reload (SIGHUP or `POST /admin/reload`), in two steps:
//! this thread reads and validates the file and resolves provider
//! addresses; then every worker builds its new per-core state from its old
//! one between requests and confirms. A reload returns only when every
//! worker serves new requests under the new configuration; requests already
//! in flight finish under the one they started with. An invalid file
//! changes nothing.

use std::collections::HashMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::{mpsc, Arc};
use std::time::Duration;

use tollgate_policy::config::{ProcessEnv, BUNDLED_DEFAULT};
use tollgate_policy::{AwsCredentials, Config, ConfigError, ProviderKind};

use crate::upstream::Resolved;
use crate::worker::Reload;

/// Where the configuration comes from.
#[derive(Clone, Debug)]
pub enum ConfigSource {
    File(PathBuf),
    Bundled,
}

impl ConfigSource {
    pub fn load(&self) -> Result<Config, ConfigError> {
        match self {
            ConfigSource::File(path) => Config::load(path, &ProcessEnv),
            ConfigSource::Bundled => Config::parse("examples/tollgate.toml (bundled)", BUNDLED_DEFAULT, &ProcessEnv),
        }
    }
}

/// What is loaded now, for the admin listener.
#[derive(Clone, Debug)]
pub struct Loaded {
    pub file: String,
    pub sha256: String,
    pub loaded_at_unix: u64,
    pub generation: u64,
    pub keys: usize,
    pub models: usize,
    /// Digests of the admin tokens: reloaded like keys, so that a leaked
    /// token is revoked by a reload.
    pub admin_tokens: Vec<tollgate_policy::keys::KeyHash>,
    /// Viewer tokens and their teams, reloaded the same way.
    pub viewers: Vec<tollgate_policy::config::Viewer>,
}

impl Loaded {
    fn of(config: &Config, generation: u64) -> Loaded {
        Loaded {
            file: config.source.file.clone(),
            sha256: config.source.sha256.clone(),
            loaded_at_unix: crate::unix_now().as_secs(),
            generation,
            keys: config.keys.len(),
            models: config.routes.all().len(),
            admin_tokens: config.server.admin_tokens.clone(),
            viewers: config.server.viewers.clone(),
        }
    }
}

/// How long a reload waits for every worker to confirm. Workers look at
/// their mailbox every 10 ms, so this only trips if one is stuck.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(5);

pub struct Reloader {
    source: ConfigSource,
    /// Settings that cannot change without a restart, as started.
    listen: SocketAddr,
    workers: usize,
    /// The settings read once, at start, besides those: see [`StartOnly`].
    start_only: StartOnly,
    mocks: HashMap<String, SocketAddr>,
    mailboxes: Vec<mpsc::Sender<Reload>>,
    current: Loaded,
    /// When the first instance-role credentials fetched with the
    /// configuration expire (Unix seconds), if any were.
    role_expiry: Option<u64>,
}

/// Settings whose threads, files or listeners are set up once, at start:
/// a reload that changes one says so (found by a review: a ledger added by
/// a reload was never opened, and nothing said spend was still in memory
/// only).
struct StartOnly {
    ledger_file: Option<String>,
    records_dir: Option<String>,
    file_bytes_max: u64,
    cluster: Option<tollgate_policy::config::cluster::Cluster>,
    /// `[logging] capture_retention_days`: its thread's.
    retention: Option<u32>,
    /// `[telemetry]`: its exporter thread's.
    telemetry: Option<tollgate_policy::config::telemetry::Telemetry>,
    /// `[clickhouse]`: its thread's.
    clickhouse: Option<tollgate_policy::config::clickhouse::ClickHouse>,
}

impl StartOnly {
    fn of(config: &Config) -> StartOnly {
        StartOnly {
            ledger_file: config.server.ledger_file.clone(),
            records_dir: config.logging.dir.clone(),
            file_bytes_max: config.logging.file_bytes_max,
            cluster: config.cluster.clone(),
            retention: config.logging.capture_retention_days,
            telemetry: config.telemetry.clone(),
            clickhouse: config.clickhouse.clone(),
        }
    }

    /// A note for each setting `new` changes.
    fn changed(&self, new: &StartOnly) -> Vec<String> {
        let mut notes = Vec::new();
        let mut note = |changed: bool, what: &str, still: &str| {
            if changed {
                notes.push(format!("{what} takes effect on restart; {still}"));
            }
        };
        note(
            self.retention != new.retention,
            "capture_retention_days",
            "captured bodies are still removed as the process started",
        );
        note(
            self.telemetry != new.telemetry,
            "[telemetry]",
            "spans still go where, and as sampled as, the process started",
        );
        note(self.clickhouse != new.clickhouse, "[clickhouse]", "records still go where the process started");
        note(
            self.ledger_file != new.ledger_file,
            "ledger_file",
            "spend is still kept where the process started (in memory only if it started without one)",
        );
        note(
            (&self.records_dir, self.file_bytes_max) != (&new.records_dir, new.file_bytes_max),
            "[logging] dir and file_bytes_max",
            "records are still written where the process started (nowhere if it started without a dir)",
        );
        note(self.cluster != new.cluster, "[cluster]", "shared state still goes where the process started");
        notes
    }
}

/// A successful reload, with anything the operator should know.
pub struct Reloaded {
    pub loaded: Loaded,
    pub notes: Vec<String>,
}

impl Reloader {
    pub fn new(
        source: ConfigSource,
        config: &Config,
        mocks: HashMap<String, SocketAddr>,
        mailboxes: Vec<mpsc::Sender<Reload>>,
        resolved: &[Resolved],
    ) -> Reloader {
        Reloader {
            source,
            listen: config.server.listen,
            workers: config.server.workers,
            start_only: StartOnly::of(config),
            mocks,
            mailboxes,
            current: Loaded::of(config, 1),
            role_expiry: role_expiry(resolved),
        }
    }

    pub fn current(&self) -> &Loaded {
        &self.current
    }

    pub fn reload(&mut self) -> Result<Reloaded, String> {
        let mut config = self.source.load().map_err(|e| e.to_string())?;
        let mut notes = Vec::new();
        if config.server.listen != self.listen || config.server.workers != self.workers {
            notes.push(format!(
                "listen and workers take effect on restart; still serving {} with the same workers",
                self.listen
            ));
            config.server.listen = self.listen;
            config.server.workers = self.workers;
        }
        notes.extend(self.start_only.changed(&StartOnly::of(&config)));
        let resolved = resolve_providers(&config, &mut self.mocks)?;
        notes.extend(config_notes(&config));
        // A model counted in another encoding gets its table built now, not
        // by its first request on a worker.
        let models: Vec<String> = config.routes.all().iter().map(|r| r.name.clone()).collect();
        let _ = std::thread::Builder::new()
            .name("tollgate-tokens".into())
            .spawn(move || tollgate_protocol::tokens::Encoding::warm_up_for(models.iter().map(|m| m.as_bytes())));
        // Certificate files are read again: a renewed certificate takes
        // effect for new connections.
        let tls = crate::downstream::listener(&config)?;
        let config = Arc::new(config);
        let (done, confirmations) = mpsc::channel();
        for mailbox in &self.mailboxes {
            let reload =
                Reload { config: config.clone(), resolved: resolved.clone(), tls: tls.clone(), done: done.clone() };
            mailbox.send(reload).map_err(|_| "a worker has stopped".to_string())?;
        }
        for _ in &self.mailboxes {
            confirmations
                .recv_timeout(CONFIRM_TIMEOUT)
                .map_err(|_| "a worker did not take the new configuration in time")?;
        }
        self.current = Loaded::of(&config, self.current.generation + 1);
        self.role_expiry = role_expiry(&resolved);
        Ok(Reloaded { loaded: self.current.clone(), notes })
    }
}

/// What the gateway warns of at start and with every reload: one note per
/// model target whose tokens would be recorded at no cost, and an admin
/// listener open to its network.
pub fn config_notes(config: &Config) -> Vec<String> {
    let mut notes: Vec<String> = config
        .unpriced_targets()
        .into_iter()
        .map(|(model, provider, upstream)| {
            format!(
                "model {model:?}: target {provider}/{upstream} has no price (none configured, none built in), so its tokens cost nothing in records and budgets; add price = {{ input_per_mtok = ..., output_per_mtok = ... }} to the model"
            )
        })
        .collect();
    let s = &config.server;
    if let Some(admin) = s.admin_listen.filter(|a| !a.ip().is_loopback()) {
        if s.admin_tokens.is_empty() && s.viewers.is_empty() {
            notes.push(format!(
                "admin_listen {admin} is not on loopback and no admin token is configured: whoever reaches it reads every team's records and figures; add admin_tokens = [\"<sha256>\"] to [server] (tollgate keygen --admin makes one) or listen on 127.0.0.1"
            ));
        }
    }
    notes
}

/// The earliest expiry of the instance-role credentials fetched (an
/// unsaid one counted as 50 minutes from now: roles' last an hour or more).
fn role_expiry(resolved: &[Resolved]) -> Option<u64> {
    let now = crate::unix_now().as_secs();
    resolved.iter().filter_map(|r| r.role.as_ref()).map(|r| r.expires_unix.unwrap_or(now + 3000)).min()
}

/// How long before instance-role credentials expire they are replaced.
const ROLE_REFRESH_AHEAD_S: u64 = 300;

/// Reloads the configuration, which fetches instance-role credentials
/// again, five minutes before the ones in use expire; a failed reload is
/// tried again every 30 s (the old credentials serve meanwhile), and so is
/// one that brought credentials as near their end (a metadata service that
/// rotates them only then, or a clock that runs ahead: each reload
/// rebuilds every core's state, and it ran every second; found by a
/// review). Returns when `shutdown` is set.
pub fn refresh_roles(reloader: Arc<std::sync::Mutex<Reloader>>, shutdown: Arc<std::sync::atomic::AtomicBool>) {
    let mut retry_at = 0;
    while !shutdown.load(std::sync::atomic::Ordering::Relaxed) {
        std::thread::sleep(Duration::from_secs(1));
        let now = crate::unix_now().as_secs();
        let mut r = reloader.lock().unwrap_or_else(|e| e.into_inner());
        if role_due(now, r.role_expiry) && now >= retry_at {
            let reloaded = r.reload();
            retry_at = next_role_try(now, reloaded.is_ok(), r.role_expiry);
            match reloaded {
                Ok(_) if retry_at > now => tracing::warn!(
                    "instance role credentials refreshed, but they too expire within {ROLE_REFRESH_AHEAD_S} s: asking again in 30 s"
                ),
                Ok(_) => tracing::info!("instance role credentials refreshed"),
                Err(e) => tracing::error!("instance role credentials could not be refreshed, retrying in 30 s: {e}"),
            }
        }
    }
}

/// Whether credentials expiring at `expiry` are to be replaced at `now`.
fn role_due(now: u64, expiry: Option<u64>) -> bool {
    expiry.is_some_and(|at| now + ROLE_REFRESH_AHEAD_S >= at)
}

/// When a refresh made at `now` may be made again: 30 s on where it failed
/// or brought credentials themselves due (`expiry`), else whenever they
/// come due (0).
fn next_role_try(now: u64, refreshed: bool, expiry: Option<u64>) -> u64 {
    if !refreshed || role_due(now, expiry) {
        now + 30
    } else {
        0
    }
}

/// Each provider's address and trust store: the bundled mock runs
/// in-process, started on a free loopback port the first time a provider
/// needs it and reused by name on reload; other hosts are resolved now, and
/// CA files read now, never on the request path.
pub fn resolve_providers(config: &Config, mocks: &mut HashMap<String, SocketAddr>) -> Result<Vec<Resolved>, String> {
    let addrs = provider_addrs(config, mocks)?;
    config
        .providers
        .iter()
        .zip(addrs)
        .map(|(p, addr)| {
            let roots = match &p.tls {
                Some(t) => {
                    if rustls_pki_types::ServerName::try_from(t.server_name.clone()).is_err() {
                        return Err(format!(
                            "provider {:?}: {:?} is not a name TLS can verify; use the host name on its certificate",
                            p.name, t.server_name
                        ));
                    }
                    Some(
                        crate::tls::root_store(t.ca_file.as_deref())
                            .map_err(|e| format!("provider {:?}: {e}", p.name))?,
                    )
                }
                None => None,
            };
            // An instance role's credentials are fetched now, off the
            // workers; a reload before they expire fetches new ones
            // ([`refresh_roles`]).
            let role = match p.aws.as_ref().map(|a| &a.credentials) {
                Some(AwsCredentials::Instance { imds_url }) => {
                    Some(crate::imds::fetch(imds_url).map_err(|e| format!("provider {:?}: {e}", p.name))?)
                }
                _ => None,
            };
            Ok(Resolved { addr, roots, role })
        })
        .collect()
}

fn provider_addrs(config: &Config, mocks: &mut HashMap<String, SocketAddr>) -> Result<Vec<SocketAddr>, String> {
    config
        .providers
        .iter()
        .map(|p| match (&p.host, p.kind) {
            (None, ProviderKind::Mock) => {
                if let Some(&addr) = mocks.get(&p.name) {
                    return Ok(addr);
                }
                let m = &p.mock;
                let mut behavior = tollgate_mock::Behavior::default();
                behavior.reply_words = m.reply_words.unwrap_or(behavior.reply_words);
                behavior.stream_chunks = m.stream_chunks.unwrap_or(behavior.stream_chunks);
                behavior.latency = Duration::from_millis(m.latency_ms.unwrap_or(0));
                behavior.chunk_delay = Duration::from_millis(m.chunk_delay_ms.unwrap_or(0));
                let opts = tollgate_mock::MockOptions {
                    listen: SocketAddr::from(([127, 0, 0, 1], 0)),
                    threads: 1,
                    behavior,
                    tls: None,
                };
                let handle = tollgate_mock::start(&opts)
                    .map_err(|e| format!("provider {:?}: cannot start the bundled mock: {e}", p.name))?;
                tracing::info!(provider = %p.name, addr = %handle.addr, "bundled mock upstream started");
                mocks.insert(p.name.clone(), handle.addr);
                Ok(handle.addr)
            }
            (Some((host, port)), _) => (host.as_str(), *port)
                .to_socket_addrs()
                .map_err(|e| format!("provider {:?}: cannot resolve {host}:{port}: {e}", p.name))?
                .next()
                .ok_or_else(|| format!("provider {:?}: {host}:{port} has no address", p.name)),
            (None, _) => Err(format!("provider {:?} has no address", p.name)),
        })
        .collect()
}

#[cfg(test)]
mod notes_tests {
    use tollgate_policy::config::{Config, ProcessEnv};

    fn config(server: &str) -> Config {
        let text = format!(
            "[server]\n{server}\n[[providers]]\nname = \"m\"\nkind = \"mock\"\n[[models]]\nname = \"gpt-4o\"\ntargets = [{{ provider = \"m\" }}]\n"
        );
        Config::parse("notes.toml", &text, &ProcessEnv).expect("config")
    }

    fn notes(server: &str) -> Vec<String> {
        super::config_notes(&config(server))
    }

    /// A reload that adds a ledger, or changes a setting read once at
    /// start, says it takes effect on restart; one that changes none says
    /// nothing.
    #[test]
    fn settings_read_at_start_are_said_to_wait_for_a_restart() {
        let started = super::StartOnly::of(&config(""));
        let ledger = started.changed(&super::StartOnly::of(&config("ledger_file = \"/var/lib/tollgate/ledger\"")));
        assert!(ledger.len() == 1 && ledger[0].starts_with("ledger_file takes effect on restart"), "{ledger:?}");
        let records = started.changed(&super::StartOnly::of(&config("[logging]\ndir = \"/var/log/tollgate\"")));
        assert!(records.len() == 1 && records[0].starts_with("[logging] dir"), "{records:?}");
        assert!(started.changed(&super::StartOnly::of(&config(""))).is_empty());
    }

    /// An admin listener open to its network without a token is said at
    /// start and on reload; on loopback, or with a token, it is not.
    #[test]
    fn an_admin_listener_open_to_the_network_is_warned_of() {
        let open = notes("admin_listen = \"0.0.0.0:9901\"");
        assert!(open.iter().any(|n| n.contains("0.0.0.0:9901 is not on loopback")), "{open:?}");
        assert!(notes("admin_listen = \"127.0.0.1:9901\"").is_empty());
        let token = format!("admin_tokens = [\"{}\"]\nadmin_listen = \"0.0.0.0:9901\"", "ab".repeat(32));
        assert!(notes(&token).is_empty());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A refresh that failed, or that brought credentials as near their
    /// end as the old ones, is tried again 30 s on, not every second
    /// (each reload rebuilds every core's state); one that brought fresh
    /// credentials waits for them to come due.
    #[test]
    fn instance_role_refreshes_are_not_repeated_every_second() {
        let now = 1_000_000;
        assert!(role_due(now, Some(now + ROLE_REFRESH_AHEAD_S)));
        assert!(!role_due(now, Some(now + ROLE_REFRESH_AHEAD_S + 1)) && !role_due(now, None));
        assert_eq!(next_role_try(now, false, Some(now + 3600)), now + 30);
        assert_eq!(next_role_try(now, true, Some(now + 100)), now + 30, "fresh but as near their end");
        assert_eq!(next_role_try(now, true, Some(now - 5)), now + 30, "already past");
        assert_eq!(next_role_try(now, true, Some(now + 3600)), 0);
    }
}
