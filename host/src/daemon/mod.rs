//! The daemon layer: settings ([`config`]), and the daemon's startup, run and graceful
//! shutdown. May use `platform`, `schedule`, `component` and `support`; the binary's
//! commands (`app`) sit above it.
//!
//! Startup ([`Daemon::start`]), in order; any failure is fatal and says why:
//! 1. log the settings (origins only); bind the admin listener ([`admin`],
//!    `ATTUNE_ADMIN_ADDR`), which answers from then on (`/readyz`: not ready yet);
//! 2. `GET /health` → `API connectivity verified`, or `Failed to connect to Attune API`;
//! 3. load the timer component (embedded, or `ATTUNE_TIMER_COMPONENT`) with the configured
//!    limits and compile cache;
//! 4. open the state store (`ATTUNE_STATE_DIR`; see [`crate::store`]): a locked, damaged
//!    or newer store stops the start with a message saying so; what an earlier run left
//!    (undelivered events, timer states) is loaded;
//! 5. read the token's claims: trigger refs in scope = the token's `metadata.trigger_types`
//!    ∩ the refs the component handles (all of them without that claim); start token
//!    renewal (which warns about an expired or nearly expired token at once);
//! 6. connect the rule-lifecycle transport the settings chose
//!    ([`crate::platform::transport`]): RabbitMQ (the topic exchange, the queue
//!    `sensor.<sensor_ref>`, its four bindings, a prefetch, and consuming) or the notifier
//!    WebSocket (the handshake with the token, one subscription per trigger ref in scope);
//! 7. then list the active rules of every ref in scope through the REST API and apply them,
//!    with the `ATTUNE_SENSOR_TRIGGERS` rules, as one snapshot — since the transport
//!    receives first, no change made meanwhile is missed;
//! 8. log `Timer sensor ready` with the number of rules running; tell systemd
//!    (`notify`: `READY=1`, and the watchdog when the unit asks for one).
//!
//! While it runs, SIGHUP or a change of the component file swaps the component live (see
//! [`crate::schedule::swap`]; the SIGHUP handler is installed first thing in startup).
//!
//! Ownership: the daemon owns every task it starts — the clock (through a
//! [`ClockGuard`]), the outbox's dispatcher, token renewal and the swap watch (through
//! [`TaskGuard`]s). A start that fails halfway stops, in reverse order, what it had
//! started; a start abandoned by a shutdown signal (its future dropped) or a `Daemon`
//! dropped without [`Daemon::run`] aborts them through the guards. Nothing outlives its
//! owner.
//!
//! The run ([`Daemon::run`]) consumes lifecycle messages until the shutdown future
//! resolves (SIGTERM or SIGINT in the binary, see [`shutdown_signal`]). Shutdown: tell
//! systemd `STOPPING=1`, stop consuming and close the broker connection, stop the clock (saving timer states), flush
//! the outbox (at most [`FLUSH_WITHIN`]; with a store what is left stays journaled), close
//! the store, stop token renewal, `Timer sensor has shut down gracefully`.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::watch;
use tracing::{info, warn};

pub mod admin;
pub mod config;
mod notify;

use crate::component::watch::{Triggers, POLL_EVERY};
use crate::component::{Rule, Source};
use crate::platform::api::{ApiClient, DEFAULT_REQUEST_TIMEOUT};
use crate::platform::lifecycle::ListenerConfig;
use crate::platform::notifier::NotifierConfig;
use crate::platform::outbox::Outbox;
use crate::platform::renewal;
use crate::platform::token::{self, TokenHandle};
use crate::platform::transport::{LifecycleTransport, TransportConfig};
use crate::schedule::{swap, Clock, ClockGuard, ClockOptions, RuleTable};
use crate::store::{Store, StoreOptions};
use crate::support::blocking::TaskGuard;
use crate::telemetry::Metrics;
use admin::{AdminListener, AdminState};
use config::{log_settings, Settings};

/// How long shutdown waits for pending events to be delivered.
pub const FLUSH_WITHIN: Duration = Duration::from_secs(10);

/// Token renewal: its task, and the switch that stops it.
struct Renewal {
    task: TaskGuard,
    /// Setting it (or dropping it) ends the loop.
    stop: watch::Sender<bool>,
}

impl Renewal {
    fn start(api: ApiClient) -> Self {
        let (stop, mut stop_rx) = watch::channel(false);
        let task = renewal::spawn_renewal(api, async move {
            let _ = stop_rx.wait_for(|stop| *stop).await;
        });
        Self {
            task: TaskGuard::new(task),
            stop,
        }
    }

