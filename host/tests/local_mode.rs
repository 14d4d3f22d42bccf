//! Local mode, through the real binary: `attune-core-timer-sensor --rules FILE`.
//!
//! Timing tolerances are generous on purpose. The checks that matter are made on the
//! events' own timestamps (spacing of interval fires, delay of cron and one-shot fires),
//! which do not depend on how fast the process starts; only "the line was printed promptly"
//! compares with the test's clock. CI machines here have 2 cores shared with other test
//! binaries, so a scheduling hiccup of a few hundred ms must not fail the test, while a
//! clock that drifts or fires a second late still does.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_attune-core-timer-sensor");

fn spawn_local(rules: &Path) -> Child {
    spawn_local_with(rules, &[])
}

fn spawn_local_with(rules: &Path, extra: &[&str]) -> Child {
    Command::new(BIN)
        .arg("--rules")
        .arg(rules)
        .args(extra)
        .args(["--sink", "stdout", "--log-format", "json"])
        .env_remove("ATTUNE_TIMER_COMPONENT")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the sensor binary")
}

/// Reads stdout lines on a thread, each with the wall time it arrived.
fn read_lines(child: &mut Child) -> mpsc::Receiver<(DateTime<Utc>, Value)> {
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let line = line.unwrap();
            let value: Value = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {line}"));
            if tx.send((Utc::now(), value)).is_err() {
                break;
            }
        }
    });
    rx
}

/// Collects stderr on a thread (so a full pipe never blocks the process).
fn collect_stderr(child: &mut Child) -> std::thread::JoinHandle<String> {
    let mut stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        let mut text = String::new();
        use std::io::Read;
        stderr.read_to_string(&mut text).unwrap();
        text
    })
}

fn signal(child: &Child, sig: &str) {
    let status = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success());
}

fn wait_exit(child: &mut Child, within: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            panic!("the sensor did not exit within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn time(v: &Value, key: &str) -> DateTime<Utc> {
    let text = v["payload"][key]
        .as_str()
        .unwrap_or_else(|| panic!("no payload.{key} in {v}"));
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}

fn ms(d: chrono::Duration) -> i64 {
    d.num_milliseconds()
}

#[test]
fn prints_events_on_time() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.json");
    std::fs::write(
        &rules,
        r#"[
          {"id": 1, "ref": "t.every1s", "trigger_ref": "core.intervaltimer", "trigger_params": {"interval": 1}},
          {"id": 2, "ref": "t.once", "trigger_ref": "core.datetimetimer", "trigger_params": {"fire_at": "+1500ms"}},
          {"id": 3, "ref": "t.cron", "trigger_params": {"expression": "* * * * * *", "timezone": "Europe/Berlin"}}
        ]"#,
    )
    .unwrap();
    let mut child = spawn_local(&rules);
    let lines = read_lines(&mut child);
    let stderr = collect_stderr(&mut child);
    std::thread::sleep(Duration::from_millis(3600));
    signal(&child, "-TERM");
    let status = wait_exit(&mut child, Duration::from_secs(10));
    let stderr = stderr.join().unwrap();
    assert!(status.success(), "exit 0 after SIGTERM: {status}\n{stderr}");
    assert!(stderr.contains("Shutting down"), "{stderr}");
    let events: Vec<(DateTime<Utc>, Value)> = lines.iter().collect();

    for (_, e) in &events {
        let id = e["trigger_instance_id"].as_str().unwrap();
        assert!(["rule_1", "rule_2", "rule_3"].contains(&id), "{e}");
        assert!(
            e["payload"].is_object() && e["trigger_ref"].is_string(),
            "{e}"
        );
    }
    let of = |id: &str| -> Vec<&(DateTime<Utc>, Value)> {
        events
            .iter()
            .filter(|(_, e)| e["trigger_instance_id"] == id)
            .collect()
    };

    // Interval, every second: about 3 fires in 3.6 s (startup takes part of the time).
    let interval = of("rule_1");
    assert!((2..=4).contains(&interval.len()), "{interval:?}");
    let first = time(&interval[0].1, "fired_at");
    for (k, (arrived, e)) in interval.iter().enumerate() {
        assert_eq!(e["trigger_ref"], "core.intervaltimer");
        assert_eq!(e["payload"]["execution_count"], k as u64 + 1);
        let fired = time(e, "fired_at");
        // Drift-free: fire k+1 is k seconds after fire 1, give or take scheduling (±150 ms).
        let off = ms(fired - first) - 1000 * k as i64;
        assert!(off.abs() <= 150, "fire {} is {off} ms off its tick", k + 1);
        // Printed promptly (≤ 500 ms after the fire).
        assert!(
            ms(*arrived - fired) <= 500,
            "printed {} ms late",
            ms(*arrived - fired)
        );
    }

    // One-shot: exactly once, on time.
    let once = of("rule_2");
    assert_eq!(once.len(), 1, "{once:?}");
    assert_eq!(once[0].1["payload"]["type"], "one_shot");
    let delay = once[0].1["payload"]["delay_ms"].as_i64().unwrap();
    assert!((0..=250).contains(&delay), "one-shot fired {delay} ms late");

    // Cron every second (trigger ref inferred): on whole seconds, on time.
    let cron = of("rule_3");
    assert!((2..=4).contains(&cron.len()), "{cron:?}");
    for (_, e) in &cron {
        assert_eq!(e["trigger_ref"], "core.crontimer");
        let scheduled = time(e, "scheduled_at");
        assert_eq!(
            scheduled.timestamp_subsec_nanos(),
            0,
            "ticks are whole seconds"
        );
        let late = ms(time(e, "fired_at") - scheduled);
        assert!((0..=250).contains(&late), "cron fired {late} ms late");
        assert_eq!(ms(time(e, "next_fire_at") - scheduled), 1000);
    }
}

