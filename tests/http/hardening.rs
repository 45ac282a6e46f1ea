//! Hostile clients against a real `keypulse run` (with its own Kafka topic): slowloris,
//! authentication, paging and JSON errors.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common;
use crate::common::kafka::*;

/// A token long enough for the service's minimum.
const TOKEN: &str = "hardening-test-token-0123456789abcdef";

/// `config_toml` with more keys in its `[http]` section, and the email decisions kept in
/// memory: these tests send no email, and several instances starting at once on a fresh
/// broker would race to create the notifications topic.
fn with_http(config: String, keys: &str) -> String {
    config.replacen("[http]\n", &format!("[http]\n{keys}\n"), 1)
        + "[email]\ndecision_log = \"memory\"\n"
}

/// Starts `keypulse run` on a topic of its own (`partitions`, with `fixture`'s events if
/// given), the token in a file, and `http_keys` added to `[http]`.
fn start(
    brokers: &str,
    name: &str,
    partitions: i32,
    fixture: Option<&str>,
    http_keys: &str,
) -> (Instance, tempfile::TempDir) {
    let topic = unique(name);
    create_topic(brokers, &topic, partitions);
    if let Some(f) = fixture {
        produce(brokers, &topic, &lines(&common::fixture_events(f)));
    }
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let base = config_toml(
        brokers,
        &topic,
        &format!("{topic}-g"),
        &format!("{topic}.dlq"),
        "",
    );
    let keys = format!(
        "{http_keys}auth_token_file = \"{}\"\n",
        token_file.display()
    );
    let mut inst = Instance::start(name, &with_http(base, &keys));
    inst.wait_ready(Duration::from_secs(180));
    (inst, dir)
}

/// The admin listener's address, from the "listening" log line.
fn admin_addr(inst: &Instance) -> String {
    for line in inst.log.lock().unwrap().iter() {
        if let Ok(v) = serde_json::from_str::<Value>(line) {
            if v["message"] == "listening" {
                let a = v["admin_addr"].as_str().unwrap_or("none").to_string();
                assert_ne!(a, "none", "no admin listener: {line}");
                return a;
            }
        }
    }
    panic!("no `listening` line in the log:\n{}", inst.log_text());
}

/// GET with an optional bearer token: status, `WWW-Authenticate`, body (JSON or string).
fn call(url: &str, token: Option<&str>, timeout: Duration) -> (u16, Option<String>, Value) {
    let client = reqwest::blocking::Client::builder()
        .timeout(timeout)
        .build()
        .unwrap();
    let mut req = client.get(url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let r = req.send().unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = r.status().as_u16();
    let www = r
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_string());
    let text = r.text().unwrap_or_default();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, www, body)
}

fn authed(inst: &Instance, path: &str) -> (u16, Value) {
    let (s, _, v) = call(&inst.url(path), Some(TOKEN), Duration::from_secs(60));
    (s, v)
}

/// A 4xx with a JSON body whose `error` mentions `needle`.
fn assert_json_error(what: &str, got: (u16, Value), status: u16, needle: &str) {
    let (s, body) = got;
    assert_eq!(s, status, "{what}: {body}");
    let e = body["error"]
        .as_str()
        .unwrap_or_else(|| panic!("{what}: not a JSON error body: {body}"));
    assert!(e.contains(needle), "{what}: {e:?} lacks {needle:?}");
}

/// A sample's value in a Prometheus text (0 when absent).
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0.0)
}

fn instant(s: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(s)
        .unwrap()
        .timestamp_micros()
}

/// Raises this process's open-file limit to at least `want` (children inherit it).
fn raise_nofile(want: libc::rlim_t) {
    // SAFETY: plain libc calls on a struct of ours.
    unsafe {
        let mut l = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut l), 0);
        if l.rlim_cur < want {
            assert!(
                l.rlim_max >= want,
                "the hard open-file limit {} is below the {want} this test needs",
                l.rlim_max
            );
            l.rlim_cur = want;
            assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &l), 0);
        }
    }
}

