//! Every WebSocket endpoint, and the only code that knows actix-web-actors (deprecated
//! upstream): to swap the WebSocket layer, replace this module. The protocol logic it drives
//! lives elsewhere (`ingest::{protocol, session, events, writer}`, `dispatch`).
//!
//! - `agent`: `GET /ws/agent`, one `AgentSocket` actor per connected agent's phone.
//! - `console`: `GET /ws/console`, one `ConsoleSocket` actor per control-room console.
//! - `outflow`: the bound on what either socket queues towards a peer that does not read.

pub mod agent;
pub mod console;
pub(crate) mod outflow;
