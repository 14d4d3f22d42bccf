//! Settings from the environment (a map, never the process environment) and from stdin
//! JSON: defaults, every validation message in the contract's order, and logging.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use attune_testkit::logs::LogCapture;
use attune_timer::component::Limits;
use attune_timer::daemon::config::{
    BootstrapRule, ConfigError, ConfigSource, LogFormat, Overrides, Settings,
};
use attune_timer::platform::outbox::OutboxOptions;
use attune_timer::schedule::MisfirePolicy;
use serde_json::json;

const TOKEN: &str = "eyJhbGciOiJIUzI1NiJ9.c2VjcmV0LXBheWxvYWQ.very-secret-signature";

fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn full_env() -> HashMap<String, String> {
    env(&[
        ("ATTUNE_API_URL", "http://api.example:8080/"),
        ("ATTUNE_API_TOKEN", TOKEN),
        ("ATTUNE_SENSOR_REF", "core.timer_sensor"),
        ("ATTUNE_MQ_URL", "amqp://guest:mq-password@rabbit:5672/%2f"),
        ("HOME", "/home/sensor"),
    ])
}

const NEITHER_ENV: &str =
    "ATTUNE_NOTIFIER_WS_URL or ATTUNE_MQ_URL environment variable is required: \
     set ATTUNE_NOTIFIER_WS_URL for the notifier WebSocket (platform V4 and later) or \
     ATTUNE_MQ_URL for RabbitMQ (V1–V3)";

fn err_env(e: &HashMap<String, String>) -> String {
    Settings::from_env(e).unwrap_err().to_string()
}

#[test]
fn required_variables_are_reported_in_order() {
    let mut e = HashMap::new();
    let order = [
        ("ATTUNE_API_URL", "http://a"),
        ("ATTUNE_API_TOKEN", "t"),
        ("ATTUNE_SENSOR_REF", "core.timer_sensor"),
    ];
    for (key, value) in order {
        assert_eq!(
            err_env(&e),
            format!("{key} environment variable is required")
        );
        e.insert(key.to_string(), value.to_string());
    }
    assert_eq!(err_env(&e), NEITHER_ENV);
    e.insert("ATTUNE_MQ_URL".into(), "amqp://m".into());
    assert!(Settings::from_env(&e).is_ok());
}

#[test]
fn validation_messages_follow_the_contract_order() {
    // All present but empty: each fix reveals the next message.
    let mut e = env(&[
        ("ATTUNE_API_URL", ""),
        ("ATTUNE_API_TOKEN", ""),
        ("ATTUNE_SENSOR_REF", ""),
        ("ATTUNE_MQ_URL", ""),
        ("ATTUNE_MQ_EXCHANGE", ""),
    ]);
    let steps = [
        ("api_url cannot be empty", "ATTUNE_API_URL", "ftp://api"),
        ("api_token cannot be empty", "ATTUNE_API_TOKEN", TOKEN),
        (
            "sensor_ref cannot be empty",
            "ATTUNE_SENSOR_REF",
            "core.timer_sensor",
        ),
        ("mq_url cannot be empty", "ATTUNE_MQ_URL", "http://rabbit"),
        (
            "mq_exchange cannot be empty",
            "ATTUNE_MQ_EXCHANGE",
            "attune.events",
        ),
        (
            "api_url must start with http:// or https://",
            "ATTUNE_API_URL",
            "https://api",
        ),
        (
            "mq_url must start with amqp:// or amqps://",
            "ATTUNE_MQ_URL",
            "amqps://rabbit",
        ),
    ];
    for (message, key, fix) in steps {
        let err = Settings::from_env(&e).unwrap_err();
        assert!(matches!(err, ConfigError::Invalid(_)), "{err:?}");
        assert_eq!(err.to_string(), message);
        e.insert(key.to_string(), fix.to_string());
    }
    let s = Settings::from_env(&e).unwrap();
    assert_eq!(s.mq_exchange, "attune.events");
    // Whitespace-only counts as empty.
    e.insert("ATTUNE_SENSOR_REF".into(), "  ".into());
    assert_eq!(err_env(&e), "sensor_ref cannot be empty");
}

#[test]
fn our_checks_come_after_the_platforms() {
    let mut e = full_env();
    e.insert("ATTUNE_LOG_LEVEL".into(), "info,attune=loud".into());
    e.insert("ATTUNE_LOG_FORMAT".into(), "xml".into());
    e.insert("ATTUNE_MQ_URL".into(), "kafka://x".into());
    assert_eq!(err_env(&e), "mq_url must start with amqp:// or amqps://");
    e.insert("ATTUNE_MQ_URL".into(), "amqp://rabbit".into());
    assert_eq!(
        err_env(&e),
        "Invalid ATTUNE_LOG_LEVEL / --log-level tracing directive"
    );
    e.insert("ATTUNE_LOG_LEVEL".into(), "warn,attune_timer=debug".into());
    assert_eq!(
        err_env(&e),
        "unsupported ATTUNE_LOG_FORMAT / --log-format `xml`; expected `json` or `pretty`"
    );
    e.insert("ATTUNE_LOG_FORMAT".into(), " Pretty ".into());
    let s = Settings::from_env(&e).unwrap();
    assert_eq!(s.log_format, LogFormat::Pretty);
    assert_eq!(s.log_level, "warn,attune_timer=debug");
    e.insert("ATTUNE_API_URL".into(), "http://bad host".into());
    assert_eq!(err_env(&e), "api_url is not a valid URL");
}

