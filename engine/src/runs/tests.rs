//! The run table under threads: limits held exactly across cores, sub-runs
//! drawing on their parents, the team's share, and slots given up by idle
//! runs.

use std::sync::Arc;

use tollgate_policy::run::{RunLimit, RunLimits};

use super::*;

fn limits(cost: Option<u64>, tokens: Option<u64>, requests: Option<u64>) -> RunLimits {
    RunLimits { cost, tokens, requests, wall_ms: None }
}

#[test]
fn a_request_limit_holds_exactly_under_threads() {
    let runs = Arc::new(Runs::with_capacity(1024));
    let admitted = std::sync::atomic::AtomicU64::new(0);
    std::thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| {
                for _ in 0..500 {
                    if let Ok(h) = runs.admit("a", "42", None, limits(None, None, Some(100)), Estimate::default(), 1) {
                        admitted.fetch_add(1, SeqCst);
                        h.charge(1, 1, 1);
                    }
                }
            });
        }
    });
    assert_eq!(admitted.load(SeqCst), 100);
    let u = runs.usage("a", "42", 1).unwrap();
    assert_eq!((u.requests, u.tokens, u.cost), (100, 100, 100));
}

#[test]
fn concurrent_requests_never_pass_a_cost_limit_when_they_use_no_more_than_their_estimate() {
    // Each request holds 10 and uses 3 to 10: a limit of 1,000 is never
    // passed, however the eight threads interleave, and is nearly reached
    // (a request is refused only when the holds of others in flight and
    // its own would pass it).
    let runs = Arc::new(Runs::with_capacity(1024));
    let e = Estimate { cost: 10, tokens: 10 };
    std::thread::scope(|s| {
        for t in 0..8u64 {
            let runs = &runs;
            s.spawn(move || {
                for i in 0..2000u64 {
                    if let Ok(h) = runs.admit("a", "r", None, limits(Some(1000), Some(1000), None), e, 1) {
                        let used = 3 + (t * 7 + i) % 8;
                        h.charge(used, used, 1);
                    }
                }
            });
        }
    });
    let u = runs.usage("a", "r", 1).unwrap();
    assert!(u.cost <= 1000 && u.tokens <= 1000, "{u:?}");
    assert!(u.cost > 1000 - 10, "the limit is reached, not stopped short of: {u:?}");
}

#[test]
fn sub_runs_draw_on_their_parent_and_refusals_name_the_level() {
    let runs = Arc::new(Runs::with_capacity(1024));
    let l = limits(None, None, Some(5));
    let e = Estimate::default();
    let mut holds = Vec::new();
    for (i, child) in ["c1", "c2", "c1"].iter().enumerate() {
        holds.push(runs.admit("a", child, Some("p"), l, e, i as u64).unwrap());
    }
    holds.push(runs.admit("a", "p", None, l, e, 3).unwrap());
    // The grandchild names only its parent; the chain above it is known.
    holds.push(runs.admit("a", "g", Some("c2"), l, e, 4).unwrap());
    assert_eq!(runs.usage("a", "p", 5).unwrap().requests, 5);
    assert_eq!(runs.usage("a", "c2", 5).unwrap().requests, 2);
    match runs.admit("a", "g", Some("c2"), l, e, 5) {
        Err(Refusal::Limit { level: 2, limit: RunLimit::Requests, cap: 5, .. }) => {}
        other => panic!("{:?}", other.err()),
    }
    match runs.admit("a", "c1", None, l, e, 5) {
        Err(Refusal::Limit { level: 1, limit: RunLimit::Requests, .. }) => {}
        other => panic!("{:?}", other.err()),
    }
    // Nothing taken by the refused: the children's own counts are as they
    // were.
    assert_eq!(runs.usage("a", "c1", 5).unwrap().requests, 2);
    // Another team's run of the same names is its own.
    assert!(runs.admit("b", "p", None, l, e, 5).is_ok());
    drop(holds);
}

#[test]
fn a_cycle_of_parents_ends() {
    let runs = Arc::new(Runs::with_capacity(1024));
    let l = limits(None, None, Some(10));
    let _a = runs.admit("t", "a", Some("b"), l, Estimate::default(), 0).unwrap();
    let _b = runs.admit("t", "b", Some("a"), l, Estimate::default(), 0).unwrap();
    let _c = runs.admit("t", "a", Some("a"), l, Estimate::default(), 0).unwrap();
    assert_eq!(runs.usage("t", "a", 0).unwrap().requests, 3);
}

