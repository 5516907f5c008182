//! The integration tests: one target, a module per feature. Every test
//! starts the real `oxinetd` binary and talks to it over real sockets.

mod harness;

mod access;
mod check;
mod child;
mod clients;
mod compat;
mod confine_limits;
mod confine_sandbox;
mod confine_timeout;
mod control;
mod demo;
mod dgram;
mod fail2ban;
mod forward;
mod handover;
mod harden_flood;
mod harden_include;
mod harden_internal;
mod harden_reload;
mod harden_signals;
mod harden_unix_socket;
mod internal;
mod lifecycle;
mod limits;
mod logging;
mod metrics;
mod migrate;
mod packaging;
mod proxy;
mod reload;
mod sockopt;
mod stream;
mod tls;
mod unix;
mod update_inetd;