#[test]
fn defaults() {
    let s = Settings::from_env(&full_env()).unwrap();
    assert_eq!(s.api_url, "http://api.example:8080", "trailing / trimmed");
    assert_eq!(s.api_token, TOKEN);
    assert_eq!(s.sensor_ref, "core.timer_sensor");
    assert_eq!(s.mq_exchange, "attune");
    assert_eq!(s.log_level, "info");
    assert_eq!(s.log_format, LogFormat::Json);
    assert!(s.sensor_triggers.is_empty());
    assert_eq!(s.timer_component, None);
    assert_eq!(s.limits, Limits::default());
    assert_eq!(
        s.cache_dir,
        Some(PathBuf::from("/home/sensor/.cache/attune-timer-sensor"))
    );
    assert_eq!(s.outbox_capacity, 100_000);
    assert_eq!(s.outbox_concurrency, 64);
    assert_eq!(s.outbox_options(), OutboxOptions::default());
    assert_eq!(s.source, ConfigSource::Env);
    let mut e = full_env();
    e.insert("XDG_CACHE_HOME".into(), "/xdg".into());
    assert_eq!(
        Settings::from_env(&e).unwrap().cache_dir,
        Some(PathBuf::from("/xdg/attune-timer-sensor"))
    );
    e.remove("XDG_CACHE_HOME");
    e.remove("HOME");
    assert_eq!(Settings::from_env(&e).unwrap().cache_dir, None);
}

/// The state directory: `ATTUNE_STATE_DIR`, else systemd's `STATE_DIRECTORY` (its first
/// entry), else `$XDG_STATE_HOME/attune-timer-sensor`, else
/// `~/.local/state/attune-timer-sensor`; `off` keeps state in memory. The durability
/// settings' defaults, parsing and messages.
#[test]
fn state_directory_and_durability_settings() {
    let mut e = full_env();
    let dir =
        |e: &std::collections::HashMap<String, String>| Settings::from_env(e).unwrap().state_dir;
    assert_eq!(
        dir(&e),
        Some(PathBuf::from(
            "/home/sensor/.local/state/attune-timer-sensor"
        ))
    );
    e.insert("XDG_STATE_HOME".into(), "/xdg-state".into());
    assert_eq!(
        dir(&e),
        Some(PathBuf::from("/xdg-state/attune-timer-sensor"))
    );
    e.insert(
        "STATE_DIRECTORY".into(),
        "/var/lib/attune-timer:/var/lib/other".into(),
    );
    assert_eq!(dir(&e), Some(PathBuf::from("/var/lib/attune-timer")));
    e.insert("ATTUNE_STATE_DIR".into(), " /srv/state ".into());
    assert_eq!(dir(&e), Some(PathBuf::from("/srv/state")));
    e.insert("ATTUNE_STATE_DIR".into(), "Off".into());
    assert_eq!(dir(&e), None);
    e.remove("ATTUNE_STATE_DIR");
    for key in ["STATE_DIRECTORY", "XDG_STATE_HOME", "HOME"] {
        e.remove(key);
    }
    assert_eq!(dir(&e), None, "nowhere to put it: memory only");

    let s = Settings::from_env(&full_env()).unwrap();
    assert_eq!(s.outbox_max_age, Duration::from_secs(86_400));
    assert_eq!(s.outbox_max_bytes, 1 << 30);
    assert_eq!(s.misfire.policy, MisfirePolicy::Latest);
    assert_eq!(s.misfire.grace, Duration::from_secs(3600));
    let mut e = full_env();
    e.extend(env(&[
        ("ATTUNE_OUTBOX_MAX_AGE", "2d"),
        ("ATTUNE_OUTBOX_MAX_BYTES", "10485760"),
        ("ATTUNE_MISFIRE", " ALL "),
        ("ATTUNE_MISFIRE_GRACE", "90"),
    ]));
    let s = Settings::from_env(&e).unwrap();
    assert_eq!(s.outbox_max_age, Duration::from_secs(2 * 86_400));
    assert_eq!(s.outbox_options().max_age, s.outbox_max_age);
    assert_eq!(s.outbox_options().max_bytes, 10 << 20);
    assert_eq!(s.misfire.policy, MisfirePolicy::All);
    assert_eq!(s.misfire.grace, Duration::from_secs(90));
    for (key, value, message) in [
        (
            "ATTUNE_OUTBOX_MAX_AGE",
            "a day",
            "Invalid ATTUNE_OUTBOX_MAX_AGE 'a day': expected a duration such as 90s, 15m, 24h or 2d",
        ),
        (
            "ATTUNE_MISFIRE_GRACE",
            "-5m",
            "Invalid ATTUNE_MISFIRE_GRACE '-5m': expected a duration such as 90s, 15m, 24h or 2d",
        ),
        (
            "ATTUNE_MISFIRE",
            "sometimes",
            "Invalid ATTUNE_MISFIRE 'sometimes': expected skip, latest or all",
        ),
        (
            "ATTUNE_OUTBOX_MAX_BYTES",
            "1000",
            "Invalid ATTUNE_OUTBOX_MAX_BYTES '1000': expected a whole number of bytes, at least 1048576",
        ),
    ] {
        let mut bad = full_env();
        bad.insert(key.into(), value.into());
        let err = err_env(&bad);
        assert!(err.starts_with(message), "{key}: {err}");
    }
    // From stdin too, with the same names in lowercase.
    let s = Settings::from_stdin_json(
        &json!({
            "api_url": "http://a", "api_token": TOKEN, "sensor_ref": "s", "mq_url": "amqp://m",
            "state_dir": "/from/stdin", "misfire": "skip", "misfire_grace": "10m",
            "outbox_max_age": 3600,
        })
        .to_string(),
        &std::collections::HashMap::new(),
    )
    .unwrap();
    assert_eq!(s.state_dir, Some(PathBuf::from("/from/stdin")));
    assert_eq!(s.misfire.policy, MisfirePolicy::Skip);
    assert_eq!(s.misfire.grace, Duration::from_secs(600));
    assert_eq!(s.outbox_max_age, Duration::from_secs(3600));
}

