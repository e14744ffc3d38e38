//! The HTTP request path: parsing, framing, chunked decoding, limits and response writing,
//! whole and cut into reads (see `eventide::http::testing::fuzz_entry`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| eventide::http::testing::fuzz_entry(data));
