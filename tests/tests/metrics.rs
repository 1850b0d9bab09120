//! `/metrics` on the admin listener, read by the reference Prometheus
//! text-format parser (the `prometheus_client` Python package).

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use tollgate_e2e::*;

fn parse(text: &str) -> Option<serde_json::Value> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/sdk/parse_metrics.py");
    let mut child = Command::new("python3")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .ok()?;
    child.stdin.take()?.write_all(text.as_bytes()).ok()?;
    let out = child.wait_with_output().ok()?;
    assert!(out.status.success(), "the parser refused the metrics:\n{}\n{text}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).ok()
}

fn sample(samples: &serde_json::Value, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples.as_array()?.iter().find_map(|s| {
        let ok = s[0] == name && labels.iter().all(|(k, v)| s[1][*k] == *v);
        ok.then(|| s[2].as_f64()).flatten()
    })
}

/// Whether the metric family of a dashboard query's `name` is in `text`.
fn exported(text: &str, name: &str) -> bool {
    text.contains(&format!("# TYPE {} ", name.trim_end_matches("_bucket")))
}

#[test]
fn metrics_count_requests_tokens_and_latency() {
    if Command::new("python3").args(["-c", "import prometheus_client"]).output().map_or(true, |o| !o.status.success()) {
        assert!(std::env::var_os("TOLLGATE_REQUIRE_SDK").is_none(), "prometheus_client is required");
        eprintln!("skipped: python3 -c 'import prometheus_client' failed");
        return;
    }
    let mock = start_mock(&[]);
    let config = priced(config_for(mock.addr, 2, "")).replace(
        "[[teams]]\nname = \"e2e\"\nmodels = [\"*\"]",
        "[[teams]]\nname = \"e2e\"\nmodels = [\"*\"]\nbudget = { daily_usd = 10.0 }",
    );
    let gw = start_gateway(&config, &[], &[]);
    for i in 0..3 {
        // One of them has 30 prompt tokens read from the provider's cache.
        let cache = if i == 0 { "x-mock-cache: 30,10\r\n" } else { "" };
        assert_eq!(one_request(gw.addr, &chat_request(SMALL_CHAT, cache)).status, 200);
    }
    assert_eq!(
        one_request(gw.addr, &chat_request_with_key(SMALL_CHAT, "Authorization: Bearer tg-nope\r\n")).status,
        401
    );
    // Counts reach the merger within one merge interval (100 ms). Whatever
    // was seen last is checked below, merged or not.
    let mut samples = serde_json::Value::Null;
    holds_within(Duration::from_secs(5), || {
        let text = admin_get(gw.admin.unwrap(), "/metrics").text();
        samples = parse(&text).expect("parsed");
        sample(&samples, "tollgate_requests_total", &[("team", "e2e"), ("status", "200")]) == Some(3.0)
            && sample(&samples, "tollgate_budget_spent_usd", &[("team", "e2e")]).is_some_and(|v| v > 0.0)
    });
    assert_eq!(
        sample(&samples, "tollgate_requests_total", &[("team", "e2e"), ("model", "gpt-4o-mini"), ("status", "200")]),
        Some(3.0)
    );
    assert_eq!(sample(&samples, "tollgate_requests_total", &[("team", "-"), ("status", "401")]), Some(1.0));
    assert_eq!(sample(&samples, "tollgate_tokens_total", &[("team", "e2e"), ("direction", "out")]), Some(48.0));
    assert_eq!(
        sample(&samples, "tollgate_tokens_total", &[("team", "e2e"), ("provider", "up"), ("direction", "cached")]),
        Some(30.0)
    );
    assert_eq!(sample(&samples, "tollgate_request_duration_seconds_count", &[]), Some(4.0));
    assert_eq!(sample(&samples, "tollgate_upstream_duration_seconds_count", &[]), Some(3.0));
    assert_eq!(sample(&samples, "tollgate_time_to_first_byte_seconds_count", &[]), Some(3.0));
    assert_eq!(sample(&samples, "tollgate_gateway_added_seconds_count", &[]), Some(3.0));
    assert!(sample(&samples, "tollgate_worker_connections", &[("worker", "0")]).is_some());
    assert!(sample(&samples, "tollgate_worker_in_flight", &[("worker", "1")]).is_some());
    assert_eq!(
        sample(&samples, "tollgate_requests_total", &[("team", "e2e"), ("provider", "up"), ("status", "200")]),
        Some(3.0)
    );
    assert_eq!(sample(&samples, "tollgate_budget_limit_usd", &[("team", "e2e"), ("window", "day")]), Some(10.0));
    let spent = sample(&samples, "tollgate_budget_spent_usd", &[("team", "e2e"), ("window", "day")]).unwrap();
    let cost = sample(&samples, "tollgate_cost_usd_total", &[("team", "e2e"), ("model", "gpt-4o-mini")]).unwrap();
    assert!((spent - cost).abs() < 1e-9, "spend {spent} is the cost {cost}");
    for worker in ["0", "1"] {
        let labels = [("model", "gpt-4o-mini"), ("provider", "up"), ("target", "gpt-4o-mini"), ("worker", worker)];
        assert_eq!(sample(&samples, "tollgate_breaker_state", &labels), Some(0.0), "closed on worker {worker}");
    }
}

/// Every metric the bundled Grafana dashboard (deploy/) queries is one the
/// gateway exports, so the dashboard cannot silently go blank.
#[test]
fn the_grafana_dashboard_queries_only_exported_metrics() {
    let mock = start_mock(&[]);
    let config = config_for(mock.addr, 1, "").replace(
        "[[teams]]\nname = \"e2e\"\nmodels = [\"*\"]",
        "[[teams]]\nname = \"e2e\"\nmodels = [\"*\"]\nbudget = { daily_usd = 10.0 }",
    );
    let gw = start_gateway(&config, &[], &[]);
    assert_eq!(one_request(gw.addr, &chat_request(SMALL_CHAT, "")).status, 200);
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/grafana-dashboard.json")).unwrap(),
    )
    .unwrap();
    let mut names = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            let mut rest = expr;
            while let Some(at) = rest.find("tollgate_") {
                let name: String = rest[at..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
                rest = &rest[at + name.len()..];
                names.push(name);
            }
        }
    }
    assert!(names.len() >= 10, "{names:?}");
    // The request's counts and the budget reach the merger (one merge
    // interval); what was seen last is checked below.
    let mut text = String::new();
    holds_within(Duration::from_secs(5), || {
        text = admin_get(gw.admin.unwrap(), "/metrics").text();
        names.iter().all(|n| exported(&text, n))
    });
    for name in names {
        let family = name.trim_end_matches("_bucket");
        assert!(exported(&text, &name), "{family} is not exported:\n{text}");
    }
}
