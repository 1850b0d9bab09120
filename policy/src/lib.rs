//! Sans-IO decisions for Tollgate.
//!
//! This crate owns what the gateway decides, as opposed to how it moves
//! bytes: the configuration, parsed once into typed, validated structures
//! ([`config`]), and the routing table that turns a model name from a client
//! into an upstream target ([`route`]). Keys, budgets, rate limits and
//! guardrails join here as their own modules. Nothing here does IO or reads
//! the clock; the engine passes time in.

pub mod config;
pub mod route;

pub use config::{Config, ConfigError, Provider, ProviderKind, Server, Timeouts};
pub use route::{Route, Routes, Target};
