//! REST bodies of sites, shifts and tours: parsed, or a 400 (not JSON, unknown field, wrong
//! type) or 422 (a value out of its domain) naming the problem; nothing else.
#![no_main]

use bahinlink::api::{error::ApiError, extract::parse_json};
use libfuzzer_sys::fuzz_target;

fn check<T>(result: Result<T, ApiError>) {
    if let Err(e) = result {
        assert!(
            matches!(e, ApiError::BadRequest { .. } | ApiError::Unprocessable { .. }),
            "{e:?}"
        );
        assert!(!e.to_string().is_empty());
    }
}

fuzz_target!(|data: &[u8]| {
    check(parse_json::<bahinlink::api::sites::CreateSite>(data));
    check(parse_json::<bahinlink::api::shifts::CreateShift>(data));
    check(parse_json::<bahinlink::api::tours::CreateTour>(data));
});
