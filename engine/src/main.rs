//! The `tollgate` binary: argument parsing and dispatch; everything else
//! lives in the library.

use tollgate_engine::cli::{self, Command, HELP};
use tollgate_policy::config::ProcessEnv;
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
        Ok(Command::Serve(args)) => tollgate_engine::server::serve(args),
        Err(msg) => {
            eprintln!("tollgate: {msg}");
            2
        }
    };
    std::process::exit(code);
}