#[test]
fn the_wall_time_counts_from_the_first_request() {
    let runs = Arc::new(Runs::with_capacity(1024));
    let l = RunLimits { wall_ms: Some(60_000), ..RunLimits::default() };
    drop(runs.admit("t", "w", None, l, Estimate::default(), 1_000).unwrap());
    drop(runs.admit("t", "w", None, l, Estimate::default(), 61_000).unwrap());
    match runs.admit("t", "w", None, l, Estimate::default(), 61_001) {
        Err(Refusal::Limit { limit: RunLimit::WallTime, cap: 60_000, used, .. }) => assert_eq!(used.age_ms, 60_001),
        other => panic!("{:?}", other.err()),
    }
}

#[test]
fn a_hold_is_released_however_the_request_ends() {
    let runs = Arc::new(Runs::with_capacity(1024));
    let l = limits(Some(100), None, None);
    let e = Estimate { cost: 60, tokens: 0 };
    let h = runs.admit("t", "r", None, l, e, 0).unwrap();
    assert!(runs.admit("t", "r", None, l, e, 0).is_err(), "60 held and 60 more pass 100");
    drop(h);
    let h = runs.admit("t", "r", None, l, e, 0).unwrap();
    h.charge(0, 50, 0);
    drop(h);
    assert_eq!(runs.usage("t", "r", 0).unwrap().cost, 50);
    match runs.admit("t", "r", None, l, e, 0) {
        Err(Refusal::Limit { limit: RunLimit::Cost, used, estimate: 60, .. }) => assert_eq!(used.cost, 50),
        other => panic!("{:?}", other.err()),
    }
}

#[test]
fn one_team_cannot_take_every_slot_and_idle_runs_give_theirs_up() {
    // 32 slots, one probe window: a team's share is 8.
    let runs = Arc::new(Runs::with_capacity(32));
    let l = limits(None, None, Some(1));
    let mut taken = 0;
    for i in 0..200 {
        match runs.admit("hostile", &format!("r{i}"), None, l, Estimate::default(), 0) {
            Ok(_) => taken += 1,
            Err(Refusal::Full) => {}
            Err(e) => panic!("{e:?}"),
        }
    }
    assert_eq!(taken, 8, "a team's share is a quarter of the table");
    // A team in another bucket still gets slots.
    let other =
        (0..100).map(|i| format!("team{i}")).find(|t| runs.team_bucket(t) != runs.team_bucket("hostile")).unwrap();
    assert!(runs.admit(&other, "mine", None, l, Estimate::default(), 0).is_ok());
    // An hour later the hostile team's runs are idle and give their slots
    // up: a new run starts from nothing.
    let later = IDLE_MS + 1;
    let mut fresh = 0;
    for i in 0..20 {
        if runs.admit("hostile", &format!("new{i}"), None, l, Estimate::default(), later).is_ok() {
            fresh += 1;
        }
    }
    assert_eq!(fresh, 8, "its own idle slots, and no more than its share");
    assert_eq!(runs.counts(later).0, 8, "the idle runs are not counted active");
    // A run keeps its figures while active: its second request is refused
    // (one request each), not started afresh.
    assert!(matches!(
        runs.admit("hostile", "new0", None, l, Estimate::default(), later),
        Err(Refusal::Limit { limit: RunLimit::Requests, .. })
    ));
}

#[test]
fn run_headers_are_read_strictly() {
    use tollgate_protocol::http1::{HeadLimits, RequestHead};
    let parse = |extra: &str| {
        let raw = format!("POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n{extra}content-length: 0\r\n\r\n");
        let head = RequestHead::parse(bytes::Bytes::from(raw), &HeadLimits::default()).unwrap();
        run_ids(&head)
    };
    assert_eq!(parse(""), Ok(None));
    assert_eq!(
        parse("x-tollgate-run:  42 \r\nX-Tollgate-Parent-Run: 7\r\n"),
        Ok(Some(Box::new(RunIds { id: "42".into(), parent: Some("7".into()) })))
    );
    assert!(parse("x-tollgate-parent-run: 7\r\n").unwrap_err().contains("needs x-tollgate-run"));
    assert!(parse("x-tollgate-run: a\r\nx-tollgate-run: b\r\n").unwrap_err().contains("twice"));
    assert!(parse("x-tollgate-run: a b\r\n").unwrap_err().contains("1 to 128"));
    assert!(parse("x-tollgate-run: a\r\nx-tollgate-parent-run: \"x\"\r\n").unwrap_err().contains("parent"));
}

