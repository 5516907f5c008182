//! The stack a spawn child runs on.

use libc::c_void;

use crate::sys::memory::page_size;

/// The stack a spawn child runs on, with an inaccessible page below it so
/// an overflow faults instead of writing into other memory.
pub(super) struct ChildStack {
    base: *mut c_void,
    /// Length of the mapping, guard page included.
    len: usize,
}

impl ChildStack {
    /// Usable size: the child's frames need a few KiB even unoptimised.
    const SIZE: usize = 64 * 1024;

    pub fn new() -> std::io::Result<ChildStack> {
        let page = page_size();
        let len = Self::SIZE + page;
        // SAFETY: a fresh anonymous private mapping; nothing else refers to
        // the address range it returns.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        let stack = ChildStack { base, len };
        // Stacks grow down on every Linux target we build for: the guard is
        // the lowest page.
        // SAFETY: `base` starts our own mapping, which is longer than a page.
        if unsafe { libc::mprotect(base, page, libc::PROT_NONE) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(stack)
    }

    /// The initial stack pointer: the end of the mapping, 16-byte aligned
    /// (a page boundary).
    pub fn top(&self) -> *mut c_void {
        self.base.wrapping_byte_add(self.len)
    }
}

impl Drop for ChildStack {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `new`; a stack is
        // dropped only with a slot no child is using (see Launcher's Drop).
        unsafe { libc::munmap(self.base, self.len) };
    }
}
