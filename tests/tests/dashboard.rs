//! The live dashboard on the admin listener: its JSON numbers, and the page
//! rendered by a real browser (headless Chromium) from a running gateway.

use std::process::Command;
use std::time::Duration;

use tollgate_e2e::*;

fn chromium() -> Option<&'static str> {
    ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|b| Command::new(b).arg("--version").output().is_ok_and(|o| o.status.success()))
}

#[test]
fn the_dashboard_shows_the_gateways_numbers() {
    let mock = start_mock(&[]);
    // Records on: the page's Requests table lists them.
    let logs = TempDir::new("dashboard-records");
    let config = priced(config_for(mock.addr, 2, &format!("\n[logging]\ndir = \"{}\"\n", logs.0.display())))
        .replace(
            "[[teams]]\nname = \"e2e\"\nmodels = [\"*\"]",
            "[cache]\n\n[[guardrail_profiles]]\nname = \"p\"\nresponses = false\n\n[[teams]]\nname = \"e2e\"\nmodels = [\"*\"]\nguardrails = \"p\"",
        );
    let gw = start_gateway(&config, &[], &[]);
    let admin = gw.admin.expect("admin listener");
    for _ in 0..3 {
        assert_eq!(one_request(gw.addr, &chat_request(SMALL_CHAT, "")).status, 200);
    }
    let pii = r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"mail ann@example.com"}]}"#;
    assert_eq!(one_request(gw.addr, &chat_request(pii, "")).status, 200);
    assert_eq!(one_request(gw.addr, &chat_request("{", "")).status, 400);
    // The same deterministic request twice on one connection (one core: a
    // cache without `[cluster]` is per core): a miss, then a hit.
    let zero = r#"{"model":"gpt-4o-mini","temperature":0,"messages":[{"role":"user","content":"Say hello"}]}"#;
    let mut c = Client::connect(gw.addr);
    for outcome in ["miss", "hit"] {
        c.send(&chat_request(zero, ""));
        assert_eq!(c.read_response().expect("an answer").header("x-tollgate-cache"), Some(outcome));
    }

    // What was seen last is checked below, all counted or not.
    let mut stats = serde_json::Value::Null;
    holds_within(Duration::from_secs(5), || {
        stats = admin_get(admin, "/admin/stats").json();
        stats["requests"] == 7
    });
    assert_eq!(stats["requests"], 7, "{stats}");
    assert_eq!(stats["errors"], 1);
    assert_eq!(stats["teams"][0]["team"], "e2e");
    assert_eq!(stats["teams"][0]["requests"], 7);
    assert_eq!(
        (stats["teams"][0]["cache_hits"].as_u64(), stats["teams"][0]["cache_misses"].as_u64()),
        (Some(1), Some(1))
    );
    assert!(stats["teams"][0]["saved_usd"].as_f64().unwrap() > 0.0, "{stats}");
    assert!(stats["cost_usd"].as_f64().unwrap() > 0.0);
    assert!(stats["latency_ms"]["p99"].as_f64().unwrap() > 0.0);
    assert_eq!(stats["guardrails"][0]["rule"], "pii.email");
    assert_eq!(stats["guardrails"][0]["hits"], 1);

    let page = admin_get(admin, "/");
    assert_eq!(page.status, 200);
    assert!(page.header("content-type").unwrap().starts_with("text/html"));
    assert!(page.text().contains("/admin/stats") && !page.text().contains("://cdn"), "self-contained");

    let Some(browser) = chromium() else {
        assert!(std::env::var_os("TOLLGATE_REQUIRE_CHROMIUM").is_none(), "chromium is required");
        eprintln!("skipped the browser part: no chromium");
        return;
    };
    let url = format!("http://{admin}/#token={ADMIN_TOKEN}");
    let headless =
        ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--virtual-time-budget=5000"];
    let dom = Command::new(browser).args(headless).arg("--dump-dom").arg(&url).output().expect("chromium runs");
    let dom = String::from_utf8_lossy(&dom.stdout);
    assert!(dom.contains(r#"id="requests-e2e">7<"#), "the page renders the team's requests:\n{dom}");
    assert!(dom.contains(r#"<div class="big" id="requests">7<"#), "{dom}");
    assert!(dom.contains(r#"id="cache-e2e">50%<"#), "the hit ratio: {dom}");
    assert!(dom.contains(r#"id="hits-pii.email-redact">1<"#), "{dom}");
    assert!(dom.matches(r#"class="x-row""#).count() >= 6, "the Requests table lists the records: {dom}");
    if let Some(path) = std::env::var_os("TOLLGATE_SCREENSHOT") {
        let mut shot = std::ffi::OsString::from("--screenshot=");
        shot.push(&path);
        let ok = Command::new(browser).args(headless).arg(shot).arg("--window-size=1280,1440").arg(&url).status();
        assert!(ok.is_ok_and(|s| s.success()));
    }
}

const VIEWER: &str = "tgv-e2e-viewer-0123456789";
const OTHER_KEY: &str = "tg-other-0123456789abcdef";

/// An admin-listener request with `token`.
fn as_token(admin: std::net::SocketAddr, method: &str, path: &str, token: &str) -> Response {
    let raw = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n\r\n");
    one_request(admin, raw.as_bytes())
}

#[test]
fn a_viewer_token_sees_its_teams_figures_only_and_changes_nothing() {
    let mock = start_mock(&[]);
    let config = format!(
        "{}\n[[teams]]\nname = \"other\"\nmodels = [\"*\"]\nbudget = {{ daily_usd = 50.0 }}\n\n[[keys]]\nname = \"other\"\nteam = \"other\"\nsha256 = \"{}\"\n\n[[server.viewer_tokens]]\ntoken = \"{}\"\nteams = [\"e2e\"]\n",
        priced(config_for(mock.addr, 1, "")).replace(
            "[[teams]]\nname = \"e2e\"\nmodels = [\"*\"]",
            "[[teams]]\nname = \"e2e\"\nmodels = [\"*\"]\nbudget = { daily_usd = 20.0, monthly_usd = 300.0 }\nrate_limit = { requests_per_minute = 600 }"
        ),
        key_hash(OTHER_KEY),
        key_hash(VIEWER),
    );
    let gw = start_gateway(&config, &[], &[]);
    let admin = gw.admin.expect("admin listener");
    for _ in 0..2 {
        assert_eq!(one_request(gw.addr, &chat_request(SMALL_CHAT, "")).status, 200);
    }
    let other = chat_request_with_key(SMALL_CHAT, &format!("Authorization: Bearer {OTHER_KEY}\r\n"));
    for _ in 0..3 {
        assert_eq!(one_request(gw.addr, &other).status, 200);
    }
    wait_until(Duration::from_secs(5), "five requests counted", || {
        admin_get(admin, "/admin/stats").json()["requests"] == 5
    });

    // The operator sees both teams and both budgets.
    let all = admin_get(admin, "/admin/stats").json();
    assert_eq!(all["teams"].as_array().unwrap().len(), 2, "{all}");
    assert_eq!(all["budgets"].as_array().unwrap().len(), 2, "{all}");
    assert!(all["latency_ms"]["p50"].as_f64().is_some() && all["scope"].is_null(), "{all}");

    // The viewer sees team e2e's figures, its budget, and nothing node-wide.
    let mine = as_token(admin, "GET", "/admin/stats", VIEWER);
    assert_eq!(mine.status, 200, "{}", mine.text());
    let mine = mine.json();
    assert_eq!(mine["requests"], 2, "{mine}");
    assert_eq!(mine["teams"].as_array().unwrap().len(), 1, "{mine}");
    assert_eq!(mine["teams"][0]["team"], "e2e");
    assert_eq!(mine["scope"], serde_json::json!(["e2e"]));
    assert!(mine["latency_ms"].is_null() && mine["in_flight"].is_null(), "{mine}");
    let budgets = mine["budgets"].as_array().unwrap();
    assert_eq!(budgets.len(), 1, "{mine}");
    assert_eq!(budgets[0]["name"], "e2e");
    assert_eq!((budgets[0]["daily_usd"].as_f64(), budgets[0]["monthly_usd"].as_f64()), (Some(20.0), Some(300.0)));
    assert!(budgets[0]["day_usd"].as_f64().unwrap() > 0.0, "{mine}");
    // Its rate-limit headroom: this minute's requests against the limit
    // (two, or none if the minute turned since).
    assert_eq!(budgets[0]["requests_per_minute"], 600, "{mine}");
    assert!(budgets[0]["minute_requests"].as_u64() <= Some(2), "{mine}");
    assert!(budgets[0]["tokens_per_minute"].is_null(), "{mine}");
    assert!(!mine.to_string().contains("other"), "nothing of team other: {mine}");

    // And nothing else: no metrics, no configuration, no reload.
    for (method, path) in [("GET", "/metrics"), ("GET", "/admin/config"), ("POST", "/admin/reload")] {
        let r = as_token(admin, method, path, VIEWER);
        assert_eq!(
            (r.status, r.error_code()),
            (403, "admin_token_required".to_string()),
            "{method} {path}: {}",
            r.text()
        );
    }
    // A token that is neither is refused outright.
    assert_eq!(as_token(admin, "GET", "/admin/stats", "tgv-guess").status, 401);

    // The history: every bucket of the hour, summed over the filter, within
    // the caller's scope.
    let requests = |token: &str, query: &str| -> (u64, serde_json::Value) {
        let r = as_token(admin, "GET", &format!("/admin/series?{query}"), token);
        assert_eq!(r.status, 200, "{query}: {}", r.text());
        let v = r.json();
        let buckets = v["buckets"].as_array().unwrap();
        assert_eq!(buckets.len(), if query.contains("day") { 288 } else { 360 }, "{query}");
        (buckets.iter().map(|b| b["requests"].as_u64().unwrap()).sum(), v)
    };
    let (all, v) = requests(ADMIN_TOKEN, "window=hour");
    assert_eq!(all, 5);
    assert_eq!(v["labels"]["teams"], serde_json::json!(["e2e", "other"]));
    let busy = v["buckets"].as_array().unwrap().iter().find(|b| b["requests"].as_u64() > Some(0)).unwrap().clone();
    assert!(busy["p99_ms"].as_f64().unwrap() > 0.0 && busy["gateway_p50_ms"].as_f64().unwrap() > 0.0, "{busy}");
    assert!(busy["cost_usd"].as_f64().unwrap() > 0.0 && busy["tokens_in"].as_u64().unwrap() > 0, "{busy}");
    assert_eq!(requests(ADMIN_TOKEN, "window=day").0, 5);
    assert_eq!(requests(ADMIN_TOKEN, "team=other").0, 3);
    assert_eq!(requests(ADMIN_TOKEN, "key=e2e&model=gpt-4o-mini&provider=up").0, 2);
    assert_eq!(requests(ADMIN_TOKEN, "model=gpt-4o").0, 0);
    let (mine, v) = requests(VIEWER, "window=hour");
    assert_eq!(mine, 2);
    assert_eq!(v["labels"]["teams"], serde_json::json!(["e2e"]));
    assert_eq!(requests(VIEWER, "team=other").0, 0, "a viewer's filter never widens its scope");
    let bad = as_token(admin, "GET", "/admin/series?window=week", ADMIN_TOKEN);
    assert_eq!((bad.status, bad.error_code()), (400, "invalid_query".to_string()), "{}", bad.text());

    let Some(browser) = chromium() else {
        assert!(std::env::var_os("TOLLGATE_REQUIRE_CHROMIUM").is_none(), "chromium is required");
        eprintln!("skipped the browser part: no chromium");
        return;
    };
    let headless =
        ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--virtual-time-budget=5000"];
    let dom_as = |token: &str| {
        let url = format!("http://{admin}/#token={token}");
        let out = Command::new(browser).args(headless).arg("--dump-dom").arg(&url).output().expect("chromium runs");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let dom = dom_as(VIEWER);
    assert!(dom.contains(r#"id="requests-e2e">2<"#), "the viewer's page shows its team:\n{dom}");
    assert!(!dom.contains("requests-other"), "and not the other team:\n{dom}");
    assert!(dom.contains("viewing e2e"), "it says whose figures it shows:\n{dom}");
    assert!(dom.contains(r#"id="budget-day-team-e2e">$"#), "the team's budget:\n{dom}");
    assert!(dom.contains(" / 600</td>"), "its rate-limit headroom:\n{dom}");
    assert!(dom.contains(r#"data-requests="2""#), "the history, scoped:\n{dom}");
    assert!(!dom.contains(r#"<option value="other">"#), "no other team to filter by:\n{dom}");
    let dom = dom_as(ADMIN_TOKEN);
    assert!(dom.contains(r#"id="requests-other">3<"#) && dom.contains(r#"id="requests-e2e">2<"#), "{dom}");
    assert!(dom.contains(r#"data-requests="5""#), "the history:\n{dom}");
    let requests_chart = dom.split(r#"id="chart-requests""#).nth(1).unwrap_or_default();
    assert!(requests_chart.split("</svg>").next().unwrap_or_default().contains("<polyline"), "a drawn chart:\n{dom}");
    assert!(dom.contains(r#"<option value="other">other</option>"#), "the teams to filter by:\n{dom}");
}
