//! The daemon through the real binary: `--help`, configuration errors, and a run against
//! the fake API and the real RabbitMQ that ends with SIGTERM or SIGINT.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::json;

use attune_testkit::daemon::{remove_test_state_dir, test_env, test_state_dir};
use attune_testkit::fake_api::{FakeApi, FakeOptions};

const BIN: &str = env!("CARGO_BIN_EXE_attune-core-timer-sensor");

/// A command with none of the test process's ATTUNE_* variables.
fn bare() -> Command {
    let mut cmd = Command::new(BIN);
    for (key, _) in std::env::vars() {
        if key.starts_with("ATTUNE_") {
            cmd.env_remove(key);
        }
    }
    cmd
}

#[test]
fn help_documents_every_setting() {
    let out = bare().arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for needle in [
        "--stdin-config",
        "-l, --log-level",
        "--log-format",
        "--component",
        "ATTUNE_TIMER_COMPONENT",
        "--rules",
        "--sink",
        "check",
        "ATTUNE_API_URL",
        "ATTUNE_API_TOKEN",
        "ATTUNE_SENSOR_REF",
        "ATTUNE_MQ_URL",
        "ATTUNE_MQ_EXCHANGE",
        "default: attune",
        "ATTUNE_NOTIFIER_WS_URL",
        "ATTUNE_ALLOW_INSECURE_NOTIFIER_WS",
        "ATTUNE__SENSOR__ALLOW_INSECURE_NOTIFIER_WS",
        "ATTUNE_RESYNC_INTERVAL_SECS",
        "ATTUNE_MAX_MESSAGE_BYTES",
        "ATTUNE_MAX_RULE_PARAMS_BYTES",
        "ATTUNE_STATE_DIR",
        "--state-dir",
        "ATTUNE_OUTBOX_MAX_AGE",
        "ATTUNE_OUTBOX_MAX_BYTES",
        "ATTUNE_MISFIRE",
        "ATTUNE_MISFIRE_GRACE",
        "ATTUNE_ADMIN_ADDR",
        "--admin-addr",
        "default: 127.0.0.1:8971",
        "ATTUNE_READY_MAX_OUTBOX_AGE",
        "ATTUNE_LOG_LEVEL",
        "default: info",
        "ATTUNE_LOG_FORMAT",
        "default: json",
        "ATTUNE_SENSOR_TRIGGERS",
        "ATTUNE_TIMER_MAX_MEMORY_MB",
        "ATTUNE_TIMER_CALL_DEADLINE_MS",
        "ATTUNE_TIMER_MAX_PAYLOAD_BYTES",
        "ATTUNE_TIMER_CACHE_DIR",
        "ATTUNE_OUTBOX_CAPACITY",
        "default: 100000",
        "ATTUNE_OUTBOX_CONCURRENCY",
        "default: 64",
        "SIGTERM",
    ] {
        assert!(
            help.contains(needle),
            "--help does not mention {needle}:\n{help}"
        );
    }
}

#[test]
fn configuration_errors_go_to_stderr_with_a_non_zero_exit() {
    let out = bare().output().unwrap();
    assert!(!out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        "Error: ATTUNE_API_URL environment variable is required"
    );

    let out = bare()
        .envs([
            ("ATTUNE_API_URL", "ftp://x"),
            ("ATTUNE_API_TOKEN", "t"),
            ("ATTUNE_SENSOR_REF", "core.timer_sensor"),
            ("ATTUNE_MQ_URL", "amqp://localhost"),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("api_url must start with http:// or https://"));

    let mut child = bare()
        .arg("--stdin-config")
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"{not json").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("Failed to parse JSON configuration from stdin"));
}

/// Deletes a daemon's queue, exchange and per-test state directory when the test ends,
/// however it ends.
struct Cleanup(std::collections::HashMap<String, String>);

impl Cleanup {
    fn of(env: &std::collections::HashMap<String, String>) -> Cleanup {
        Cleanup(env.clone())
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        attune_testkit::daemon::delete_now(
            format!("sensor.{}", self.0["ATTUNE_SENSOR_REF"]),
            self.0["ATTUNE_MQ_EXCHANGE"].clone(),
        );
        if let Some(dir) = self.0.get("ATTUNE_STATE_DIR") {
            remove_test_state_dir(std::path::Path::new(dir));
        }
    }
}