#[test]
fn optional_variables_are_parsed() {
    let mut e = full_env();
    e.extend(env(&[
        ("ATTUNE_MQ_EXCHANGE", "attune.events"),
        ("ATTUNE_LOG_LEVEL", "debug"),
        ("ATTUNE_LOG_FORMAT", "JSON"),
        (
            "ATTUNE_SENSOR_TRIGGERS",
            r#"[{"id":1,"trigger_ref":"core.intervaltimer","config":{"interval":5}},
                {"id":2,"ref":"ignored","config":{"expression":"0 * * * * *"}},
                {"id":3}]"#,
        ),
        ("ATTUNE_TIMER_COMPONENT", "/opt/timer.wasm"),
        ("ATTUNE_TIMER_MAX_MEMORY_MB", "32"),
        ("ATTUNE_TIMER_CALL_DEADLINE_MS", "250"),
        ("ATTUNE_TIMER_MAX_PAYLOAD_BYTES", "4096"),
        ("ATTUNE_TIMER_CACHE_DIR", "/var/cache/timer"),
        ("ATTUNE_OUTBOX_CAPACITY", "5000"),
        ("ATTUNE_OUTBOX_CONCURRENCY", " 16 "),
    ]));
    let s = Settings::from_env(&e).unwrap();
    assert_eq!(s.mq_exchange, "attune.events");
    assert_eq!(s.log_level, "debug");
    assert_eq!(s.log_format, LogFormat::Json);
    assert_eq!(
        s.sensor_triggers,
        vec![
            BootstrapRule {
                id: 1,
                trigger_ref: Some("core.intervaltimer".into()),
                config: json!({"interval": 5})
            },
            BootstrapRule {
                id: 2,
                trigger_ref: None,
                config: json!({"expression": "0 * * * * *"})
            },
            BootstrapRule {
                id: 3,
                trigger_ref: None,
                config: json!({})
            },
        ]
    );
    assert_eq!(s.timer_component, Some(PathBuf::from("/opt/timer.wasm")));
    assert_eq!(s.limits.max_memory_bytes, 32 << 20);
    assert_eq!(s.limits.call_deadline, Duration::from_millis(250));
    assert_eq!(s.limits.max_payload_bytes, 4096);
    assert_eq!(s.limits.pool_size, Limits::default().pool_size);
    assert_eq!(s.cache_dir, Some(PathBuf::from("/var/cache/timer")));
    assert_eq!(s.outbox_capacity, 5000);
    assert_eq!(s.outbox_concurrency, 16);
    e.insert("ATTUNE_TIMER_CACHE_DIR".into(), "off".into());
    assert_eq!(Settings::from_env(&e).unwrap().cache_dir, None);
    assert_eq!(Settings::from_env(&e).unwrap().compile_cache().dir(), None);
}

#[test]
fn bad_limits_and_bootstrap_lists_are_fatal() {
    for (key, value, message) in [
        (
            "ATTUNE_TIMER_MAX_MEMORY_MB",
            "0",
            "Invalid ATTUNE_TIMER_MAX_MEMORY_MB '0': expected a whole number of MiB from 1 to 16384",
        ),
        (
            "ATTUNE_TIMER_CALL_DEADLINE_MS",
            "1.5",
            "Invalid ATTUNE_TIMER_CALL_DEADLINE_MS '1.5': expected a whole number of milliseconds from 1 to 60000",
        ),
        (
            "ATTUNE_TIMER_MAX_PAYLOAD_BYTES",
            "lots",
            "Invalid ATTUNE_TIMER_MAX_PAYLOAD_BYTES 'lots': expected a whole number of bytes from 256 to 16777216",
        ),
        (
            "ATTUNE_OUTBOX_CAPACITY",
            "0",
            "Invalid ATTUNE_OUTBOX_CAPACITY '0': expected a whole number of events from 1 to 10000000",
        ),
        (
            "ATTUNE_OUTBOX_CONCURRENCY",
            "257",
            "Invalid ATTUNE_OUTBOX_CONCURRENCY '257': expected a whole number of requests from 1 to 256",
        ),
        (
            "ATTUNE_SENSOR_TRIGGERS",
            r#"{"id":1}"#,
            "Failed to parse ATTUNE_SENSOR_TRIGGERS as managed trigger instances",
        ),
        (
            "ATTUNE_SENSOR_TRIGGERS",
            r#"[{"trigger_ref":"core.crontimer"}]"#,
            "Failed to parse ATTUNE_SENSOR_TRIGGERS as managed trigger instances",
        ),
    ] {
        let mut e = full_env();
        e.insert(key.into(), value.into());
        let err = Settings::from_env(&e).unwrap_err();
        assert_eq!(err.to_string(), message);
    }
    // The cause is kept (for `{:#}`), without quoting the input.
    let mut e = full_env();
    e.insert(
        "ATTUNE_SENSOR_TRIGGERS".into(),
        r#"[{"trigger_ref":"x"}]"#.into(),
    );
    let err = anyhow::Error::from(Settings::from_env(&e).unwrap_err());
    assert_eq!(
        format!("{err:#}"),
        "Failed to parse ATTUNE_SENSOR_TRIGGERS as managed trigger instances: missing field `id` at line 1 column 20"
    );
    // Blank means absent.
    e.insert("ATTUNE_SENSOR_TRIGGERS".into(), "  ".into());
    assert!(Settings::from_env(&e).unwrap().sensor_triggers.is_empty());
}

