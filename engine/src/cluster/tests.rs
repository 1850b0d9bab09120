use super::*;

fn team(n: &str) -> OwnerName {
    OwnerName::Team(n.into())
}

// 2026-11-23 12:00:30 UTC.
const NOW: u64 = 1_795_435_230;

#[test]
fn increments_land_in_their_windows() {
    let adds =
        increments(&[(team("a"), 500)], &[(team("a"), MinuteUse { minute: NOW / 60, requests: 2, tokens: 0 })], NOW);
    let day = day_number(NOW);
    assert_eq!(
        adds,
        vec![
            ((team("a"), Window::Day(day)), 500),
            ((team("a"), Window::Month(2026, 11)), 500),
            ((team("a"), Window::Requests(NOW / 60)), 2),
        ]
    );
    assert_eq!(redis_key("tollgate", &adds[1].0), "{tollgate}:m:2026-11:team:a");
    assert_eq!(redis_key("tg", &(OwnerName::Key("k".into()), Window::Tokens(7))), "{tg}:tk:7:key:k");
}

#[test]
fn windows_end_and_expire_after_their_end() {
    let day = day_number(NOW);
    assert!(!Window::Day(day).is_past(NOW) && Window::Day(day - 1).is_past(NOW));
    assert!(Window::Month(2026, 10).is_past(NOW) && !Window::Month(2026, 11).is_past(NOW));
    assert!(Window::Requests(NOW / 60 - 1).is_past(NOW) && !Window::Tokens(NOW / 60).is_past(NOW));
    assert_eq!(Window::Day(day).expires_at(), (day + 1) * 86_400 + 3_600);
    // December's key lives into January.
    let dec = Window::Month(2026, 12).expires_at();
    assert_eq!(dec, tollgate_policy::budget::month_start(2027, 1) + 3_600);
}

#[test]
fn the_view_is_the_cluster_total_plus_what_this_node_counted_since() {
    let day = day_number(NOW);
    let mut node = SpendSnapshot { day, month: (2026, 11), ..SpendSnapshot::default() };
    // The node's own figures (with its ledger): 300 today.
    node.by_owner.insert(team("a"), (300, 300));
    let mut local = HashMap::new();
    // This process counted 250 today, of which Redis had 200 at the read.
    local.insert((team("a"), Window::Day(day)), 250);
    let mut view = ClusterView::default();
    view.totals.insert((team("a"), Window::Day(day)), (1_000, 200));
    view.totals.insert((team("a"), Window::Month(2026, 11)), (5_000, 200));
    view.totals.insert((team("b"), Window::Requests(NOW / 60)), (7, 0));
    combine(&mut node, &local, &view);
    assert_eq!(node.by_owner[&team("a")], (1_050, 5_000));
    assert_eq!(node.minute[&team("b")], MinuteUse { minute: NOW / 60, requests: 7, tokens: 0 });

    // Before Redis has answered after a restart, the node's own figures
    // (from its ledger) are the floor.
    let mut node2 = SpendSnapshot { day, month: (2026, 11), ..SpendSnapshot::default() };
    node2.by_owner.insert(team("a"), (300, 300));
    let mut stale = ClusterView::default();
    stale.totals.insert((team("a"), Window::Day(day)), (10, 0));
    combine(&mut node2, &HashMap::new(), &stale);
    assert_eq!(node2.by_owner[&team("a")], (300, 300));

    // A total for yesterday does not count today.
    let mut node3 = SpendSnapshot { day, month: (2026, 11), ..SpendSnapshot::default() };
    let mut old = ClusterView::default();
    old.totals.insert((team("a"), Window::Day(day - 1)), (99, 0));
    combine(&mut node3, &HashMap::new(), &old);
    assert!(node3.by_owner.is_empty());
}

