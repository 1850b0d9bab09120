//! Start-up and shutdown: load the configuration, start the in-process mock
//! where configured, check that no other process holds the listen address,
//! bind one SO_REUSEPORT listener per worker (both in `tollgate_mock::listen`,
//! shared with the mock), start one pinned worker thread per core and the
//! admin listener, then serve signals (SIGHUP reloads) until SIGTERM or
//! SIGINT, and drain.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use tollgate_mock::listen::{bind_reuseport, ensure_free};
use tollgate_policy::Config;

use crate::admin;
use crate::cli::{Driver, ServeArgs};
use crate::reload::{resolve_providers, ConfigSource, Reloader};
use crate::state::CoreState;
use crate::worker::{self, Worker};

/// Runs the gateway until SIGTERM or SIGINT; returns the exit code.
pub fn serve(args: ServeArgs) -> i32 {
    // Before any thread exists, so that every thread inherits the mask and
    // the signals wait for `sigwait` below instead of killing the process.
    block_signals();
    init_logging(args.log.as_deref());
    let source = match &args.config {
        Some(path) => ConfigSource::File(path.clone()),
        None => ConfigSource::Bundled,
    };
    let mut config = source.load().unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(2)
    });
    if let Some(listen) = args.listen {
        config.server.listen = listen;
    }
    if let Some(admin) = args.admin_listen {
        config.server.admin_listen = admin;
    }
    if let Some(n) = args.workers {
        config.server.workers = n;
    }
    match start(config, source, args.driver) {
        Ok(running) => {
            crate::systemd::notify("READY=1\nSTATUS=serving");
            crate::systemd::start_watchdog(running.heartbeats.clone());
            running.wait()
        }
        Err(e) => {
            tracing::error!("{e}");
            1
        }
    }
}

/// A started gateway.
pub struct Running {
    pub addr: SocketAddr,
    pub admin_addr: Option<SocketAddr>,
    reloader: Arc<Mutex<Reloader>>,
    shutdown: Arc<AtomicBool>,
    /// The workers' heartbeats, for the systemd watchdog.
    pub heartbeats: crate::systemd::Heartbeats,
    threads: Vec<std::thread::JoinHandle<()>>,
    record_writer: Option<std::thread::JoinHandle<()>>,
    span_exporter: Option<(std::thread::JoinHandle<()>, Arc<AtomicBool>)>,
    clickhouse_thread: Option<(std::thread::JoinHandle<()>, Arc<AtomicBool>)>,
    merger_thread: std::thread::JoinHandle<()>,
}

impl Running {
    /// Serves signals until SIGTERM or SIGINT, drains, and returns the exit
    /// code. SIGHUP reloads the configuration.
    fn wait(self) -> i32 {
        loop {
            match wait_signal() {
                libc::SIGHUP => {
                    crate::systemd::reloading();
                    let result = self.reloader.lock().unwrap_or_else(|e| e.into_inner()).reload();
                    crate::systemd::notify("READY=1\nSTATUS=serving");
                    match result {
                        Ok(r) => {
                            for note in &r.notes {
                                tracing::warn!("{note}");
                            }
                            tracing::info!(sha256 = %r.loaded.sha256, generation = r.loaded.generation, "configuration reloaded");
                        }
                        Err(problems) => {
                            tracing::error!("reload refused, the old configuration keeps serving:\n{problems}")
                        }
                    }
                }
                sig => {
                    tracing::info!(signal = sig, "draining: no new requests, waiting for requests in flight");
                    crate::systemd::notify("STOPPING=1\nSTATUS=draining");
                    break;
                }
            }
        }
        self.shutdown.store(true, Ordering::Relaxed);
        for t in self.threads {
            let _ = t.join();
        }
        // The exporters' grace begins once what they will get is made: the
        // spans when the workers have stopped, the rows when the record
        // writer has (a long drain must not use it up).
        if let Some((_, stopping)) = &self.span_exporter {
            stopping.store(true, Ordering::Relaxed);
        }
        if let Some(w) = self.record_writer {
            let _ = w.join();
        }
        if let Some((_, stopping)) = &self.clickhouse_thread {
            stopping.store(true, Ordering::Relaxed);
        }
        // The record writer has offered its last batch: the last rows go in
        // (within the thread's grace).
        if let Some((c, _)) = self.clickhouse_thread {
            let _ = c.join();
        }
        // The last spend reaches the ledger before the process exits.
        let _ = self.merger_thread.join();
        // The last spans go to the collector (within its grace) too.
        if let Some((e, _)) = self.span_exporter {
            let _ = e.join();
        }
        tracing::info!("stopped");
        0
    }
}

