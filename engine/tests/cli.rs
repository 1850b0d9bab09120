//! The `tollgate` binary's commands other than `serve`.

use std::process::Command;

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
