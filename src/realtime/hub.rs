//! The registry of connected agents: one live session per agent (a second connection
//! replaces the first), revoked device tokens cut off at once, and frames pushed to an
//! agent's phone by other parts of the daemon (the dispatcher).

use std::collections::HashMap;

use actix::prelude::*;
use uuid::Uuid;

/// Orders from the hub to one session.
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub enum SessionCommand {
    /// Close the connection with this reason (replaced, token revoked...).
    Close { reason: String },
    /// Send this text frame to the device.
    Send(String),
    /// The shift the agent may be on duty on now belongs to another site (None: to none);
    /// changed elsewhere (REST, another process, SQL) and seen through the change feed.
    ShiftSite {
        shift_id: Uuid,
        site_id: Option<Uuid>,
    },
}

struct Entry {
    /// Distinguishes this connection from a later one of the same agent.
    conn_id: u64,
    /// The device credential in use.
    device_id: Uuid,
    /// The session actor.
    addr: Recipient<SessionCommand>,
}

/// The hub actor.
#[derive(Default)]
pub struct AgentHub {
    /// Live sessions by agent id.
    sessions: HashMap<Uuid, Entry>,
    /// Agents whose phone app (HTTP gateway) has a session (it reported in the last ten
    /// minutes), counted: a session ending and its successor starting may arrive in either
    /// order. They count as connected for the safety watch; nothing can be pushed to them.
    apps: HashMap<Uuid, u32>,
}

/// A phone app's session (HTTP gateway) started or ended.
#[derive(Message)]
#[rtype(result = "()")]
pub struct AppSession {
    pub agent_id: Uuid,
    pub alive: bool,
}

impl Handler<AppSession> for AgentHub {
    type Result = ();

    fn handle(&mut self, msg: AppSession, _: &mut Self::Context) {
        let n = self.apps.entry(msg.agent_id).or_default();
        if msg.alive {
            *n += 1;
        } else {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.apps.remove(&msg.agent_id);
            }
        }
    }
}

impl Actor for AgentHub {
    type Context = Context<Self>;
}

/// A session has authenticated.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Register {
    pub agent_id: Uuid,
    pub device_id: Uuid,
    pub conn_id: u64,
    pub addr: Recipient<SessionCommand>,
}

/// A session has ended.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Unregister {
    pub agent_id: Uuid,
    pub conn_id: u64,
}

/// A device token was revoked: close the sessions using it.
#[derive(Message)]
#[rtype(result = "()")]
pub struct RevokeDevice(pub Uuid);

/// Close the sessions of these agents (deleted, or their login no longer active).
#[derive(Message)]
#[rtype(result = "()")]
pub struct CloseAgents {
    pub agent_ids: Vec<Uuid>,
    pub reason: &'static str,
}

/// Tell an agent's session (if connected) that a shift's site changed.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ShiftSiteChanged {
    pub agent_id: Uuid,
    pub shift_id: Uuid,
    pub site_id: Option<Uuid>,
}

/// Push a frame to an agent's phone; answers whether the agent is connected.
#[derive(Message)]
#[rtype(result = "bool")]
pub struct SendToAgent {
    pub agent_id: Uuid,
    pub text: String,
}

/// Ids of the connected agents.
#[derive(Message)]
#[rtype(result = "Vec<Uuid>")]
pub struct ConnectedAgents;

fn publish_count(n: usize) {
    metrics::gauge!("ingest_connected_agents").set(n as f64);
}

impl Handler<Register> for AgentHub {
    type Result = ();

    fn handle(&mut self, msg: Register, _: &mut Self::Context) {
        let entry = Entry {
            conn_id: msg.conn_id,
            device_id: msg.device_id,
            addr: msg.addr,
        };
        if let Some(old) = self.sessions.insert(msg.agent_id, entry) {
            old.addr.do_send(SessionCommand::Close {
                reason: "replaced by a newer connection of this agent".into(),
            });
        }
        publish_count(self.sessions.len());
    }
}

impl Handler<Unregister> for AgentHub {
    type Result = ();

    fn handle(&mut self, msg: Unregister, _: &mut Self::Context) {
        if self
            .sessions
            .get(&msg.agent_id)
            .is_some_and(|e| e.conn_id == msg.conn_id)
        {
            self.sessions.remove(&msg.agent_id);
        }
        publish_count(self.sessions.len());
    }
}

impl Handler<RevokeDevice> for AgentHub {
    type Result = ();

    fn handle(&mut self, msg: RevokeDevice, _: &mut Self::Context) {
        for entry in self.sessions.values().filter(|e| e.device_id == msg.0) {
            entry.addr.do_send(SessionCommand::Close {
                reason: "device token revoked".into(),
            });
        }
    }
}

impl Handler<CloseAgents> for AgentHub {
    type Result = ();

    fn handle(&mut self, msg: CloseAgents, _: &mut Self::Context) {
        for id in msg.agent_ids {
            if let Some(entry) = self.sessions.get(&id) {
                entry.addr.do_send(SessionCommand::Close {
                    reason: msg.reason.into(),
                });
            }
        }
    }
}

impl Handler<ShiftSiteChanged> for AgentHub {
    type Result = ();

    fn handle(&mut self, msg: ShiftSiteChanged, _: &mut Self::Context) {
        if let Some(entry) = self.sessions.get(&msg.agent_id) {
            entry.addr.do_send(SessionCommand::ShiftSite {
                shift_id: msg.shift_id,
                site_id: msg.site_id,
            });
        }
    }
}

impl Handler<SendToAgent> for AgentHub {
    type Result = bool;

    fn handle(&mut self, msg: SendToAgent, _: &mut Self::Context) -> bool {
        match self.sessions.get(&msg.agent_id) {
            Some(entry) => {
                entry.addr.do_send(SessionCommand::Send(msg.text));
                true
            }
            None => false,
        }
    }
}

impl Handler<ConnectedAgents> for AgentHub {
    type Result = Vec<Uuid>;

    fn handle(&mut self, _: ConnectedAgents, _: &mut Self::Context) -> Vec<Uuid> {
        let mut agents: Vec<Uuid> = self.sessions.keys().copied().collect();
        agents.extend(self.apps.keys().filter(|a| !self.sessions.contains_key(a)));
        agents
    }
}
