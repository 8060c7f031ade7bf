//! Realtime ingest: agents' phones on WebSocket (the actor is `ws::agent`), the per-agent
//! decisions (`session`), the wire format (`protocol`), the batching COPY
//! writer (`writer`), database events such as clock-in (`events`), the registry of
//! connections (`hub`), the batched session restore (`restore`) and the live event bus
//! (`live`). See docs/protocol.md.

pub mod events;
pub mod hub;
pub mod live;
pub mod protocol;
pub mod restore;
pub mod session;
pub mod violations;
pub mod writer;
