//! inetd.conf and xinetd text through both front-ends and the TOML
//! resolver: nothing panics, and the rendered TOML always parses.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| oxinetd::config::fuzz(data));
