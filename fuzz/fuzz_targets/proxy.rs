//! PROXY protocol headers (v1 and v2): nothing panics, a header never
//! claims more bytes than it was given or than the bounds, and no prefix
//! of an input contradicts what the whole input decides.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| oxinetd::proxy::exercise(data));
