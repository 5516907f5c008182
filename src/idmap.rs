//! Maps keyed by numbers the supervisor or the kernel chose: listener and
//! connection ids, pids. No peer picks these keys, so they need no keyed
//! hash; SipHash's was a tenth of the supervisor's own instructions per
//! connection (callgrind, ARCHITECTURE.md "The spawn path"). Maps keyed by
//! what a peer sends (addresses) keep the standard hasher.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A `HashMap` for supervisor-chosen integer keys.
pub type IdMap<K, V> = HashMap<K, V, BuildHasherDefault<IdHasher>>;

/// One multiply per integer (the constant is FxHash's): enough to spread
/// ids and pids over the table's buckets and control bytes.
#[derive(Default, Clone, Copy)]
pub struct IdHasher(u64);

const K: u64 = 0x517c_c1b7_2722_0a95;

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(K);
    }

    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }

    fn write_i32(&mut self, n: i32) {
        self.write_u64(u64::from(n as u32));
    }

    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_pids_round_trip() {
        let mut m: IdMap<i32, i32> = IdMap::default();
        for pid in (1..5000).chain([i32::MAX, -1]) {
            m.insert(pid, pid.wrapping_mul(2));
        }
        for pid in (1..5000).chain([i32::MAX, -1]) {
            assert_eq!(m.get(&pid), Some(&pid.wrapping_mul(2)));
        }
        assert_eq!(m.remove(&77), Some(154));
        assert!(!m.contains_key(&77));
    }
}
