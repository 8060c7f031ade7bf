//! BahinLink Dispatch: realtime tracking and dispatch of security guards.
//!
//! One module per stage of the data flow (docs/architecture.md has the map and the way of
//! one event from the socket to the ack):
//! - edges: `ws` (agent and console WebSockets), `gateway` (phone apps over HTTP: OsmAnd /
//!   Traccar Client, OwnTracks), `api` (REST); `startup` registers every
//!   route and builds the shared `state`; `cli` drives it all;
//! - the realtime core: `ingest` (device events to committed rows), `dispatch` (the live
//!   picture, assignment, emergencies), `realtime` (the hub and the live bus they share),
//!   `geofence` (the fence index and the dwell rules), `changes` (the database's change
//!   feed applied to the caches);
//! - below them: `domain` (parsed types), `auth` (credentials), `storage` (PostgreSQL),
//!   `configuration`, `telemetry`, `observability`, `os`;
//! - `loadgen`: the load generator the benchmark and `bahinlink loadgen` drive.
//!
//! `layering` (tests only) fails when an import breaks this map.

pub mod alerts;
pub mod api;
pub mod auth;
pub mod changes;
pub mod cli;
pub mod configuration;
pub mod dispatch;
pub mod domain;
pub mod gateway;
pub mod geofence;
pub mod ingest;
#[cfg(test)]
mod layering;
pub mod limits;
pub mod loadgen;
pub mod observability;
pub mod os;
#[cfg(test)]
mod proptests;
pub mod realtime;
pub mod simulate;
pub mod startup;
pub mod state;
pub mod storage;
pub mod telemetry;
pub mod ui;
pub mod ws;
