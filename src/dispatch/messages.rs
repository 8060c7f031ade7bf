//! Every message the dispatcher actor takes, and what it answers: one place to read its
//! interface (sessions, the API, the change feed and the live bus talk to it only through
//! these). Also the `dispatch` frame it pushes to an agent's phone.

use std::collections::{HashMap, HashSet};

use actix::prelude::*;
use chrono::Utc;
use serde::Serialize;
use uuid::Uuid;

use crate::{
    dispatch::{live_state::AgentLive, store::StoreError},
    domain::enums::Priority,
    realtime::live::LiveEvent,
};

/// A session's agent clocked in/out or changed break state.
#[derive(Message)]
#[rtype(result = "()")]
pub struct DutyUpdate {
    pub agent_id: Uuid,
    /// (shift, site, on break), or None when off duty.
    pub duty: Option<(Uuid, Uuid, bool)>,
}

/// A trusted fix (sessions send at most one per agent per `dispatch.position_update_ms`).
#[derive(Message)]
#[rtype(result = "()")]
pub struct AgentPosition {
    pub agent_id: Uuid,
    pub lat: f64,
    pub lon: f64,
    pub at: chrono::DateTime<Utc>,
}

/// An event from the live bus.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct FieldEvent(pub(crate) LiveEvent);

/// The live state of agents (all on duty, for consoles and the API).
#[derive(Message)]
#[rtype(result = "Vec<AgentLive>")]
pub struct Snapshot;

/// Last known positions of some agents (for assignment costs).
#[derive(Message)]
#[rtype(result = "HashMap<Uuid, (f64, f64)>")]
pub struct Positions(pub Vec<Uuid>);

/// Raise an emergency.
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<EmergencyCreated, DispatchError>")]
pub struct RaiseEmergency {
    pub lat: f64,
    pub lon: f64,
    pub site_id: Option<Uuid>,
    pub agents_needed: usize,
    pub priority: Priority,
    pub description: Option<String>,
    pub radius_m: Option<f64>,
    /// Not to be dispatched (the agent who pressed panic).
    pub exclude: Option<Uuid>,
    /// Who raised it (for the records), if a user.
    pub raised_by: Option<Uuid>,
}

/// One agent sent.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Dispatched {
    pub agent_id: Uuid,
    pub distance_m: f64,
    pub eta_s: i64,
}

/// `POST /api/v1/emergencies` answer.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct EmergencyCreated {
    pub id: Uuid,
    pub assigned: Vec<Dispatched>,
    pub unfilled: usize,
}

/// Agents whose dispatchability changed (from the database's change feed): (agent, blocked).
#[derive(Message)]
#[rtype(result = "()")]
pub struct SetBlocked(pub Vec<(Uuid, bool)>);

/// The complete set of agents who may not be dispatched (after the change feed reconnects).
#[derive(Message)]
#[rtype(result = "()")]
pub struct ReplaceBlocked(pub HashSet<Uuid>);

/// An emergency was closed (its shift COMPLETED): stop staffing it and free its agents.
#[derive(Message)]
#[rtype(result = "()")]
pub struct CloseEmergency(pub Uuid);

/// A panic may be waiting in panic_dispatches: look now rather than at the next poll.
#[derive(Message)]
#[rtype(result = "()")]
pub struct PanicsPending;

/// Why an emergency could not be raised.
#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    /// The database refused or failed; nobody was sent.
    #[error("emergency not recorded: {0}")]
    Storage(#[from] StoreError),
    /// The pending panic was staffed meanwhile (by another attempt or process).
    #[error("panic dispatch {0} was already handled")]
    AlreadyHandled(Uuid),
}

/// The frame that sends an agent to an emergency (docs/protocol.md, "Dispatch").
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename = "dispatch")]
pub struct DispatchFrame<'a> {
    pub emergency_id: Uuid,
    pub lat: f64,
    pub lon: f64,
    pub priority: Priority,
    pub description: Option<&'a str>,
    /// Metres from the agent's last fix.
    pub distance_m: f64,
    /// Seconds at `dispatch.eta_speed_kmh`.
    pub eta_s: i64,
}

impl DispatchFrame<'_> {
    /// The JSON text of the frame.
    pub fn to_text(&self) -> String {
        // Plain numbers, strings and ids: serialising cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}
