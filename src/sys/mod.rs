//! The only modules with `unsafe`, one per concept (named as `nix` names
//! its modules):
//!
//! - [`spawn`](mod@spawn): starting a handler, the child's fixed list of
//!   raw system calls until `execve`;
//! - [`process`]: the supervisor's startup hygiene, fds given to it
//!   (`adopt_fd`, `set_cloexec`), and forked copies of it for lookups
//!   (`in_child`);
//! - [`signal`]: dispositions set through the raw system call;
//! - [`memory`]: the page size, the scratch mapping `Pages`, `trim_heap`;
//! - [`socket`]: a listener's accept queue, a filter refusing SYNs, and
//!   datagrams answered from the address they came to;
//! - [`epoll`]: the loop's wait with a signal mask;
//! - [`resource`]: the fd limit;
//! - [`time`]: local time (of day, and for log timestamps);
//! - [`xattr`]: whether a file has an ACL (the server reach check).
//!
//! Callers use the names re-exported here.

pub mod epoll;
pub mod memory;
pub mod process;
pub mod resource;
pub mod signal;
pub mod socket;
pub mod spawn;
pub mod time;
pub mod xattr;

pub use epoll::epoll_pwait;
pub use memory::{trim_heap, Pages};
pub use process::{adopt_fd, in_child, prepare_process, set_cloexec};
pub use resource::raise_nofile;
pub use signal::{any_pending, ignore_signals};
pub use socket::{accept_queue, recv_arrival, refuse_syn, send_from, want_arrival, Arrival};
pub use spawn::{spawn, CloneError, ExecImage, Failure, Ids, Launcher, Limits, Sandbox, Step};
pub use time::{local_minute_of_day, local_time, LocalTime};
pub use xattr::has_acl;
