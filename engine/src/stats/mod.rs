//! Per-core counters and latency histograms, merged periodically, and the
//! metrics rendered from them.
//!
//! Each worker counts into its own [`CoreStats`] (`counters`: `RefCell`s,
//! one thread, no atomics on the request path) and, every
//! [`MERGE_EVERY`], hands the delta, with its accounts' hand-off
//! ([`crate::accounts`]), to the merger thread (`merger`) over a channel.
//! The merger folds deltas into the process [`Totals`] (`totals`) that the
//! admin listener renders (`render`) as Prometheus metrics and as the
//! dashboard's JSON, and sends every core back the spend it enforces.

mod counters;
mod merger;
mod render;
pub mod series;
mod totals;

use std::time::Duration;

pub use counters::{CoreFigures, CoreStats, Counts, DayMonth, Delta, GuardLabels};
pub use merger::{start_merger, Merger};
pub use totals::Totals;

/// How often a core hands its counts to the merger.
pub const MERGE_EVERY: Duration = Duration::from_millis(100);
