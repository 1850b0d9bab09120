//! Request records into a real ClickHouse (Debian's `clickhouse-server`,
//! started here on free loopback ports with a configuration of its own):
//! every record becomes a row, captured bodies stay out, a ClickHouse that
//! is down costs requests nothing and gets its rows once it is back, and
//! the last rows go in on shutdown. Skipped with a notice where the server
//! is not installed; CI installs it and sets `TOLLGATE_REQUIRE_CLICKHOUSE`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tollgate_e2e::*;

struct ClickHouse {
    child: Child,
    http: SocketAddr,
    _dir: TempDir,
}

impl Drop for ClickHouse {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl ClickHouse {
    fn start() -> Option<ClickHouse> {
        if Command::new("clickhouse-server").arg("--version").output().is_err() {
            assert!(std::env::var_os("TOLLGATE_REQUIRE_CLICKHOUSE").is_none(), "clickhouse-server is required");
            eprintln!("skipped: clickhouse-server is not installed (apt-get install clickhouse-server)");
            return None;
        }
        // Free ports are free when looked at, not when the server binds
        // them (tests run side by side): a server that exits at once is
        // started again on others.
        for attempt in 1..=3 {
            let dir = TempDir::new("clickhouse");
            let (http, tcp) = (free_port(), free_port());
            let d = dir.0.display();
            let config = format!(
                "<?xml version=\"1.0\"?>\n<yandex>\n<logger><level>warning</level><console>1</console></logger>\n\
                 <http_port>{http}</http_port>\n<tcp_port>{tcp}</tcp_port>\n<listen_host>127.0.0.1</listen_host>\n\
                 <path>{d}/data/</path>\n<tmp_path>{d}/tmp/</tmp_path>\n<user_files_path>{d}/files/</user_files_path>\n\
                 <users_config>/etc/clickhouse-server/users.xml</users_config>\n<default_profile>default</default_profile>\n\
                 <default_database>default</default_database>\n<mark_cache_size>5368709</mark_cache_size>\n</yandex>\n"
            );
            let path = dir.0.join("config.xml");
            std::fs::write(&path, config).unwrap();
            let log_path = dir.0.join("server.log");
            let log = std::fs::File::create(&log_path).unwrap();
            let child = Command::new("clickhouse-server")
                .arg(format!("--config-file={}", path.display()))
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .stdin(Stdio::null())
                .spawn()
                .expect("clickhouse-server");
            let mut ch = ClickHouse { child, http: format!("127.0.0.1:{http}").parse().unwrap(), _dir: dir };
            let up = holds_within(Duration::from_secs(30), || {
                ch.query("SELECT 1").is_some() || ch.child.try_wait().is_ok_and(|s| s.is_some())
            });
            if up && ch.query("SELECT 1").is_some() {
                return Some(ch);
            }
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            assert!(attempt < 3, "clickhouse-server did not start three times; its log:\n{log}");
            eprintln!("clickhouse-server did not start (attempt {attempt}); again on other ports:\n{log}");
        }
        None
    }

    /// The answer's body to `sql`, or `None` when it fails.
    fn query(&self, sql: &str) -> Option<String> {
        let mut s = TcpStream::connect_timeout(&self.http, Duration::from_secs(1)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
        let req =
            format!("POST / HTTP/1.1\r\nhost: ch\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{sql}", sql.len());
        s.write_all(req.as_bytes()).ok()?;
        let mut out = Vec::new();
        s.read_to_end(&mut out).ok()?;
        let text = String::from_utf8_lossy(&out).to_string();
        let (head, body) = text.split_once("\r\n\r\n")?;
        if !head.starts_with("HTTP/1.1 200") {
            return None;
        }
        if !head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
            return Some(body.to_string());
        }
        let mut rest = body;
        let mut out = String::new();
        loop {
            let (size, after) = rest.split_once("\r\n")?;
            let n = usize::from_str_radix(size.trim(), 16).ok()?;
            if n == 0 {
                return Some(out);
            }
            out.push_str(after.get(..n)?);
            rest = after.get(n + 2..)?;
        }
    }