#[test]
fn stdin_config() {
    // Only the JSON is used for platform settings: these env values are ignored.
    let e = env(&[
        ("ATTUNE_API_URL", "http://from-env"),
        ("ATTUNE_MQ_EXCHANGE", "from-env"),
        ("ATTUNE_TIMER_CALL_DEADLINE_MS", "300"),
        ("HOME", "/h"),
    ]);
    let text = json!({
        "api_url": "https://api.example/",
        "api_token": TOKEN,
        "sensor_ref": "core.timer_sensor",
        "mq_url": "amqps://rabbit",
        "sensor_triggers": [{"id": 9, "config": {"fire_at": "2030-01-01T00:00:00Z"}}],
        "some_future_key": {"ignored": true},
    })
    .to_string();
    let s = Settings::from_stdin_json(&text, &e).unwrap();
    assert_eq!(s.source, ConfigSource::Stdin);
    assert_eq!(s.api_url, "https://api.example");
    assert_eq!(s.mq_exchange, "attune");
    assert_eq!(s.log_level, "info");
    assert_eq!(s.log_format, LogFormat::Json);
    assert_eq!(s.sensor_triggers.len(), 1);
    assert_eq!(s.sensor_triggers[0].id, 9);
    assert_eq!(
        s.limits.call_deadline,
        Duration::from_millis(300),
        "component limits still come from env"
    );
    assert_eq!(
        s.cache_dir,
        Some(PathBuf::from("/h/.cache/attune-timer-sensor"))
    );

    let all = json!({
        "api_url": "http://a", "api_token": "t", "sensor_ref": "s", "mq_url": "amqp://m",
        "mq_exchange": "attune.events", "log_level": "debug", "log_format": "pretty",
        "sensor_triggers": "[{\"id\":1,\"trigger_ref\":\"core.intervaltimer\"}]",
        "timer_component": "/opt/c.wasm", "timer_max_memory_mb": 8, "timer_cache_dir": "none",
    });
    let s = Settings::from_stdin_json(&all.to_string(), &e).unwrap();
    assert_eq!(s.mq_exchange, "attune.events");
    assert_eq!(s.log_format, LogFormat::Pretty);
    assert_eq!(
        s.sensor_triggers[0].trigger_ref.as_deref(),
        Some("core.intervaltimer")
    );
    assert_eq!(s.timer_component, Some(PathBuf::from("/opt/c.wasm")));
    assert_eq!(s.limits.max_memory_bytes, 8 << 20);
    assert_eq!(s.cache_dir, None);

    // Validation applies to stdin too, in the same order.
    let mut v = all.clone();
    v["mq_exchange"] = json!("");
    v["sensor_ref"] = json!("");
    assert_eq!(
        Settings::from_stdin_json(&v.to_string(), &e)
            .unwrap_err()
            .to_string(),
        "sensor_ref cannot be empty"
    );
    let mut v = all.clone();
    v["sensor_triggers"] = json!([{"id": "one"}]);
    assert_eq!(
        Settings::from_stdin_json(&v.to_string(), &e)
            .unwrap_err()
            .to_string(),
        "Failed to parse ATTUNE_SENSOR_TRIGGERS as managed trigger instances"
    );
}

