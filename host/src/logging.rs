//! Logging: tracing to stderr (stdout is local mode's event stream), as JSON lines by
//! default or as human-readable lines, filtered by the `ATTUNE_LOG_LEVEL` / `--log-level`
//! EnvFilter directive. Also the one place URLs are made safe to log.
//!
//! JSON lines have the event's fields at the top level:
//! `{"timestamp":"…","level":"INFO","message":"Event created","event_id":12,"rule_id":7,…}`.
//!
//! Never log a token, a URL's credentials, path or query, or a response body: log
//! [`url_for_log`] (the origin) instead.

use tracing::Subscriber;
use tracing_subscriber::fmt::MakeWriter;

use crate::config::{ConfigError, Detail, LogFormat, Settings};

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
    let filter = crate::config::parse_log_level(level)?;
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

/// Logs the loaded settings (contract §1.2 step 2), with the URLs reduced to origins.
pub fn log_settings(settings: &Settings) {
    tracing::info!(
        config_source = settings.source.as_str(),
        log_level = %settings.log_level,
        log_format = settings.log_format.as_str(),
        outbox_capacity = settings.outbox_capacity,
        outbox_concurrency = settings.outbox_concurrency,
        "Configuration loaded"
    );
    tracing::info!(
        sensor_ref = %settings.sensor_ref,
        api_url = %url_for_log(&settings.api_url),
        mq_url = %url_for_log(&settings.mq_url),
        mq_exchange = %settings.mq_exchange,
        "Configuration loaded successfully: sensor_ref={}, api_url={}",
        settings.sensor_ref,
        url_for_log(&settings.api_url)
    );
}

/// The part of a URL that is safe to log: `scheme://host[:port]`, without credentials,
/// path, query or fragment. Anything that does not parse logs as `<redacted URL>`.
pub fn url_for_log(url: &str) -> String {
    match url::Url::parse(url.trim()) {
        Ok(u) => match u.host_str() {
            Some(host) if !host.is_empty() => match u.port() {
                Some(port) => format!("{}://{}:{}", u.scheme(), host, port),
                None => format!("{}://{}", u.scheme(), host),
            },
            _ => "<redacted URL>".to_string(),
        },
        Err(_) => "<redacted URL>".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_log_as_origins_only() {
        assert_eq!(
            url_for_log("https://user:pw@api.example.com:8443/base/path?token=abc#x"),
            "https://api.example.com:8443"
        );
        assert_eq!(
            url_for_log("http://127.0.0.1:8080/"),
            "http://127.0.0.1:8080"
        );
        assert_eq!(
            url_for_log("amqp://guest:secret@rabbit:5672/%2f"),
            "amqp://rabbit:5672"
        );
        assert_eq!(url_for_log("not a url secret"), "<redacted URL>");
        assert_eq!(url_for_log("mailto:someone@example.com"), "<redacted URL>");
    }
}