    fn rows(&self, sql: &str) -> Vec<Value> {
        self.query(&format!("{sql} FORMAT JSONEachRow"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    }

    fn count(&self) -> u64 {
        self.rows("SELECT count() AS n FROM default.tollgate_requests")
            .first()
            .and_then(|r| r["n"].as_str().and_then(|n| n.parse().ok()).or(r["n"].as_u64()))
            .unwrap_or(0)
    }
}

fn config(mock: SocketAddr, ch: SocketAddr, logs: &TempDir) -> String {
    priced(config_for(mock, 2, "")).replace(
        "[[teams]]\nname = \"e2e\"",
        &format!(
            "[logging]\ndir = \"{}\"\ncapture_bodies = true\n\n[clickhouse]\nurl = \"http://{ch}\"\n\n[[teams]]\nname = \"e2e\"",
            logs.0.display()
        ),
    )
}

#[test]
fn every_record_becomes_a_row_without_its_captured_bodies() {
    let Some(ch) = ClickHouse::start() else { return };
    let mock = start_mock(&[]);
    let logs = TempDir::new("ch-records");
    let gw = start_gateway(&config(mock.addr, ch.http, &logs), &[], &[]);
    for _ in 0..3 {
        assert_eq!(one_request(gw.addr, &chat_request(SMALL_CHAT, "")).status, 200);
    }
    assert_eq!(one_request(gw.addr, &chat_request(STREAM_CHAT, "")).status, 200);
    let refused = one_request(gw.addr, &chat_request_with_key(SMALL_CHAT, "Authorization: Bearer tg-nope\r\n"));
    assert_eq!(refused.status, 401);
    wait_until(Duration::from_secs(15), "five rows in ClickHouse", || ch.count() >= 5);
    let records = wait_records(&logs.0, 5);
    let rows = ch.rows("SELECT * FROM default.tollgate_requests ORDER BY ts, id");
    assert_eq!(rows.len(), 5, "{rows:#?}");
    for record in &records {
        let row = rows.iter().find(|r| r["id"] == record["id"]).unwrap_or_else(|| panic!("no row for {record}"));
        assert_eq!(row["team"], record["team"].as_str().unwrap_or(""));
        assert_eq!(row["status"], record["status"]);
        assert_eq!(row["end"], record["end"]);
        // UInt64 comes back quoted (JSON's integers are not 64-bit safe).
        let as_u64 = |v: &Value| v.as_str().and_then(|s| s.parse::<u64>().ok()).or(v.as_u64());
        assert_eq!(as_u64(&row["ts"]), record["ts"].as_u64());
        assert_eq!(as_u64(&row["cost_micro_usd"]), Some(record["cost_micro_usd"].as_u64().unwrap_or(0)));
        assert_eq!(as_u64(&row["tokens_prompt"]), Some(record["tokens"]["prompt"].as_u64().unwrap_or(0)));
        assert!(record["capture"].is_object() || record["status"] == 401, "the files keep the capture: {record}");
        let kept: Value = serde_json::from_str(row["record"].as_str().unwrap()).unwrap();
        assert!(kept.get("capture").is_none(), "a captured body reached ClickHouse: {kept}");
        assert_eq!(kept["id"], record["id"]);
    }
    assert!(!ch.query("SELECT record FROM default.tollgate_requests").unwrap().contains("Say hello"));
    // The bodies went to their own table: one row per captured record.
    wait_until(Duration::from_secs(15), "four rows of bodies", || {
        ch.query("SELECT count() FROM default.tollgate_requests_bodies").is_some_and(|n| n.trim() == "4")
    });
    let bodies = ch.rows("SELECT id, team, capture FROM default.tollgate_requests_bodies");
    for b in &bodies {
        let record = records.iter().find(|r| r["id"] == b["id"]).expect("its record");
        let capture: Value = serde_json::from_str(b["capture"].as_str().unwrap()).unwrap();
        assert_eq!(capture, record["capture"], "the record's capture, as the files have it");
        assert_eq!(b["team"], "e2e");
    }
    // An auditor's question, answered by the table.
    let by_team = ch.rows(
        "SELECT team, count() AS n, sum(cost_micro_usd) AS cost FROM default.tollgate_requests GROUP BY team ORDER BY team",
    );
    assert_eq!(by_team.len(), 2, "{by_team:?}");
    assert_eq!(by_team[1]["team"], "e2e");
    wait_until(Duration::from_secs(5), "inserted rows counted", || {
        metric(&gw, "tollgate_clickhouse_rows_total{result=\"inserted\"}") == Some(5.0)
    });
    assert_eq!(metric(&gw, "tollgate_clickhouse_rows_total{result=\"dropped\"}"), Some(0.0));
    // The bodies' table dropped under the gateway: made again by the next
    // insert of bodies, which then goes in.
    assert!(ch.query("DROP TABLE default.tollgate_requests_bodies").is_some());
    assert_eq!(one_request(gw.addr, &chat_request(SMALL_CHAT, "")).status, 200);
    wait_until(Duration::from_secs(15), "the bodies' table made again, with the new row", || {
        ch.query("SELECT count() FROM default.tollgate_requests_bodies").is_some_and(|n| n.trim() == "1")
    });
}

/// `capture_retention_days` drops the bodies table's days past it, and
/// only those: a day that ended two days ago goes with a retention of one,
/// today's stays.
#[test]
fn captured_bodies_past_their_retention_are_dropped_from_clickhouse() {
    let Some(ch) = ClickHouse::start() else { return };
    let mock = start_mock(&[]);
    let logs = TempDir::new("ch-retention");
    let config = config(mock.addr, ch.http, &logs)
        .replace("capture_bodies = true", "capture_bodies = true\ncapture_retention_days = 1");
    let gw = start_gateway(&config, &[], &[]);
    assert_eq!(one_request(gw.addr, &chat_request(SMALL_CHAT, "")).status, 200);
    wait_until(Duration::from_secs(15), "today's bodies", || {
        ch.query("SELECT count() FROM default.tollgate_requests_bodies").is_some_and(|n| n.trim() == "1")
    });
    drop(gw);
    let now_s = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    for (days_ago, id) in [(2u64, "old"), (1, "yesterday")] {
        let ts = (now_s - days_ago * 86_400) * 1000;
        let insert = format!(
            "INSERT INTO default.tollgate_requests_bodies (date, ts, id, team, capture) VALUES (toDate(intDiv({ts}, 1000)), {ts}, '{id}', 'e2e', '{{}}')"
        );
        assert!(ch.query(&insert).is_some(), "the {id} row went in");
    }
    // The retention runs at start.
    let _gw = start_gateway(&config, &[], &[]);
    wait_until(Duration::from_secs(15), "the old day dropped", || {
        ch.query("SELECT count() FROM default.tollgate_requests_bodies WHERE id = 'old'")
            .is_some_and(|n| n.trim() == "0")
    });
    let left = ch.query("SELECT id FROM default.tollgate_requests_bodies ORDER BY ts FORMAT TSV").unwrap();
    let left: Vec<&str> = left.lines().collect();
    assert_eq!(left.len(), 2, "yesterday's (not ended a day ago) and today's stay: {left:?}");
    assert_eq!(left[0], "yesterday");
}

/// A door between the gateway and ClickHouse: while shut, nothing listens
/// on its port (connections are refused, as by a server that is
/// restarting or gone); while open, bytes pass both ways.
struct Door {
    addr: SocketAddr,
    to: SocketAddr,
    open: Arc<AtomicBool>,
}

impl Door {
    fn shut_before(to: SocketAddr) -> Door {
        let addr = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        Door { addr, to, open: Arc::new(AtomicBool::new(false)) }
    }

    /// Listens until [`Door::shut`].
    fn open(&self) {
        let listener = TcpListener::bind(self.addr).unwrap();
        listener.set_nonblocking(true).unwrap();
        self.open.store(true, Ordering::SeqCst);
        let (open, to) = (self.open.clone(), self.to);
        std::thread::spawn(move || {
            while open.load(Ordering::SeqCst) {
                let Ok((client, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                client.set_nonblocking(false).unwrap();
                let Ok(server) = TcpStream::connect(to) else { continue };
                for (mut from, mut into) in
                    [(client.try_clone().unwrap(), server.try_clone().unwrap()), (server, client)]
                {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut into);
                        let _ = into.shutdown(std::net::Shutdown::Write);
                    });
                }
            }
        });
    }

    /// Stops listening (once the thread sees it: connections are refused
    /// from then on).
    fn shut(&self) {
        self.open.store(false, Ordering::SeqCst);
        wait_until(Duration::from_secs(5), "the door shut", || TcpStream::connect(self.addr).is_err());
    }
}

/// ClickHouse down for longer than the four tries (3.75 s of back-off)
/// that used to drop an insert's rows: requests are answered all the same,
/// the rows are held and tried again, and go in once it is back, none
/// dropped. Down again at shutdown, the gateway still exits within its
/// grace, what ClickHouse did not take counted as dropped, the files
/// keeping every record.
#[test]
fn a_clickhouse_that_is_down_costs_requests_nothing_and_gets_its_rows_when_back() {
    let Some(ch) = ClickHouse::start() else { return };
    let mock = start_mock(&[]);
    let door = Door::shut_before(ch.http);
    let logs = TempDir::new("ch-down");
    let mut gw = start_gateway(&config(mock.addr, door.addr, &logs), &[], &[]);
    for i in 0..10 {
        assert_eq!(one_request(gw.addr, &chat_request(SMALL_CHAT, "")).status, 200, "request {i}");
    }
    assert_eq!(wait_records(&logs.0, 10).len(), 10, "the files have every record");
    let failed = || metric(&gw, "tollgate_clickhouse_tries_failed_total").unwrap_or(0.0);
    wait_until(Duration::from_secs(30), "a fifth try refused", || failed() >= 5.0);
    assert_eq!(metric(&gw, "tollgate_clickhouse_rows_total{result=\"dropped\"}"), Some(0.0));
    assert!(metric(&gw, "tollgate_clickhouse_rows_held").unwrap_or(0.0) >= 1.0, "the rows tried again are held");
    door.open();
    wait_until(Duration::from_secs(30), "ten rows in ClickHouse once it is back", || ch.count() == 10);
    wait_until(Duration::from_secs(5), "the rows counted inserted", || {
        metric(&gw, "tollgate_clickhouse_rows_total{result=\"inserted\"}") == Some(10.0)
    });
    assert_eq!(metric(&gw, "tollgate_clickhouse_rows_total{result=\"dropped\"}"), Some(0.0));
    assert_eq!(metric(&gw, "tollgate_clickhouse_rows_held"), Some(0.0));
    // Down at shutdown: held until the grace ends, then dropped.
    door.shut();
    let before = failed();
    assert_eq!(one_request(gw.addr, &chat_request(SMALL_CHAT, "")).status, 200);
    wait_until(Duration::from_secs(10), "the new row's insert refused", || failed() > before);
    gw.signal(libc::SIGTERM);
    assert!(gw.wait_exit(Duration::from_secs(20)).is_some_and(|s| s.success()), "stuck on a ClickHouse that is down");
    assert_eq!(ch.count(), 10);
    assert_eq!(wait_records(&logs.0, 11).len(), 11, "the files keep the record ClickHouse did not get");
}

/// A ClickHouse that takes each insert but answers too late (past
/// `timeout_ms`) may have it: such an insert is tried four times at most,
/// not without end (each try would be in the table again).
#[test]
fn an_insert_without_an_answer_is_not_tried_without_end() {
    let mock = start_mock(&[]);
    // A server that reads each request and never answers.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap();
    let taken = Arc::new(AtomicUsize::new(0));
    let t = taken.clone();
    std::thread::spawn(move || {
        for conn in silent.incoming().flatten() {
            t.fetch_add(1, Ordering::SeqCst);
            std::thread::spawn(move || {
                let mut conn = conn;
                let _ = std::io::copy(&mut conn, &mut std::io::sink());
            });
        }
    });
    let logs = TempDir::new("ch-silent");
    // No CREATE first (one that gets no answer leaves the insert unsent,
    // and so held): the inserts themselves go unanswered.
    let config = config(mock.addr, addr, &logs)
        .replace("[clickhouse]\n", "[clickhouse]\ntimeout_ms = 300\ncreate_table = false\n");
    let gw = start_gateway(&config, &[], &[]);
    assert_eq!(one_request(gw.addr, &chat_request(SMALL_CHAT, "")).status, 200);
    // The row's insert and its captured body's, each given up.
    wait_until(Duration::from_secs(30), "both inserts given up", || {
        metric(&gw, "tollgate_clickhouse_inserts_failed_total") == Some(2.0)
    });
    assert_eq!(metric(&gw, "tollgate_clickhouse_rows_total{result=\"dropped\"}"), Some(1.0));
    assert_eq!(taken.load(Ordering::SeqCst), 8, "four tries each of two inserts that may be in");
}

/// Rows written just before SIGTERM are inserted before the exit, by the
/// last insert (tried again when the thread's once-a-second insert beat
/// the signal).
#[test]
fn the_last_rows_go_in_on_shutdown() {
    let Some(ch) = ClickHouse::start() else { return };
    let mock = start_mock(&[]);
    for round in 0..5 {
        let logs = TempDir::new("ch-shutdown");
        let mut gw = start_gateway(&config(mock.addr, ch.http, &logs), &[], &[]);
        let before = ch.count();
        for _ in 0..4 {
            assert_eq!(one_request(gw.addr, &chat_request(SMALL_CHAT, "")).status, 200);
        }
        let early = ch.count() > before;
        gw.signal(libc::SIGTERM);
        assert!(gw.wait_exit(Duration::from_secs(20)).is_some_and(|s| s.success()));
        assert_eq!(ch.count(), before + 4, "rows lost on shutdown");
        if !early {
            return;
        }
        eprintln!("round {round}: rows were inserted before the signal; again");
    }
    panic!("the last insert was never the one that delivered");
}

/// A stream that ends well after SIGTERM (past the exporters' 5 s grace,
/// within the 30 s drain) is recorded, and its row inserted: the grace
/// covers the last insert, not the drain.
#[test]
fn a_request_that_ends_late_in_the_drain_still_gets_its_row() {
    let Some(ch) = ClickHouse::start() else { return };
    let mock = start_mock(&[]);
    let logs = TempDir::new("ch-drain");
    let mut gw = start_gateway(&config(mock.addr, ch.http, &logs), &[], &[]);
    let addr = gw.addr;
    // 14 events 500 ms apart: about 7 s.
    let stream = std::thread::spawn(move || {
        one_request(addr, &chat_request(STREAM_CHAT, "x-mock-chunks: 14\r\nx-mock-chunk-delay-ms: 500\r\n"))
    });
    wait_until(Duration::from_secs(5), "the stream in flight", || {
        metric(&gw, "tollgate_worker_in_flight{worker=\"0\"}").unwrap_or(0.0)
            + metric(&gw, "tollgate_worker_in_flight{worker=\"1\"}").unwrap_or(0.0)
            >= 1.0
    });
    gw.signal(libc::SIGTERM);
    let answer = stream.join().unwrap();
    assert_eq!(answer.status, 200);
    assert!(gw.wait_exit(Duration::from_secs(30)).is_some_and(|s| s.success()));
    let rows = ch.rows("SELECT id, stream FROM default.tollgate_requests");
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["id"], answer.header("x-request-id").unwrap());
}

#[test]
fn a_bad_clickhouse_section_names_its_line_and_the_fix() {
    let mock = start_mock(&[]);
    let logs = TempDir::new("ch-config");
    for (section, needle) in [
        ("url = \"https://ch:8443\"", "must be http://host:port"),
        ("url = \"http://ch\"", "must be http://host:port"),
        ("url = \"http://ch:8123\"\ntable = \"requests; DROP TABLE x\"", "letters, digits and _"),
        ("url = \"http://ch:8123\"\npassword_env = \"TOLLGATE_E2E_UNSET_CH\"", "is not set"),
    ] {
        let config =
            config(mock.addr, "127.0.0.1:1".parse().unwrap(), &logs).replace("url = \"http://127.0.0.1:1\"", section);
        let path = logs.0.join("gw.toml");
        std::fs::write(&path, &config).unwrap();
        let out = Command::new(bin("tollgate")).arg("check-config").arg(&path).output().expect("tollgate");
        let text = String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
        assert!(!out.status.success(), "{section}: accepted");
        assert!(text.contains("gw.toml:") && text.contains(needle), "{section}: {text}");
    }
    let no_records = config_for(mock.addr, 1, "") + "\n[clickhouse]\nurl = \"http://127.0.0.1:8123\"\n";
    let path = logs.0.join("gw.toml");
    std::fs::write(&path, &no_records).unwrap();
    let out = Command::new(bin("tollgate")).arg("check-config").arg(&path).output().expect("tollgate");
    assert!(String::from_utf8_lossy(&out.stderr).contains("set [logging] dir"), "{out:?}");
}

/// The request explorer over the table: filters, pages, one request's
/// record, the CSV and JSON-lines exports, and a viewer held to its teams.
#[test]
fn the_request_explorer_filters_pages_exports_and_scopes_by_team() {
    let Some(ch) = ClickHouse::start() else { return };
    let mock = start_mock(&[]);
    let logs = TempDir::new("ch-explorer");
    let config = format!(
        "{}\n[[teams]]\nname = \"other\"\nmodels = [\"*\"]\n\n[[keys]]\nname = \"other\"\nteam = \"other\"\nsha256 = \"{}\"\n\n[[server.viewer_tokens]]\ntoken = \"{}\"\nteams = [\"e2e\"]\n\n[[server.viewer_tokens]]\ntoken = \"{}\"\nteams = [\"e2e\"]\nbodies = true\n",
        config(mock.addr, ch.http, &logs),
        key_hash(OTHER_KEY),
        key_hash(VIEWER),
        key_hash(AUDITOR),
    );
    let gw = start_gateway(&config, &[], &[]);
    let admin = gw.admin.expect("admin listener");
    // One of them in a run whose id a spreadsheet would take for a formula.
    for run in ["@SUM-1", "", "", "", ""] {
        let header = if run.is_empty() { String::new() } else { format!("x-tollgate-run: {run}\r\n") };
        assert_eq!(one_request(gw.addr, &chat_request(SMALL_CHAT, &header)).status, 200);
    }
    let other = chat_request_with_key(SMALL_CHAT, &format!("Authorization: Bearer {OTHER_KEY}\r\n"));
    for _ in 0..3 {
        assert_eq!(one_request(gw.addr, &other).status, 200);
    }
    let refused = one_request(gw.addr, &chat_request_with_key(SMALL_CHAT, "Authorization: Bearer tg-nope\r\n"));
    assert_eq!(refused.status, 401);
    wait_until(Duration::from_secs(15), "nine rows", || ch.count() >= 9);

    // Everything, newest first, in pages of four.
    let mut seen = Vec::new();
    let mut path = "/admin/requests?limit=4".to_string();
    loop {
        let page = admin_get(admin, &path);
        assert_eq!(page.status, 200, "{}", page.text());
        let page = page.json();
        let rows = page["requests"].as_array().unwrap().clone();
        assert!(rows.len() <= 4);
        seen.extend(
            rows.iter()
                .map(|r| (r["ts"].as_str().unwrap().parse::<u64>().unwrap(), r["id"].as_str().unwrap().to_string())),
        );
        match page["next"].as_str() {
            Some(next) => path = format!("/admin/requests?limit=4&before={next}"),
            None => break,
        }
    }
    assert_eq!(seen.len(), 9, "{seen:?}");
    assert!(seen.windows(2).all(|w| w[0] > w[1]), "newest first, no repeats: {seen:?}");
    // Filters.
    let refused_rows = admin_get(admin, "/admin/requests?status=401").json();
    assert_eq!(refused_rows["requests"].as_array().unwrap().len(), 1);
    assert_eq!(refused_rows["requests"][0]["end"], "rejected");
    let team = admin_get(admin, "/admin/requests?team=other&min_cost_usd=0").json();
    assert_eq!(team["requests"].as_array().unwrap().len(), 3, "{team}");
    let costly = admin_get(admin, "/admin/requests?min_cost_usd=1000").json();
    assert_eq!(costly["requests"].as_array().unwrap().len(), 0, "{costly}");
    let hostile = admin_get(admin, "/admin/requests?team=%27%20OR%201%3D1%20--");
    assert_eq!((hostile.status, hostile.json()["requests"].as_array().unwrap().len()), (200, 0), "{}", hostile.text());
    assert_eq!(admin_get(admin, "/admin/requests?status=abc").status, 400);
    // One request: its record, as written.
    let id = refused.header("x-request-id").unwrap();
    let detail = admin_get(admin, &format!("/admin/requests?id={id}"));
    assert_eq!(detail.status, 200, "{}", detail.text());
    assert_eq!(detail.json()["id"], id);
    assert_eq!(detail.json()["status"], 401);
    assert_eq!(admin_get(admin, "/admin/requests?id=tg-none").status, 404);
    // A captured request's detail: its bodies from their table for the
    // operator and a viewer granted them, withheld from another viewer.
    let captured = admin_get(admin, "/admin/requests?team=e2e&limit=1").json()["requests"][0]["id"]
        .as_str()
        .expect("an e2e request")
        .to_string();
    wait_until(Duration::from_secs(15), "the bodies' rows", || {
        ch.query("SELECT count() FROM default.tollgate_requests_bodies").is_some_and(|n| n.trim() == "8")
    });
    let full = admin_get(admin, &format!("/admin/requests?id={captured}")).json();
    assert!(full["capture"]["prompt"].as_str().is_some_and(|p| p.contains("Say hello")), "{full}");
    let audited = admin_get_as(admin, &format!("/admin/requests?id={captured}"), AUDITOR).json();
    assert_eq!(audited["capture"], full["capture"]);
    let viewed = admin_get_as(admin, &format!("/admin/requests?id={captured}"), VIEWER);
    assert!(!viewed.text().contains("Say hello") && viewed.json()["capture_withheld"] == true, "{}", viewed.text());
    // The audit report.
    let csv = admin_get(admin, "/admin/requests?format=csv&team=e2e");
    assert_eq!(csv.header("content-type"), Some("text/csv; charset=utf-8"));
    let text = csv.text();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("\"ts\",\"id\",\"team\""), "{text}");
    assert_eq!(lines.len(), 1 + 5, "{text}");
    // A run id that begins with `@` is written `'@...`: no formula.
    assert!(text.contains("\"'@SUM-1\"") && !text.contains(",\"@"), "{text}");
    let jsonl = admin_get(admin, "/admin/requests?format=jsonl").text();
    assert_eq!(jsonl.lines().count(), 9);
    // A viewer of team e2e: its five, never the others', even when it asks.
    let mine = admin_get_as(admin, "/admin/requests?limit=100", VIEWER);
    assert_eq!(mine.status, 200, "{}", mine.text());
    let mine = mine.json();
    let mine = mine["requests"].as_array().unwrap();
    assert_eq!(mine.len(), 5);
    assert!(mine.iter().all(|r| r["team"] == "e2e"));
    let theirs = admin_get_as(admin, "/admin/requests?team=other", VIEWER).json();
    assert_eq!(theirs["requests"].as_array().unwrap().len(), 0);
    let other_id = seen.iter().map(|(_, id)| id).find(|id| !mine.iter().any(|r| r["id"] == id.as_str())).unwrap();
    assert_eq!(admin_get_as(admin, &format!("/admin/requests?id={other_id}"), VIEWER).status, 404);
    assert_eq!(admin_get_as(admin, "/admin/requests?format=csv", VIEWER).text().lines().count(), 1 + 5);

