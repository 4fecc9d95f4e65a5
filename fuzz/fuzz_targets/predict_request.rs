//! The prediction request parser (`POST /predict` and `POST /predict/batch` bodies).
//!
//! Every input goes through both parsers of two request contracts: the committed model's
//! manifest, and a made-up model whose feature names need escaping. Properties (see
//! `check_predict_body`): no panic; an accepted request has 1 to 100 rows, each one value per
//! feature within that feature's allowed range, equal to what a plain JSON parser reads from the
//! body (an array in feature order, or an object with exactly the features' names), which is an
//! object with only the expected member; valid JSON is never reported as malformed; every 422
//! names at least one RFC 6901 pointer, whose parent exists in the document; no refusal is
//! larger than twice its request or 4 KiB.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| secure_ml_fuzz::check_predict_body(body));
