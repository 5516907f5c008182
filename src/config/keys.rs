//! The one table of config keys: what each is called, what it holds,
//! where it may be written and whether it means anything for an internal
//! service.
//!
//! The key lists (`SERVICE_KEYS`, `DEFAULTS_KEYS`, `GLOBAL_KEYS`), the
//! "did you mean" suggestions, the internal-service check and the test that
//! oxinetd.toml(5) documents every key are all read from here: a new key is
//! one row (plus its resolver and its man page entry).

/// What a key's value is, as oxinetd.toml(5) says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Str,
    /// A string or a list of strings.
    Strs,
    /// A list of strings (a single string is refused).
    List,
    Bool,
    Int,
    /// Seconds: an integer or a decimal.
    Seconds,
    /// A table of strings.
    Table,
    /// A list of numbers (`cps`, `rate`).
    Numbers,
    /// An octal mode: a string or an integer.
    Mode,
}

/// One key.
#[derive(Debug, Clone, Copy)]
pub struct Key {
    pub name: &'static str,
    pub kind: Kind,
    /// May be set in `[defaults]` (shared by every service).
    pub in_defaults: bool,
    /// Means something for an internal service; the others are refused
    /// when set on an internal service itself (they only concern a program).
    pub for_internal: bool,
    pub doc: &'static str,
}

const fn key(
    name: &'static str,
    kind: Kind,
    in_defaults: bool,
    for_internal: bool,
    doc: &'static str,
) -> Key {
    Key {
        name,
        kind,
        in_defaults,
        for_internal,
        doc,
    }
}

use Kind::*;

/// Keys of a `[[service]]` table, in the order oxinetd.toml(5) gives them.
#[rustfmt::skip]
pub const SERVICE: [Key; 58] = [
    key("name", Str, false, true, "the service's name, in logs"),
    key("listen", Strs, false, true, "addresses or UNIX-domain paths to listen on"),
    key("socket", Str, true, true, "stream, dgram or seqpacket"),
    key("protocol", Str, true, true, "tcp, udp or unix"),
    key("wait", Bool, true, true, "hand the socket to one handler rather than each connection"),
    key("user", Str, true, false, "the user handlers run as"),
    key("user_if_root", Str, true, false, "the user handlers run as when oxinetd runs as root and no user is set"),
    key("group", Str, true, false, "the group handlers run as"),
    key("groups", Bool, true, false, "give handlers the user's supplementary groups"),
    key("server", Str, true, true, "the program to run, or internal:NAME"),
    key("forward", Str, false, false, "HOST:PORT: relay each connection there instead of running a server"),
    key("forward_proxy_protocol", Str, true, false, "v1 or v2: send a PROXY header upstream first"),
    key("forward_timeout", Seconds, true, false, "how long connecting upstream may take"),
    key("forward_tls", Table, true, false, "true or { ca, server_name, cert, key }: TLS to the upstream, its certificate verified"),
    key("args", List, true, false, "the arguments after argv[0]"),
    key("argv0", Str, true, false, "argv[0]"),
    key("env", Table, true, false, "environment variables of handlers"),
    key("passenv", List, true, false, "variables passed from oxinetd's environment"),
    key("stderr", Str, true, false, "where a handler's fd 2 goes: log, null or socket"),
    key("only_from", Strs, true, true, "the client addresses allowed"),
    key("no_access", Strs, true, true, "client addresses refused"),
    key("access_times", Strs, true, true, "times of day connections are accepted"),
    key("banner_fail", Str, true, true, "a file sent to a refused TCP client"),
    key("proxy_protocol", Bool, true, true, "read a PROXY protocol v1/v2 header first: the client's address replaces the balancer's"),
    key("proxy_from", Strs, true, true, "the load balancers allowed to send a PROXY header (required with proxy_protocol)"),
    key("proxy_timeout", Seconds, true, true, "how long the PROXY header may take to arrive (3 s)"),
    key("tls", Table, true, true, "TLS in front of the handler, internal service or forward: { cert, key, client_ca, client_auth, alpn, min_version, handshake_timeout, sni }"),
    key("instances", Int, true, true, "most concurrent handlers"),
    key("per_source", Int, true, true, "most concurrent handlers per client address"),
    key("per_source_prefix", Int, true, true, "the IPv6 prefix length per_source counts by"),
    key("per_source_rate", Numbers, true, true, "[COUNT, SECONDS]: connections per window from one client address"),
    key("cps", Numbers, true, true, "[COUNT, PAUSE]: connections per second that pause the service"),
    key("rate", Numbers, true, true, "[COUNT, WINDOW, PAUSE]: connections per window that pause the service"),
    key("reply_rate", Int, true, true, "replies per second of an internal UDP service"),
    key("idle_timeout", Seconds, true, true, "an internal or forwarded TCP connection closes after this idle time"),
    key("peer_reply_rate", Int, true, true, "replies per second of an internal UDP service to one peer"),
    key("log_on_success", Strs, true, true, "fields of the per-connection log lines"),
    key("log_on_failure", Strs, true, true, "fields of the refusal log lines"),
    key("socket_mode", Mode, true, true, "permissions of a UNIX-domain socket's file"),
    key("socket_owner", Str, true, true, "owner of a UNIX-domain socket's file"),
    key("backlog", Int, true, true, "connections the kernel queues for a stream listener"),
    key("reuseport", Bool, true, true, "SO_REUSEPORT: other sockets may bind the same port"),
    key("freebind", Bool, true, true, "bind an address not configured (yet), e.g. a floating address"),
    key("bind_device", Str, true, true, "SO_BINDTODEVICE: only packets of this interface or VRF"),
    key("v6only", Bool, true, true, "whether [IPv6]:PORT listeners refuse IPv4 (default true)"),
    key("keepalive", Bool, true, true, "SO_KEEPALIVE on TCP connections"),
    key("nodelay", Bool, true, true, "TCP_NODELAY on TCP connections"),
    key("defer_accept", Seconds, true, true, "TCP_DEFER_ACCEPT: a connection is accepted once its first data came"),
    key("timeout", Seconds, true, false, "a handler running longer gets SIGTERM, then SIGKILL"),
    key("kill_grace", Seconds, true, false, "how long timeout's SIGTERM waits before SIGKILL"),
    key("rlimits", Table, true, false, "resource limits of handlers: as, cpu, data, fsize, nofile, nproc, core, stack"),
    key("nice", Int, true, false, "the nice value handlers run at"),
    key("umask", Mode, true, false, "the umask handlers run with"),
    key("no_new_privs", Bool, true, false, "handlers cannot gain privileges through exec (on by default)"),
    key("capabilities", List, true, false, "capabilities handlers keep; none when the user is not root"),
    key("chroot", Str, true, false, "the root directory of handlers"),
    key("private_tmp", Bool, true, false, "a fresh /tmp and /var/tmp for each handler"),
    key("private_network", Bool, true, false, "handlers run in an empty network namespace"),
];

