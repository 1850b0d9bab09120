//! Sans-IO decisions for Tollgate.
//!
//! This crate owns what the gateway decides, as opposed to how it moves
//! bytes: the configuration, parsed once into typed, validated structures
//! ([`config`]); the routing table that turns a model name from a client
//! into an upstream target ([`route`]); virtual keys ([`keys`]), teams
//! ([`team`]) and which models they may use ([`access`]). Budgets, rate
//! limits ([`budget`], [`ratelimit`]) and guardrails ([`guard`]) are their
//! own modules, as is which client headers reach a provider ([`forward`]); dates to day numbers and back are [`calendar`]'s. Nothing
//! here reads the clock or a socket; the engine passes time in.

pub mod access;
pub mod budget;
pub mod calendar;
pub mod config;
pub mod forward;
pub mod guard;
pub mod keys;
pub mod prices;
pub mod ratelimit;
pub mod route;
pub mod run;
pub mod team;

pub use config::{AwsCredentials, AwsKeys, AwsSettings, Config, ConfigError, Provider, ProviderKind, Server, Timeouts};
pub use keys::{AuthError, KeyTable, VirtualKey};
pub use route::{Route, Routes, Target};
pub use team::Team;
