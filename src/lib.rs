//! oxinetd: an inetd-style super-server.
//!
//! Module map (ARCHITECTURE.md follows one connection through them and
//! lists the decisions; each module's own doc has its design and figures):
//!
//! - [`cli`] — the command line: `run`, `check`, `import`, `status`,
//!   `reload`, `stop`.
//! - [`config`] — every format (TOML, inetd.conf, xinetd) read into one raw
//!   form, then one resolver to the typed `Config`; the key table; `import`
//!   and `check --list` written back as TOML.
//! - [`confine`] — rlimits, nice, umask, privileges, chroot, namespaces:
//!   what a handler may do, applied by the child before exec.
//! - [`access`] — only_from, no_access, access_times: allow or refuse a peer.
//! - [`privilege`] — `user`/`group` to uid, gid and groups, at config time.
//! - [`proxy`] — the PROXY protocol v1/v2 header: parsed, bounded, pure.
//! - [`listener`] — binding TCP/UDP sockets, IPv4/IPv6, and reading peers.
//! - [`sockdir`] — the directories above a UNIX-domain socket, checked.
//! - [`limits`] — instances, per_source, cps: the load a service may take.
//! - [`source_rate`] — per_source_rate's fixed-size table of recent clients.
//! - [`fds`] — the descriptor budget: internal defaults, the reserve.
//! - [`refusal`] — why a peer was turned away, as admission says it.
//! - [`idle`] — the idle sweep's period for `idle_timeout`.
//! - [`flood`] — token buckets for stderr lines and per-peer UDP replies.
//! - [`spawn`] — everything a handler needs, prepared before it is spawned.
//! - [`sys`] — the only `unsafe`, by concept (spawn, process, signal, memory,
//!   socket, epoll, resource, time, xattr): the `CLONE_VM` spawn, the child
//!   until exec, and why its assembly launcher stays (`sys::spawn`).
//! - [`children`] — running handlers by pid; reaping and exit reports.
//! - [`internal`] — echo, discard, chargen, daytime, time, in-process; and
//!   metrics, the Prometheus exporter's HTTP exchange.
//! - [`metrics`] — the Prometheus text format of `status`'s snapshot.
//! - [`forward`] — `forward`: a stream relayed upstream in-process (splice),
//!   and the PROXY header it may send first.
//! - [`relay`] — datagram `nowait` services: request in, reply out, per datagram.
//! - [`supervisor`] — the single-threaded event loop and its states; one
//!   file per kind of event (listeners, admission, accept, internal
//!   connections, forwards, datagrams, `wait`, handlers, apply, timers,
//!   state, handover, control, proxied).
//! - [`reload`] — SIGHUP as a diff of listeners that `apply` consumes.
//! - [`stats`] — per-service counters and the snapshot `status` shows.
//! - [`control`] — the control socket's protocol; `oxinetd status` etc.
//! - [`shutdown`] — the stop after `shutdown_grace`: SIGTERM, SIGKILL, reap.
//! - [`signals`] — signals as events: signal-hook flags, let in only during the wait.
//! - [`notify`] — sd_notify, and the listeners in systemd's fd store.
//! - [`handover`] — listening sockets given at start (socket activation,
//!   the fd store, a re-exec) matched with the config's listeners.
//! - [`log`] — syslog or stderr; every line an `Event`, one `key=value` grammar.
//! - [`render`] — numbers and addresses as text without `core::fmt`.
//! - [`idmap`] — maps keyed by ids oxinetd chose, hashed by one multiply.
//! - [`tls`] — a service's certificate and key, checked at load and sealed
//!   in a memfd; `oxinetd-tls relay`, the per-connection TLS process, a
//!   program of its own (src/bin/oxinetd-tls.rs); `relay --pipe`, the same
//!   for internal services and forwards (`tls`, `forward_tls`).

pub mod access;
pub mod children;
pub mod cli;
pub mod config;
pub mod confine;
pub mod control;
pub mod fds;
pub mod flood;
pub mod forward;
pub mod handover;
pub mod idle;
pub mod idmap;
pub mod internal;
pub mod limits;
pub mod listener;
pub mod log;
pub mod metrics;
pub mod notify;
pub mod privilege;
pub mod proxy;
pub mod refusal;
pub mod relay;
pub mod reload;
pub mod render;
pub mod shutdown;
pub mod signals;
pub mod sockdir;
pub mod source_rate;
pub mod spawn;
pub mod stats;
pub mod supervisor;
#[allow(unsafe_code)]
pub mod sys;
pub mod tls;
