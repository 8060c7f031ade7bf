//! Realtime ingest: agents' phones on WebSocket, one actor per connection (`transport`),
//! the per-agent decisions (`session`), the wire format (`protocol`), the batching COPY
//! writer (`writer`), database events such as clock-in (`events`), the registry of
//! connections (`hub`) and the live event bus (`live`). See docs/protocol.md.

pub mod events;
pub mod hub;
pub mod live;
pub mod protocol;
pub mod session;
pub mod transport;
pub mod writer;