/// Keys of `[global]`.
#[rustfmt::skip]
pub const GLOBAL: [Key; 7] = [
    key("syslog_facility", Str, false, false, "the syslog facility of oxinetd's log"),
    key("syslog_socket", Str, false, false, "the syslog daemon's socket"),
    key("shutdown_grace", Seconds, false, false, "how long a stop waits for running handlers"),
    key("loop_pause", Seconds, false, false, "how long a looping wait service is paused"),
    key("max_processes", Int, false, false, "most handler processes across all services"),
    key("control_socket", Str, false, false, "the socket oxinetd status, reload and stop talk to; \"\" for none"),
    key("control_group", Str, false, false, "a group allowed oxinetd status on the control socket"),
];

/// The names of `keys`, in order.
const fn names<const N: usize>(keys: &[Key; N]) -> [&'static str; N] {
    let mut out = [""; N];
    let mut i = 0;
    while i < N {
        out[i] = keys[i].name;
        i += 1;
    }
    out
}

const DEFAULTS_COUNT: usize = {
    let mut n = 0;
    let mut i = 0;
    while i < SERVICE.len() {
        if SERVICE[i].in_defaults {
            n += 1;
        }
        i += 1;
    }
    n
};

const fn defaults_names() -> [&'static str; DEFAULTS_COUNT] {
    let mut out = [""; DEFAULTS_COUNT];
    let (mut i, mut n) = (0, 0);
    while i < SERVICE.len() {
        if SERVICE[i].in_defaults {
            out[n] = SERVICE[i].name;
            n += 1;
        }
        i += 1;
    }
    out
}

/// Keys of a `[[service]]` table.
pub const SERVICE_KEYS: &[&str] = &names(&SERVICE);
/// Keys of `[defaults]`: every service key that can be shared.
pub const DEFAULTS_KEYS: &[&str] = &defaults_names();
/// Keys of `[global]`.
pub const GLOBAL_KEYS: &[&str] = &names(&GLOBAL);
/// Keys at the top of the main file.
pub const ROOT_KEYS: &[&str] = &["global", "defaults", "service", "include"];
/// Keys at the top of an included file.
pub const INCLUDED_ROOT_KEYS: &[&str] = &["service", "include"];

/// The service key called `name`.
pub fn service_key(name: &str) -> Option<&'static Key> {
    SERVICE.iter().find(|k| k.name == name)
}

/// The service keys that only concern a program, refused on an internal
/// service (and, but for the `forward` keys, on a forward).
pub fn program_only() -> impl Iterator<Item = &'static str> {
    SERVICE.iter().filter(|k| !k.for_internal).map(|k| k.name)
}

/// The keys of `forward`, refused on a service that runs a program or an
/// internal service.
pub const FORWARD_KEYS: [&str; 4] = [
    "forward",
    "forward_proxy_protocol",
    "forward_timeout",
    "forward_tls",
];

/// The keys that name who runs a TLS relay: allowed on an internal
/// service or a forward that has one (`tls`, `forward_tls`).
pub const RELAY_KEYS: [&str; 4] = ["user", "user_if_root", "group", "groups"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_documented() {
        let mut all: Vec<&str> = SERVICE_KEYS.iter().chain(GLOBAL_KEYS).copied().collect();
        all.sort_unstable();
        let n = all.len();
        all.dedup();
        assert_eq!(all.len(), n, "a key is in the table twice");
        assert!(SERVICE.iter().chain(&GLOBAL).all(|k| !k.doc.is_empty()));
        assert!(!DEFAULTS_KEYS.contains(&"name") && !DEFAULTS_KEYS.contains(&"listen"));
        assert_eq!(DEFAULTS_KEYS.len(), SERVICE_KEYS.len() - 3);
        assert!(!DEFAULTS_KEYS.contains(&"forward"));
    }
}
