//! Live component swap in the real binary, local mode: `--component FILE`, then FILE is
//! replaced and SIGHUP sent; then FILE is replaced again and the file watch (every 2 s)
//! notices by itself. Events carry on throughout, with no fire missed or doubled.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::Value;

use attune_timer::component::EMBEDDED_COMPONENT;

const BIN: &str = env!("CARGO_BIN_EXE_attune-core-timer-sensor");

/// The embedded component with a custom section appended: same logic, another content hash.
fn marked_component(mark: &str) -> Vec<u8> {
    let name = b"attune-test-mark";
    let body_len = 1 + name.len() + mark.len();
    assert!(body_len < 128 && name.len() < 128, "one-byte LEB128 sizes");
    let mut bytes = EMBEDDED_COMPONENT.to_vec();
    bytes.extend_from_slice(&[0, body_len as u8, name.len() as u8]);
    bytes.extend_from_slice(name);
    bytes.extend_from_slice(mark.as_bytes());
    bytes
}

/// Replaces `path` atomically (write beside it, then rename), as a deployment would.
fn replace(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("wasm.new");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn lines_of(stream: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Log lines (stderr) until one has `message`, keeping every line read in `seen`.
fn wait_for_log(
    rx: &mpsc::Receiver<String>,
    seen: &mut Vec<String>,
    message: &str,
    within: Duration,
) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                seen.push(line.clone());
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    if v["message"] == message {
                        return v;
                    }
                }
            }
            Err(_) => panic!(
                "no `{message}` log line within {within:?}; logs so far:\n{}",
                seen.join("\n")
            ),
        }
    }
}

fn signal(child: &Child, sig: &str) {
    let status = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success());
}

fn time(v: &Value, key: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(v["payload"][key].as_str().unwrap())
        .unwrap()
        .with_timezone(&Utc)
}

#[test]
fn sighup_and_a_changed_file_swap_the_component_while_events_continue() {
    let dir = tempfile::tempdir().unwrap();
    let component = dir.path().join("timer.wasm");
    std::fs::write(&component, EMBEDDED_COMPONENT).unwrap();
    let rules = dir.path().join("rules.json");
    std::fs::write(
        &rules,
        r#"[
          {"id": 1, "ref": "t.every1s", "trigger_ref": "core.intervaltimer", "trigger_params": {"interval": 1}},
          {"id": 2, "ref": "t.cron", "trigger_ref": "core.crontimer", "trigger_params": {"expression": "* * * * * *"}}
        ]"#,
    )
    .unwrap();
    let cache = dir.path().join("cache");
    let mut child = Command::new(BIN)
        .arg("--rules")
        .arg(&rules)
        .arg("--component")
        .arg(&component)
        .args(["--log-format", "json", "-l", "info"])
        .env("ATTUNE_TIMER_CACHE_DIR", &cache)
        .env("XDG_CACHE_HOME", &cache)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the sensor binary");
    let events = lines_of(child.stdout.take().unwrap());
    let logs = lines_of(child.stderr.take().unwrap());
    let mut seen = Vec::new();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        wait_for_log(
            &logs,
            &mut seen,
            "Timer component loaded",
            Duration::from_secs(20),
        );
        // A first event: the clock runs.
        events
            .recv_timeout(Duration::from_secs(5))
            .expect("a first event");

        // 1. Replace the file and send SIGHUP.
        replace(&component, &marked_component("second"));
        signal(&child, "-HUP");
        let first = wait_for_log(
            &logs,
            &mut seen,
            "Timer component swapped",
            Duration::from_secs(10),
        );
        std::thread::sleep(Duration::from_millis(1500));

        // 2. Replace it again, no signal: the file watch notices.
        replace(&component, &marked_component("third"));
        let second = wait_for_log(
            &logs,
            &mut seen,
            "Timer component swapped",
            Duration::from_secs(10),
        );
        std::thread::sleep(Duration::from_millis(1500));
        (first, second)
    }));
    signal(&child, "-TERM");
    let status = child.wait().unwrap();
    let (first, second) = match result {
        Ok(found) => found,
        Err(panic) => std::panic::resume_unwind(panic),
    };
    assert!(status.success(), "exit 0 after SIGTERM: {status}");
    for line in logs.try_iter() {
        seen.push(line);
    }
    let all_logs = seen.join("\n");
    assert!(
        !all_logs.contains("swap rejected"),
        "no swap was rejected:\n{all_logs}"
    );

    // The log names both components; the second swap starts from the first's result.
    let label = |v: &Value, key: &str| v[key].as_str().unwrap().to_string();
    assert!(label(&first, "old_component").starts_with("attune-timer-rust 0.1.0 ("));
    assert_ne!(
        label(&first, "old_component"),
        label(&first, "new_component")
    );
    assert_eq!(
        label(&second, "old_component"),
        label(&first, "new_component")
    );
    assert_ne!(
        label(&second, "new_component"),
        label(&first, "new_component")
    );
    assert_eq!(first["rules"], 2);

    // Every fire of each rule, in order: counts 1..n, ticks exactly 1 s apart.
    let events: Vec<Value> = events
        .try_iter()
        .chain(std::iter::empty())
        .map(|l| serde_json::from_str(&l).unwrap())
        .collect();
    for id in ["rule_1", "rule_2"] {
        let mine: Vec<&Value> = events
            .iter()
            .filter(|e| e["trigger_instance_id"] == id)
            .collect();
        // The first event was taken above; the rest run on from it.
        assert!(mine.len() >= 4, "{id}: {mine:?}");
        for pair in mine.windows(2) {
            let (a, b) = (pair[0], pair[1]);
            assert_eq!(
                b["payload"]["execution_count"].as_u64().unwrap(),
                a["payload"]["execution_count"].as_u64().unwrap() + 1,
                "{id}: consecutive counts: {a} then {b}"
            );
            if id == "rule_2" {
                // Cron: the ticks are in the payload, exactly 1 s apart.
                assert_eq!(
                    (time(b, "scheduled_at") - time(a, "scheduled_at")).num_milliseconds(),
                    1000,
                    "{id}: consecutive ticks: {a} then {b}"
                );
            } else {
                // Interval: fired 1 s apart, give or take scheduling (a missed fire is
                // 2 s, a doubled one 0 s).
                let gap = (time(b, "fired_at") - time(a, "fired_at")).num_milliseconds();
                assert!(
                    (700..=1300).contains(&gap),
                    "{id}: fires {gap} ms apart: {a} then {b}"
                );
            }
        }
    }
}