#[test]
fn outbox_settings() {
    // From the environment: the bounds are accepted, blank means the default.
    for (capacity, concurrency) in [("1", "1"), ("10000000", "256"), ("250000", "32")] {
        let mut e = full_env();
        e.insert("ATTUNE_OUTBOX_CAPACITY".into(), capacity.into());
        e.insert("ATTUNE_OUTBOX_CONCURRENCY".into(), concurrency.into());
        let s = Settings::from_env(&e).unwrap();
        assert_eq!(s.outbox_capacity, capacity.parse::<usize>().unwrap());
        assert_eq!(s.outbox_concurrency, concurrency.parse::<usize>().unwrap());
        assert_eq!(
            s.outbox_options(),
            OutboxOptions {
                capacity: s.outbox_capacity,
                concurrency: s.outbox_concurrency,
                ..OutboxOptions::default()
            },
            "only capacity and concurrency come from the settings"
        );
    }
    let mut e = full_env();
    e.insert("ATTUNE_OUTBOX_CAPACITY".into(), "  ".into());
    e.insert("ATTUNE_OUTBOX_CONCURRENCY".into(), "".into());
    let s = Settings::from_env(&e).unwrap();
    assert_eq!((s.outbox_capacity, s.outbox_concurrency), (100_000, 64));

    // Every invalid value is refused with the setting, the value and the allowed range.
    let capacity = "expected a whole number of events from 1 to 10000000";
    let concurrency = "expected a whole number of requests from 1 to 256";
    for (key, value, expected) in [
        ("ATTUNE_OUTBOX_CAPACITY", "0", capacity),
        ("ATTUNE_OUTBOX_CAPACITY", "10000001", capacity),
        ("ATTUNE_OUTBOX_CAPACITY", "-5", capacity),
        ("ATTUNE_OUTBOX_CAPACITY", "1e5", capacity),
        ("ATTUNE_OUTBOX_CAPACITY", "lots", capacity),
        (
            "ATTUNE_OUTBOX_CAPACITY",
            "99999999999999999999999",
            capacity,
        ),
        ("ATTUNE_OUTBOX_CONCURRENCY", "0", concurrency),
        ("ATTUNE_OUTBOX_CONCURRENCY", "257", concurrency),
        ("ATTUNE_OUTBOX_CONCURRENCY", "2.5", concurrency),
        ("ATTUNE_OUTBOX_CONCURRENCY", "-1", concurrency),
        ("ATTUNE_OUTBOX_CONCURRENCY", "eight", concurrency),
    ] {
        let mut e = full_env();
        e.insert(key.into(), value.into());
        let err = Settings::from_env(&e).unwrap_err();
        assert!(matches!(err, ConfigError::Setting { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            format!("Invalid {key} '{value}': {expected}")
        );
    }

    // The platform's checks come first.
    let mut e = full_env();
    e.insert("ATTUNE_OUTBOX_CAPACITY".into(), "0".into());
    e.insert("ATTUNE_MQ_URL".into(), "kafka://x".into());
    assert_eq!(err_env(&e), "mq_url must start with amqp:// or amqps://");

    // With --stdin-config: the variables still apply unless the JSON sets the keys, as
    // numbers or as strings.
    let e = env(&[
        ("ATTUNE_OUTBOX_CAPACITY", "7000"),
        ("ATTUNE_OUTBOX_CONCURRENCY", "12"),
    ]);
    let base = json!({
        "api_url": "http://a", "api_token": "t", "sensor_ref": "s", "mq_url": "amqp://m",
    });
    let s = Settings::from_stdin_json(&base.to_string(), &e).unwrap();
    assert_eq!((s.outbox_capacity, s.outbox_concurrency), (7000, 12));
    let s = Settings::from_stdin_json(&base.to_string(), &HashMap::new()).unwrap();
    assert_eq!((s.outbox_capacity, s.outbox_concurrency), (100_000, 64));
    let mut v = base.clone();
    v["outbox_capacity"] = json!(2500);
    v["outbox_concurrency"] = json!("64");
    let s = Settings::from_stdin_json(&v.to_string(), &e).unwrap();
    assert_eq!((s.outbox_capacity, s.outbox_concurrency), (2500, 64));
    let mut v = base.clone();
    v["outbox_capacity"] = json!(null);
    v["outbox_concurrency"] = json!(null);
    let s = Settings::from_stdin_json(&v.to_string(), &e).unwrap();
    assert_eq!(
        (s.outbox_capacity, s.outbox_concurrency),
        (7000, 12),
        "null means not set"
    );
    for (key, value, message) in [
        (
            "outbox_capacity",
            json!(0),
            format!("Invalid ATTUNE_OUTBOX_CAPACITY '0': {capacity}"),
        ),
        (
            "outbox_capacity",
            json!(20_000_000),
            format!("Invalid ATTUNE_OUTBOX_CAPACITY '20000000': {capacity}"),
        ),
        (
            "outbox_concurrency",
            json!(300),
            format!("Invalid ATTUNE_OUTBOX_CONCURRENCY '300': {concurrency}"),
        ),
        (
            "outbox_concurrency",
            json!(1.5),
            format!("Invalid ATTUNE_OUTBOX_CONCURRENCY '1.5': {concurrency}"),
        ),
        (
            "outbox_concurrency",
            json!("many"),
            format!("Invalid ATTUNE_OUTBOX_CONCURRENCY 'many': {concurrency}"),
        ),
    ] {
        let mut v = base.clone();
        v[key] = value;
        let err = Settings::from_stdin_json(&v.to_string(), &e).unwrap_err();
        assert_eq!(err.to_string(), message);
    }
}

#[test]
fn stdin_parse_errors_never_echo_the_input() {
    let e = HashMap::new();
    for text in [
        "",
        "not json",
        r#"{"api_url":"http://a"}"#,
        &format!(
            r#"{{"api_url":"http://a","api_token":["{TOKEN}"],"sensor_ref":"s","mq_url":"amqp://m"}}"#
        ),
        &format!(r#""{TOKEN}""#),
    ] {
        let err = Settings::from_stdin_json(text, &e).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Failed to parse JSON configuration from stdin"
        );
        let full = format!("{:#}", anyhow::Error::from(err));
        assert!(!full.contains("very-secret"), "{full}");
    }
    let err = Settings::from_stdin_json(r#"{"api_url":"http://a"}"#, &e).unwrap_err();
    assert_eq!(
        format!("{:#}", anyhow::Error::from(err)),
        "Failed to parse JSON configuration from stdin: missing field `api_token` at line 1 column 22"
    );
}

#[test]
fn command_line_overrides_replace_bad_values_before_validation() {
    let mut e = full_env();
    e.insert("ATTUNE_LOG_LEVEL".into(), "=bad=".into());
    e.insert("ATTUNE_LOG_FORMAT".into(), "yaml".into());
    let cli = Overrides {
        log_level: Some("warn".into()),
        log_format: Some("pretty".into()),
    };
    let s = Settings::from_env_with(&e, &cli).unwrap();
    assert_eq!(
        (s.log_level.as_str(), s.log_format),
        ("warn", LogFormat::Pretty)
    );
    let cli = Overrides {
        log_level: Some("debug,x=nope".into()),
        log_format: None,
    };
    assert_eq!(
        Settings::from_env_with(&full_env(), &cli)
            .unwrap_err()
            .to_string(),
        "Invalid ATTUNE_LOG_LEVEL / --log-level tracing directive"
    );
}

#[test]
fn the_token_never_shows_in_debug_output() {
    let s = Settings::from_env(&full_env()).unwrap();
    let debug = format!("{s:?} {s:#?}");
    assert!(!debug.contains(TOKEN), "{debug}");
    assert!(!debug.contains("very-secret"), "{debug}");
    assert!(!debug.contains("mq-password"), "{debug}");
    assert!(debug.contains("<redacted>"));
    assert!(debug.contains("http://api.example:8080"));
    let handle = attune_timer::platform::token::TokenHandle::new(TOKEN);
    assert!(!format!("{handle:?}").contains("very-secret"));
}

#[test]
fn the_log_level_takes_effect() {
    {
        let (logs, _guard) = LogCapture::start("debug");
        tracing::debug!(rule_id = 7, "a debug line");
        tracing::trace!("a trace line");
        let lines = logs.lines();
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert_eq!(lines[0]["message"], "a debug line");
        assert_eq!(lines[0]["level"], "DEBUG");
        assert_eq!(lines[0]["rule_id"], 7, "fields are top-level");
    }
    {
        let (logs, _guard) = LogCapture::start("warn");
        tracing::info!("an info line");
        tracing::warn!(event_id = 3, trigger_ref = "core.crontimer", "a warning");
        let lines = logs.lines();
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert_eq!(lines[0]["message"], "a warning");
        assert_eq!(lines[0]["event_id"], 3);
        assert_eq!(lines[0]["trigger_ref"], "core.crontimer");
        assert!(lines[0]["timestamp"].is_string());
    }
    {
        // Per-target directives work (this test's target is `config_settings`).
        let (logs, _guard) = LogCapture::start("error,config_settings=info");
        tracing::info!("kept");
        tracing::debug!("dropped");
        assert_eq!(logs.with_message("kept").len(), 1);
        assert_eq!(logs.lines().len(), 1);
    }
    {
        let (logs, _guard) = LogCapture::start_with("info", LogFormat::Pretty);
        tracing::info!(rule_id = 5, "human readable");
        let text = logs.text();
        assert!(
            text.contains("INFO") && text.contains("human readable") && text.contains("rule_id=5"),
            "{text}"
        );
        assert!(serde_json::from_str::<serde_json::Value>(text.trim()).is_err());
    }
}

#[test]
fn logging_init_refuses_a_bad_directive() {
    let err =
        attune_timer::app::logging::init("info,attune=notalevel", LogFormat::Json).unwrap_err();
    assert_eq!(
        err.to_string(),
        "Invalid ATTUNE_LOG_LEVEL / --log-level tracing directive"
    );
}

#[test]
fn logged_settings_show_origins_only() {
    let (logs, _guard) = LogCapture::start("info");
    let mut e = full_env();
    e.insert(
        "ATTUNE_API_URL".into(),
        "https://user:api-password@api.example/prefix?key=v".into(),
    );
    // A query is refused by the client later, but the settings log must stay clean anyway.
    let s = Settings::from_env(&e).unwrap();
    attune_timer::daemon::config::log_settings(&s);
    let text = logs.text();
    let loaded = logs.with_message("Configuration loaded");
    assert_eq!(loaded[0]["config_source"], "env");
    assert_eq!(loaded[0]["log_level"], "info");
    assert_eq!(loaded[0]["log_format"], "json");
    assert_eq!(loaded[0]["outbox_capacity"], 100_000);
    assert_eq!(loaded[0]["outbox_concurrency"], 64);
    assert!(text.contains(
        "Configuration loaded successfully: sensor_ref=core.timer_sensor, api_url=https://api.example"
    ));
    for secret in [
        "api-password",
        "prefix",
        "key=v",
        "mq-password",
        "very-secret",
        "%2f",
    ] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }
}

/// What a sixth-generation sensor manager passes: no broker URL, a notifier URL.
fn ws_env(url: &str) -> HashMap<String, String> {
    env(&[
        ("ATTUNE_API_URL", "http://api.example:8080"),
        ("ATTUNE_API_TOKEN", TOKEN),
        ("ATTUNE_SENSOR_REF", "core.timer_sensor"),
        ("ATTUNE_NOTIFIER_WS_URL", url),
        ("HOME", "/home/sensor"),
    ])
}

#[test]
fn exactly_one_transport_is_selected() {
    use attune_timer::daemon::config::Transport;
    let s = Settings::from_env(&full_env()).unwrap();
    assert_eq!(s.transport(), Transport::RabbitMq);
    assert_eq!(s.notifier_ws_url, None);

    let s = Settings::from_env(&ws_env("ws://127.0.0.1:8081/ws")).unwrap();
    assert_eq!(s.transport(), Transport::NotifierWs);
    assert_eq!(s.notifier_ws_url.as_deref(), Some("ws://127.0.0.1:8081/ws"));
    assert!(!s.allow_insecure_notifier_ws);
    assert_eq!(s.mq_url, "");

    // Neither: one message naming both, and what each selects.
    let mut e = full_env();
    e.remove("ATTUNE_MQ_URL");
    let err = Settings::from_env(&e).unwrap_err();
    assert!(matches!(err, ConfigError::MissingTransport(_)), "{err:?}");
    assert_eq!(err.to_string(), NEITHER_ENV);

    // Both: refused, saying to set only one.
    let mut e = full_env();
    e.insert("ATTUNE_NOTIFIER_WS_URL".into(), "wss://notifier/ws".into());
    assert_eq!(
        err_env(&e),
        "ATTUNE_NOTIFIER_WS_URL and ATTUNE_MQ_URL are both set: set only one — \
         ATTUNE_NOTIFIER_WS_URL for the notifier WebSocket (platform V4 and later) or \
         ATTUNE_MQ_URL for RabbitMQ (V1–V3)"
    );

    // The same on stdin, with the keys' names.
    let base = json!({"api_url": "http://a", "api_token": "t", "sensor_ref": "s"});
    assert_eq!(
        Settings::from_stdin_json(&base.to_string(), &env(&[]))
            .unwrap_err()
            .to_string(),
        "notifier_ws_url or mq_url is required: set notifier_ws_url for the notifier \
         WebSocket (platform V4 and later) or mq_url for RabbitMQ (V1–V3)"
    );
    let mut both = base.clone();
    both["mq_url"] = json!("amqp://m");
    both["notifier_ws_url"] = json!("wss://n/ws");
    assert_eq!(
        Settings::from_stdin_json(&both.to_string(), &env(&[]))
            .unwrap_err()
            .to_string(),
        "notifier_ws_url and mq_url are both set: set only one — notifier_ws_url for the \
         notifier WebSocket (platform V4 and later) or mq_url for RabbitMQ (V1–V3)"
    );
    let mut ws = base.clone();
    ws["notifier_ws_url"] = json!("ws://example.com/ws");
    ws["allow_insecure_notifier_ws"] = json!(true);
    let s = Settings::from_stdin_json(&ws.to_string(), &env(&[])).unwrap();
    assert_eq!(s.transport(), Transport::NotifierWs);
    assert!(s.allow_insecure_notifier_ws);
    ws["allow_insecure_notifier_ws"] = json!("yes");
    assert_eq!(
        Settings::from_stdin_json(&ws.to_string(), &env(&[]))
            .unwrap_err()
            .to_string(),
        "Failed to parse JSON configuration from stdin"
    );
}

#[test]
fn notifier_url_validation_follows_the_sixth_generation() {
    // Order: the empty checks (mq_exchange does not matter here), the api_url scheme, then
    // the notifier URL's own checks.
    let mut e = ws_env("");
    e.insert("ATTUNE_API_URL".into(), "ftp://api".into());
    e.insert("ATTUNE_MQ_EXCHANGE".into(), "".into());
    assert_eq!(err_env(&e), "notifier_ws_url cannot be empty");
    e.insert("ATTUNE_NOTIFIER_WS_URL".into(), "  ".into());
    assert_eq!(err_env(&e), "notifier_ws_url cannot be empty");
    e.insert("ATTUNE_NOTIFIER_WS_URL".into(), "kafka://x".into());
    assert_eq!(err_env(&e), "api_url must start with http:// or https://");
    e.insert("ATTUNE_API_URL".into(), "http://api".into());

    let cases = [
        ("ws://", "notifier_ws_url is not a valid URL"),
        ("not a url", "notifier_ws_url is not a valid URL"),
        (
            "wss://sensor:secret@notifier/ws",
            "notifier_ws_url must not contain credentials",
        ),
        (
            "ws://sensor@127.0.0.1/ws",
            "notifier_ws_url must not contain credentials",
        ),
        (
            "unix:/run/notifier.sock",
            "notifier_ws_url must include a host",
        ),
        (
            "http://notifier:8081/ws",
            "notifier_ws_url must use wss:// or ws://",
        ),
        (
            "ws://192.0.2.10:8081/ws",
            "non-loopback notifier_ws_url requires wss:// or allow_insecure_notifier_ws=true",
        ),
        (
            "ws://[2001:db8::1]/ws",
            "non-loopback notifier_ws_url requires wss:// or allow_insecure_notifier_ws=true",
        ),
        (
            "ws://no-such-notifier.invalid/ws",
            "failed to resolve notifier websocket host 'no-such-notifier.invalid'",
        ),
    ];
    for (url, message) in cases {
        e.insert("ATTUNE_NOTIFIER_WS_URL".into(), url.into());
        assert_eq!(err_env(&e), message, "for {url}");
    }
    // Never echoes credentials.
    e.insert(
        "ATTUNE_NOTIFIER_WS_URL".into(),
        "wss://sensor:secret@notifier/ws".into(),
    );
    assert!(!format!(
        "{:#}",
        anyhow::Error::from(Settings::from_env(&e).unwrap_err())
    )
    .contains("secret"));

    // Accepted: wss anywhere, ws to loopback hosts (by name or address).
    for url in [
        "wss://notifier.example/ws",
        "ws://127.0.0.1:8081/ws",
        "ws://localhost:8081/ws",
        "ws://[::1]:8081/ws",
        " ws://127.0.0.1/ws ",
    ] {
        e.insert("ATTUNE_NOTIFIER_WS_URL".into(), url.into());
        let s = Settings::from_env(&e).unwrap_or_else(|err| panic!("{url}: {err}"));
        assert_eq!(s.notifier_ws_url.as_deref(), Some(url.trim()));
    }
}

#[test]
fn allowing_insecure_notifier_websockets() {
    let mut e = ws_env("ws://192.0.2.10:8081/ws");
    e.insert("ATTUNE_ALLOW_INSECURE_NOTIFIER_WS".into(), "true".into());
    let s = Settings::from_env(&e).unwrap();
    assert!(s.allow_insecure_notifier_ws);
    // Allowing plaintext does not skip the other checks.
    e.insert(
        "ATTUNE_NOTIFIER_WS_URL".into(),
        "ws://a:b@192.0.2.10/ws".into(),
    );
    assert_eq!(err_env(&e), "notifier_ws_url must not contain credentials");
    e.insert(
        "ATTUNE_NOTIFIER_WS_URL".into(),
        "ws://192.0.2.10:8081/ws".into(),
    );

    // The two-underscore fallback applies only when the first is unset.
    e.remove("ATTUNE_ALLOW_INSECURE_NOTIFIER_WS");
    e.insert(
        "ATTUNE__SENSOR__ALLOW_INSECURE_NOTIFIER_WS".into(),
        "true".into(),
    );
    assert!(Settings::from_env(&e).unwrap().allow_insecure_notifier_ws);
    e.insert("ATTUNE_ALLOW_INSECURE_NOTIFIER_WS".into(), "false".into());
    assert_eq!(
        err_env(&e),
        "non-loopback notifier_ws_url requires wss:// or allow_insecure_notifier_ws=true"
    );

    // Rust's bool parsing: exact `true` / `false` only, checked before validation.
    for bad in ["TRUE", "1", "yes", " true", ""] {
        e.insert("ATTUNE_ALLOW_INSECURE_NOTIFIER_WS".into(), bad.into());
        e.insert("ATTUNE_API_URL".into(), "".into());
        assert_eq!(err_env(&e), format!("invalid boolean value \"{bad}\""));
    }
    let mut e = ws_env("ws://192.0.2.10/ws");
    e.insert(
        "ATTUNE__SENSOR__ALLOW_INSECURE_NOTIFIER_WS".into(),
        "on".into(),
    );
    assert_eq!(err_env(&e), "invalid boolean value \"on\"");
}

#[test]
fn periodic_resync_interval() {
    let s = Settings::from_env(&full_env()).unwrap();
    assert_eq!(s.resync_interval, Some(Duration::from_secs(300)));
    let mut e = full_env();
    e.insert("ATTUNE_RESYNC_INTERVAL_SECS".into(), "0".into());
    assert_eq!(Settings::from_env(&e).unwrap().resync_interval, None);
    e.insert("ATTUNE_RESYNC_INTERVAL_SECS".into(), " 60 ".into());
    assert_eq!(
        Settings::from_env(&e).unwrap().resync_interval,
        Some(Duration::from_secs(60))
    );
    for bad in ["-1", "86401", "5m"] {
        e.insert("ATTUNE_RESYNC_INTERVAL_SECS".into(), bad.into());
        assert_eq!(
            err_env(&e),
            format!(
                "Invalid ATTUNE_RESYNC_INTERVAL_SECS '{bad}': expected a whole number of seconds \
                 from 0 (off) to 86400"
            )
        );
    }
    let text = json!({"api_url": "http://a", "api_token": "t", "sensor_ref": "s",
                      "notifier_ws_url": "wss://n/ws", "resync_interval_secs": 0});
    assert_eq!(
        Settings::from_stdin_json(&text.to_string(), &env(&[]))
            .unwrap()
            .resync_interval,
        None
    );
}

#[test]
fn input_limits() {
    use attune_timer::platform::feed::InputLimits;
    let s = Settings::from_env(&full_env()).unwrap();
    assert_eq!(s.input_limits, InputLimits::default());
    assert_eq!(s.input_limits.max_message_bytes, 1 << 20);
    assert_eq!(s.input_limits.max_params_bytes, 64 << 10);
    let mut e = full_env();
    e.insert("ATTUNE_MAX_MESSAGE_BYTES".into(), "4096".into());
    e.insert("ATTUNE_MAX_RULE_PARAMS_BYTES".into(), "1024".into());
    let s = Settings::from_env(&e).unwrap();
    assert_eq!(s.input_limits.max_message_bytes, 4096);
    assert_eq!(s.input_limits.max_params_bytes, 1024);
    e.insert("ATTUNE_MAX_MESSAGE_BYTES".into(), "100".into());
    assert_eq!(
        err_env(&e),
        "Invalid ATTUNE_MAX_MESSAGE_BYTES '100': expected a whole number of bytes from 1024 to 67108864"
    );
    e.insert("ATTUNE_MAX_MESSAGE_BYTES".into(), "4096".into());
    e.insert("ATTUNE_MAX_RULE_PARAMS_BYTES".into(), "16777217".into());
    assert_eq!(
        err_env(&e),
        "Invalid ATTUNE_MAX_RULE_PARAMS_BYTES '16777217': expected a whole number of bytes from 64 to 16777216"
    );
    // A long or odd bad value is quoted as a short escaped excerpt only.
    e.insert(
        "ATTUNE_MAX_RULE_PARAMS_BYTES".into(),
        format!("\"{}", "9".repeat(500)),
    );
    let msg = err_env(&e);
    assert!(
        msg.starts_with("Invalid ATTUNE_MAX_RULE_PARAMS_BYTES '\\\"999"),
        "{msg}"
    );
    assert!(msg.contains("…'"), "{msg}");
    assert!(msg.len() < 200, "{msg}");
}
