//! `attune-core-timer-sensor`: a thin binary over the `attune_timer` library.
//!
//! Without a subcommand it runs the daemon (settings from the environment, or from stdin
//! with `--stdin-config`); with `--rules FILE` it runs local mode; `check` tries a rule's
//! params.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use clap::{Args, Parser, Subcommand, ValueEnum};

use attune_timer::app::check::{self, CheckRequest};
use attune_timer::app::local::{self, LineSink, LocalOptions};
use attune_timer::app::logging;
use attune_timer::component::{CallError, RuleError, Source};
use attune_timer::daemon;
use attune_timer::daemon::config::{
    compile_cache_from, parse_admin_addr, LogFormat, Overrides, ProcessEnv, Settings,
};

const SETTINGS_HELP: &str = "\
Settings (daemon mode). Read from the environment, or with --stdin-config from one JSON
object on stdin whose keys are the lowercase names in brackets (only that object is used
then, except for the variables from ATTUNE_TIMER_MAX_MEMORY_MB on below, which are still
read from the environment and which its keys override):
  ATTUNE_API_URL [api_url]           required. Attune API base URL (http:// or https://).
  ATTUNE_API_TOKEN [api_token]       required. The sensor token (a JWT). Never logged. Its
                                     metadata.trigger_types limit the trigger refs served.
  ATTUNE_SENSOR_REF [sensor_ref]     required. The sensor's ref, e.g. core.timer_sensor. The
                                     broker queue is sensor.<ref>; payloads carry it.
  Rule changes come over exactly one transport: set ATTUNE_NOTIFIER_WS_URL (platform V4
  and later) or ATTUNE_MQ_URL (V1-V3), not both; neither, or both, is refused.
  ATTUNE_NOTIFIER_WS_URL [notifier_ws_url]
                                     the notifier WebSocket URL (wss://, or ws:// to a host
                                     that resolves to loopback only), e.g. ws://localhost:8081/ws.
  ATTUNE_ALLOW_INSECURE_NOTIFIER_WS [allow_insecure_notifier_ws]
                                     default: false. true allows ws:// to any host (fallback:
                                     ATTUNE__SENSOR__ALLOW_INSECURE_NOTIFIER_WS). true or false.
  ATTUNE_MQ_URL [mq_url]             RabbitMQ URL (amqp:// or amqps://).
  ATTUNE_MQ_EXCHANGE [mq_exchange]   default: attune. RabbitMQ only: the topic exchange of rule
                                     lifecycle messages (the Attune API publishes to
                                     attune.events).
  ATTUNE_LOG_LEVEL [log_level]       default: info. A tracing directive (-l overrides).
  ATTUNE_LOG_FORMAT [log_format]     default: json. json or pretty (--log-format overrides).
  ATTUNE_SENSOR_TRIGGERS [sensor_triggers]
                                     default: none. JSON array of rules to run from the start,
                                     [{\"id\":1,\"trigger_ref\":\"core.intervaltimer\",\"config\":{..}}];
                                     trigger_ref may be left out (inferred from the config).
  ATTUNE_TIMER_COMPONENT [timer_component]
                                     default: the built-in component. A timer component
                                     (.wasm) to run instead (--component overrides).
  ATTUNE_TIMER_MAX_MEMORY_MB [timer_max_memory_mb]
                                     default: 64. Memory cap of a component instance (1-16384).
  ATTUNE_TIMER_CALL_DEADLINE_MS [timer_call_deadline_ms]
                                     default: 100. CPU deadline of one component call
                                     (1-60000).
  ATTUNE_TIMER_MAX_PAYLOAD_BYTES [timer_max_payload_bytes]
                                     default: 65536. Largest event payload (256-16777216).
  ATTUNE_TIMER_CACHE_DIR [timer_cache_dir]
                                     default: $XDG_CACHE_HOME/attune-timer-sensor, else
                                     ~/.cache/attune-timer-sensor. Compiled-component cache;
                                     off, none or disabled turns it off.
  ATTUNE_STATE_DIR [state_dir]       default: $STATE_DIRECTORY (systemd), else
                                     $XDG_STATE_HOME/attune-timer-sensor, else
                                     ~/.local/state/attune-timer-sensor (--state-dir
                                     overrides). The state store (SQLite, state.db): events not
                                     yet delivered and each rule's timer state survive crashes
                                     and restarts. One daemon per directory. off, none or
                                     disabled keeps state in memory only.
  ATTUNE_OUTBOX_CAPACITY [outbox_capacity]
                                     default: 100000. Events held in memory, queued or being
                                     delivered; with a state store more wait on disk, without
                                     one more are refused with an error log (1-10000000).
  ATTUNE_OUTBOX_CONCURRENCY [outbox_concurrency]
                                     default: 64. Event requests in flight at most (1-256):
                                     the delivery adapts below it, growing while events wait
                                     and halving when the API is overloaded.
  ATTUNE_OUTBOX_MAX_AGE [outbox_max_age]
                                     default: 24h. An event the API has not taken this long
                                     after it fired is dropped and logged (Failed to create
                                     event). A duration: 90s, 15m, 24h, 2d, or seconds.
  ATTUNE_OUTBOX_MAX_BYTES [outbox_max_bytes]
                                     default: 1073741824 (1 GiB). With a state store: the
                                     most payload bytes waiting on disk; over it the oldest
                                     events are dropped and logged (at least 1048576).
  ATTUNE_MISFIRE [misfire]           default: latest. Ticks missed while the daemon was down:
                                     latest fires the most recent one once, all fires each
                                     (oldest first, paced, at most 1000 per rule), skip fires
                                     none. Only ticks within the grace fire.
  ATTUNE_MISFIRE_GRACE [misfire_grace]
                                     default: 1h. How old a missed tick may be and still fire.
  ATTUNE_ADMIN_ADDR [admin_addr]     default: 127.0.0.1:8971. The admin listener: GET /metrics
                                     (Prometheus text; OpenMetrics on request), /healthz,
                                     /readyz and /rules (JSON). An IP address and port (0: any
                                     free port), or off (--admin-addr overrides). Read-only;
                                     keep it on loopback or a private network.
  ATTUNE_READY_MAX_OUTBOX_AGE [ready_max_outbox_age]
                                     default: 5m. /readyz fails while the oldest undelivered
                                     event is older than this. A duration: 90s, 15m, 1h.
  ATTUNE_RESYNC_INTERVAL_SECS [resync_interval_secs]
                                     default: 300. How often the rules are re-synced from the
                                     API's listing besides after every reconnect (0-86400;
                                     0 turns it off).
  ATTUNE_MAX_MESSAGE_BYTES [max_message_bytes]
                                     default: 1048576. Largest rule lifecycle message (broker
                                     message or WebSocket frame) read; larger ones are refused
                                     with a log line giving size and kind (1024-67108864).
  ATTUNE_MAX_RULE_PARAMS_BYTES [max_rule_params_bytes]
                                     default: 65536. Largest trigger_params of one rule; a
                                     larger rule is refused and does not run (64-16777216).

Local mode (--rules FILE) needs no API and no broker. It reads ATTUNE_SENSOR_REF (default:
core.timer_sensor), ATTUNE_LOG_LEVEL, ATTUNE_LOG_FORMAT (default there: pretty) and
ATTUNE_TIMER_COMPONENT; the component runs with its default limits.

Signals: SIGTERM or SIGINT stops consuming, stops the clock (saving timer states), delivers
pending events (at most 10 s; with a state store what is left stays there for the next
start) and exits 0. SIGHUP reloads the timer component (as does a change of its file, polled
every 2 s): it is swapped in only if every running rule still validates with it; otherwise
the old one stays and the log says which check failed for which rules.";

/// The Attune timer sensor: fires time-based events for Attune rules, with its timer logic
/// in a sandboxed WebAssembly component.
///
/// Without a subcommand it runs the daemon: it loads the active timer rules from the Attune
/// API, follows rule changes over the notifier WebSocket or RabbitMQ and creates an event
/// through the API each time a rule fires. With --rules FILE it runs local mode instead: the same clock and component on
/// a file of rules, with each event printed on stdout as one JSON line.
#[derive(Debug, Parser)]
#[command(name = "attune-core-timer-sensor", version, about, long_about, after_help = SETTINGS_HELP)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Read the daemon's settings as one JSON object from stdin instead of the environment.
    #[arg(long, conflicts_with = "rules")]
    stdin_config: bool,
    /// Log level: a tracing directive such as info, debug or attune_timer=debug. Overrides
    /// ATTUNE_LOG_LEVEL (default: info).
    #[arg(short = 'l', long, value_name = "LEVEL")]
    log_level: Option<String>,
    /// Log format on stderr: json or pretty. Overrides ATTUNE_LOG_FORMAT (default: json; in
    /// local mode: pretty).
    #[arg(long, value_name = "FORMAT")]
    log_format: Option<String>,
    /// A timer component (.wasm) to run instead of the built-in one. Overrides
    /// ATTUNE_TIMER_COMPONENT (and `timer_component` with --stdin-config).
    #[arg(long, value_name = "PATH")]
    component: Option<PathBuf>,
    /// Local mode: run the rules in FILE (a JSON array of {"id", "ref"?, "trigger_ref"?,
    /// "trigger_params"}) with no API and no broker. A one-shot's "fire_at" may be written
    /// relative to the start, e.g. "+5s" (local mode only). See examples/rules.json.
    #[arg(long, value_name = "FILE")]
    rules: Option<PathBuf>,
    /// The state directory: undelivered events and timer states survive restarts there.
    /// Overrides ATTUNE_STATE_DIR in daemon mode; in local mode (which otherwise keeps
    /// state in memory) it keeps timer states across runs.
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// The admin listener's address (/metrics, /healthz, /readyz, /rules), an IP address and
    /// port, or off. Overrides ATTUNE_ADMIN_ADDR (default: 127.0.0.1:8971). Local mode
    /// serves one only when given this option.
    #[arg(long, value_name = "ADDR")]
    admin_addr: Option<String>,
    /// Where local mode sends events.
    #[arg(long, value_enum, default_value_t = Sink::Stdout, requires = "rules")]
    sink: Sink,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Sink {
    /// One JSON line per event: the body the daemon would POST to /api/v1/events.
    Stdout,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Show what a rule's params mean: the normalized schedule, the next fires and the
    /// first fire's payload. Exits 2 when the params are refused.
    Check(CheckArgs),
}

#[derive(Debug, Args)]
struct CheckArgs {
    /// The rule's trigger params, as JSON text.
    params: String,
    /// The rule's trigger ref (e.g. core.crontimer). Omitted: inferred from the params' keys.
    #[arg(long)]
    trigger_ref: Option<String>,
    /// How many upcoming fires to list.
    #[arg(long, default_value_t = 5)]
    count: usize,
    /// The instant to start from (RFC 3339). Default: the current time.
    #[arg(long, value_parser = parse_rfc3339)]
    now: Option<DateTime<Utc>>,
    /// A timer component to use instead of the built-in one.
    #[arg(long, env = "ATTUNE_TIMER_COMPONENT")]
    component: Option<PathBuf>,
    /// The sensor ref the payload carries.
    #[arg(long, env = "ATTUNE_SENSOR_REF", default_value = "core.timer_sensor")]
    sensor_ref: String,
    /// Print machine-readable JSON.
    #[arg(long)]
    json: bool,
}

fn parse_rfc3339(s: &str) -> Result<DateTime<Utc>, String> {
    let t = DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("expected an RFC 3339 time such as 2026-03-26T12:00:00Z: {e}"))?;
    // chrono reads a leap second (`:60`) as a second with a nanosecond part of 10^9 or more,
    // which no timer speaks: say so here rather than fail deep in a component call.
    if chrono::Timelike::nanosecond(&t) >= 1_000_000_000 {
        return Err(format!(
            "{s:?} is a leap second (:60), which timers do not use: give :59 or the next minute"
        ));
    }
    Ok(t)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Check(args)) => report(run_check(args)),
        None => match cli.rules.clone() {
            Some(rules) => run_local(cli, rules),
            None => run_daemon(cli),
        },
    }
}