#[test]
fn a_shared_run_is_named_alike_on_every_node_and_apart_per_team() {
    assert_eq!(shared_id("a", "r"), shared_id("a", "r"));
    assert_ne!(shared_id("a", "r"), shared_id("b", "r"));
    // The separator keeps ("ab", "c") from naming ("a", "bc").
    assert_ne!(shared_id("ab", "c"), shared_id("a", "bc"));
    // A node without `[cluster]` shares nothing.
    let local = Arc::new(Runs::with_capacity(64));
    drop(local.admit("a", "r", None, limits(None, None, Some(9)), Estimate::default(), 1).unwrap());
    assert!(local.shared_runs().is_empty());
}

#[test]
fn the_other_nodes_figures_count_against_a_shared_run() {
    let runs = Arc::new(Runs::with_capacity(64).shared_with_cluster());
    let l = RunLimits { cost: Some(100), tokens: None, requests: Some(10), wall_ms: Some(60_000) };
    let h = runs.admit("a", "r", Some("p"), l, Estimate { cost: 10, tokens: 0 }, 1_000).unwrap();
    h.charge(4, 10, 1_000);
    drop(h);
    let mut shared = runs.shared_runs();
    shared.sort_by_key(|r| r.id != shared_id("a", "r"));
    // The run and the parent it named, each under the cluster's name.
    assert_eq!(shared.iter().map(|r| r.id).collect::<Vec<_>>(), [shared_id("a", "r"), shared_id("a", "p")]);
    let own = shared[0];
    assert_eq!((own.cost, own.tokens, own.requests, own.started_ms), (10, 4, 1, 1_000));

    // Other nodes admitted 8 of the run's requests: one more fits here.
    runs.set_remote(own.at, own.tag, own.id, Remote { cost: 0, tokens: 0, requests: 8, started_ms: 0, parent: 0 });
    let h = runs.admit("a", "r", None, l, Estimate::default(), 2_000).unwrap();
    let refused = runs.admit("a", "r", None, l, Estimate::default(), 2_000).err();
    assert!(matches!(refused, Some(Refusal::Limit { limit: RunLimit::Requests, cap: 10, .. })), "{refused:?}");
    drop(h);

    // Their spend counts too: 10 here and 85 there leave 5.
    runs.set_remote(own.at, own.tag, own.id, Remote { cost: 85, tokens: 0, requests: 0, started_ms: 0, parent: 0 });
    assert!(runs.admit("a", "r", None, l, Estimate { cost: 6, tokens: 0 }, 2_000).is_err());
    drop(runs.admit("a", "r", None, l, Estimate { cost: 5, tokens: 0 }, 2_000).unwrap());

    // The run began earlier on another node: its wall time counts from there.
    runs.set_remote(own.at, own.tag, own.id, Remote { cost: 0, tokens: 0, requests: 0, started_ms: 1, parent: 0 });
    let late = runs.admit("a", "r", None, l, Estimate::default(), 60_500).err();
    assert!(matches!(late, Some(Refusal::Limit { limit: RunLimit::WallTime, .. })), "{late:?}");

    // Figures for a run that no longer holds the slot are not taken.
    runs.set_remote(own.at, own.tag, shared_id("a", "someone else"), Remote { requests: 10, ..Remote::default() });
    assert!(runs.admit("a", "r", None, l, Estimate::default(), 30_000).is_ok());
}

#[test]
fn the_table_is_the_size_the_documents_give() {
    // ARCHITECTURE.md's state table says 9 MB (9.4 million bytes) for 65,536 slots.
    let bytes = RUNS_MAX * std::mem::size_of::<Slot>();
    assert!((9_000_000..=9_800_000).contains(&bytes), "{bytes} bytes");
}

