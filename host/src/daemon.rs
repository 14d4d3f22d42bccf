//! The daemon: startup, the run, and a graceful shutdown.
//!
//! Startup ([`Daemon::start`]), in order; any failure is fatal and says why:
//! 1. log the settings (origins only);
//! 2. `GET /health` → `API connectivity verified`, or `Failed to connect to Attune API`;
//! 3. load the timer component (embedded, or `ATTUNE_TIMER_COMPONENT`) with the configured
//!    limits and compile cache;
//! 4. read the token's claims: trigger refs in scope = the token's `metadata.trigger_types`
//!    ∩ the refs the component handles (all of them without that claim); start token
//!    renewal (which warns about an expired or nearly expired token at once);
//! 5. connect to RabbitMQ: the topic exchange, the queue `sensor.<sensor_ref>`, its four
//!    bindings, a prefetch, and consuming;
//! 6. then list the active rules of every ref in scope through the REST API and apply them,
//!    with the `ATTUNE_SENSOR_TRIGGERS` rules, as one snapshot — since the queue is bound
//!    first, no change made meanwhile is missed;
//! 7. log `Timer sensor ready` with the number of rules running.
//!
//! While it runs, SIGHUP or a change of the component file swaps the component live (see
//! [`crate::swap`]; the SIGHUP handler is installed first thing in startup).
//!
//! The run ([`Daemon::run`]) consumes lifecycle messages until the shutdown future
//! resolves (SIGTERM or SIGINT in the binary, see [`shutdown_signal`]). Shutdown: stop
//! consuming and close the broker connection, stop the clock, flush the outbox (at most
//! [`FLUSH_WITHIN`]), stop token renewal, `Timer sensor has shut down gracefully`.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use futures_util::future::BoxFuture;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::api::{ApiClient, DEFAULT_REQUEST_TIMEOUT};
use crate::clock::Clock;
use crate::config::Settings;
use crate::lifecycle::{self, Listener, ListenerConfig, Session};
use crate::logging;
use crate::outbox::Outbox;
use crate::rules::{RuleSource, RuleTable};
use crate::runtime::Rule;
use crate::swap::{self, Source, Triggers, POLL_EVERY};
use crate::token::{self, TokenHandle};

/// How long shutdown waits for pending events to be delivered.
pub const FLUSH_WITHIN: Duration = Duration::from_secs(10);

/// The active rules, from the Attune API's rules listing (contract §1.3(d)).
#[derive(Debug, Clone)]
pub struct ApiRules {
    api: ApiClient,
}

impl ApiRules {
    pub fn new(api: ApiClient) -> Self {
        Self { api }
    }
}

impl RuleSource for ApiRules {
    fn active_rules<'a>(
        &'a self,
        trigger_refs: &'a [String],
    ) -> BoxFuture<'a, anyhow::Result<Vec<Rule>>> {
        Box::pin(async move {
            let mut rules = Vec::new();
            for trigger_ref in trigger_refs {
                let listed = self.api.list_active_rules(trigger_ref).await?;
                rules.extend(listed.into_iter().filter(|r| r.enabled).map(|r| Rule {
                    id: r.id,
                    r#ref: r.r#ref,
                    trigger_ref: Some(r.trigger_ref).filter(|t| !t.is_empty()),
                    trigger_params: r.trigger_params,
                }));
            }
            Ok(rules)
        })
    }
}

/// A started daemon: connected, rules loaded and running.
pub struct Daemon {
    clock: Clock,
    table: RuleTable,
    /// Where the component comes from, and what asks to swap it (see [`crate::swap`]).
    swap_source: Source,
    swap_triggers: Triggers,
    listener: Listener,
    session: Session,
    outbox: Outbox,
    renewal: JoinHandle<()>,
    /// Dropping or setting it stops token renewal.
    renewal_stop: watch::Sender<bool>,
}

impl std::fmt::Debug for Daemon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Daemon")
            .field("table", &self.table)
            .finish_non_exhaustive()
    }
}

