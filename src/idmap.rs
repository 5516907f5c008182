//! Maps keyed by numbers the supervisor or the kernel chose: listener and
//! connection ids, pids. No peer picks these keys, so they need no keyed
//! hash; SipHash's was a tenth of the supervisor's own instructions per
//! connection (callgrind). Maps keyed by what a peer sends (addresses)
//! keep the standard hasher. [`shrink_after_burst`] is called as entries
//! go from the maps of connections, forwards, PROXY waits and per-source
//! counts, so a burst's table is given back (with the heap) instead of
//! kept for good.

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hash, Hasher};

/// A `HashMap` for supervisor-chosen integer keys.
pub type IdMap<K, V> = HashMap<K, V, BuildHasherDefault<IdHasher>>;

/// Entries a map keeps room for however empty it gets: a few, so that
/// after a burst the table held is small (room for 256 internal
/// connections was 111 KiB, kept for good: bench/soak), while the
/// hysteresis below, not this floor, is what keeps a map from thrashing.
const SHRINK_FLOOR: usize = 32;

/// Give back a map's table after a burst: a `HashMap` keeps the table of
/// its busiest moment, so after a few thousand connections came and went
/// (a flood, descriptor exhaustion) the supervisor stayed about a MiB
/// larger for good (found by `bench/soak`: RSS 1.5x after 3,500 internal
/// connections). Call after removing an entry. A table is shrunk only
/// once it is at most an eighth full, to twice its entries: a shrunk table
/// then has to grow its entries fourfold before it outgrows its room.
/// Shrinking as soon as the entries fit half the buckets copied the
/// children's table up and down with each swing of a steady load (56 to
/// 448 entries and back 37 times in 3 s at c=8, when the loop still
/// reaped in batches: `signals`). (`capacity()` cannot tell how empty the
/// table is: removed entries leave tombstones that it does not count as
/// room.) Returns whether the heap's free pages went back to the kernel
/// too: only once the shrink gave back `TRIM_AFTER` bytes or more.
pub fn shrink_after_burst<K: Eq + Hash, V, S: BuildHasher>(map: &mut HashMap<K, V, S>) -> bool {
    let before = map.capacity();
    if map.len() * 8 > before {
        return false;
    }
    map.shrink_to((map.len() * 2).max(SHRINK_FLOOR));
    let freed = before.saturating_sub(map.capacity()) * std::mem::size_of::<(K, V)>();
    let trim = freed >= TRIM_AFTER;
    if trim {
        crate::sys::trim_heap();
    }
    trim
}

/// Table bytes a shrink must give back for the heap to be trimmed after
/// it. The children's table still swings between 64 and 128 buckets
/// under a steady load at c=8, as handlers wait to be reaped; trimming
/// after each of those shrinks (26 KiB when an entry was 464 bytes, 12
/// now) made 44 `malloc_trim`s a second and 0.23 page faults per
/// connection as the next growth touched the returned pages again. What
/// a trim is for is the table of a burst of hundreds or thousands.
const TRIM_AFTER: usize = 64 * 1024;

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

    /// The number alive swinging between 20 and 100, over and over, as
    /// when handlers are reaped in batches: once grown, the table stays
    /// (each shrink is a copy, and the growth after it another).
    #[test]
    fn a_swinging_load_is_not_copied_back_and_forth() {
        let mut m: IdMap<i32, [u8; 64]> = IdMap::default();
        let mut alive = std::collections::VecDeque::new();
        let mut pid = 0;
        let mut copies = 0;
        for cycle in 0..50 {
            let mut cap = m.capacity();
            let mut count = |m: &IdMap<i32, [u8; 64]>| {
                copies += usize::from(cycle > 0 && m.capacity() != cap);
                cap = m.capacity();
            };
            while alive.len() < 100 {
                m.insert(pid, [0; 64]);
                alive.push_back(pid);
                pid += 1;
                count(&m);
            }
            while alive.len() > 20 {
                let gone = alive.pop_front().unwrap_or_default();
                m.remove(&gone);
                shrink_after_burst(&mut m);
                count(&m);
            }
        }
        assert_eq!(copies, 0);
    }

    /// After a burst the table goes back to its floor, and the heap is
    /// trimmed.
    #[test]
    fn a_burst_is_given_back() {
        let mut m: IdMap<i32, [u8; 64]> = IdMap::default();
        for pid in 0..5000 {
            m.insert(pid, [0; 64]);
        }
        assert!(m.capacity() >= 5000);
        let mut trims = 0;
        for pid in 0..5000 {
            m.remove(&pid);
            trims += usize::from(shrink_after_burst(&mut m));
        }
        assert!(m.capacity() <= 2 * SHRINK_FLOOR, "{}", m.capacity());
        assert!(trims >= 1);
    }

    /// A table of a few dozen children (entries as large as they were
    /// before their rare parts were boxed) shrinks, but the heap is left
    /// alone: the load that grew it is likely to grow it again.
    #[test]
    fn a_small_shrink_leaves_the_heap_alone() {
        let mut m: IdMap<i32, [u8; 456]> = IdMap::default();
        for pid in 0..60 {
            m.insert(pid, [0; 456]);
        }
        let grown = m.capacity();
        let mut trims = 0;
        for pid in 0..55 {
            m.remove(&pid);
            trims += usize::from(shrink_after_burst(&mut m));
        }
        assert!(m.capacity() < grown, "{grown} -> {}", m.capacity());
        assert_eq!(trims, 0);
    }
}
