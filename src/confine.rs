//! What a service's handlers may do, as configured: resource limits,
//! priority, umask, privileges (no_new_privs, capabilities) and the
//! filesystem and network they see (chroot, private /tmp, an empty
//! network namespace). The resolver fills it (`config/resolve/confine.rs`),
//! `spawn::Plan` turns it into the child's plain data, and the child
//! applies it between clone and exec (`sys/spawn/child.rs`): a step that
//! fails stops the child before exec, so a handler never runs less
//! confined than its config says. [`caps`] reads, once, the capabilities
//! of the kernel and of oxinetd itself.

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

    /// The limit `rlimits` sets on `resource`, if it sets one.
    pub fn rlimit(&self, resource: Resource) -> Option<Rlimit> {
        self.rlimits
            .iter()
            .find(|r| r.resource == resource)
            .copied()
    }
}

/// The Linux capabilities by number (`CAP_CHOWN` is 0), as `capabilities`
/// names them (lower case, without `CAP_`).
pub const CAPABILITIES: [&str; 41] = [
    "chown",
    "dac_override",
    "dac_read_search",
    "fowner",
    "fsetid",
    "kill",
    "setgid",
    "setuid",
    "setpcap",
    "linux_immutable",
    "net_bind_service",
    "net_broadcast",
    "net_admin",
    "net_raw",
    "ipc_lock",
    "ipc_owner",
    "sys_module",
    "sys_rawio",
    "sys_chroot",
    "sys_ptrace",
    "sys_pacct",
    "sys_admin",
    "sys_boot",
    "sys_nice",
    "sys_resource",
    "sys_time",
    "sys_tty_config",
    "mknod",
    "lease",
    "audit_write",
    "audit_control",
    "setfcap",
    "mac_override",
    "mac_admin",
    "syslog",
    "wake_alarm",
    "block_suspend",
    "audit_read",
    "perfmon",
    "bpf",
    "checkpoint_restore",
];

/// The number of capability `name`: `net_bind_service` or
/// `CAP_NET_BIND_SERVICE`, in any case.
pub fn capability(name: &str) -> Option<u8> {
    let lower = name.to_ascii_lowercase();
    let bare = lower.strip_prefix("cap_").unwrap_or(&lower);
    CAPABILITIES
        .iter()
        .position(|c| *c == bare)
        .map(|n| n as u8)
}

/// What the kernel and oxinetd's own process have, read once: the
/// capabilities this kernel knows, and the bounding and effective sets
/// oxinetd started with (bit N is capability N).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    /// The highest capability number the kernel knows
    /// (`/proc/sys/kernel/cap_last_cap`).
    pub last: u8,
    pub bounding: u64,
    pub effective: u64,
}

impl Caps {
    /// Every capability the kernel knows, as a mask.
    pub fn all(&self) -> u64 {
        match self.last {
            63.. => u64::MAX,
            n => (1u64 << (n + 1)) - 1,
        }
    }

    /// Whether oxinetd may shrink a bounding set (`CAP_SETPCAP`).
    pub fn can_drop(&self) -> bool {
        self.effective & (1 << 8) != 0
    }
}

/// This process's [`Caps`], read from /proc at the first call (the
/// kernel's list does not change while it runs, nor do oxinetd's own
/// sets: it never changes them). Unreadable (no /proc), the kernel is
/// taken to know the capabilities of this table and oxinetd to hold none
/// of them.
pub fn caps() -> Caps {
    static CAPS: std::sync::OnceLock<Caps> = std::sync::OnceLock::new();
    *CAPS.get_or_init(|| {
        let last = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
            .ok()
            .and_then(|s| s.trim().parse::<u8>().ok())
            .map_or(CAPABILITIES.len() as u8 - 1, |n| n.min(63));
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let set = |field: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
                .unwrap_or(0)
        };
        Caps {
            last,
            bounding: set("CapBnd:"),
            effective: set("CapEff:"),
        }
    })
}
