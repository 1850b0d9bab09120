//! The request explorer over a node's own record files (no `[clickhouse]`):
//! `GET /admin/requests` through the real binary, its index built beside
//! the files; who sees which requests and which captured bodies.

use std::time::Duration;

use tollgate_e2e::*;

fn rows(r: &Response) -> Vec<serde_json::Value> {
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["requests"].as_array().unwrap().clone()
}

#[test]
fn the_explorer_reads_the_local_records_with_bodies_only_where_granted() {
    let mock = start_mock(&[]);
    let logs = TempDir::new("local-explorer");
    let config = format!(
        "{}\n[[teams]]\nname = \"other\"\nmodels = [\"*\"]\n\n[[keys]]\nname = \"other\"\nteam = \"other\"\nsha256 = \"{}\"\n\n[[server.viewer_tokens]]\ntoken = \"{}\"\nteams = [\"e2e\"]\n\n[[server.viewer_tokens]]\ntoken = \"{}\"\nteams = [\"e2e\"]\nbodies = true\n",
        priced(config_for(mock.addr, 2, &format!("\n[logging]\ndir = \"{}\"\ncapture_bodies = true\n", logs.0.display()))),
        key_hash(OTHER_KEY),
        key_hash(VIEWER),
        key_hash(AUDITOR),
    );
    let gw = start_gateway(&config, &[], &[]);
    let admin = gw.admin.expect("admin listener");
    let secret = r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"the launch code word is PELICAN"}]}"#;
    let mut ids = Vec::new();
    for _ in 0..4 {
        let r = one_request(gw.addr, &chat_request(SMALL_CHAT, ""));
        assert_eq!(r.status, 200);
        ids.push(r.header("x-request-id").unwrap().to_string());
    }
    let told = one_request(gw.addr, &chat_request(secret, ""));
    assert_eq!(told.status, 200);
    let told = told.header("x-request-id").unwrap().to_string();
    let other = chat_request_with_key(SMALL_CHAT, &format!("Authorization: Bearer {OTHER_KEY}\r\n"));
    for _ in 0..3 {
        assert_eq!(one_request(gw.addr, &other).status, 200);
    }
    let refused = one_request(gw.addr, &chat_request_with_key(SMALL_CHAT, "Authorization: Bearer tg-nope\r\n"));
    assert_eq!(refused.status, 401);
    // Until the index has the new file the explorer says so (503,
    // `records_indexing`): a load that slows the indexer makes that the
    // first answer, which is waited out, not failed on.
    wait_until(Duration::from_secs(15), "nine records in the explorer", || {
        let r = admin_get(admin, "/admin/requests?limit=100");
        if r.status == 503 && r.json()["error"]["code"] == "records_indexing" {
            return false;
        }
        rows(&r).len() == 9
    });

    // Pages of four, newest first, as many as were written.
    let mut seen = Vec::new();
    let mut path = "/admin/requests?limit=4".to_string();
    loop {
        let page = admin_get(admin, &path);
        let listed = rows(&page);
        assert!(listed.len() <= 4);
        seen.extend(listed.iter().map(|r| (r["ts"].as_u64().unwrap(), r["id"].as_str().unwrap().to_string())));
        match page.json()["next"].as_str() {
            Some(next) => path = format!("/admin/requests?limit=4&before={next}"),
            None => break,
        }
    }
    assert_eq!(seen.len(), 9, "{seen:?}");
    assert!(seen.windows(2).all(|w| w[0] > w[1]), "newest first, no repeats: {seen:?}");
    // Filters, as over ClickHouse.
    let refused_rows = rows(&admin_get(admin, "/admin/requests?status=401"));
    assert_eq!((refused_rows.len(), refused_rows[0]["end"].as_str()), (1, Some("rejected")));
    assert_eq!(rows(&admin_get(admin, "/admin/requests?team=other&min_cost_usd=0")).len(), 3);
    assert_eq!(rows(&admin_get(admin, "/admin/requests?min_cost_usd=1000")).len(), 0);
    assert_eq!(rows(&admin_get(admin, "/admin/requests?team=%27%20OR%201%3D1%20--")).len(), 0);
    assert_eq!(admin_get(admin, "/admin/requests?status=abc").status, 400);
    let costed = rows(&admin_get(admin, "/admin/requests?team=e2e&limit=1"));
    assert!(costed[0]["cost_micro_usd"].as_u64().unwrap() > 0, "priced: {costed:?}");
    // The audit report.
    let csv = admin_get(admin, "/admin/requests?format=csv&team=e2e");
    assert_eq!(csv.header("content-type"), Some("text/csv; charset=utf-8"));
    let text = csv.text();
    assert!(text.starts_with("\"ts\",\"id\",\"team\""), "{text}");
    assert_eq!(text.lines().count(), 1 + 5, "{text}");
    assert_eq!(admin_get(admin, "/admin/requests?format=jsonl").text().lines().count(), 9);

    // One request's record: its captured prompt for the operator and the
    // auditor (a viewer granted bodies), withheld from a plain viewer.
    let detail = admin_get(admin, &format!("/admin/requests?id={told}"));
    assert_eq!(detail.status, 200, "{}", detail.text());
    assert!(detail.json()["capture"]["prompt"].as_str().unwrap().contains("PELICAN"), "{}", detail.text());
    let audited = admin_get_as(admin, &format!("/admin/requests?id={told}"), AUDITOR);
    assert!(audited.json()["capture"]["prompt"].as_str().unwrap().contains("PELICAN"), "{}", audited.text());
    let viewed = admin_get_as(admin, &format!("/admin/requests?id={told}"), VIEWER);
    assert_eq!(viewed.status, 200);
    assert!(!viewed.text().contains("PELICAN") && viewed.json()["capture_withheld"] == true, "{}", viewed.text());
    assert!(!admin_get_as(admin, "/admin/requests?format=jsonl", VIEWER).text().contains("PELICAN"));
    assert!(
        !admin_get_as(admin, "/admin/requests?format=csv", AUDITOR).text().contains("PELICAN"),
        "lists carry no bodies"
    );
    // A viewer of team e2e: its five, never the others'.
    let mine = rows(&admin_get_as(admin, "/admin/requests?limit=100", VIEWER));
    assert_eq!(mine.len(), 5);
    assert!(mine.iter().all(|r| r["team"] == "e2e"));
    assert_eq!(rows(&admin_get_as(admin, "/admin/requests?team=other", VIEWER)).len(), 0);
    let theirs = seen.iter().map(|(_, id)| id).find(|id| !mine.iter().any(|r| r["id"] == id.as_str())).unwrap();
    assert_eq!(admin_get_as(admin, &format!("/admin/requests?id={theirs}"), AUDITOR).status, 404);
    assert_eq!(admin_get(admin, "/admin/requests?id=tg-none").status, 404);
    // The index is beside the records, not among them.
    let listed: Vec<String> = std::fs::read_dir(&logs.0)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| !n.ends_with(".jsonl"))
        .collect();
    assert!(listed.iter().all(|n| n.starts_with('.') || n == "gw.toml"), "{listed:?}");

    // The dashboard's Requests table from the same files.
    let Some(dom) = dashboard_dom(admin, VIEWER) else { return };
    assert_eq!(dom.matches(r#"class="x-row""#).count(), 5, "the viewer's page lists its team's requests:\n{dom}");
    let dom = dashboard_dom(admin, ADMIN_TOKEN).expect("chromium, as above");
    assert_eq!(dom.matches(r#"class="x-row""#).count(), 9, "the operator's page lists all:\n{dom}");
    // A link to one request opens its record: the captured prompt for the
    // operator and the auditor, withheld from the plain viewer.
    let at = format!("/?request={told}");
    for (token, sees) in [(ADMIN_TOKEN, true), (AUDITOR, true), (VIEWER, false)] {
        let dom = dashboard_dom_at(admin, &at, token).expect("chromium, as above");
        let detail = dom.split(r#"id="x-detail""#).nth(1).expect("the detail").split("</pre>").next().unwrap();
        assert!(detail.contains(&told), "{token}: {detail}");
        assert_eq!(detail.contains("PELICAN"), sees, "{token}: {detail}");
        assert_eq!(detail.contains("capture_withheld"), !sees, "{token}: {detail}");
    }
}

/// Records written after a restart, and a file rewritten by the capture
/// retention under the explorer's index: both read right.
#[test]
fn the_index_follows_restarts_and_rewrites() {
    let mock = start_mock(&[]);
    let logs = TempDir::new("local-explorer-restart");
    let config = config_for(mock.addr, 1, &format!("\n[logging]\ndir = \"{}\"\n", logs.0.display()));
    // While a file is being indexed the explorer says so (503
    // `records_indexing`, "try again shortly"): the wait goes on; any
    // other answer than 200 fails.
    let count = |admin| {
        let r = admin_get(admin, "/admin/requests?limit=1000");
        (r.status != 503 || r.error_code() != "records_indexing").then(|| rows(&r).len())
    };
    {
        let gw = start_gateway(&config, &[], &[]);
        for _ in 0..3 {
            assert_eq!(one_request(gw.addr, &chat_request(SMALL_CHAT, "")).status, 200);
        }
        let admin = gw.admin.unwrap();
        wait_until(Duration::from_secs(15), "three records", || count(admin) == Some(3));
    }
    // The day's file rewritten in place (as the retention does): a record
    // that was not there is added at the front, under a new inode.
    let file = std::fs::read_dir(&logs.0)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .unwrap();
    let old = std::fs::read_to_string(&file).unwrap();
    let added = old.lines().next().unwrap().replacen("\"id\":\"", "\"id\":\"added-", 1);
    let tmp = logs.0.join("rewrite.tmp");
    std::fs::write(&tmp, format!("{added}\n{old}")).unwrap();
    std::fs::rename(&tmp, &file).unwrap();
    let gw = start_gateway(&config, &[], &[]);
    let admin = gw.admin.unwrap();
    assert_eq!(one_request(gw.addr, &chat_request(SMALL_CHAT, "")).status, 200);
    wait_until(Duration::from_secs(15), "five records", || count(admin) == Some(5));
    let id = added.split("\"id\":\"").nth(1).unwrap().split('"').next().unwrap();
    assert_eq!(admin_get(admin, &format!("/admin/requests?id={id}")).json()["id"], id);
}

#[test]
fn without_records_the_explorer_says_what_to_configure() {
    let mock = start_mock(&[]);
    let gw = start_gateway(&config_for(mock.addr, 1, ""), &[], &[]);
    let r = admin_get(gw.admin.unwrap(), "/admin/requests");
    assert_eq!(r.status, 501);
    assert!(r.text().contains("[logging] dir") && r.text().contains("[clickhouse]"), "{}", r.text());
}

/// A text a tenant writes into the records (a model name a route refused,
/// a run id) leaves the audit exports safe for a spreadsheet: a cell that
/// would begin with `=`, `+`, `-` or `@` begins with `'` (found by a
/// review: a `=HYPERLINK(...)` model ran in the auditor's spreadsheet), in
/// the explorer's CSV and in `tollgate report --format csv`.
#[test]
fn a_tenants_text_is_no_formula_in_the_csv_exports() {
    let mock = start_mock(&[]);
    let logs = TempDir::new("csv-formula");
    let config = priced(config_for(mock.addr, 1, &format!("\n[logging]\ndir = \"{}\"\n", logs.0.display())));
    let mut gw = start_gateway(&config, &[], &[]);
    let admin = gw.admin.expect("admin listener");
    let formula = "=HYPERLINK(CHAR(104)&CHAR(116)&A2,B2)";
    let body = format!(r#"{{"model":"{formula}","messages":[{{"role":"user","content":"hi"}}]}}"#);
    assert_eq!(one_request(gw.addr, &chat_request(&body, "")).status, 404);
    assert_eq!(one_request(gw.addr, &chat_request(SMALL_CHAT, "x-tollgate-run: @SUM-1\r\n")).status, 200);
    let mut csv = String::new();
    wait_until(Duration::from_secs(15), "two records in the explorer's CSV", || {
        let r = admin_get(admin, "/admin/requests?format=csv");
        csv = r.text();
        r.status == 200 && csv.lines().count() == 3
    });
    // Nor is the answer's type to be guessed.
    let r = admin_get(admin, "/admin/requests?format=csv");
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    assert!(csv.contains("\"'=HYPERLINK(CHAR(104)&CHAR(116)&A2,B2)\""), "{csv}");
    assert!(csv.contains("\"'@SUM-1\""), "{csv}");
    assert!(!csv.contains(",\"=") && !csv.contains(",\"@"), "{csv}");
    gw.signal(libc::SIGTERM);
    assert!(gw.wait_exit(Duration::from_secs(10)).expect("exits").success());
    for by in ["model", "run"] {
        let out = std::process::Command::new(bin("tollgate"))
            .args(["report", "--by", by, "--format", "csv", "--dir"])
            .arg(&logs.0)
            .output()
            .expect("tollgate report");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
        for field in text.lines().flat_map(|l| l.split(',')) {
            // A lone `-` is the report's "none", no formula.
            let field = field.trim_start_matches('"');
            assert!(!field.starts_with(['=', '+', '-', '@']) || field == "-", "{by}: {field} in {text}");
        }
        if by == "run" {
            assert!(text.contains(",-,"), "requests outside any run stay `-`: {text}");
        }
        let want = if by == "model" { "'=HYPERLINK" } else { "'@SUM-1" };
        assert!(text.contains(want), "{by}: {text}");
    }
}