#[test]
fn exits_by_itself_when_no_timer_is_left() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.json");
    std::fs::write(
        &rules,
        r#"[{"id": 9, "trigger_params": {"fire_at": "+500ms", "timezone": "Europe/Berlin"}}]"#,
    )
    .unwrap();
    let mut child = spawn_local(&rules);
    let lines = read_lines(&mut child);
    let stderr = collect_stderr(&mut child);
    let status = wait_exit(&mut child, Duration::from_secs(10));
    let stderr = stderr.join().unwrap();
    assert!(status.success(), "{status}\n{stderr}");
    assert!(stderr.contains("No timer left to run"), "{stderr}");
    let events: Vec<Value> = lines.iter().map(|(_, v)| v).collect();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["trigger_ref"], "core.datetimetimer");
    assert_eq!(events[0]["trigger_instance_id"], "rule_9");
}

#[test]
fn bad_rules_files_fail_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.json");
    let mut child = spawn_local(&missing);
    let stderr = collect_stderr(&mut child);
    let status = wait_exit(&mut child, Duration::from_secs(10));
    assert!(!status.success());
    assert!(stderr
        .join()
        .unwrap()
        .contains("cannot read the rules file"));

    let bad = dir.path().join("bad.json");
    std::fs::write(
        &bad,
        r#"[{"id": 1, "trigger_ref": "core.intervaltimer", "trigger_params": {"interval": 0}}]"#,
    )
    .unwrap();
    let mut child = spawn_local(&bad);
    let stderr = collect_stderr(&mut child);
    let status = wait_exit(&mut child, Duration::from_secs(10));
    assert!(!status.success());
    let stderr = stderr.join().unwrap();
    assert!(
        stderr.contains("none of the 1 rules is running"),
        "{stderr}"
    );
    assert!(
        stderr.contains("Invalid trigger params for rule 1"),
        "{stderr}"
    );
}

/// `examples/rules.json` stays honest: every rule in it starts.
#[tokio::test]
async fn the_example_rules_all_start() {
    use attune_testkit::sink::Collect;
    use attune_timer::schedule::rules::RuleTable;
    use attune_timer::schedule::Clock;
    use std::sync::Arc;

    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/rules.json");
    let text = std::fs::read_to_string(&path).unwrap();
    let rules = attune_timer::app::local::load_rules(&text, Utc::now()).unwrap();
    let runtime = Arc::new(attune_timer::component::TimerRuntime::embedded().unwrap());
    let refs = runtime.info().trigger_refs.clone();
    let clock = Clock::spawn(
        runtime,
        Arc::new(Collect::default()),
        "core.timer_sensor".into(),
    );
    let table = RuleTable::new(clock.clone(), refs);
    let report = table.apply_snapshot(rules.clone()).await;
    assert_eq!(report.running, rules.len(), "{report:?}");
    clock.shutdown().await;
}

