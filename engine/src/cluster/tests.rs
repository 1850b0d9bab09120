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
    let a = Batch::new(100, 7, "tg", vec![((team("a"), Window::Day(1)), 5)], vec![]);
    let b = Batch::new(
        100,
        9,
        "tg",
        vec![((team("x\"y"), Window::Month(2026, 1)), 6), ((team("a"), Window::Day(1)), 1)],
        vec![Released { owner: team("a"), id: "n:1:0:7".into(), expires: 0 }],
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
