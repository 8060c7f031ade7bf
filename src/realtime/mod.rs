//! What moves between the parts of the running daemon, shared by ingest, dispatch, the
//! change feed and the WebSocket endpoints: the registry of connected agents (`hub`) and the
//! live event bus (`live`). Neither knows what produces or consumes its messages, so ingest
//! and dispatch both use them without importing each other.

pub mod hub;
pub mod live;