#[test]
fn unpushed_batches_survive_a_restart_each_under_its_own_number() {
    let path = std::env::temp_dir().join(format!("tollgate-cluster-carried-{}", std::process::id()));
    let a = Batch::new(100, 7, "tg", vec![((team("a"), Window::Day(1)), 5)], vec![], vec![]);
    let b = Batch::new(
        100,
        9,
        "tg",
        vec![((team("x\"y"), Window::Month(2026, 1)), 6), ((team("a"), Window::Day(1)), 1)],
        vec![Released { owner: team("a"), id: "n:1:0:7".into(), expires: 0 }],
        vec![],
    );
    write_carried(&path, &[&b, &a]).unwrap();
    let back = read_carried(&path);
    assert_eq!(
        back.iter().map(|b| (b.epoch, b.seq)).collect::<Vec<_>>(),
        [(100, 7), (100, 9)],
        "in the order they were cut"
    );
    assert_eq!(back[0].keys, a.keys);
    assert_eq!(back[1].keys, b.keys);
    assert_eq!(back[1].releases, [("{tg}:rsv:team:a".to_string(), "n:1:0:7".to_string())]);
    let _ = fs::remove_file(&path);
    assert!(read_carried(&path).is_empty());
}

/// The carried file is written aside under its whole name: a ledger named
/// `spend.tmp` beside it (its carried file was `spend.cluster-unpushed`)
/// was the scratch of `with_extension("tmp")`, written over and renamed away.
#[test]
fn writing_carried_batches_leaves_a_ledger_named_tmp_alone() {
    let dir = std::env::temp_dir().join(format!("tollgate-cluster-tmp-{}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    let ledger = dir.join("spend.tmp");
    fs::write(&ledger, "{\"t\":1,\"o\":\"team\",\"n\":\"a\",\"u\":5}\n").unwrap();
    let carried = carried_path(&ledger);
    let a = Batch::new(100, 7, "tg", vec![((team("a"), Window::Day(1)), 5)], vec![], vec![]);
    write_carried(&carried, &[&a]).unwrap();
    assert_eq!(read_carried(&carried).len(), 1);
    assert!(fs::read_to_string(&ledger).is_ok_and(|t| t.contains("\"u\":5")), "the ledger is where it was");
    let _ = fs::remove_dir_all(&dir);
}

/// Each ledger has its own carried file (`a.json` and `a.jsonl` shared
/// `a.cluster-unpushed`), and one left under the old name by an earlier
/// version is taken over, its batches read back, not left unpushed.
#[test]
fn each_ledger_has_its_own_carried_file_and_the_old_name_is_taken_over() {
    let dir = std::env::temp_dir().join(format!("tollgate-cluster-names-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    let (json, jsonl) = (dir.join("a.json"), dir.join("a.jsonl"));
    let old = dir.join("a.cluster-unpushed");
    let a = Batch::new(100, 7, "tg", vec![((team("a"), Window::Day(1)), 5)], vec![], vec![]);
    write_carried(&old, &[&a]).unwrap();
    let first = carried_path(&jsonl);
    assert_eq!(first, dir.join("a.jsonl.cluster-unpushed"));
    assert!(!old.exists(), "the old file is moved");
    assert_eq!(read_carried(&first).len(), 1, "its batch is read back under the new name");
    let second = carried_path(&json);
    assert_eq!(second, dir.join("a.json.cluster-unpushed"));
    assert!(read_carried(&second).is_empty(), "the other ledger's file is its own");
    // Where the new name is already there, the old file is left as it is
    // (taken by hand), not written over it.
    write_carried(&old, &[&a]).unwrap();
    assert_eq!(carried_path(&jsonl), first);
    assert!(old.exists());
    // A ledger with no extension keeps the name it had.
    assert_eq!(carried_path(&dir.join("spend")), dir.join("spend.cluster-unpushed"));
    let _ = fs::remove_dir_all(&dir);
}

fn cluster() -> Cluster {
    Cluster {
        servers: Vec::new(),
        password: None,
        ca_file: None,
        node_id: "n".into(),
        interval: Duration::from_millis(50),
        timeout: Duration::from_millis(100),
        stale_after: Duration::from_millis(500),
        fail_closed: false,
        key_prefix: "tg".into(),
    }
}

#[test]
fn a_run_is_pushed_once_per_change_and_a_refusals_take_back_never_twice() {
    use crate::runs::{Estimate, Runs};
    let runs = Arc::new(Runs::with_capacity(64).shared_with_cluster());
    let mut node = Node::new(cluster(), None, None, Vec::new(), runs.clone());
    let l = tollgate_policy::run::RunLimits { requests: Some(100), ..Default::default() };
    let h = runs.admit("a", "r", None, l, Estimate::default(), 5_000).unwrap();
    h.charge(7, 3, 5_000);
    drop(h);
    let id = crate::runs::shared_id("a", "r");
    let d = node.run_deltas(&runs.shared_runs(), 100, BATCH_MAX);
    let first = RunPush {
        key: format!("{{tg}}:run:{id:032x}"),
        id,
        add: Figures { cost: 3, tokens: 7, requests: 1 },
        started_ms: 5_000,
        parent: 0,
        expires: 100 + RUN_TTL_S,
    };
    assert_eq!(d, [first]);
    assert!(node.run_deltas(&runs.shared_runs(), 100, BATCH_MAX).is_empty(), "nothing new, nothing pushed");

    // A request counted, then taken back by its refusal, then counted
    // again by the next admission: pushed once.
    let mut seen = runs.shared_runs();
    let mut requests = |n: u64| {
        seen[0].requests = n;
        node.run_deltas(&seen, 100, BATCH_MAX).iter().map(|p| p.add.requests).sum::<u64>()
    };
    assert_eq!([requests(2), requests(1), requests(2), requests(3)], [1, 0, 0, 1]);

    // Back in a fresh slot (another first request): counted from nought,
    // and this process's earlier pushes count as anyone's.
    node.run_acked.insert(id, Figures { cost: 3, tokens: 7, requests: 3 });
    let mut again = runs.shared_runs();
    again[0].started_ms = 9_000;
    again[0].requests = 1;
    let d = node.run_deltas(&again, 100, BATCH_MAX);
    assert_eq!((d[0].add, d[0].started_ms), (Figures { cost: 3, tokens: 7, requests: 1 }, 9_000));
    assert!(!node.run_acked.contains_key(&id));

    // Gone from the table with nothing unacknowledged: forgotten.
    node.run_acked.insert(id, d[0].add);
    assert!(node.run_deltas(&[], 100, BATCH_MAX).is_empty());
    assert!(node.run_cut.is_empty() && node.run_acked.is_empty());
}

/// A shared run as a scan gives it: slot `at` (tag 7), id `at + 1`.
fn shared_run(at: usize, requests: u64, last_ms: u64) -> SharedRun {
    SharedRun { at, tag: 7, id: at as u128 + 1, cost: 0, tokens: 0, requests, started_ms: 1, last_ms, parent: 0 }
}

#[test]
fn runs_read_are_the_recent_ones_latest_first() {
    let run = |at: usize, last_ms: u64| shared_run(at, 0, last_ms);
    let now = 10_000_000;
    let shared = [run(0, now - 5), run(1, now - crate::runs::IDLE_MS), run(2, now)];
    assert_eq!(run_reads(&shared, now), [(2, 7, 3), (0, 7, 1)]);
}

#[test]
fn unpushed_runs_survive_a_restart() {
    let path = std::env::temp_dir().join(format!("tollgate-cluster-runs-{}", std::process::id()));
    let push = RunPush {
        key: "{tg}:run:00ff".into(),
        id: 255,
        add: Figures { cost: 1, tokens: 2, requests: 3 },
        started_ms: 4,
        parent: u128::MAX - 1,
        expires: 5,
    };
    let b = Batch::new(100, 3, "tg", vec![], vec![], vec![push.clone()]);
    write_carried(&path, &[&b]).unwrap();
    let back = read_carried(&path);
    // Carried over, it is no longer this process's to subtract.
    assert_eq!(back[0].runs, [RunPush { id: 0, ..push }]);
    let _ = fs::remove_file(&path);
}

#[test]
fn runs_past_a_batchs_room_go_in_the_next_one_in_turn() {
    let runs = Arc::new(crate::runs::Runs::with_capacity(64).shared_with_cluster());
    let mut node = Node::new(cluster(), None, None, Vec::new(), runs);
    let run = |at: usize, requests: u64| shared_run(at, requests, 1);
    let ats = |d: Vec<RunPush>| d.iter().map(|p| (p.id - 1) as u64).collect::<Vec<_>>();
    let mut shared = vec![run(3, 1), run(7, 1), run(9, 1)];
    assert_eq!(ats(node.run_deltas(&shared, 100, 2)), [3, 7]);
    // Every run has counted one more since: the one left out goes first.
    for r in &mut shared {
        r.requests += 1;
    }
    assert_eq!(ats(node.run_deltas(&shared, 100, 2)), [9, 3]);
    assert_eq!(ats(node.run_deltas(&shared, 100, 2)), [7], "then the rest");
}
