//! Memory: the page size, a scratch mapping of its own (`Pages`), and
//! handing the heap's free pages back (`trim_heap`).

use libc::c_void;

pub(crate) fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    match unsafe { libc::sysconf(libc::_SC_PAGESIZE) } {
        p if p > 0 => p as usize,
        _ => 4096,
    }
}

/// A large scratch buffer in an anonymous mapping of its own: a page
/// costs memory only once something is read into it, and [`Pages::release`]
/// hands pages back, so a buffer sized for bulk transfers does not stay in
/// the supervisor's RSS after them (the allocator would keep it mapped).
pub struct Pages {
    base: std::ptr::NonNull<u8>,
    len: usize,
}

impl Pages {
    pub fn new(len: usize) -> std::io::Result<Pages> {
        // SAFETY: a fresh anonymous private mapping; nothing else refers to
        // the address range it returns.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len.max(1),
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        match std::ptr::NonNull::new(base.cast::<u8>()) {
            Some(base) => Ok(Pages { base, len }),
            None => Err(std::io::Error::from(std::io::ErrorKind::OutOfMemory)),
        }
    }

    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: the mapping is `len` bytes, readable and writable (fresh
        // pages read as zeros), and lives as long as `self`; `&mut self`
        // makes this the only reference to it.
        unsafe { std::slice::from_raw_parts_mut(self.base.as_ptr(), self.len) }
    }

    /// Give back the pages from byte `from` (rounded up to a page) to the
    /// end: they read as zeros again and count in RSS only when next used.
    pub fn release(&mut self, from: usize) {
        let start = from.next_multiple_of(page_size());
        if start >= self.len {
            return;
        }
        // SAFETY: the range lies inside our own mapping, which starts on a
        // page boundary; no reference into the buffer outlives the
        // `as_mut_slice` borrow, so nothing observes the zeroed pages.
        unsafe {
            libc::madvise(
                self.base.as_ptr().add(start).cast::<c_void>(),
                self.len - start,
                libc::MADV_DONTNEED,
            )
        };
    }
}

impl Drop for Pages {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `new`.
        unsafe { libc::munmap(self.base.as_ptr().cast::<c_void>(), self.len.max(1)) };
    }
}

/// Give the heap's free memory back to the kernel: loading a config
/// allocates a lot that dies with the load (the parsed document, spans,
/// strings), and glibc keeps freed pages mapped, so without this they
/// would count in the supervisor's RSS until the next load reuses them.
/// musl's allocator unmaps freed memory by itself and has no such call.
pub fn trim_heap() {
    // SAFETY: malloc_trim only walks and releases glibc's free lists; it
    // has no preconditions.
    #[cfg(target_env = "gnu")]
    unsafe {
        libc::malloc_trim(0)
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn released_pages_read_as_zeros_and_the_rest_is_kept() {
        let page = page_size();
        let mut p = Pages::new(8 * page).unwrap();
        p.as_mut_slice().fill(7);
        // Rounded up to the end of the second page: the first two stay.
        p.release(page + 1);
        let b = p.as_mut_slice();
        assert!(b[..2 * page].iter().all(|&x| x == 7));
        assert!(b[2 * page..].iter().all(|&x| x == 0));
        p.release(8 * page);
        assert_eq!(p.as_mut_slice()[0], 7);
    }
}
