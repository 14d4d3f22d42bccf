//! The test kit of the Attune timer sensor, shared by the host crate's tests and benches
//! and the conformance crate's tests (a dev-dependency of both; never published).
//!
//! | module | what |
//! |---|---|
//! | [`admin`] | the daemon's admin listener from outside: GET a path, scrape and parse `/metrics` |
//! | [`fake_api`] | an in-process fake of the Attune API (`docs/platform.md`), recording what it is sent |
//! | [`daemon`] | the daemon under test: [`daemon::TestDaemon`] in-process, [`daemon::Broker`], [`daemon::test_env`] |
//! | [`logs`] | [`logs::LogCapture`]: the daemon's own JSON log subscriber, into a buffer |
//! | [`sink`] | [`sink::Collect`]: the one collecting `EventSink`, with a wait-for-n helper |
//! | [`outbox`] | what the outbox tests share: [`outbox::fast_retries`] |
//! | [`rules`] | the rule builders |
//! | [`machine`] | process and machine figures for the benches (Linux `/proc`) |
//! | [`bench`] | what the benches share: the argument parser, the readiness line, JSON reports |
//! | [`wait`] | [`wait::eventually`]: poll a condition in real time, bounded |

pub mod admin;
pub mod bench;
pub mod daemon;
pub mod fake_api;
pub mod logs;
pub mod machine;
pub mod outbox;
pub mod rules;
pub mod sink;
pub mod wait;
