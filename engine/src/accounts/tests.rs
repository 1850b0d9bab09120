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

/// [`config`] reloaded with another team and key before its own: the same
/// team and key at index 1.
fn reloaded() -> Config {
    let text = "[[providers]]\nname = \"m\"\nkind = \"mock\"\n[[models]]\nname = \"gpt-4o\"\ntargets = [{ provider = \"m\" }]\n\
                [[teams]]\nname = \"new\"\nmodels = [\"*\"]\n[[teams]]\nname = \"a\"\nmodels = [\"*\"]\n\
                [[keys]]\nname = \"kn\"\nteam = \"new\"\nsha256 = \"1111111111111111111111111111111111111111111111111111111111111111\"\n\
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
    let config = Arc::new(config());
    let key = &config.keys.all()[0];
    let a = Accounts::new(0, None);
    a.settle(key, &config, NOW / 60, 10, 700);
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

/// A stream that runs past the minute it began in is checked against the
/// minute it streams in: the team's next minute, already near its limit,
/// stops it, where the old minute's count let it go on.
#[test]
fn a_stream_past_its_minute_counts_against_the_minute_it_streams_in() {
    let config = Arc::new(config());
    let key = &config.keys.all()[0];
    let a = Rc::new(Accounts::new(0, None));
    let owners = [Owner::Team(0), Owner::Key(0)];
    let began = NOW / 60;
    let r = a.reserve(owners, [Some(1_000), None], began, 100, 200);
    // Another request of the team's settles 600 tokens in the next minute.
    a.settle(key, &config, began + 1, 600, 0);
    assert!(r.stream_used_at(250, began), "350 held in the minute it began");
    assert!(r.stream_used_at(300, began + 1), "400 held and 600 used: at the limit");
    assert!(!r.stream_used_at(301, began + 1), "past it in the minute it streams in");
    assert!(r.stream_used_at(302, began), "checked against the minute it began in, it went on");
}

#[test]
fn money_saturates_instead_of_wrapping() {
    let config = Arc::new(config());
    let key = &config.keys.all()[0];
    let a = Accounts::new(0, None);
    a.settle(key, &config, NOW / 60, 0, u64::MAX);
    a.settle(key, &config, NOW / 60, 0, 5);
    assert_eq!(a.spend(Owner::Team(0), NOW).day, u64::MAX);
}

#[test]
fn a_reload_keeps_the_cores_own_counts_under_the_owners_new_indexes() {
    let old = Arc::new(config());
    // The same team and key, now behind another team and key.
    let new = Arc::new(reloaded());
    let a = Accounts::new(0, None);
    a.use_config(old.clone());
    let old_key = &old.keys.all()[0];
    a.settle(old_key, &old, NOW / 60, 0, 300);
    let _ = a.hand_off(&old);
    a.settle(old_key, &old, NOW / 60, 0, 200);
    a.reindex(&old, new.clone());
    // Team `a` and key `ka` are index 1 now: in transit and unmerged alike.
    assert_eq!(a.spend(Owner::Team(1), NOW).day, 500);
    assert_eq!(a.spend(Owner::Key(1), NOW).day, 500);
    assert_eq!(a.spend(Owner::Team(0), NOW).day, 0, "not the new team's");
    // A request that started before the reload settles by name.
    a.settle(old_key, &old, NOW / 60, 0, 50);
    assert_eq!(a.spend(Owner::Key(1), NOW).day, 550);
    assert_eq!(a.spend(Owner::Key(0), NOW).day, 0);
}

/// A request that finishes after a reload removed its team and key (the
/// configuration now has only others) hands its spend off under the names
/// it ran under, once: the ledger and the merger keep spend by name.
#[test]
fn spend_of_a_request_whose_owners_a_reload_removed_is_handed_off_by_name() {
    let old = Arc::new(reloaded());
    let new = Arc::new(config_with("b", "kb"));
    let a = Accounts::new(0, None);
    a.use_config(old.clone());
    let key = &old.keys.all()[1];
    a.reindex(&old, new.clone());
    a.settle(key, &old, NOW / 60, 0, 700);
    let off = a.hand_off(&new);
    let mut spend = off.spend.clone();
    spend.sort_by(|x, y| x.0.label().cmp(&y.0.label()));
    assert_eq!(spend, vec![(OwnerName::Key("ka".into()), 700), (OwnerName::Team("a".into()), 700)]);
    assert!(a.hand_off(&new).spend.is_empty(), "handed off once");
}

fn config_with(team: &str, key: &str) -> Config {
    let text = format!(
        "[[providers]]\nname = \"m\"\nkind = \"mock\"\n[[models]]\nname = \"gpt-4o\"\ntargets = [{{ provider = \"m\" }}]\n\
         [[teams]]\nname = \"{team}\"\nmodels = [\"*\"]\n\
         [[keys]]\nname = \"{key}\"\nteam = \"{team}\"\nsha256 = \"2222222222222222222222222222222222222222222222222222222222222222\"\n"
    );
    Config::parse("accounts.toml", &text, &ProcessEnv).expect("config")
}

/// Holds of requests in flight move with their owners across a reload,
/// by name: at their old indexes they counted against the team now there
/// (its requests refused for another's estimate), and dropped against it
/// (found by a review).
#[test]
fn a_reload_moves_the_holds_of_requests_in_flight_by_name() {
    let old = Arc::new(config());
    let new = Arc::new(reloaded());
    let a = Rc::new(Accounts::new(0, None));
    a.use_config(old.clone());
    let owners = [Owner::Team(0), Owner::Key(0)];
    let hold = a.hold_spend(owners, 500);
    let r = a.reserve(owners, [Some(1_000), None], NOW / 60, 100, 200);
    a.reindex(&old, new.clone());
    assert_eq!((a.spend(Owner::Team(1), NOW).day, a.spend(Owner::Key(1), NOW).day), (500, 500));
    assert_eq!((a.spend(Owner::Team(0), NOW).day, a.spend(Owner::Key(0), NOW).day), (0, 0), "not the new team's");
    assert_eq!((a.reserved(Owner::Team(1)), a.reserved(Owner::Team(0))), (300, 0));
    // Grown and checked under the new indexes.
    assert!(r.stream_used(900));
    assert_eq!(a.reserved(Owner::Team(1)), 1_000);
    assert!(!r.stream_used(901), "team a's limit, at its new index");
    drop((hold, r));
    for o in [Owner::Team(0), Owner::Team(1), Owner::Key(0), Owner::Key(1)] {
        assert_eq!((a.spend(o, NOW).day, a.reserved(o)), (0, 0), "{o:?}");
    }
    // A request that started under the old configuration takes its hold
    // after the reload: its old indexes are moved to the new ones.
    let late = a.hold_spend(a.owners_now(&old, [Owner::Team(0), Owner::Key(0)]), 40);
    assert_eq!((a.spend(Owner::Team(1), NOW).day, a.spend(Owner::Team(0), NOW).day), (40, 0));
    drop(late);
    // A hold whose team a reload removes holds nothing from then on.
    let hold = a.hold_spend([Owner::Team(0), Owner::Key(0)], 70);
    a.reindex(&new, old.clone());
    assert_eq!(a.spend(Owner::Team(0), NOW).day, 0, "team `new` is gone; `a` is index 0 again");
    drop(hold);
}

#[test]
fn a_merger_that_stopped_answering_neither_loses_counts_nor_grows_the_list() {
    let config = Arc::new(config());
    let key = &config.keys.all()[0];
    let a = Accounts::new(0, None);
    for _ in 0..1000 {
        a.settle(key, &config, NOW / 60, 1, 10);
        let _ = a.hand_off(&config);
    }
    assert!(a.in_transit.borrow().len() <= IN_TRANSIT_MAX);
    assert_eq!(a.spend(Owner::Team(0), NOW).day, 10_000, "every hand-off still counted");
    a.hand_off_failed();
    assert!(a.in_transit.borrow().is_empty());
    assert_eq!(a.spend(Owner::Team(0), NOW).day, 10_000);
}

/// What `spend` and `minute_use` add for the hand-offs in transit, read by
/// walking each of them (as they were read before the sum).
fn walked(a: &Accounts, owner: Owner, minute: u64) -> (u64, u64, u64) {
    a.in_transit.borrow().iter().fold((0, 0, 0), |(spend, requests, tokens), (_, c)| {
        let m = c.minute(owner, minute);
        (spend + c.spend(owner), requests + m.requests, tokens + m.tokens)
    })
}

#[test]
fn the_sum_in_transit_is_the_walk_of_every_hand_off() {
    let config = Arc::new(config());
    let key = &config.keys.all()[0];
    let a = Accounts::new(0, None);
    let base = NOW / 60;
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let (mut handed, mut checked) = (0u64, 0);
    for step in 0..4_000 {
        let r = next();
        // Minutes out of order too: one core's request settles in its
        // minute after another's has counted a later one.
        let minute = base + r % 3;
        match (r >> 8) % 16 {
            0..=5 => a.settle(key, &config, minute, (r >> 16) % 1_000, (r >> 32) % 10_000),
            6..=8 => a.admit([Owner::Team(key.team), Owner::Key(key.index)], minute),
            9..=11 => handed = a.hand_off(&config).seq,
            12..=13 => a.install(snapshot(0, (r >> 16) % (handed + 1)), &config),
            14 if step % 97 == 0 => a.hand_off_failed(),
            14 => {
                // The list at its bound folds its oldest two.
                for _ in 0..(r >> 16) % (IN_TRANSIT_MAX as u64 + 4) {
                    a.settle(key, &config, minute, 1, 1);
                    handed = a.hand_off(&config).seq;
                }
            }
            _ => a.reindex(&config, config.clone()),
        }
        for owner in [Owner::Team(0), Owner::Key(0)] {
            for minute in base..base + 3 {
                let (spend, requests, tokens) = walked(&a, owner, minute);
                let mine = a.unmerged.borrow().minute(owner, minute);
                assert_eq!(a.spend(owner, NOW).day, a.unmerged.borrow().spend(owner) + spend, "step {step}");
                let used = a.minute_use(owner, minute);
                assert_eq!(
                    (used.requests, used.tokens),
                    (mine.requests + requests, mine.tokens + tokens),
                    "step {step}"
                );
                checked += usize::from(spend > 0 && requests > 0);
            }
        }
    }
    // The walk had something to find most of the time.
    assert!(checked > 4_000, "{checked}");
}

/// The day's soft-threshold warnings go with their owners' names across a
/// reload: team `a`, warned at index 0, is not warned again at index 1,
/// and team `new`, which the reload put at index 0, is warned when it
/// passes its own threshold.
#[test]
fn soft_warnings_follow_their_owners_across_a_reload() {
    let old = Arc::new(config());
    let new = Arc::new(reloaded());
    let a = Accounts::new(0, None);
    a.use_config(old.clone());
    assert!(a.soft_warning_due(Owner::Team(0), NOW), "a's first warning today");
    a.reindex(&old, new);
    assert!(!a.soft_warning_due(Owner::Team(1), NOW), "a, at its new index, was warned today");
    assert!(a.soft_warning_due(Owner::Team(0), NOW), "`new` was not");
}