fn report(result: anyhow::Result<ExitCode>) -> ExitCode {
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("Error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn tokio_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("attune-timer")
        .build()
        .context("cannot start the async runtime")
}

/// The daemon. Configuration errors go to stderr before logging starts; later failures are
/// logged. Exit 0 after a graceful shutdown, 1 on any failure.
fn run_daemon(cli: Cli) -> ExitCode {
    let overrides = Overrides {
        log_level: cli.log_level,
        log_format: cli.log_format,
    };
    let loaded = if cli.stdin_config {
        Settings::from_process_stdin(&ProcessEnv, &overrides)
    } else {
        Settings::from_env_with(&ProcessEnv, &overrides)
    };
    let mut settings = match loaded {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("Error: {:#}", anyhow::Error::from(e));
            return ExitCode::FAILURE;
        }
    };
    if let Some(component) = cli.component {
        settings.timer_component = Some(component);
    }
    if let Some(dir) = cli.state_dir {
        settings.state_dir = Some(dir);
    }
    if let Some(addr) = &cli.admin_addr {
        match parse_admin_addr(addr) {
            Ok(addr) => settings.admin_addr = addr,
            Err(e) => {
                eprintln!("Error: {:#}", anyhow::Error::from(e));
                return ExitCode::FAILURE;
            }
        }
    }
    if let Err(e) = logging::init(&settings.log_level, settings.log_format) {
        eprintln!("Error: {:#}", anyhow::Error::from(e));
        return ExitCode::FAILURE;
    }
    let runtime = match tokio_runtime() {
        Ok(runtime) => runtime,
        Err(e) => {
            tracing::error!("{e:#}");
            return ExitCode::FAILURE;
        }
    };
    // The signal handlers go in first thing, so SIGTERM during start-up stops cleanly.
    let result = runtime.block_on(async { daemon::run(settings, daemon::shutdown_signal()).await });
    runtime.shutdown_timeout(Duration::from_secs(1));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Local mode: events on stdout, logs on stderr.
fn run_local(cli: Cli, rules_file: PathBuf) -> ExitCode {
    let Sink::Stdout = cli.sink;
    let env = |key: &str| std::env::var(key).ok().filter(|v| !v.trim().is_empty());
    let level = cli
        .log_level
        .or_else(|| env("ATTUNE_LOG_LEVEL"))
        .unwrap_or_else(|| "info".to_string());
    let format = match LogFormat::parse(
        &cli.log_format
            .or_else(|| env("ATTUNE_LOG_FORMAT"))
            .unwrap_or_else(|| "pretty".to_string()),
    ) {
        Ok(format) => format,
        Err(e) => {
            eprintln!("Error: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = logging::init(&level, format) {
        eprintln!("Error: {:#}", anyhow::Error::from(e));
        return ExitCode::FAILURE;
    }
    let admin_addr = match cli.admin_addr.as_deref().map(parse_admin_addr) {
        None => None,
        Some(Ok(addr)) => addr,
        Some(Err(e)) => {
            tracing::error!("{:#}", anyhow::Error::from(e));
            return ExitCode::FAILURE;
        }
    };
    let options = LocalOptions {
        rules_file,
        component: cli
            .component
            .or_else(|| env("ATTUNE_TIMER_COMPONENT").map(PathBuf::from)),
        limits: Default::default(),
        cache: compile_cache_from(&ProcessEnv),
        sensor_ref: env("ATTUNE_SENSOR_REF").unwrap_or_else(|| "core.timer_sensor".to_string()),
        state_dir: cli.state_dir,
        misfire: Default::default(),
        admin_addr,
    };
    let sink = LineSink::stdout();
    let result = tokio_runtime().and_then(|runtime| {
        let result = runtime
            .block_on(async { local::run(options, sink.clone(), daemon::shutdown_signal()).await });
        runtime.shutdown_timeout(Duration::from_secs(1));
        result
    });
    sink.close();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run_check(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let runtime = Source {
        component: args.component.clone(),
        limits: Default::default(),
        cache: compile_cache_from(&ProcessEnv),
        // `check` exports nothing.
        metrics: Default::default(),
    }
    .load()?;
    let refusal = |error: RuleError| {
        if args.json {
            println!("{}", check::error_json(&error));
        } else {
            eprintln!("Invalid params: {error}");
        }
        Ok(ExitCode::from(2))
    };
    let params = match serde_json::from_str(&args.params) {
        Ok(params) => params,
        Err(e) => {
            return refusal(RuleError {
                field: None,
                message: format!("trigger params are not valid JSON: {e}"),
            })
        }
    };
    let request = CheckRequest {
        trigger_ref: args.trigger_ref.clone(),
        params,
        count: args.count,
        now: args.now.unwrap_or_else(Utc::now),
        sensor_ref: args.sensor_ref.clone(),
    };
    match check::run(&runtime, &request) {
        Ok(report) if args.json => {
            println!(
                "{}",
                serde_json::to_string_pretty(&check::to_json(&report))?
            );
            Ok(ExitCode::SUCCESS)
        }
        Ok(report) => {
            print!("{}", check::to_text(&report, &runtime));
            Ok(ExitCode::SUCCESS)
        }
        Err(CallError::Rule(error)) => refusal(error),
        Err(fault) => Err(fault).context("the timer component failed"),
    }
}