impl Daemon {
    /// Runs the startup sequence (see the module docs). Returns once the initial snapshot is
    /// applied and lifecycle messages are being received.
    pub async fn start(settings: Settings) -> anyhow::Result<Daemon> {
        logging::log_settings(&settings);
        let triggers = Triggers::install(settings.timer_component.clone(), POLL_EVERY);
        let token = TokenHandle::new(settings.api_token.clone());
        let api = ApiClient::new(&settings.api_url, token.clone(), DEFAULT_REQUEST_TIMEOUT)
            .context("Failed to connect to Attune API")?;

        info!("Verifying API connectivity...");
        api.health()
            .await
            .context("Failed to connect to Attune API")?;
        info!(api = %api.origin(), "API connectivity verified");

        let source = Source {
            component: settings.timer_component.clone(),
            limits: settings.limits.clone(),
            cache: settings.compile_cache(),
        };
        let loading = source.clone();
        let runtime = crate::clock::spawn_blocking_traced(move || loading.load())
            .await
            .context("loading the timer component panicked")??;
        let component = runtime.info().clone();
        info!(
            component = %component.name,
            component_version = %component.version,
            wit_version = %component.wit_version,
            content_hash = %component.content_hash,
            trigger_refs = ?component.trigger_refs,
            "Timer component loaded"
        );

        let scope = token::trigger_scope(&token.current(), &component.trigger_refs)?;
        info!(trigger_refs = ?scope, "Trigger refs in scope: {}", scope.join(", "));
        let (renewal_stop, mut stop_rx) = watch::channel(false);
        let renewal = token::spawn_renewal(api.clone(), async move {
            let _ = stop_rx.wait_for(|stop| *stop).await;
        });

        let outbox = Outbox::start(api.clone(), settings.outbox_options());
        let clock = Clock::spawn(
            Arc::new(runtime),
            outbox.sink(),
            settings.sensor_ref.clone(),
        );
        info!("Timer manager initialized");
        let table = RuleTable::new(clock.clone(), scope);
        if !settings.sensor_triggers.is_empty() {
            let bootstrap: Vec<Rule> = settings
                .sensor_triggers
                .iter()
                .map(|b| Rule {
                    id: b.id,
                    r#ref: String::new(),
                    trigger_ref: b.trigger_ref.clone().filter(|t| !t.trim().is_empty()),
                    trigger_params: b.config.clone(),
                })
                .collect();
            info!(
                rules = bootstrap.len(),
                "Loaded managed trigger bootstrap state from ATTUNE_SENSOR_TRIGGERS"
            );
            table.set_bootstrap(bootstrap).await;
        }

        let config = ListenerConfig::new(
            &settings.mq_url,
            &settings.mq_exchange,
            &settings.sensor_ref,
        );
        let session = lifecycle::connect(&config).await.with_context(|| {
            format!(
                "Failed to connect to RabbitMQ at {}",
                logging::url_for_log(&settings.mq_url)
            )
        })?;
        let listener = Listener::new(config, table.clone(), Arc::new(ApiRules::new(api)));
        info!("Rule lifecycle listener initialized");

        if let Err(e) = listener.resync().await {
            session.close(&listener.config().consumer_tag).await;
            clock.shutdown().await;
            outbox.shutdown(Duration::ZERO).await;
            return Err(e.context("Failed to load active rules from the Attune API"));
        }
        let running = clock.len();
        info!(
            rules_running = running,
            "Timer sensor ready: {running} rules running"
        );
        Ok(Daemon {
            clock,
            table,
            swap_source: source,
            swap_triggers: triggers,
            listener,
            session,
            outbox,
            renewal,
            renewal_stop,
        })
    }

    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    pub fn rules(&self) -> &RuleTable {
        &self.table
    }

    /// Runs until `shutdown` resolves, then shuts down gracefully.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let Daemon {
            clock,
            table,
            swap_source,
            swap_triggers,
            listener,
            session,
            outbox,
            renewal,
            renewal_stop,
        } = self;
        let swap_watch = swap::spawn_watch(table, swap_source, swap_triggers);
        info!("Starting rule lifecycle listener...");
        listener
            .run(session, async {
                shutdown.await;
                info!("Shutting down");
            })
            .await;
        swap_watch.abort();
        clock.shutdown().await;
        let report = outbox.shutdown(FLUSH_WITHIN).await;
        info!(
            delivered = report.delivered,
            failed = report.failed,
            abandoned = report.abandoned.len(),
            elapsed_ms = report.elapsed.as_millis() as u64,
            "Outbox flushed"
        );
        let _ = renewal_stop.send(true);
        if let Err(e) = renewal.await {
            warn!("The token renewal task failed: {e}");
        }
        info!("Timer sensor has shut down gracefully");
        Ok(())
    }
}

/// Starts the daemon and runs it until `shutdown` resolves. A shutdown during start-up
/// (loading 100,000 rules takes seconds) abandons the start and returns `Ok`.
pub async fn run(settings: Settings, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let mut shutdown = std::pin::pin!(shutdown);
    let daemon = tokio::select! {
        daemon = Daemon::start(settings) => daemon?,
        _ = &mut shutdown => {
            info!("Start-up abandoned: shutdown requested before the sensor was ready");
            return Ok(());
        }
    };
    daemon.run(shutdown).await
}

/// Resolves on the first SIGTERM or SIGINT (Ctrl-C) after the call. The handlers are
/// installed by the call itself (it must be made inside the tokio runtime), so a signal
/// that arrives before the future is first polled — during start-up — is not lost, and
/// does not kill the process.
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let handlers = match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(term), Ok(int)) => Some((term, int)),
            _ => None,
        };
        async move {
            match handlers {
                Some((mut term, mut int)) => {
                    let name = tokio::select! {
                        _ = term.recv() => "SIGTERM",
                        _ = int.recv() => "SIGINT",
                    };
                    info!(signal = name, "Shutdown signal received ({name})");
                }
                None => {
                    warn!("Cannot install signal handlers; falling back to Ctrl-C only");
                    let _ = tokio::signal::ctrl_c().await;
                    info!("Shutdown signal received");
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
            info!("Shutdown signal received");
        }
    }
}