    async fn stop(self) {
        let _ = self.stop.send(true);
        if let Err(e) = self.task.join().await {
            warn!("The token renewal task failed: {e}");
        }
    }
}

/// A started daemon: connected, rules loaded and running.
pub struct Daemon {
    clock: Clock,
    /// Stops the clock if the daemon is dropped without [`Daemon::run`].
    _clock_guard: ClockGuard,
    table: RuleTable,
    /// Where the component comes from, and what asks to swap it (see [`swap`]).
    swap_source: Source,
    swap_triggers: Triggers,
    transport: LifecycleTransport,
    outbox: Outbox,
    store: Option<Store>,
    renewal: Renewal,
    /// Serves `/metrics`, `/healthz`, `/readyz` and `/rules` until the daemon is gone.
    admin: Option<AdminListener>,
    admin_state: Arc<AdminState>,
    /// Pets the systemd watchdog while the clock turns (when the unit asks for it).
    _watchdog: Option<TaskGuard>,
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
    /// applied and lifecycle messages are being received. On an error, everything started
    /// so far has been stopped.
    pub async fn start(settings: Settings) -> anyhow::Result<Daemon> {
        log_settings(&settings);
        let triggers = Triggers::install(settings.timer_component.clone(), POLL_EVERY);
        let token = TokenHandle::new(settings.api_token.clone());
        let metrics = Metrics::new();
        let admin_state = AdminState::new(
            metrics.clone(),
            Some(token.clone()),
            settings.ready_max_outbox_age,
        );
        let admin = match settings.admin_addr {
            Some(addr) => Some(AdminListener::start(addr, admin_state.clone()).await?),
            None => None,
        };
        let api = ApiClient::with_metrics(
            &settings.api_url,
            token.clone(),
            DEFAULT_REQUEST_TIMEOUT,
            metrics.clone(),
        )
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
            metrics: metrics.clone(),
        };
        let runtime = source.load_in_background().await?;
        let component = runtime.info().clone();

        let store = open_store(&settings, &metrics).await?;
        let restored = match &store {
            Some(store) => store
                .load_rules()
                .await
                .context("Cannot read timer states from the state store")?,
            None => Default::default(),
        };

        let scope = token::trigger_scope(&token.current(), &component.trigger_refs)?;
        metrics.declare_trigger_refs(&scope);
        info!(trigger_refs = ?scope, "Trigger refs in scope: {}", scope.join(", "));

