//! The merger thread: folds every core's hand-offs into the process
//! totals, keeps the ledger, talks to the cluster thread, and sends every
//! core the spend figures it enforces.

use std::collections::HashMap;
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use super::counters::Delta;
use super::totals::Totals;
use crate::accounts::SpendSnapshot;

/// A started merger: the workers' sender, the totals the admin listener
/// reads, and the thread (joined at shutdown so the ledger is synced and
/// the cluster tier has had its last push).
pub type Merger = (mpsc::Sender<Delta>, Arc<Mutex<Totals>>, std::thread::JoinHandle<()>);

/// How often the merger looks for news from the cluster thread when no
/// core has sent a delta.
const CLUSTER_POLL: Duration = Duration::from_millis(20);

/// Starts the merger thread; returns the workers' sender and the totals the
/// admin listener reads. After each delta the merger sends every core the
/// current spend (`cores`), which the cores enforce budgets against. With a
/// cluster tier, it forwards every increment to the cluster thread and
/// folds the cluster totals it gets back into what the cores enforce.
pub fn start_merger(
    cores: Vec<mpsc::Sender<Arc<SpendSnapshot>>>,
    ledger_file: Option<std::path::PathBuf>,
    cluster: Option<crate::cluster::Handle>,
) -> std::io::Result<Merger> {
    use crate::cluster::{combine, increments, ClusterView, Counter, ToCluster};
    let unix = || crate::unix_now().as_secs();
    let mut initial = Totals::default();
    // Spend survives restarts: replayed before any worker answers.
    let mut ledger = match ledger_file {
        Some(path) => Some(crate::ledger::Ledger::open(path, unix(), &mut initial.spend)?),
        None => None,
    };
    // This process's increments since start, by counter: the cluster's
    // view says how much of each its totals already include.
    let mut local: HashMap<Counter, u64> = HashMap::new();
    let mut view: Option<ClusterView> = None;
    if let Some(c) = &cluster {
        // The first exchange is under way; waiting for it (bounded by the
        // thread's own time-outs) means a restarted node enforces the
        // cluster's totals from its first request.
        view = c.views.recv_timeout(Duration::from_secs(5)).ok();
        initial.cluster = view.as_ref().map(|v| v.status.clone());
    }
    let snapshot_of = |t: &Totals, local: &HashMap<Counter, u64>, view: &Option<ClusterView>| {
        let mut s = SpendSnapshot {
            day: t.spend.day,
            month: t.spend.month,
            by_owner: t.spend.by_owner.clone(),
            minute: t.spend.minute.clone(),
            cluster_refusing: false,
            cluster_degraded: false,
            merged: t.spend.merged.clone(),
        };
        if let Some(v) = view {
            combine(&mut s, local, v);
            s.cluster_refusing = v.status.refusing();
            s.cluster_degraded = v.status.degraded;
        }
        Arc::new(s)
    };
    let first = snapshot_of(&initial, &local, &view);
    for core in &cores {
        let _ = core.send(first.clone());
    }
    let totals = Arc::new(Mutex::new(initial));
    let (tx, rx) = mpsc::channel::<Delta>();
    let shared = totals.clone();
    let handle = std::thread::Builder::new().name("tollgate-merger".into()).spawn(move || {
        // A panic elsewhere with the lock held leaves totals that are still
        // counts: keep using them.
        let lock = || shared.lock().unwrap_or_else(|e| e.into_inner());
        let (cluster_tx, views, cluster_thread, stale_after) = match cluster {
            Some(h) => (Some(h.tx), Some(h.views), Some(h.thread), h.stale_after),
            None => (None, None, None, Duration::MAX),
        };
        let poll = if views.is_some() { CLUSTER_POLL } else { Duration::from_secs(3600) };
        loop {
            // A ledger line written and not yet synced is synced within
            // about a second, whether or not more spend comes.
            let wait =
                if ledger.as_ref().is_some_and(|l| l.unsynced()) { poll.min(crate::ledger::SYNC_EVERY) } else { poll };
            let delta = match rx.recv_timeout(wait) {
                Ok(d) => Some(d),
                Err(mpsc::RecvTimeoutError::Timeout) => None,
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            };
            let now = unix();
            let mut changed = false;
            if let Some(mut delta) = delta {
                if let Some(l) = ledger.as_mut() {
                    if !delta.spend.is_empty() {
                        l.append(now, &delta.spend);
                    }
                }
                changed = !delta.spend.is_empty() || !delta.minute.is_empty();
                if let Some(ctx) = &cluster_tx {
                    if let Some(w) = delta.watch.take() {
                        let _ = ctx.send(ToCluster::Watch(w));
                    }
                    let adds = increments(&delta.spend, &delta.minute, now);
                    if !adds.is_empty() || !delta.released.is_empty() {
                        for (c, v) in &adds {
                            *local.entry(c.clone()).or_default() += v;
                        }
                        let _ = ctx.send(ToCluster::Add(adds, std::mem::take(&mut delta.released)));
                    }
                }
                lock().merge(delta, now);
            }
            if let Some(vs) = &views {
                if let Some(v) = vs.try_iter().last() {
                    lock().cluster = Some(v.status.clone());
                    view = Some(v);
                    changed = true;
                    local.retain(|(_, w), _| !w.is_past(now));
                }
            }
            // A view that stopped coming is stale by its age.
            if let Some(v) = view.as_mut() {
                let now_ms = crate::unix_now().as_millis() as u64;
                let old = v
                    .status
                    .last_sync_unix_ms
                    .is_none_or(|t| Duration::from_millis(now_ms.saturating_sub(t)) >= stale_after);
                if old && !v.status.degraded {
                    v.status.degraded = true;
                    lock().cluster = Some(v.status.clone());
                    changed = true;
                }
            }
            if changed {
                let s = snapshot_of(&lock(), &local, &view);
                for core in &cores {
                    let _ = core.send(s.clone());
                }
            }
            // Due a second after the last (written lines only), and after
            // the snapshots: a slow sync does not delay them.
            if let Some(l) = ledger.as_mut() {
                l.sync(false);
            }
        }
        // Every worker has hung up: the cluster thread makes its last push,
        // and the ledger syncs as it drops.
        drop(cluster_tx);
        if let Some(t) = cluster_thread {
            let _ = t.join();
        }
        drop(ledger);
    })?;
    Ok((tx, totals, handle))
}
