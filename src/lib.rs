//! BahinLink Dispatch: realtime tracking and dispatch of security guards.
//!
//! Data flow, one module per part: `api` (HTTP surface), `storage` (PostgreSQL, embedded
//! cluster, migrations); `configuration`, `telemetry` and `observability` serve them all;
//! `startup` assembles the application and `cli` drives it.

pub mod api;
pub mod auth;
pub mod changes;
pub mod cli;
pub mod configuration;
pub mod dispatch;
pub mod domain;
pub mod geofence;
pub mod ingest;
pub mod loadgen;
pub mod observability;
pub mod os;
pub mod realtime;
pub mod startup;
pub mod state;
pub mod storage;
pub mod telemetry;
pub mod ws;