/// Local mode keeps state in memory, unless given `--state-dir`: then a rule's count carries
/// on across runs.
#[test]
fn with_a_state_dir_counts_carry_on_across_runs() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.json");
    std::fs::write(
        &rules,
        r#"[{"id": 1, "trigger_ref": "core.intervaltimer", "trigger_params": {"interval": 1}}]"#,
    )
    .unwrap();
    let state = dir.path().join("state");
    let run = |extra: &[&str]| -> Vec<u64> {
        let mut child = spawn_local_with(&rules, extra);
        let lines = read_lines(&mut child);
        let _stderr = collect_stderr(&mut child);
        let mut counts = Vec::new();
        while counts.len() < 2 {
            let (_, v) = lines
                .recv_timeout(Duration::from_secs(10))
                .expect("an event");
            counts.push(v["payload"]["execution_count"].as_u64().unwrap());
        }
        signal(&child, "-TERM");
        assert!(wait_exit(&mut child, Duration::from_secs(10)).success());
        counts
    };
    let state_arg = state.to_str().unwrap();
    assert_eq!(run(&["--state-dir", state_arg]), vec![1, 2]);
    let again = run(&["--state-dir", state_arg]);
    assert!(again[0] >= 3, "the count carries on: {again:?}");
    assert_eq!(run(&[]), vec![1, 2], "without it: memory only");
}

/// `GET path` on the admin listener at `addr`: the status code and the body.
fn admin_get(addr: &str, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut conn = std::net::TcpStream::connect(addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        conn,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    conn.read_to_string(&mut answer).unwrap();
    let status = answer[9..12].parse().unwrap();
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// With `--admin-addr`, local mode serves the admin listener too: its rules, its metrics,
/// ready once the rules run (no transport or outbox to wait for).
#[test]
fn with_an_admin_address_local_mode_serves_rules_and_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.json");
    std::fs::write(
        &rules,
        r#"[{"id": 1, "ref": "t.every1s", "trigger_ref": "core.intervaltimer", "trigger_params": {"interval": 1}},
            {"id": 2, "ref": "t.bad", "trigger_ref": "core.intervaltimer", "trigger_params": {"interval": 0}}]"#,
    )
    .unwrap();
    let mut child = spawn_local_with(&rules, &["--admin-addr", "127.0.0.1:0"]);
    let events = read_lines(&mut child);
    let stderr = child.stderr.take().unwrap();
    let (tx, logs) = mpsc::channel::<Value>();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if let Ok(v) = serde_json::from_str::<Value>(&line) {
                let _ = tx.send(v);
            }
        }
    });
    let admin = loop {
        let line = logs
            .recv_timeout(Duration::from_secs(20))
            .expect("the admin listener's address is logged");
        let listening = line["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("Admin listener on"));
        if listening {
            break line["admin_addr"].as_str().unwrap().to_string();
        }
    };
    // Two fires at least, then ask.
    for _ in 0..2 {
        events
            .recv_timeout(Duration::from_secs(10))
            .expect("an event");
    }
    let (status, body) = admin_get(&admin, "/readyz");
    assert_eq!(status, 200, "{body}");
    let (status, body) = admin_get(&admin, "/rules");
    assert_eq!(status, 200);
    let rules: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(rules["rules"][0]["state"], "running", "{rules}");
    assert_eq!(rules["rules"][1]["state"], "refused");
    let (status, metrics) = admin_get(&admin, "/metrics");
    assert_eq!(status, 200);
    let fired = metrics
        .lines()
        .find(|l| {
            l.starts_with(
                "attune_timer_fires_total{trigger_ref=\"core.intervaltimer\",outcome=\"on_time\"}",
            )
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .expect("fires are counted");
    assert!(fired >= 1.0, "{metrics}");
    signal(&child, "-TERM");
    assert!(wait_exit(&mut child, Duration::from_secs(10)).success());
}
