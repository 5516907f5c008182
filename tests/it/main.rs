//! The integration tests: one target, a module per feature. Every test
//! starts the real `oxinetd` binary and talks to it over real sockets.

mod harness;

mod access;
mod check;
mod child;
mod clients;
mod compat;
mod dgram;
mod harden_signals;
mod internal;
mod lifecycle;
mod limits;
mod logging;
mod reload;
mod stream;
mod unix;
