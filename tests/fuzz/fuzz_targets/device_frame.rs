//! A device's WebSocket text frame: every event parses or is a rejection with a code and a
//! message (what the device gets back); never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The WebSocket layer hands over text frames only when they are UTF-8.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for result in bahinlink::ingest::protocol::parse_frame(text) {
        if let Err(rejection) = result {
            assert!(!rejection.message.is_empty());
            assert!(!rejection.code.as_str().is_empty());
        }
    }
});
