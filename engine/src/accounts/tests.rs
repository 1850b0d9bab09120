//! The accounts with constructed configurations and snapshots: no worker,
//! no merger thread.

use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

use super::*;
use tollgate_policy::config::ProcessEnv;

fn config() -> Config {
    let text = "[[providers]]\nname = \"m\"\nkind = \"mock\"\n[[models]]\nname = \"gpt-4o\"\ntargets = [{ provider = \"m\" }]\n\
                [[teams]]\nname = \"a\"\nmodels = [\"*\"]\n\
                [[keys]]\nname = \"ka\"\nteam = \"a\"\nsha256 = \"0000000000000000000000000000000000000000000000000000000000000000\"\n";
    Config::parse("accounts.toml", text, &ProcessEnv).expect("config")
}

const NOW: u64 = 1_800_000_000;

fn snapshot(team_day: u64, merged: u64) -> Arc<SpendSnapshot> {
    let day = tollgate_policy::budget::day_number(NOW);
    let mut by_owner = HashMap::new();
    by_owner.insert(OwnerName::Team("a".into()), (team_day, team_day));
    Arc::new(SpendSnapshot {
        day,
        month: tollgate_policy::budget::year_month(day),
        by_owner,
        merged: vec![merged],
        ..SpendSnapshot::default()
    })
}

#[test]
fn a_core_sees_its_own_spend_between_a_hand_off_and_the_snapshot_that_includes_it() {
    let config = config();
    let key = &config.keys.all()[0];
    let a = Accounts::new(0, None);
    a.settle(key, NOW / 60, 10, 700);
    assert_eq!(a.spend(Owner::Team(0), NOW).day, 700, "unmerged");
    let off = a.hand_off(&config);
    assert_eq!(off.seq, 1);
    assert_eq!(off.spend.iter().map(|(_, v)| v).sum::<u64>(), 1400, "team and key");
    // The merger has not answered: the core still counts what it sent.
    assert_eq!(a.spend(Owner::Team(0), NOW).day, 700, "in transit");
    assert_eq!(a.minute_use(Owner::Key(0), NOW / 60).tokens, 10);
    // A snapshot from before this hand-off does not include it.
    a.install(snapshot(100, 0), &config);
    assert_eq!(a.spend(Owner::Team(0), NOW).day, 800);
    // The one that includes it replaces the core's own count.
    a.install(snapshot(800, 1), &config);
    assert_eq!(a.spend(Owner::Team(0), NOW).day, 800, "counted once");
}

#[test]
fn holds_and_reservations_are_released_when_their_guards_drop() {
    let a = Rc::new(Accounts::new(0, None));
    let owners = [Owner::Team(0), Owner::Key(0)];
    let hold = a.hold_spend(owners, 500);
    assert_eq!(a.spend(Owner::Key(0), NOW).day, 500);
    let r = a.reserve(owners, [Some(1_000), None], NOW / 60, 100, 200);
    assert_eq!(a.reserved(Owner::Team(0)), 300);
    assert!(r.stream_used(250), "within the reservation");
    assert!(r.stream_used(900), "grown to 1,000: at the limit, not past it");
    assert_eq!(a.reserved(Owner::Team(0)), 1_000);
    assert!(!r.stream_used(901), "past the team's limit");
    drop((hold, r));
    assert_eq!(a.spend(Owner::Key(0), NOW).day, 0);
    assert_eq!(a.reserved(Owner::Team(0)), 0);
}

#[test]
fn money_saturates_instead_of_wrapping() {
    let config = config();
    let key = &config.keys.all()[0];
    let a = Accounts::new(0, None);
    a.settle(key, NOW / 60, 0, u64::MAX);
    a.settle(key, NOW / 60, 0, 5);
    assert_eq!(a.spend(Owner::Team(0), NOW).day, u64::MAX);
}
