//! The `tollgate` binary's commands other than `serve`, and `serve`'s
//! refusals to start.

use std::io::Read;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn tollgate(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tollgate")).args(args).output().expect("run tollgate");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn help_explains_every_flag() {
    let (code, out, _) = tollgate(&["--help"]);
    assert_eq!(code, 0);
    for flag in ["--config", "--listen", "--workers", "--driver", "--log", "check-config", "SIGTERM"] {
        assert!(out.contains(flag), "--help does not mention {flag}");
    }
}

#[test]
fn check_config_accepts_every_example() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples");
    let mut seen = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let (code, out, err) = tollgate(&["check-config", path.to_str().unwrap()]);
            assert_eq!(code, 0, "{}: {out}{err}", path.display());
            seen += 1;
        }
    }
    assert!(seen > 0);
}

#[test]
fn check_config_names_file_line_and_fix() {
    let path = std::env::temp_dir().join(format!("tollgate-bad-{}.toml", std::process::id()));
    std::fs::write(&path, "[[providers]]\nname = \"mock\"\nkind = \"mock\"\n\n[[models]]\nname = \"m\"\ntargets = [{ provider = \"mokc\" }]\n").unwrap();
    let (code, _, err) = tollgate(&["check-config", path.to_str().unwrap()]);
    let _ = std::fs::remove_file(&path);
    assert_eq!(code, 2);
    assert!(err.contains(":7:25: model \"m\" routes to unknown provider \"mokc\"; did you mean \"mock\"?"), "{err}");
}

#[test]
fn bad_arguments_exit_2() {
    let (code, _, err) = tollgate(&["--workers", "many"]);
    assert_eq!(code, 2);
    assert!(err.contains("--workers"));
}

/// SO_REUSEPORT would let a second gateway bind the port of one already
/// running and quietly take a share of its connections: `serve` refuses an
/// address another process listens on, with exit code 1 and a remedy.
#[test]
fn serve_refuses_an_address_another_process_holds() {
    // The other process's listener, with SO_REUSEPORT like a gateway's.
    let held = tollgate_mock::listen::bind_reuseport(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
    let addr = held.local_addr().unwrap().to_string();
    let mut child = Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args(["--listen", &addr, "--admin-listen", "127.0.0.1:0", "--workers", "1"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run tollgate");
    // A gateway that starts anyway never exits: poll with a deadline.
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for tollgate") {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    let _ = child.stderr.take().expect("stderr").read_to_string(&mut err);
    assert_eq!(status.and_then(|s| s.code()), Some(1), "{err}");
    let expect =
        format!("address {addr} is already in use by another process: stop it or choose another `listen` address");
    assert!(err.contains(&expect), "{err}");
}