/// Opens `n` connections to `addr` in the background, each with half a request line and
/// then silence (a slowloris); yields those that connected and wrote within 90 s.
fn attack(
    addr: std::net::SocketAddr,
    n: usize,
) -> std::thread::JoinHandle<Vec<std::net::TcpStream>> {
    std::thread::spawn(move || {
        runtime().block_on(async {
            let mut set = tokio::task::JoinSet::new();
            for _ in 0..n {
                set.spawn(async move {
                    let mut s = tokio::time::timeout(
                        Duration::from_secs(90),
                        tokio::net::TcpStream::connect(addr),
                    )
                    .await
                    .ok()?
                    .ok()?;
                    tokio::io::AsyncWriteExt::write_all(&mut s, b"GET /api/v1/report HT")
                        .await
                        .ok()?;
                    s.into_std().ok()
                });
            }
            let mut out = Vec::new();
            while let Some(r) = set.join_next().await {
                out.extend(r.unwrap());
            }
            out
        })
    })
}

#[test]
fn slowloris_connections_are_timed_out_while_the_admin_probes_answer() {
    let Some(brokers) = brokers("slowloris") else {
        return;
    };
    const HELD: usize = 2000;
    const CAP: usize = 1000;
    raise_nofile((3 * HELD + 1024) as libc::rlim_t);
    let (mut inst, _dir) = start(
        &brokers,
        "slowloris",
        1,
        None,
        &format!(
            "admin_bind = \"127.0.0.1:0\"\nadmin_max_connections = 4\n\
             header_read_timeout_ms = 8000\nmax_connections = {CAP}\n"
        ),
    );
    let admin = admin_addr(&inst);
    let main: std::net::SocketAddr = inst.addr.parse().unwrap();
    assert_eq!(authed(&inst, "/api/v1/summary").0, 200);

    // Half a request line on each connection, then silence, in two waves of at most the
    // listen backlog (tokio's 1024) each: the first fills the cap; the second, opened once
    // the server holds the first, waits in the accept queue and gets in only as the server
    // times the held ones out. Neither wave can overflow the kernel's queues, so every
    // connection the client holds is one the server accepts (a burst of all 2000 at once
    // could find the accept queue full while the server was still accepting the first
    // wave: the kernel completes such a connection on the client's side and drops it on
    // the server's, which never counts it).
    const BACKLOG: usize = 1024;
    const { assert!(CAP <= BACKLOG && HELD - CAP <= BACKLOG) };
    let first = attack(main, CAP);
    let metrics_url = format!("http://{admin}/metrics");
    let open_main = || {
        let (s, _, text) = call(&metrics_url, None, Duration::from_secs(10));
        assert_eq!(
            s, 200,
            "admin /metrics while the main listener is saturated"
        );
        sample(
            text.as_str().unwrap_or_default(),
            "keypulse_http_open_connections{listener=\"main\"}",
        ) as usize
    };
    // The fault happened: the main listener is at its cap.
    wait_for(
        "the main listener at its cap",
        Duration::from_secs(30),
        || (open_main() == CAP).then_some(()),
    );
    let second = attack(main, HELD - CAP);

    // The admin listener answers meanwhile (a liveness bound, not a benchmark).
    for path in ["/healthz", "/readyz", "/healthz", "/metrics", "/healthz"] {
        let t0 = Instant::now();
        let (s, _, _) = call(
            &format!("http://{admin}{path}"),
            None,
            Duration::from_secs(10),
        );
        assert_eq!(s, 200, "admin {path} while the main listener is saturated");
        eprintln!("admin {path}: {:?}", t0.elapsed());
    }
    // It serves the probes only.
    let (s, _, body) = call(
        &format!("http://{admin}/api/v1/report"),
        Some(TOKEN),
        Duration::from_secs(10),
    );
    assert_eq!(s, 404, "{body}");
    // Still saturated: the API request below queues behind the attackers' connections.
    assert_eq!(open_main(), CAP, "the cap was not held through the probes");

    // The API answers again once the header timeout has closed the attackers' connections.
    let t0 = Instant::now();
    let (s, _, _) = call(
        &inst.url("/api/v1/summary"),
        Some(TOKEN),
        Duration::from_secs(120),
    );
    assert_eq!(s, 200);
    eprintln!("the API answered again after {:?}", t0.elapsed());

    let mut held = first.join().unwrap();
    held.extend(second.join().unwrap());
    eprintln!("held {} half-open connections", held.len());
    assert!(
        held.len() >= HELD * 9 / 10,
        "only {} of {HELD} connections opened within 90 s (beyond the cap, only the listen \
         backlog's worth get in until the server times the held ones out)",
        held.len()
    );
    let rt = runtime();
    let held: Vec<tokio::net::TcpStream> = rt.block_on(async {
        held.into_iter()
            .map(|s| {
                s.set_nonblocking(true).unwrap();
                tokio::net::TcpStream::from_std(s).unwrap()
            })
            .collect()
    });

    // Every held connection was closed by the server (EOF or reset), none left open. The
    // bound is long because of the kernel, not the server: a connect that completed while
    // the accept queue was full may sit half-open on the server's side until a SYN-ACK or
    // data retransmission gets it in (or reset), which under load took past 60 s once
    // (39 of 2000 in one CI run). A connection the server accepts is closed within
    // `header_read_timeout_ms`.
    let still_open = rt.block_on(async {
        let mut set = tokio::task::JoinSet::new();
        for mut s in held {
            set.spawn(async move {
                let mut buf = [0u8; 512];
                loop {
                    match tokio::time::timeout(
                        Duration::from_secs(150),
                        tokio::io::AsyncReadExt::read(&mut s, &mut buf),
                    )
                    .await
                    {
                        Err(_) => return true,
                        Ok(Ok(0)) | Ok(Err(_)) => return false,
                        Ok(Ok(_)) => continue,
                    }
                }
            });
        }
        let mut open = 0;
        while let Some(r) = set.join_next().await {
            open += r.unwrap() as usize;
        }
        open
    });
    assert_eq!(still_open, 0, "connections the server never closed");
    let (_, _, text) = call(&metrics_url, None, Duration::from_secs(10));
    let text = text.as_str().unwrap_or_default().to_string();
    assert!(
        sample(&text, "keypulse_http_connections_total{listener=\"main\"}") >= HELD as f64 * 0.9
    );
    let closed = sample(
        &text,
        "keypulse_http_connections_closed_total{listener=\"main\",reason=\"header_timeout\"}",
    ) + sample(
        &text,
        "keypulse_http_connections_closed_total{listener=\"main\",reason=\"no_request\"}",
    );
    assert!(
        closed >= (HELD * 9 / 10) as f64,
        "only {closed} connections closed for a timeout:\n{text}"
    );
    assert!(!inst.log_text().contains(TOKEN), "the token is in the log");
    inst.stop(Duration::from_secs(15));
}

