//! Fuzz the TCP segment parser: no panic, and parse -> emit -> parse is the identity.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    tcp_engine::fuzzing::parse_segment(data);
});