        // From here on, tasks run: each is owned by `started` until the daemon takes them.
        let renewal = Renewal::start(api.clone());
        let outbox = match &store {
            Some(store) => {
                Outbox::start_durable(api.clone(), settings.outbox_options(), store.clone())
                    .await
                    .context("Cannot read the outbox's journal from the state store")?
            }
            None => Outbox::start(api.clone(), settings.outbox_options()),
        };
        let clock = Clock::spawn_with(
            Arc::new(runtime),
            outbox.sink(),
            settings.sensor_ref.clone(),
            ClockOptions {
                store: store.clone(),
                restored,
                misfire: settings.misfire,
                utc_now: None,
                wall: None,
                metrics,
            },
        );
        admin_state.set_clock(clock.clone());
        let started = Started {
            clock_guard: clock.guard(),
            clock,
            outbox,
            store,
            renewal,
        };
        info!("Timer manager initialized");
        match Self::connect(&settings, api, scope, &started.clock).await {
            Ok((table, transport)) => {
                admin_state.set_running(
                    table.clone(),
                    Some(started.outbox.handle()),
                    Some(transport.feed().clone()),
                    started.store.clone(),
                );
                notify::ready();
                let watchdog = notify::start_watchdog(started.clock.clone());
                Ok(Daemon {
                    clock: started.clock,
                    _clock_guard: started.clock_guard,
                    table,
                    swap_source: source,
                    swap_triggers: triggers,
                    transport,
                    outbox: started.outbox,
                    store: started.store,
                    renewal: started.renewal,
                    admin,
                    admin_state,
                    _watchdog: watchdog,
                })
            }
            Err(e) => {
                started.stop().await;
                Err(e)
            }
        }
    }

    /// Steps 5 and 6 of the start: the rule table, the transport, and the first snapshot.
    async fn connect(
        settings: &Settings,
        api: ApiClient,
        scope: Vec<String>,
        clock: &Clock,
    ) -> anyhow::Result<(RuleTable, LifecycleTransport)> {
        let table = RuleTable::new(clock.clone(), scope);
        if !settings.sensor_triggers.is_empty() {
            let bootstrap: Vec<Rule> = settings
                .sensor_triggers
                .iter()
                .map(|b| Rule {
                    id: b.id,
                    r#ref: String::new(),
                    trigger_ref: Rule::given_trigger_ref(b.trigger_ref.clone()),
                    trigger_params: b.config.clone(),
                })
                .collect();
            info!(
                rules = bootstrap.len(),
                "Loaded managed trigger bootstrap state from ATTUNE_SENSOR_TRIGGERS"
            );
            table.set_bootstrap(bootstrap).await;
        }

        let config = match &settings.notifier_ws_url {
            Some(url) => TransportConfig::NotifierWs(NotifierConfig::new(
                url,
                settings.allow_insecure_notifier_ws,
            )),
            None => TransportConfig::RabbitMq(ListenerConfig::new(
                &settings.mq_url,
                &settings.mq_exchange,
                &settings.sensor_ref,
            )),
        };
        let transport =
            LifecycleTransport::connect(config, table.clone(), api, settings.input_limits)
                .await?
                .with_periodic_resync(settings.resync_interval);

        if let Err(e) = transport.resync().await {
            transport.close().await;
            return Err(e.context("Failed to load active rules from the Attune API"));
        }
        let running = clock.len();
        info!(
            rules_running = running,
            "Timer sensor ready: {running} rules running"
        );
        Ok((table, transport))
    }

    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    pub fn rules(&self) -> &RuleTable {
        &self.table
    }

    /// Where the admin listener listens (`None` when `ATTUNE_ADMIN_ADDR=off`).
    pub fn admin_addr(&self) -> Option<std::net::SocketAddr> {
        self.admin.as_ref().map(AdminListener::addr)
    }

    /// Runs until `shutdown` resolves, then shuts down gracefully.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let Daemon {
            clock,
            _clock_guard,
            table,
            swap_source,
            swap_triggers,
            transport,
            outbox,
            store,
            renewal,
            admin,
            admin_state,
            _watchdog,
        } = self;
        let swap_watch = TaskGuard::new(swap::spawn_watch(table, swap_source, swap_triggers));
        info!("Starting rule lifecycle listener...");
        transport
            .run(async {
                shutdown.await;
                notify::stopping();
                admin_state.set_stopping();
                info!("Shutting down");
            })
            .await;
        drop(swap_watch);
        clock.shutdown().await;
        let report = outbox.shutdown(FLUSH_WITHIN).await;
        info!(
            delivered = report.delivered,
            failed = report.failed,
            kept = report.kept,
            abandoned = report.abandoned.len(),
            elapsed_ms = report.elapsed.as_millis() as u64,
            "Outbox flushed"
        );
        if let Some(store) = store {
            store.close().await;
        }
        renewal.stop().await;
        // Answers (not ready) until the end, so probes see the shutdown.
        drop(admin);
        info!("Timer sensor has shut down gracefully");
        Ok(())
    }
}

/// What a start has set running before the broker and the first snapshot: stopped
/// gracefully when the rest of the start fails, aborted by its guards when the start's
/// future is dropped.
struct Started {
    clock: Clock,
    clock_guard: ClockGuard,
    outbox: Outbox,
    store: Option<Store>,
    renewal: Renewal,
}

impl Started {
    /// Stops, in reverse order of starting, everything the start had started.
    async fn stop(self) {
        self.clock.shutdown().await;
        self.outbox.shutdown(Duration::ZERO).await;
        if let Some(store) = &self.store {
            store.close().await;
        }
        self.renewal.stop().await;
        drop(self.clock_guard);
    }
}

/// Opens the state store the settings name, or says loudly that nothing will survive a
/// restart.
async fn open_store(settings: &Settings, metrics: &Metrics) -> anyhow::Result<Option<Store>> {
    let Some(dir) = settings.state_dir.clone() else {
        warn!(
            "No state directory (ATTUNE_STATE_DIR=off): undelivered events and timer states \
             live in memory only and do not survive a restart"
        );
        return Ok(None);
    };
    let options = StoreOptions {
        metrics: metrics.clone(),
        ..StoreOptions::default()
    };
    let store = Store::open_in_background(dir, options)
        .await
        .context("Cannot open the state store")?;
    Ok(Some(store))
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