#[test]
fn a_token_guards_the_api_and_the_dashboard_data_not_the_probes() {
    let Some(brokers) = brokers("auth") else {
        return;
    };
    let (mut inst, _dir) = start(
        &brokers,
        "auth",
        1,
        None,
        "admin_bind = \"127.0.0.1:0\"\nmetrics_require_auth = true\n",
    );
    let admin = admin_addr(&inst);
    let t = Duration::from_secs(30);
    for path in [
        "/api/v1/report",
        "/api/v1/summary",
        "/api/v1/churn-risk",
        "/api/v1/upgrade-pipeline",
        "/api/v1/notifications",
        "/api/v1/customers/c1",
        "/metrics",
    ] {
        let url = inst.url(path);
        let (s, www, body) = call(&url, None, t);
        assert_eq!(s, 401, "{path} without a token: {body}");
        assert!(
            body["error"].as_str().unwrap().contains("missing token"),
            "{body}"
        );
        assert!(www.unwrap().starts_with("Bearer"), "{path}");
        let (s, _, body) = call(&url, Some("hardening-test-token-0123456789abcdeX"), t);
        assert_eq!(s, 401, "{path} with a wrong token: {body}");
        assert!(body["error"].as_str().unwrap().contains("wrong token"));
        let (s, _, body) = call(&url, Some(TOKEN), t);
        let want = if path == "/api/v1/customers/c1" {
            404
        } else {
            200
        };
        assert_eq!(s, want, "{path} with the token: {body}");
    }
    // The probes stay open, on both listeners; /metrics needs the token on both.
    for base in [inst.url(""), format!("http://{admin}")] {
        for path in ["/healthz", "/readyz"] {
            assert_eq!(
                call(&format!("{base}{path}"), None, t).0,
                200,
                "{base}{path}"
            );
        }
        assert_eq!(call(&format!("{base}/metrics"), None, t).0, 401);
        assert_eq!(call(&format!("{base}/metrics"), Some(TOKEN), t).0, 200);
    }
    // The dashboard's pages carry no data and stay open; they sign in by themselves.
    let (s, _, page) = call(&inst.url("/"), None, t);
    assert_eq!(s, 200);
    assert!(page.as_str().unwrap().contains("data-chart=\"mrr\""));
    let (s, _, js) = call(&inst.url("/assets/app.js"), None, t);
    assert_eq!(s, 200);
    assert!(js.as_str().unwrap().contains("'Bearer ' + t"));
    assert!(!inst.log_text().contains(TOKEN), "the token is in the log");
    inst.stop(Duration::from_secs(15));
}

