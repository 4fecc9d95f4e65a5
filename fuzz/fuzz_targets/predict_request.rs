//! The prediction request parser (`POST /predict` and `POST /predict/batch` bodies).
//!
//! Every input goes through both parsers. Properties (see `check_predict_body`): no panic; an
//! accepted request has 1 to 100 rows of finite values in (0, 100], equal to what a plain JSON
//! parser reads from the body, which is an object with only the expected member; valid JSON is
//! never reported as malformed; every 422 names at least one RFC 6901 pointer, whose parent
//! exists in the document.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| secure_ml_fuzz::check_predict_body(body));
