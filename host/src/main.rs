//! `attune-core-timer-sensor`: a thin binary over the `attune_timer` library.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use chrono::{DateTime, Utc};
use clap::{Args, Parser, Subcommand};

use attune_timer::check::{self, CheckRequest};
use attune_timer::runtime::{CallError, CompileCache, RuleError, TimerRuntime};

/// The Attune timer sensor: fires time-based events for Attune rules, with its timer logic
/// in a sandboxed WebAssembly component.
#[derive(Debug, Parser)]
#[command(name = "attune-core-timer-sensor", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
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
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("expected an RFC 3339 time such as 2026-03-26T12:00:00Z: {e}"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Check(args)) => run_check(args),
        None => Err(anyhow::anyhow!(
            "the daemon is not built yet; try `attune-core-timer-sensor check --help`"
        )),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("Error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run_check(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let builder = TimerRuntime::builder().cache(CompileCache::default_location());
    let runtime = match &args.component {
        Some(path) => builder
            .file(path)
            .with_context(|| format!("cannot load the timer component {}", path.display()))?,
        None => builder
            .embedded()
            .context("cannot load the built-in timer component")?,
    };
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
            println!("{}", serde_json::to_string_pretty(&check::to_json(&report))?);
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
