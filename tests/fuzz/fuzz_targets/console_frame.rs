//! A console's WebSocket text frame: a subscription of known kinds, or the code and message of
//! the `error` frame that refuses it.
#![no_main]

use bahinlink::ws::console::{parse_console_text, KINDS};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match parse_console_text(text) {
        Ok(sub) => {
            assert_eq!(sub.kind, "subscribe");
            assert!(sub.kinds.iter().flatten().all(|k| KINDS.contains(&k.as_str())));
        }
        Err((_, message)) => assert!(!message.is_empty()),
    }
});
