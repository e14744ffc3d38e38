//! The RESP parser and server path, whole and cut into reads (see
//! `eventide::resp::testing::fuzz_entry`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| eventide::resp::testing::fuzz_entry(data));
