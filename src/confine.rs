//! What a service's handlers may do, as configured: resource limits,
//! priority, umask, privileges (no_new_privs, capabilities) and the
//! filesystem and network they see (chroot, private /tmp, an empty
//! network namespace). The resolver fills it (`config/resolve/confine.rs`),
//! `spawn::Plan` turns it into the child's plain data, and the child
//! applies it between clone and exec (`sys/spawn/child.rs`): a step that
//! fails stops the child before exec, so a handler never runs less
//! confined than its config says.

use std::path::PathBuf;

/// A resource limit that `rlimits` can set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    As,
    Cpu,
    Data,
    Fsize,
    Nofile,
    Nproc,
    Core,
    Stack,
}

/// How a resource's value is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Bytes, with an optional K, M or G suffix.
    Bytes,
    /// CPU seconds.
    Seconds,
    /// A count (files, processes).
    Count,
}

impl Resource {
    /// Every resource, in the order oxinetd.toml(5) lists them.
    pub const ALL: [Resource; 8] = [
        Resource::As,
        Resource::Cpu,
        Resource::Data,
        Resource::Fsize,
        Resource::Nofile,
        Resource::Nproc,
        Resource::Core,
        Resource::Stack,
    ];

    /// Its name in `rlimits = { … }`.
    pub fn name(self) -> &'static str {
        match self {
            Resource::As => "as",
            Resource::Cpu => "cpu",
            Resource::Data => "data",
            Resource::Fsize => "fsize",
            Resource::Nofile => "nofile",
            Resource::Nproc => "nproc",
            Resource::Core => "core",
            Resource::Stack => "stack",
        }
    }

    pub fn from_name(name: &str) -> Option<Resource> {
        Resource::ALL.into_iter().find(|r| r.name() == name)
    }

    pub fn unit(self) -> Unit {
        match self {
            Resource::Cpu => Unit::Seconds,
            Resource::Nofile | Resource::Nproc => Unit::Count,
            _ => Unit::Bytes,
        }
    }

    /// The kernel's number for it (`RLIMIT_*`; its C type differs between
    /// glibc and musl).
    #[allow(clippy::unnecessary_cast)]
    pub fn id(self) -> u32 {
        (match self {
            Resource::As => libc::RLIMIT_AS,
            Resource::Cpu => libc::RLIMIT_CPU,
            Resource::Data => libc::RLIMIT_DATA,
            Resource::Fsize => libc::RLIMIT_FSIZE,
            Resource::Nofile => libc::RLIMIT_NOFILE,
            Resource::Nproc => libc::RLIMIT_NPROC,
            Resource::Core => libc::RLIMIT_CORE,
            Resource::Stack => libc::RLIMIT_STACK,
        }) as u32
    }
}

/// One limit: soft and hard both set to `limit`; `None` is "infinity".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rlimit {
    pub resource: Resource,
    pub limit: Option<u64>,
}

/// A service's confinement. `Default` is none at all (what a classic
/// inetd.conf or xinetd service gets unless it asks); TOML services get
/// `no_new_privs` on unless they say `false`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Confine {
    /// At most one per resource, in the order written.
    pub rlimits: Vec<Rlimit>,
    /// The handler's nice value, -20..=19.
    pub nice: Option<i32>,
    pub umask: Option<u32>,
    pub no_new_privs: bool,
    /// The handler's root directory; `server` is a path inside it.
    pub chroot: Option<PathBuf>,
    /// Capability numbers (`CAP_*`) kept in the bounding set and raised in
    /// the ambient set. `None`: the default, drop every capability when
    /// the handler's user is not root, keep them when it is.
    pub capabilities: Option<Vec<u8>>,
    /// A fresh tmpfs on /tmp and /var/tmp, in a mount namespace of the
    /// handler's own.
    pub private_tmp: bool,
    /// An empty network namespace: only the socket it was given.
    pub private_network: bool,
}

impl Confine {
    /// Whether anything is asked.
    pub fn is_empty(&self) -> bool {
        *self == Confine::default()
    }
}
