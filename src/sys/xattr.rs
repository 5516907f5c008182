//! Extended attributes: only whether a file carries a POSIX ACL.

use std::os::unix::ffi::OsStrExt as _;
use std::path::Path;

/// Whether `path` (links followed) has an access ACL, which can grant
/// what its mode bits deny; false when it has none, or it cannot be told.
pub fn has_acl(path: &Path) -> bool {
    let Ok(cpath) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    let name = c"system.posix_acl_access";
    // SAFETY: both pointers are NUL-terminated strings that live across
    // the call; a null buffer of size 0 asks only for the value's size,
    // so nothing is written.
    let n = unsafe { libc::getxattr(cpath.as_ptr(), name.as_ptr(), std::ptr::null_mut(), 0) };
    n > 0
}