#[test]
fn a_short_token_is_refused_at_start_without_showing_it() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "tiny-secret\n").unwrap();
    let path = dir.path().join("keypulse.toml");
    std::fs::write(
        &path,
        format!(
            "[http]\nbind = \"127.0.0.1:0\"\nauth_token_file = \"{}\"\n[kafka]\nbrokers = \"127.0.0.1:1\"\n",
            token_file.display()
        ),
    )
    .unwrap();
    let out = std::process::Command::new(binary())
        .arg("--config")
        .arg(&path)
        .arg("run")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("http.auth_token_file"), "{err}");
    assert!(!err.contains("tiny-secret"), "the token is shown: {err}");
}

#[test]
fn lists_are_paged_and_every_error_is_json() {
    let Some(brokers) = brokers("paging") else {
        return;
    };
    let name = "noisy";
    let (mut inst, _dir) = start(&brokers, "paging", 3, Some(name), "");
    let expected = common::fixture_report(name);
    let pipeline = expected["upgrade_pipeline"].as_array().unwrap();
    let churn = expected["health"]["churn_risk"].as_array().unwrap();
    let notes = expected["notifications"].as_array().unwrap();
    assert!(pipeline.len() > 5 && churn.len() > 3 && notes.len() > 10);
    // The snapshot that saw the whole fixture.
    wait_for("the whole fixture folded", Duration::from_secs(30), || {
        let (s, r) = authed(&inst, "/api/v1/report");
        (s == 200 && r["events"] == expected["events"]).then_some(())
    });

    // limit / offset / total
    let (s, p) = authed(&inst, "/api/v1/upgrade-pipeline?limit=2&offset=3");
    assert_eq!(s, 200, "{p}");
    assert_eq!(p["upgrade_pipeline"].as_array().unwrap(), &pipeline[3..5]);
    assert_eq!(p["total"], pipeline.len());
    assert_eq!(
        (p["limit"].as_u64(), p["offset"].as_u64()),
        (Some(2), Some(3))
    );
    let (_, p) = authed(&inst, "/api/v1/upgrade-pipeline");
    assert_eq!(p["upgrade_pipeline"].as_array().unwrap(), pipeline);
    assert_eq!(p["limit"], 100, "the default limit");
    let (_, p) = authed(&inst, "/api/v1/churn-risk?limit=1000&offset=1");
    assert_eq!(p["churn_risk"].as_array().unwrap(), &churn[1..]);
    assert_eq!(p["total"], churn.len());
    let (_, p) = authed(
        &inst,
        &format!("/api/v1/notifications?limit=4&offset={}", notes.len() - 3),
    );
    assert_eq!(p["notifications"].as_array().unwrap().len(), 3);
    assert_eq!(p["total"], notes.len());
    let (_, p) = authed(&inst, "/api/v1/churn-risk?offset=100000");
    assert!(p["churn_risk"].as_array().unwrap().is_empty());
    let (_, p) = authed(&inst, "/api/v1/churn-risk?limit=0");
    assert!(p["churn_risk"].as_array().unwrap().is_empty());
    assert_eq!(p["total"], churn.len());

    // The maximum and bad values: JSON 400s naming the parameter.
    for (q, needle) in [
        ("/api/v1/upgrade-pipeline?limit=1001", "limit"),
        ("/api/v1/upgrade-pipeline?limit=abc", "limit"),
        ("/api/v1/churn-risk?offset=-1", "offset"),
        ("/api/v1/churn-risk?limit=1.5", "limit"),
        ("/api/v1/notifications?lmit=5", "lmit"),
        ("/api/v1/summary?top=101", "top"),
        ("/api/v1/summary?top=x", "top"),
        ("/api/v1/customers/x?limit=5000", "limit"),
        ("/api/v1/report?as_of=yesterday", "as_of"),
        (
            "/api/v1/report?as_of=2020-01-01T00:00:00Z",
            "before the data",
        ),
    ] {
        assert_json_error(q, authed(&inst, q), 400, needle);
    }
    let (_, e) = authed(&inst, "/api/v1/report?as_of=2020-01-01T00:00:00Z");
    assert_eq!(
        e["earliest"].as_str().map(instant),
        expected["as_of"].as_str().map(instant)
    );
    let (s, r) = authed(
        &inst,
        &format!(
            "/api/v1/report?as_of={}",
            expected["as_of"].as_str().unwrap().replace('+', "%2B")
        ),
    );
    assert_eq!(s, 200, "{r}");
    // Unknown routes and methods.
    assert_json_error(
        "unknown route",
        authed(&inst, "/api/v1/nope"),
        404,
        "not found",
    );
    assert_json_error(
        "unknown page",
        authed(&inst, "/nope.html"),
        404,
        "not found",
    );
    let r = reqwest::blocking::Client::new()
        .post(inst.url("/api/v1/report"))
        .bearer_auth(TOKEN)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 405);
    let body: Value = r.json().unwrap();
    assert!(body["error"].is_string(), "{body}");

    // The summary: lists cut to `top`, figures from the report.
    let (s, sm) = authed(&inst, "/api/v1/summary?top=3");
    assert_eq!(s, 200, "{sm}");
    assert_eq!(sm["upgrade_pipeline"]["licenses"]["total"], pipeline.len());
    assert_eq!(
        sm["upgrade_pipeline"]["licenses"]["items"]
            .as_array()
            .unwrap(),
        &pipeline[..3]
    );
    assert_eq!(
        sm["health"]["churn_risk"]["items"].as_array().unwrap(),
        &churn[..3]
    );
    assert_eq!(sm["notifications"]["total"], notes.len());
    common::assert_same_report(
        "the latest notification",
        &notes[notes.len() - 1],
        &sm["notifications"]["latest"][0],
    );
    assert_eq!(
        sm["ttfv"], expected["ttfv"],
        "the TTFV median comes from the server"
    );
    assert_eq!(sm["dav"], expected["dav"]);

    // A customer: its licenses carry their upgrade triggers (SPEC §6 "signals").
    let e = &pipeline[0];
    let id = e["customer_id"].as_str().unwrap();
    let (s, c) = authed(&inst, &format!("/api/v1/customers/{id}"));
    assert_eq!(s, 200, "{c}");
    let lic = c["customer"]["licenses"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["license_key"] == e["license_key"])
        .expect("the pipeline's license in its customer's view");
    assert_eq!(lic["triggers"], e["triggers"]);
    assert_eq!(
        c["total"],
        c["customer"]["licenses"].as_array().unwrap().len()
    );
    for l in c["customer"]["licenses"].as_array().unwrap() {
        let listed = pipeline
            .iter()
            .find(|p| p["license_key"] == l["license_key"] && p["customer_id"] == id);
        match listed {
            Some(p) => assert_eq!(l["triggers"], p["triggers"]),
            None => assert_eq!(l["triggers"], serde_json::json!([])),
        }
    }
    let (s, c) = authed(&inst, &format!("/api/v1/customers/{id}?limit=0"));
    assert_eq!(s, 200);
    assert!(c["customer"]["licenses"].as_array().unwrap().is_empty());
    assert!(c["total"].as_u64().unwrap() >= 1);
    inst.stop(Duration::from_secs(15));
}
