//! `tollgate report` on a generated log with known totals.

use std::process::Command;

fn tollgate(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tollgate")).args(args).output().expect("run tollgate");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

/// 300 records: teams a, b, c take turns; every request has 100 prompt
/// and 50 completion tokens, costs 1,500 micro-dollars and takes i ms;
/// every tenth ends with a 502. Timestamps step by one second from
/// 2026-11-23 00:00 UTC.
fn log() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("tollgate-report-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut text = String::new();
    for i in 0..300u64 {
        let team = ["a", "b", "c"][(i % 3) as usize];
        let (status, end) = if i % 10 == 0 { (502, "upstream_failed") } else { (200, "completed") };
        text.push_str(&format!(
            r#"{{"id":"tg-{i}","ts":{},"team":"{team}","key":"k-{team}","model":"gpt-4o","provider":"openai","attempts":[],"status":{status},"stream":false,"tokens":{{"prompt":100,"completion":50,"cached":0}},"cost_micro_usd":1500,"latency_ms":{{"total":{}.0}},"bytes_in":10,"bytes_out":20,"end":"{end}"}}"#,
            1_795_392_000_000 + i * 1000,
            i + 1
        ));
        text.push('\n');
    }
    std::fs::write(dir.join("tollgate-requests-2026-11-23.jsonl"), text).unwrap();
    dir
}

#[test]
fn totals_are_exact_in_every_format() {
    let dir = log();
    let d = dir.to_str().unwrap();
    let (code, out, err) = tollgate(&["report", "--dir", d, "--by", "team", "--format", "json"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let groups = v.as_array().unwrap();
    assert_eq!(groups.len(), 3);
    for g in groups {
        assert_eq!(g["requests"], 100);
        assert_eq!(g["tokens_in"], 10_000);
        assert_eq!(g["tokens_out"], 5_000);
        assert_eq!(g["cost_micro_usd"], 150_000);
    }
    // Every tenth record failed: i = 0, 10, ..., 290 -> teams a, b, c in turn.
    let errors: u64 = groups.iter().map(|g| g["errors"].as_u64().unwrap()).sum();
    assert_eq!(errors, 30);

    let (_, csv, _) = tollgate(&["report", "--dir", d, "--by", "model", "--format", "csv"]);
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("model,requests,tokens_in,tokens_out,cost_micro_usd,p50_ms,p95_ms,p99_ms,errors,guardrail_requests,cache_hits,saved_micro_usd")
    );
    let row: Vec<&str> = lines.next().unwrap().split(',').collect();
    assert_eq!(&row[..5], &["gpt-4o", "300", "30000", "15000", "450000"]);
    assert_eq!(row[8], "30");
    let p50: f64 = row[5].parse().unwrap();
    assert!((149.0..=151.0).contains(&p50), "median of 1..300 ms is 150: {p50}");

    let (_, table, _) = tollgate(&["report", "--dir", d, "--by", "team"]);
    assert!(
        table.contains("a sent 15.0k tokens in 100 requests at a cost of $0.15; average latency 150 ms; 10 errors."),
        "{table}"
    );

    // --since and --until: the second minute only (records 60..119).
    let (_, json, _) =
        tollgate(&["report", "--dir", d, "--since", "1795392060000", "--until", "1795392120000", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v[0]["requests"], 60);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn report_without_inputs_explains_itself() {
    let (code, _, err) = tollgate(&["report"]);
    assert_eq!(code, 2);
    assert!(err.contains("--dir DIR"), "{err}");
}

/// Guardrail hits: counted per group (a request once per category), and
/// listed for audits by `--guardrails` (rule ids and actions, never text).
#[test]
fn guardrail_hits_are_counted_and_listed_for_audits() {
    let dir = std::env::temp_dir().join(format!("tollgate-report-guard-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let hit = |rule: &str, action: &str, place: &str| {
        format!(r#"{{"rule":"{rule}","action":"{action}","in":"{place}","text":0,"at":3,"len":12}}"#)
    };
    let rec = |i: u64, team: &str, model: &str, status: u16, end: &str, hits: &[String]| {
        let guard = if hits.is_empty() {
            String::new()
        } else {
            format!(r#","guardrails":{{"profile":"strict","version":"v1","hits":[{}]}}"#, hits.join(","))
        };
        format!(
            r#"{{"id":"tg-{i}","ts":{},"team":"{team}","key":"k-{team}","model":"{model}","provider":"openai","attempts":[],"status":{status},"stream":false,"latency_ms":{{"total":1.0}},"bytes_in":1,"bytes_out":1{guard},"end":"{end}"}}"#,
            1_795_392_000_000 + i * 1000
        )
    };
    let lines = [
        rec(0, "a", "gpt-4o", 200, "completed", &[hit("pii.email", "redact", "request")]),
        rec(
            1,
            "a",
            "gpt-4o",
            200,
            "completed",
            &[hit("pii.email", "redact", "request"), hit("pii.phone", "redact", "response")],
        ),
        rec(2, "b", "claude", 400, "blocked", &[hit("secret.openai_key", "block", "request")]),
        rec(3, "b", "claude", 200, "completed", &[]),
    ];
    std::fs::write(dir.join("tollgate-requests-2026-11-23.jsonl"), lines.join("\n") + "\n").unwrap();
    let d = dir.to_str().unwrap();

    let (_, table, _) = tollgate(&["report", "--dir", d, "--by", "team"]);
    assert!(table.contains("0 errors; 2 requests triggered the PII guardrail."), "{table}");
    assert!(table.contains("1 errors; 1 requests triggered the secrets guardrail."), "{table}");
    let (_, json, _) = tollgate(&["report", "--dir", d, "--by", "team", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!((v[0]["guardrail_requests"].as_u64(), v[1]["guardrail_requests"].as_u64()), (Some(2), Some(1)));

    let (code, audit, err) = tollgate(&["report", "--dir", d, "--guardrails"]);
    assert_eq!(code, 0, "{err}");
    let rows: Vec<&str> = audit.lines().collect();
    assert_eq!(rows.len(), 4, "a header and three requests: {audit}");
    assert!(rows[1].starts_with("2026-11-23 00:00:00  a "), "{audit}");
    assert!(rows[2].contains("pii.email (redact, request), pii.phone (redact, response)"), "{audit}");
    assert!(
        rows[3].contains("claude")
            && rows[3].contains("blocked")
            && rows[3].contains("secret.openai_key (block, request)")
    );
    let (_, csv, _) = tollgate(&["report", "--dir", d, "--guardrails", "--format", "csv"]);
    assert_eq!(csv.lines().count(), 1 + 4, "one row per hit: {csv}");
    let (_, json, _) = tollgate(&["report", "--dir", d, "--guardrails", "--format", "json"]);
    let last: serde_json::Value = serde_json::from_str(json.lines().last().unwrap()).unwrap();
    assert_eq!(last["team"], "b");
    assert_eq!(last["hits"][0]["rule"], "secret.openai_key");
    let _ = std::fs::remove_dir_all(&dir);
}