#[test]
fn a_parent_learned_from_the_cluster_is_drawn_on_like_a_named_one() {
    let runs = Arc::new(Runs::with_capacity(1024).shared_with_cluster());
    let l = limits(None, None, Some(4));
    // This node has seen run x alone; another node saw a request name its
    // parent, "root", which has used 3 of its 4 requests.
    drop(runs.admit("a", "x", None, l, Estimate::default(), 1).unwrap());
    let x = runs.shared_runs()[0];
    assert_eq!(x.parent, 0);
    let remote = Remote { parent: shared_id("a", "root"), ..Remote::default() };
    runs.set_remote(x.at, x.tag, x.id, remote);
    // The next request of x claims root's slot, under root's cluster name.
    drop(runs.admit("a", "x", None, l, Estimate::default(), 2).unwrap());
    let mut ids: Vec<u128> = runs.shared_runs().iter().map(|r| r.id).collect();
    ids.sort_unstable();
    let mut want = [shared_id("a", "x"), shared_id("a", "root")];
    want.sort_unstable();
    assert_eq!(ids, want);
    let root = *runs.shared_runs().iter().find(|r| r.id == shared_id("a", "root")).unwrap();
    assert_eq!(runs.shared_runs().iter().find(|r| r.id == x.id).unwrap().parent, root.id, "pushed with x");
    runs.set_remote(root.at, root.tag, root.id, Remote { requests: 3, ..Remote::default() });
    let refused = runs.admit("a", "x", None, l, Estimate::default(), 3).err();
    assert!(
        matches!(refused, Some(Refusal::Limit { level: 1, limit: RunLimit::Requests, .. })),
        "root (1 here, 3 elsewhere) is at its limit: {refused:?}"
    );
}

#[test]
fn a_parents_name_and_tag_are_one_runs_whoever_sets_them_first() {
    let runs = Arc::new(Runs::with_capacity(1024).shared_with_cluster());
    let l = limits(None, None, Some(100));
    // Redis says x's parent is p1; a request then names p2: p1 stays, tag
    // and name alike.
    drop(runs.admit("a", "x", None, l, Estimate::default(), 1).unwrap());
    let x = runs.shared_runs()[0];
    runs.set_remote(x.at, x.tag, x.id, Remote { parent: shared_id("a", "p1"), ..Remote::default() });
    drop(runs.admit("a", "x", Some("p2"), l, Estimate::default(), 2).unwrap());
    let x = *runs.shared_runs().iter().find(|r| r.id == x.id).unwrap();
    assert_eq!(x.parent, shared_id("a", "p1"));
    let ids: Vec<u128> = runs.shared_runs().iter().map(|r| r.id).collect();
    assert!(ids.contains(&shared_id("a", "p1")) && !ids.contains(&shared_id("a", "p2")), "the chain went to p1");
    // Figures for a slot whose tag has changed since the scan are dropped.
    let stale = Remote { requests: 99, parent: shared_id("a", "elsewhere"), ..Remote::default() };
    runs.set_remote(x.at, x.tag ^ 1, x.id, stale);
    assert!(runs.admit("a", "x", None, l, Estimate::default(), 3).is_ok());
    assert_eq!(runs.shared_runs().iter().find(|r| r.id == x.id).unwrap().parent, shared_id("a", "p1"));
}

/// A count given back to a slot that another run has taken meanwhile (its
/// requests started at 0) stays at 0: it wrapped to 2^64 - 1, and the new
/// run was refused under any cap.
#[test]
fn a_count_given_back_to_a_reused_slot_never_wraps() {
    let s = Slot::default();
    give_back(&s, Estimate { cost: 5, tokens: 7 });
    assert_eq!((s.requests.load(SeqCst), s.held_cost.load(SeqCst), s.held_tokens.load(SeqCst)), (0, 0, 0));
    s.requests.store(3, SeqCst);
    give_back(&s, Estimate::default());
    assert_eq!(s.requests.load(SeqCst), 2);
}

/// The per-team counters start at 0 and count, from zeroed memory.
#[test]
fn the_team_counters_start_at_zero() {
    let c = zeroed_counters(TEAM_BUCKETS);
    assert_eq!(c.len(), TEAM_BUCKETS);
    assert!(c.iter().all(|n| n.load(SeqCst) == 0));
    c[TEAM_BUCKETS - 1].fetch_add(2, SeqCst);
    assert_eq!(c[TEAM_BUCKETS - 1].load(SeqCst), 2);
}

/// Teams are told apart in the table's shares: of 2,000 team names, all
/// but a few dozen have a bucket of their own (two teams that share one
/// share its quarter, and one minting run ids held the other's new runs
/// at `run_table_full`). At 256 buckets, as before, at most 256 of them
/// would; at 65,536 about 30 pairs share (2,000² / 131,072), so 1,900 is a
/// margin that holds for any key the process draws.
#[test]
fn teams_seldom_share_a_bucket_of_the_run_table() {
    let runs = Runs::with_capacity(1024);
    let buckets: std::collections::HashSet<u32> = (0..2_000).map(|i| runs.team_bucket(&format!("team-{i}"))).collect();
    assert!(buckets.len() >= 1_900, "{} buckets for 2,000 teams", buckets.len());
}
