//! [`Rare`]: a setting that most services leave as it commonly is, stored
//! as a null pointer then, not at its full size in every service (idle
//! memory with hundreds of services). Read through `Deref`, as the value.

use std::fmt;
use std::ops::Deref;

/// A type with a common value worth not storing.
pub trait Common: PartialEq + 'static {
    /// What most services have.
    const COMMON: &'static Self;
}

/// `T`, boxed only when it is not `Common::COMMON`.
#[derive(Clone, PartialEq, Eq)]
pub struct Rare<T: Common>(Option<Box<T>>);

impl<T: Common> Rare<T> {
    pub fn new(value: T) -> Rare<T> {
        match &value == T::COMMON {
            true => Rare(None),
            false => Rare(Some(Box::new(value))),
        }
    }

    /// Whether it is the common value (a pointer test).
    pub fn is_common(&self) -> bool {
        self.0.is_none()
    }
}

/// The common value.
impl<T: Common> Default for Rare<T> {
    fn default() -> Rare<T> {
        Rare(None)
    }
}

impl<T: Common> Deref for Rare<T> {
    type Target = T;

    fn deref(&self) -> &T {
        self.0.as_deref().unwrap_or(T::COMMON)
    }
}

impl<T: Common + fmt::Debug> fmt::Debug for Rare<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        (**self).fmt(f)
    }
}

impl Common for crate::access::Access {
    const COMMON: &'static Self = &crate::access::Access {
        only_from: None,
        no_access: Vec::new(),
        times: Vec::new(),
    };
}

impl Common for crate::limits::Limits {
    const COMMON: &'static Self = &crate::limits::Limits::DEFAULT;
}

/// A TOML service's: `no_new_privs` on, nothing else.
impl Common for crate::confine::Confine {
    const COMMON: &'static Self = &crate::confine::Confine {
        rlimits: Vec::new(),
        nice: None,
        umask: None,
        no_new_privs: true,
        chroot: None,
        capabilities: None,
        private_tmp: false,
        private_network: false,
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::confine::Confine;

    #[test]
    fn the_common_value_is_not_stored_and_reads_the_same() {
        let common = Rare::new(Confine::COMMON.clone());
        assert!(common.is_common());
        assert_eq!(*common, *Confine::COMMON);
        let other = Rare::new(Confine::default());
        assert!(!other.is_common());
        assert!(!other.no_new_privs);
        assert_eq!(std::mem::size_of::<Rare<Confine>>(), 8);
    }
}