/// Starts the mock (if configured), the listeners, the workers and the
/// admin listener.
pub fn start(config: Config, source: ConfigSource, driver: Driver) -> Result<Running, String> {
    // The tokenizers' tables the models need are built off the start-up
    // path; a request that needs them first waits for the build instead of
    // doing it.
    let models: Vec<String> = config.routes.all().iter().map(|r| r.name.clone()).collect();
    let _ = std::thread::Builder::new()
        .name("tollgate-tokens".into())
        .spawn(move || tollgate_protocol::tokens::Encoding::warm_up_for(models.iter().map(|m| m.as_bytes())));
    let mut mocks = HashMap::new();
    let resolved = resolve_providers(&config, &mut mocks)?;
    for note in crate::reload::config_notes(&config) {
        tracing::warn!("{note}");
    }
    let listener_tls = crate::downstream::listener(&config)?;
    let workers = match config.server.workers {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let cpus = allowed_cpus();
    let listen = config.server.listen;
    // Before the reuseport binds, which would otherwise join a listener
    // another process holds on this address and share its connections.
    ensure_free(listen).map_err(|e| match e.kind() {
        io::ErrorKind::AddrInUse => format!("{e}: stop it or choose another `listen` address"),
        _ => format!("cannot listen on {listen}: {e}"),
    })?;
    let first = bind_reuseport(listen).map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    let addr = first.local_addr().map_err(|e| e.to_string())?;
    let mut listeners = vec![first];
    for _ in 1..workers {
        listeners.push(bind_reuseport(addr).map_err(|e| format!("cannot listen on {addr}: {e}"))?);
    }
    // Read at start, as the records' directory is.
    let clickhouse = match &config.clickhouse {
        Some(c) => {
            let started =
                crate::clickhouse::start(c.clone()).map_err(|e| format!("cannot start the ClickHouse thread: {e}"))?;
            tracing::info!(server = %c.authority, table = %format!("{}.{}", c.database, c.table), "records into ClickHouse on");
            Some(started)
        }
        None => None,
    };
    let (clickhouse_sink, clickhouse) = match clickhouse {
        Some(crate::clickhouse::Started { sink, counters, stopping, thread }) => {
            (Some(sink), Some((counters, stopping, thread)))
        }
        None => (None, None),
    };
    let records = match &config.logging.dir {
        Some(dir) => {
            let (tx, handle) = crate::logwriter::start(dir.into(), config.logging.file_bytes_max, clickhouse_sink)
                .map_err(|e| format!("cannot write request records to {dir}: {e}"))?;
            tracing::info!(dir = %dir, "request records on");
            // Read at start: a reload that changes it says so (`Reloader::reload`).
            if let Some(days) = config.logging.capture_retention_days {
                crate::retention::start(dir.into(), days, config.clickhouse.clone());
            }
            // The explorer's index, where it reads the files.
            if config.clickhouse.is_none() && config.server.admin_listen.is_some() {
                crate::record_index::start(dir.into());
            }
            Some((tx, handle))
        }
        None => None,
    };
    // Read at start: a reload that changes `[telemetry]` says so.
    let spans = match &config.telemetry {
        Some(t) => {
            let started =
                crate::otel::export::start(t.clone()).map_err(|e| format!("cannot start the span exporter: {e}"))?;
            tracing::info!(collector = %t.authority, path = %t.path, sample_ratio = t.sample_ratio, "OpenTelemetry traces on");
            Some(started)
        }
        None => None,
    };
    let (spend_txs, mut spend_rxs): (Vec<_>, Vec<_>) = (0..workers).map(|_| mpsc::channel()).unzip();
    let ledger = config.server.ledger_file.clone().map(std::path::PathBuf::from);
    // Redis over TLS: rustls, without ALPN (Redis negotiates none).
    let redis_tls = match config.cluster.as_ref().filter(|c| c.servers.iter().any(|s| s.tls)) {
        Some(c) => {
            let roots = crate::tls::root_store(c.ca_file.as_deref()).map_err(|e| format!("[cluster] {e}"))?;
            let mut tls = (*crate::tls::client_config(&roots)).clone();
            tls.alpn_protocols.clear();
            Some(Arc::new(tls))
        }
        None => None,
    };
    // One table of agent runs for every core (see `runs`: shared atomics,
    // not merged counts), which the metrics and the cluster thread read too.
    let runs = match config.cluster {
        Some(_) => crate::runs::Runs::default().shared_with_cluster(),
        None => crate::runs::Runs::default(),
    };
    let runs = Arc::new(runs);
    let cluster = match &config.cluster {
        Some(c) => {
            // Counts Redis did not take at the last shutdown wait beside
            // the ledger.
            let carried = ledger.as_deref().map(crate::cluster::carried_path);
            let watch = crate::cluster::watched(&config);
            tracing::info!(node = %c.node_id, servers = c.servers.len(), "cluster tier on");
            Some(
                crate::cluster::start(c.clone(), redis_tls.clone(), carried, watch, runs.clone())
                    .map_err(|e| format!("cannot start the cluster thread: {e}"))?,
            )
        }
        None => None,
    };
    let (merger, totals, merger_thread) = crate::stats::start_merger(spend_txs, ledger, cluster)
        .map_err(|e| format!("cannot start the merger (usage ledger?): {e}"))?;
    let config = Arc::new(config);
    let shutdown = Arc::new(AtomicBool::new(false));
    let alerts = config.alert_webhook.as_deref().and_then(crate::alerts::start);
    let (ready_tx, ready_rx) = mpsc::channel::<Result<&'static str, String>>();
    let mut threads = Vec::new();
    let mut mailboxes = Vec::new();
    let heartbeats = crate::systemd::Heartbeats::new(listeners.len());
    {
        let mut totals = totals.lock().unwrap_or_else(|e| e.into_inner());
        totals.runs = Some(runs.clone());
        totals.spans = spans.as_ref().map(|(line, _)| line.counters.clone());
        totals.clickhouse = clickhouse.as_ref().map(|(counters, ..)| counters.clone());
    }
    // The Responses turns kept for providers that keep none, one store for
    // every core (`turns`); its bound is the start-up configuration's.
    let turns =
        Arc::new(crate::turns::Turns::new(config.server.responses_turns_bytes_max, config.server.responses_turns_ttl));
    for (index, listener) in listeners.into_iter().enumerate() {
        let cpu = (!cpus.is_empty()).then(|| cpus[index % cpus.len()]);
        let (mailbox, reloads) = mpsc::channel();
        mailboxes.push(mailbox);
        let (config, resolved, shutdown, ready) =
            (config.clone(), resolved.clone(), shutdown.clone(), ready_tx.clone());
        let listener_tls = listener_tls.clone();
        let records_tx = records.as_ref().map(|(tx, _)| tx.clone());
        let span_line = spans.as_ref().map(|(line, _)| line.clone());
        let merger = (merger.clone(), spend_rxs.remove(0));
        let alerts = alerts.clone();
        let strict = config.cluster.clone().map(|c| (Arc::new(c), redis_tls.clone()));
        let beats = heartbeats.clone();
        let runs = runs.clone();
        let turns = turns.clone();
        let spawned = std::thread::Builder::new().name(format!("tollgate-w{index}")).spawn(move || {
            if let Some(cpu) = cpu {
                if let Err(e) = monoio::utils::bind_to_cpu_set([cpu]) {
                    tracing::warn!(worker = index, cpu, error = %e, "cannot pin worker to its core");
                }
            }
            let state = CoreState::build(config, &resolved, listener_tls, None);
            let recorder = crate::record::Recorder::new(index, records_tx).with_spans(
                span_line
                    .as_ref()
                    .map(|l| Box::new(crate::otel::export::CoreSpans::new(l)) as Box<dyn crate::record::SpanSink>),
            );
            drop(span_line);
            let strict = strict.map(|(c, tls)| crate::cluster::strict::Strict::new(c, tls, index));
            let worker = Rc::new(
                Worker::new(index, state, reloads, recorder, Some(merger))
                    .with_alerts(alerts)
                    .with_strict(strict)
                    .with_cache_share(workers)
                    .with_runs(runs)
                    .with_turns(turns),
            );
            let main = worker::run(worker.clone(), crate::conn::accept(worker, listener), shutdown, beats);
            match build_runtime(driver) {
                Ok(Runtime::Uring(mut rt)) => {
                    let _ = ready.send(Ok("io_uring"));
                    rt.block_on(main)
                }
                Ok(Runtime::Epoll(mut rt)) => {
                    let _ = ready.send(Ok("epoll"));
                    rt.block_on(main)
                }
                Err(e) => {
                    let _ = ready.send(Err(format!("worker {index}: cannot build the {driver:?} runtime: {e}")));
                }
            }
        });
        threads.push(spawned.map_err(|e| format!("cannot start worker {index}: {e}"))?);
    }
    let mut drivers = Vec::new();
    for _ in 0..workers {
        match ready_rx.recv_timeout(Duration::from_secs(10)) {
            Ok(Ok(d)) => drivers.push(d),
            Ok(Err(e)) => {
                shutdown.store(true, Ordering::Relaxed);
                return Err(e);
            }
            Err(_) => return Err("a worker did not start within 10 s".into()),
        }
    }
    drivers.sort_unstable();
    drivers.dedup();
    let reloader = Arc::new(Mutex::new(Reloader::new(source, &config, mocks, mailboxes, &resolved)));
    // Instance-role credentials (Bedrock) are replaced before they
    // expire, whether the first configuration has them or a reload adds
    // them.
    {
        let (reloader, shutdown) = (reloader.clone(), shutdown.clone());
        let _ = std::thread::Builder::new()
            .name("tollgate-aws-roles".into())
            .spawn(move || crate::reload::refresh_roles(reloader, shutdown));
    }
    let admin_addr = match config.server.admin_listen {
        Some(a) => {
            let bound = admin::start(
                a,
                reloader.clone(),
                totals.clone(),
                config.server.admin_hosts.clone(),
                match (&config.clickhouse, &config.logging.dir) {
                    (Some(c), _) => Some(crate::explorer::Store::ClickHouse(c.clone())),
                    (None, Some(dir)) => Some(crate::explorer::Store::Files(dir.into())),
                    (None, None) => None,
                },
            )
            .map_err(|e| format!("cannot listen on admin {a}: {e}"))?;
            tracing::info!("admin listening on http://{bound}");
            Some(bound)
        }
        None => None,
    };
    let scheme = if config.server.tls.is_some() { "https" } else { "http" };
    tracing::info!(
        "tollgate listening on {scheme}://{addr} ({workers} workers, driver {}, pinned: {})",
        drivers.join("+"),
        !cpus.is_empty()
    );
    // Workers hold the only senders to the merger from here on.
    drop(merger);
    let record_writer = records.map(|(tx, handle)| {
        // Workers hold the only senders from here on: when the last one
        // stops, the writer drains the channel and exits.
        drop(tx);
        handle
    });
    // As for records: the workers hold the only senders.
    let span_exporter = spans.map(|(line, handle)| (handle, line.stopping.clone()));
    let clickhouse_thread = clickhouse.map(|(_, stopping, handle)| (handle, stopping));
    Ok(Running {
        addr,
        admin_addr,
        reloader,
        shutdown,
        heartbeats,
        threads,
        record_writer,
        span_exporter,
        clickhouse_thread,
        merger_thread,
    })
}

enum Runtime {
    Uring(monoio::Runtime<monoio::time::TimeDriver<monoio::IoUringDriver>>),
    Epoll(monoio::Runtime<monoio::time::TimeDriver<monoio::LegacyDriver>>),
}

fn build_runtime(driver: Driver) -> io::Result<Runtime> {
    let uring = || {
        // COOP_TASKRUN: completions are processed when the worker next enters
        // the kernel instead of interrupting it with an IPI; SINGLE_ISSUER:
        // only this thread submits. Measured +15-20% requests/s on one core
        // (BENCHMARKS.md). Kernels before 6.0 refuse the flags: retry without.
        let mut tuned = io_uring::IoUring::builder();
        tuned.setup_coop_taskrun().setup_single_issuer();
        let build =
            |urb| monoio::RuntimeBuilder::<monoio::IoUringDriver>::new().uring_builder(urb).enable_timer().build();
        build(tuned).or_else(|_| build(io_uring::IoUring::builder())).map(Runtime::Uring)
    };
    let epoll = || monoio::RuntimeBuilder::<monoio::LegacyDriver>::new().enable_timer().build().map(Runtime::Epoll);
    match driver {
        Driver::IoUring => uring(),
        Driver::Epoll => epoll(),
        // io_uring can be compiled in yet blocked at run time (seccomp in
        // containers, kernel.io_uring_disabled): fall back, and say so.
        Driver::Auto => uring().or_else(|e| {
            tracing::warn!(error = %e, "io_uring unavailable, falling back to epoll");
            epoll()
        }),
    }
}

/// The CPUs this process may run on, in order; empty if unknown.
fn allowed_cpus() -> Vec<usize> {
    // SAFETY: `cpu_set_t` is plain data for which all-zero is valid, and
    // sched_getaffinity writes at most `size_of::<cpu_set_t>()` bytes to it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return Vec::new();
        }
        (0..libc::CPU_SETSIZE as usize).filter(|&c| libc::CPU_ISSET(c, &set)).collect()
    }
}

const SIGNALS: [libc::c_int; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

fn signal_set() -> libc::sigset_t {
    // SAFETY: sigemptyset initialises the set before sigaddset reads it;
    // the signal numbers are valid constants.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in SIGNALS {
            libc::sigaddset(&mut set, s);
        }
        set
    }
}

fn block_signals() {
    let set = signal_set();
    // SAFETY: `set` is an initialised signal set; a null old-set pointer is allowed.
    unsafe {
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

fn wait_signal() -> libc::c_int {
    let set = signal_set();
    let mut sig: libc::c_int = 0;
    // SAFETY: `set` is initialised and blocked in every thread; `sig` is a
    // valid place for the result.
    let rc = unsafe { libc::sigwait(&set, &mut sig) };
    if rc == 0 {
        sig
    } else {
        libc::SIGTERM
    }
}

fn init_logging(level: Option<&str>) {
    use tracing_subscriber::EnvFilter;
    let filter = match level {
        Some(l) => EnvFilter::new(l),
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .try_init();
}