/// Runs the binary until it logs readiness, sends `sig`, and checks a clean exit.
fn run_until_signal(sig: &str) {
    let api = FakeApi::start(FakeOptions::default());
    api.add_rule(1, "core.intervaltimer", json!({"interval": 1}), true);
    let env = test_env(&api, &[]);
    let _cleanup = Cleanup::of(&env);
    let (mut child, mut lines, rest) = spawn_ready(&env);
    // Let the rule fire once.
    let fired = Instant::now();
    while api.events().is_empty() {
        assert!(fired.elapsed() < Duration::from_secs(5), "the rule fired");
        std::thread::sleep(Duration::from_millis(20));
    }
    let status = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            fired.elapsed() < Duration::from_secs(20),
            "exited after {sig}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    // The reader ends with the child's stderr.
    lines.extend(rest.iter());
    let log = lines.join("\n");
    assert!(exit.success(), "exit 0 after {sig}: {exit}\n{log}");
    for needle in [
        "Starting Attune Timer Sensor",
        "API connectivity verified",
        "Shutdown signal received",
        "Shutting down",
        "Timer sensor has shut down gracefully",
    ] {
        assert!(log.contains(needle), "no {needle:?} in\n{log}");
    }
    assert!(
        !log.contains(&env["ATTUNE_API_TOKEN"]),
        "the token is never logged"
    );
    for line in &lines {
        serde_json::from_str::<serde_json::Value>(line)
            .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
    }
}

#[test]
fn sigterm_stops_the_daemon_cleanly() {
    run_until_signal("-TERM");
}

#[test]
fn sigint_stops_the_daemon_cleanly() {
    run_until_signal("-INT");
}

/// SIGTERM while the daemon is still starting (here: waiting on an API that accepts the
/// connection and never answers) ends it cleanly with exit 0, not killed by the signal.
#[test]
fn sigterm_during_startup_exits_cleanly() {
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let api_url = format!("http://{}", silent.local_addr().unwrap());
    let accepted = std::thread::spawn(move || silent.accept().map(|(conn, _)| conn));
    let mut child = bare()
        .env("ATTUNE_API_URL", &api_url)
        .env("ATTUNE_API_TOKEN", attune_testkit::daemon::default_token())
        .env("ATTUNE_SENSOR_REF", "core.timer_sensor")
        .env("ATTUNE_MQ_URL", "amqp://guest:guest@127.0.0.1:5672/%2f")
        // Never the user's own state directory (the start does not get that far anyway).
        .env("ATTUNE_STATE_DIR", test_state_dir())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Once the health check's connection is accepted, the daemon is inside its start-up.
    let _conn = accepted
        .join()
        .unwrap()
        .expect("the daemon connects to the API");
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let started = Instant::now();
    let exit = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "exits soon after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut log = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut log).unwrap();
    assert!(
        exit.success(),
        "exit 0, not killed by the signal: {exit}\n{log}"
    );
    assert!(log.contains("Shutdown signal received"), "{log}");
    assert!(log.contains("Start-up abandoned"), "{log}");
}

/// Starts the binary and waits for its readiness line; returns it with its stderr lines.
/// (Returns the stderr lines up to the readiness line, and a receiver of the rest.)
fn spawn_ready(
    env: &std::collections::HashMap<String, String>,
) -> (std::process::Child, Vec<String>, mpsc::Receiver<String>) {
    let mut child = bare()
        .envs(env)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel::<String>();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = Vec::new();
    loop {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("the daemon logs readiness");
        let ready = line.contains("Timer sensor ready");
        seen.push(line);
        if ready {
            return (child, seen, rx);
        }
    }
}

