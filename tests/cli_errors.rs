//! Configuration, logging and start-up errors as a user meets them through the binary:
//! each said once, with where it is; secrets never echoed; logs without ANSI colours
//! when standard error is not a terminal; the demo stopping cleanly.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn keypulse() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_keypulse"));
    c.env_remove("RUST_LOG").env_remove("KEYPULSE_CONFIG");
    c
}

/// Runs to the end; (success, stderr).
fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd.stdin(Stdio::null()).output().expect("run keypulse");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn config(text: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keypulse.toml");
    std::fs::write(&path, text).unwrap();
    (dir, path)
}

#[test]
fn a_missing_config_file_is_said_once() {
    let (ok, err) = run(keypulse().args(["--config", "/nonexistent/keypulse.toml", "replay", "-"]));
    assert!(!ok);
    assert!(err.contains("/nonexistent/keypulse.toml"), "{err}");
    assert_eq!(err.matches("No such file").count(), 1, "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn a_bad_log_level_is_said_once() {
    let (_dir, path) = config("[log]\nlevel = \"keypulse=verbose\"\n");
    let (ok, err) = run(keypulse().arg("--config").arg(&path).args(["replay", "-"]));
    assert!(!ok);
    assert!(
        err.contains("log.level") && err.contains("keypulse=verbose"),
        "{err}"
    );
    assert_eq!(
        err.matches("error parsing level filter").count(),
        1,
        "{err}"
    );
}

#[test]
fn toml_syntax_errors_carry_line_and_column() {
    let (_dir, path) = config("[kafka]\ngroup_id = \"g\"\nbrokers = \n");
    let (ok, err) = run(keypulse().arg("--config").arg(&path).args(["replay", "-"]));
    assert!(!ok);
    assert!(err.contains("line 3, column 11"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn an_invalid_rust_log_is_an_error() {
    let (ok, err) = run(keypulse().arg("run").env("RUST_LOG", "keypulse=verbose"));
    assert!(!ok);
    assert!(
        err.contains("RUST_LOG") && err.contains("keypulse=verbose"),
        "{err}"
    );
    assert_eq!(
        err.matches("error parsing level filter").count(),
        1,
        "{err}"
    );
}

#[test]
fn environment_overrides_take_their_keys_type_and_hide_secrets() {
    // A string key given digits is a string: the replay runs.
    let (ok, err) = run(keypulse()
        .args(["replay", "-"])
        .env("KEYPULSE__KAFKA__GROUP_ID", "12345")
        .env("KEYPULSE__EMAIL__SMTP__USERNAME", "1001")
        .env("KEYPULSE__KAFKA__PROPERTIES__FETCH.MAX.BYTES", "1048576")
        .env("KEYPULSE__KAFKA__PROPERTIES__SASL.PASSWORD", "987654321"));
    assert!(ok, "{err}");
    // A secret in a bad place: named, never printed.
    let (_dir, path) = config("[kafka.properties]\n\"sasl.password\" = 987654321\n");
    let (ok, err) = run(keypulse().arg("--config").arg(&path).args(["replay", "-"]));
    assert!(!ok);
    assert!(err.contains("kafka.properties.sasl.password"), "{err}");
    assert!(!err.contains("987654321"), "{err}");
    // A number key given a word: named.
    let (ok, err) = run(keypulse()
        .args(["replay", "-"])
        .env("KEYPULSE__KAFKA__FOLD_WORKERS", "many"));
    assert!(!ok);
    assert!(err.contains("KEYPULSE__KAFKA__FOLD_WORKERS"), "{err}");
}

#[test]
fn text_logs_have_no_colours_off_a_terminal() {
    // Nothing listens on the broker address: the service logs, then gives up.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (_dir, path) = config(&format!(
        "[kafka]\nbrokers = \"127.0.0.1:{port}\"\nconnect_timeout_ms = 1500\n\
         [http]\nbind = \"127.0.0.1:0\"\n[log]\nformat = \"text\"\nlevel = \"info\"\n"
    ));
    let (ok, err) = run(keypulse()
        .arg("--config")
        .arg(&path)
        .args(["run", "--dry-run"]));
    assert!(!ok, "no broker: {err}");
    assert!(err.contains("INFO") || err.contains("WARN"), "{err}");
    assert!(!err.contains('\u{1b}'), "ANSI escape in: {err:?}");
}

#[test]
fn a_demo_that_cannot_start_says_only_why() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = tempfile::tempdir().unwrap();
    let (ok, err) = run(keypulse()
        .args([
            "demo",
            "--customers",
            "5",
            "--history-days",
            "1",
            "--outbox",
        ])
        .arg(out.path())
        .env("KEYPULSE__HTTP__BIND", &addr));
    assert!(!ok);
    assert!(err.contains("http.bind") && err.contains(&addr), "{err}");
    assert!(!err.contains("AllBrokersDown"), "{err}");
    assert!(!err.contains("ERROR"), "{err}");
}

#[test]
fn sigterm_during_the_demo_upload_exits_cleanly() {
    let out = tempfile::tempdir().unwrap();
    let mut child = keypulse()
        .args([
            "demo",
            "--customers",
            "50000",
            "--history-days",
            "60",
            "--outbox",
        ])
        .arg(out.path())
        .env("KEYPULSE__HTTP__BIND", "127.0.0.1:0")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut first = String::new();
    stderr.read_line(&mut first).unwrap();
    assert!(first.contains("sending 60 days of history"), "{first}");
    std::thread::sleep(Duration::from_millis(500));
    let t0 = Instant::now();
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
    let status = child.wait().unwrap();
    assert!(
        t0.elapsed() < Duration::from_secs(10),
        "took {:?} to stop",
        t0.elapsed()
    );
    assert!(status.success(), "{status}: {rest}");
    assert!(rest.contains("SIGTERM while sending the history"), "{rest}");
    assert!(
        !rest.contains("history events sent"),
        "the upload was cut short: {rest}"
    );
}