    // The dashboard's Requests table, rendered by headless Chromium for
    // each role.
    let dom_as = |token: &str| dashboard_dom(admin, token);
    let Some(dom) = dom_as(VIEWER) else { return };
    assert_eq!(dom.matches(r#"class="x-row""#).count(), 5, "the viewer's page lists its team's requests:\n{dom}");
    assert!(!dom.contains("<td>other</td>"), "and none of the other team's:\n{dom}");
    let dom = dom_as(ADMIN_TOKEN).expect("chromium, as above");
    assert_eq!(dom.matches(r#"class="x-row""#).count(), 9, "the operator's page lists all:\n{dom}");
    assert!(dom.contains("<td>(no valid key)</td>") && dom.contains("<td>other</td>"), "{dom}");
}

/// Pages through rows spread over days (three to a millisecond, so that
/// pages end inside a tie) match one direct `ORDER BY ts DESC, id DESC`,
/// with and without filters; a ClickHouse that is gone is a 502.
#[test]
fn explorer_pages_match_a_direct_query_across_days() {
    let Some(ch) = ClickHouse::start() else { return };
    let mock = start_mock(&[]);
    let logs = TempDir::new("ch-pages");
    let gw = start_gateway(&config(mock.addr, ch.http, &logs), &[], &[]);
    let admin = gw.admin.expect("admin listener");
    // One real request makes the table.
    assert_eq!(one_request(gw.addr, &chat_request(SMALL_CHAT, "")).status, 200);
    wait_until(Duration::from_secs(15), "the table", || ch.count() >= 1);
    let insert = "INSERT INTO default.tollgate_requests (date, ts, id, team, status, `end`, record) \
        SELECT toDate(intDiv(1795000000000 + intDiv(number, 3) * 300000, 1000)), 1795000000000 + intDiv(number, 3) * 300000, \
        concat('syn-', toString(number % 3), '-', toString(number)), if(number % 2 = 0, 'e2e', 'other'), \
        if(number % 7 = 0, 429, 200), 'completed', '{}' FROM numbers(3000)";
    assert!(ch.query(insert).is_some(), "the rows went in");
    let walk = |filter: &str, limit: usize| -> Vec<(u64, String)> {
        let mut seen = Vec::new();
        let mut path = format!("/admin/requests?limit={limit}{filter}");
        loop {
            let page = admin_get(admin, &path);
            assert_eq!(page.status, 200, "{path}: {}", page.text());
            let page = page.json();
            let rows = page["requests"].as_array().unwrap();
            assert!(rows.len() <= limit);
            seen.extend(
                rows.iter()
                    .map(|r| (r["ts"].as_str().unwrap().parse().unwrap(), r["id"].as_str().unwrap().to_string())),
            );
            match page["next"].as_str() {
                Some(next) => path = format!("/admin/requests?limit={limit}{filter}&before={next}"),
                None => return seen,
            }
        }
    };
    let direct = |filter: &str| -> Vec<(u64, String)> {
        ch.rows(&format!("SELECT ts, id FROM default.tollgate_requests {filter} ORDER BY ts DESC, id DESC"))
            .iter()
            .map(|r| (r["ts"].as_str().unwrap().parse().unwrap(), r["id"].as_str().unwrap().to_string()))
            .collect()
    };
    // Over three and a half days, from the real request back.
    assert_eq!(walk("", 50), direct(""));
    let (since, until) = (1795000000000u64 + 86_400_000, 1795000000000u64 + 2 * 86_400_000 + 1234);
    assert_eq!(
        walk(&format!("&team=other&status=429&since={since}&until={until}"), 7),
        direct(&format!("WHERE team = 'other' AND status = 429 AND ts >= {since} AND ts < {until}"))
    );
    drop(ch);
    let gone = admin_get(admin, "/admin/requests");
    assert_eq!(gone.status, 502, "{}", gone.text());
    assert_eq!(gone.json()["error"]["code"], "clickhouse_error");
}

/// What a ClickHouse exception says, in a tenant's model name, is a row
/// like any other: pages and exports serve it (a failure half-way through
/// a query is told by its status, `wait_end_of_query`, not by searching
/// the rows for those words, which would let a tenant hide its requests
/// from the explorer by naming such a model).
#[test]
fn a_model_named_like_a_clickhouse_exception_is_served_like_any_row() {
    let Some(ch) = ClickHouse::start() else { return };
    let mock = start_mock(&[]);
    let logs = TempDir::new("ch-exception-name");
    let gw = start_gateway(&config(mock.addr, ch.http, &logs), &[], &[]);
    let admin = gw.admin.expect("admin listener");
    let name = "Code: 395, e.displayText() = DB::Exception: hidden";
    let body = SMALL_CHAT.replace("gpt-4o-mini", name);
    assert_ne!(body, SMALL_CHAT);
    assert_eq!(one_request(gw.addr, &chat_request(&body, "")).status, 404);
    assert_eq!(one_request(gw.addr, &chat_request(SMALL_CHAT, "")).status, 200);
    wait_until(Duration::from_secs(15), "two rows", || ch.count() >= 2);
    let page = admin_get(admin, "/admin/requests");
    assert_eq!(page.status, 200, "{}", page.text());
    let rows = page.json()["requests"].as_array().unwrap().clone();
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert!(rows.iter().any(|r| r["model"] == name), "{rows:?}");
    let csv = admin_get(admin, "/admin/requests?format=csv");
    assert_eq!(csv.status, 200, "{}", csv.text());
    assert!(csv.text().contains("DB::Exception: hidden"), "{}", csv.text());
}
