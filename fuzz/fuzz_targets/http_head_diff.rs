//! The request-head fast path against `httparse` (see `eventide::http::testing::head_diff_entry`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| eventide::http::testing::head_diff_entry(data));
