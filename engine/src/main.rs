//! The `tollgate` binary: argument parsing and dispatch; everything else
//! lives in the library.

use std::path::Path;
use tollgate_engine::cli::{self, Command, HELP};

use tollgate_policy::config::ProcessEnv;
use tollgate_policy::keys::{hash_key, hex, key_from_random, KEY_RANDOM_BYTES};
use tollgate_policy::Config;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let code = match cli::parse(std::env::args().skip(1)) {
        Ok(Command::Help) => {
            print!("{HELP}");
            0
        }
        Ok(Command::Version) => {
            println!("tollgate {}", env!("CARGO_PKG_VERSION"));
            0
        }
        Ok(Command::CheckConfig(path)) => match Config::load(&path, &ProcessEnv) {
            Ok(c) => {
                println!("{}: ok ({} providers, {} models)", path.display(), c.providers.len(), c.routes.all().len());
                0
            }
            Err(e) => {
                eprintln!("{e}");
                2
            }
        },
        Ok(Command::Keygen { team, name, config }) => keygen(&team, &name, config.as_deref()),
        Ok(Command::Serve(args)) => tollgate_engine::server::serve(args),
        Err(msg) => {
            eprintln!("tollgate: {msg}");
            2
        }
    };
    std::process::exit(code);
}

/// Prints a new key once, with the configuration entry that holds its hash.
fn keygen(team: &str, name: &str, config: Option<&Path>) -> i32 {
    if let Some(path) = config {
        match Config::load(path, &ProcessEnv) {
            Ok(c) if c.team(team).is_none() => {
                let teams: Vec<&str> = c.teams.iter().map(|t| t.name.as_str()).collect();
                eprintln!("{}: no team {team:?}; teams: {}", path.display(), teams.join(", "));
                return 2;
            }
            Ok(_) => {}
            Err(e) => {
                eprintln!("{e}");
                return 2;
            }
        }
    }
    let mut random = [0u8; KEY_RANDOM_BYTES];
    if let Err(e) = getrandom::fill(&mut random) {
        eprintln!("tollgate keygen: the OS random source failed: {e}");
        return 1;
    }
    let key = key_from_random(&random);
    let hash = hex(&hash_key(key.as_bytes()));
    println!("{key}");
    println!();
    println!("# The key above is shown only this once: give it to its owner now.");
    println!("# Add this entry to the configuration, then reload (kill -HUP, or POST /admin/reload):");
    println!("[[keys]]");
    println!("name = {name:?}");
    println!("team = {team:?}");
    println!("sha256 = \"{hash}\"");
    0
}
