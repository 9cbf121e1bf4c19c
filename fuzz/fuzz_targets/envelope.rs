//! Fuzzes `ApiError::from_json`: never panics; what parses serializes and parses back equal.
#![no_main]

use libfuzzer_sys::fuzz_target;
use telecho_retry::ApiError;

fuzz_target!(|data: &[u8]| {
    if let Ok(e) = ApiError::from_json(data) {
        let again = ApiError::from_json(e.to_json().as_bytes()).expect("own output parses");
        assert_eq!(again, e);
    }
});
