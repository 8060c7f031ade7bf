//! The settings file: loads, or is refused with a message naming the file and what is wrong
//! (the daemon then exits with status 2).
#![no_main]

use bahinlink::configuration::Settings;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(e) = Settings::from_layers(Some(("fuzz.toml", text)), std::iter::empty()) {
        assert!(!e.to_string().is_empty());
    }
});
