//! Realtime ingest: what agents' phones send, from parsed frame to committed row. The
//! WebSocket actor (`ws::agent`) only moves bytes; here are what a device sends
//! (`protocol`) and is sent (`frames`), the per-event checks (`checks`), one agent's session
//! and its decisions (`session`), the batching COPY writer of positions (`writer`), the
//! other events' transactions such as clock-in (`events`), geofence violations
//! (`violations`) and the batched session restore (`restore`). See docs/protocol.md.

pub mod checks;
pub mod events;
pub mod frames;
pub mod protocol;
pub mod restore;
pub mod session;
pub mod violations;
pub mod writer;

/// Their former home, kept for code written against it.
pub use crate::realtime::{hub, live};
