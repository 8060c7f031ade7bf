//! Device tokens of phone apps. An app sends its token with every fix (every few seconds):
//! verifying each against the database would write `api_keys.last_used_at` thousands of
//! times a second, so a verified token is remembered for `FRESH`. A revoked token is
//! forgotten at once (the daemon's revocation broadcast); one revoked from another process is
//! refused within `FRESH`. Only the token's SHA-256 is kept, never the token.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use deadpool_postgres::Pool;
use uuid::Uuid;

use crate::auth::device::{authenticate_device, DeviceAuthError, DeviceIdentity};

/// How long a verified token is trusted without asking the database again.
const FRESH: Duration = Duration::from_secs(60);

/// Tokens remembered at most (the oldest half is dropped beyond).
const MAX_ENTRIES: usize = 200_000;

#[derive(Default)]
pub(crate) struct AuthCache {
    /// Token digest → (identity, when verified).
    known: Mutex<HashMap<Vec<u8>, (DeviceIdentity, Instant)>>,
}

impl AuthCache {
    /// The device a token belongs to, from memory when verified recently.
    pub(crate) async fn identify(
        &self,
        pool: &Pool,
        token: &str,
    ) -> Result<DeviceIdentity, DeviceAuthError> {
        let digest = crate::auth::token::digest(token);
        {
            let known = self.known.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((id, at)) = known.get(&digest) {
                if at.elapsed() < FRESH {
                    return Ok(DeviceIdentity {
                        device_id: id.device_id,
                        agent_id: id.agent_id,
                    });
                }
            }
        }
        let id = authenticate_device(pool, token).await?;
        let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        if known.len() >= MAX_ENTRIES {
            let cutoff = Instant::now() - FRESH / 2;
            known.retain(|_, (_, at)| *at > cutoff);
        }
        known.insert(
            digest,
            (
                DeviceIdentity {
                    device_id: id.device_id,
                    agent_id: id.agent_id,
                },
                Instant::now(),
            ),
        );
        Ok(id)
    }

    /// Forgets a revoked device token.
    pub(crate) fn revoked(&self, device_id: Uuid) {
        let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        known.retain(|_, (id, _)| id.device_id != device_id);
    }
}
