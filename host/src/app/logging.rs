//! Logging: tracing to stderr (stdout is local mode's event stream), as JSON lines by
//! default or as human-readable lines, filtered by the `ATTUNE_LOG_LEVEL` / `--log-level`
//! EnvFilter directive.
//!
//! JSON lines have the event's fields at the top level:
//! `{"timestamp":"…","level":"INFO","message":"Event created","event_id":12,"rule_id":7,…}`.
//!
//! Never log a token, a URL's credentials, path or query, or a response body: log
//! `support::redact::url_for_log` (the origin) instead.

use tracing::Subscriber;
use tracing_subscriber::fmt::MakeWriter;

use crate::daemon::config::{parse_log_level, ConfigError, LogFormat};
use crate::support::redact::Detail;

/// The crate version, logged at start.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Builds the subscriber for `level` and `format`, writing through `writer`. Tests capture
/// output with it (`tracing::subscriber::set_default`); [`init`] installs it globally with
/// stderr.
pub fn subscriber<W>(
    level: &str,
    format: LogFormat,
    writer: W,
) -> Result<Box<dyn Subscriber + Send + Sync>, ConfigError>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let filter = parse_log_level(level)?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_target(false)
        .with_thread_ids(true)
        .with_level(true);
    Ok(match format {
        LogFormat::Json => Box::new(
            builder
                .json()
                .flatten_event(true)
                .with_current_span(true)
                .with_span_list(false)
                .finish(),
        ),
        LogFormat::Pretty => Box::new(builder.with_ansi(false).finish()),
    })
}

/// Installs the global subscriber (stderr) and logs the start and the version.
///
/// Errors: `Invalid ATTUNE_LOG_LEVEL / --log-level tracing directive` for a bad directive,
/// `Failed to initialise logging` when a global subscriber is already set.
pub fn init(level: &str, format: LogFormat) -> Result<(), ConfigError> {
    let subscriber = subscriber(level, format, std::io::stderr)?;
    tracing::subscriber::set_global_default(subscriber)
        .map_err(|e| ConfigError::LoggingInit(Detail(e.to_string())))?;
    tracing::info!("Starting Attune Timer Sensor");
    tracing::info!(version = VERSION, "Version: {VERSION}");
    Ok(())
}
