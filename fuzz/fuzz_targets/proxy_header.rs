#![no_main]
// The property checked lives in gisgate::fuzzing, where tests/fuzz_corpus.rs
// replays the saved inputs on the stable toolchain.
libfuzzer_sys::fuzz_target!(|data: &[u8]| gisgate::fuzzing::proxy_header(data));