/// `(rule id, scheduled_at)` of event bodies.
fn ticks<'a>(
    bodies: impl Iterator<Item = &'a serde_json::Value>,
) -> std::collections::BTreeSet<(String, String)> {
    bodies
        .map(|b| {
            (
                b["trigger_instance_id"].as_str().unwrap().to_string(),
                b["payload"]["scheduled_at"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// SIGKILL while events are pending in an API outage: after a restart every one of them
/// arrives. Ten rules fire every second against an API that answers 503 to every event;
/// the daemon is killed half a second after a tick (so every fire before it was journaled,
/// which takes milliseconds), then started again on the same state directory with the API
/// healthy.
#[test]
fn sigkill_during_an_outage_loses_no_pending_event() {
    let api = FakeApi::start(FakeOptions::default());
    api.fail_next_events(1_000_000, 503);
    for id in 1..=10 {
        api.add_rule(
            id,
            "core.crontimer",
            json!({"expression": "* * * * * *"}),
            true,
        );
    }
    let env = test_env(&api, &[]);
    let _cleanup = Cleanup::of(&env);
    let (mut child, _, _logs) = spawn_ready(&env);
    // Three ticks of ten rules, all failing; then half a second past a whole second.
    let started = Instant::now();
    while ticks(
        api.requests_to("/api/v1/events")
            .iter()
            .filter_map(|r| r.body.as_ref()),
    )
    .len()
        < 30
    {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "fires are attempted"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let sub = chrono::Utc::now().timestamp_subsec_millis();
    std::thread::sleep(Duration::from_millis(u64::from((1500 - sub) % 1000)));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let pending = ticks(
        api.requests_to("/api/v1/events")
            .iter()
            .filter_map(|r| r.body.as_ref()),
    );
    assert!(
        api.events().is_empty(),
        "nothing was delivered before the kill"
    );

    api.clear_event_failures();
    let (mut child, first_lines, _logs) = spawn_ready(&env);
    let started = Instant::now();
    loop {
        let delivered = ticks(api.events().iter().map(|e| &e.body));
        let missing: Vec<_> = pending.difference(&delivered).collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{} of {} pending events never arrived, e.g. {:?}",
            missing.len(),
            pending.len(),
            missing.first()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(child.wait().unwrap().success());
    assert!(
        first_lines
            .iter()
            .any(|l| l.contains("The previous run did not stop cleanly")),
        "the restart says the kill was not a clean stop"
    );
}

/// Under systemd (`Type=notify`): `READY=1` once the rules are loaded, `WATCHDOG=1` at
/// half the watchdog interval while the clock turns, `STOPPING=1` at SIGTERM — through a
/// notification socket of the test's own, as systemd passes one in `NOTIFY_SOCKET`. The
/// admin listener of the real binary answers meanwhile.
#[test]
fn systemd_hears_ready_watchdog_and_stopping() {
    use std::os::unix::net::UnixDatagram;
    let api = FakeApi::start(FakeOptions::default());
    api.add_rule(1, "core.intervaltimer", json!({"interval": 1}), true);
    let dir = tempfile::tempdir().unwrap();
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut env = test_env(&api, &[]);
    env.insert("NOTIFY_SOCKET".into(), socket_path.display().to_string());
    // One second: a ping every half second.
    env.insert("WATCHDOG_USEC".into(), "1000000".into());
    let _cleanup = Cleanup::of(&env);
    let (mut child, lines, _rest) = spawn_ready(&env);

    let mut heard: Vec<String> = Vec::new();
    let listen = |heard: &mut Vec<String>, until: &dyn Fn(&[String]) -> bool, within: Duration| {
        let deadline = Instant::now() + within;
        let mut buf = [0u8; 512];
        while !until(heard) && Instant::now() < deadline {
            if let Ok(n) = socket.recv(&mut buf) {
                heard.push(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
        }
    };
    listen(
        &mut heard,
        &|h| h.iter().filter(|m| m.contains("WATCHDOG=1")).count() >= 3,
        Duration::from_secs(10),
    );
    let ready_at = heard.iter().position(|m| m.contains("READY=1"));
    assert!(ready_at.is_some(), "READY=1 was sent: {heard:?}");
    let pings = heard.iter().filter(|m| m.contains("WATCHDOG=1")).count();
    assert!(pings >= 3, "the watchdog is petted: {heard:?}");
    assert!(
        heard.iter().position(|m| m.contains("WATCHDOG=1")) > ready_at,
        "pings follow readiness: {heard:?}"
    );
    assert!(
        !api.requests_to("/api/v1/rules").is_empty(),
        "readiness came after the rules were listed"
    );

    // The real binary's admin listener, on the port it chose and logged.
    let admin = lines
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|l| {
            l["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("Admin listener on"))
        })
        .find_map(|l| l["admin_addr"].as_str().map(str::to_string))
        .expect("the admin listener's address is logged");
    let mut conn = std::net::TcpStream::connect(&admin).unwrap();
    conn.write_all(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    std::io::Read::read_to_string(&mut conn, &mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    listen(
        &mut heard,
        &|h| h.iter().any(|m| m.contains("STOPPING=1")),
        Duration::from_secs(10),
    );
    assert!(
        heard.iter().any(|m| m.contains("STOPPING=1")),
        "STOPPING=1 was sent: {heard:?}"
    );
    let started = Instant::now();
    let exit = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "exits");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(exit.success());
}
