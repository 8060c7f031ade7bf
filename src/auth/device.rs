//! Device tokens: which agent's phone is connecting.

use deadpool_postgres::Pool;
use uuid::Uuid;

use crate::{
    auth::token,
    storage::{
        row::{ColumnError, RowExt},
        DbError,
    },
};

/// An authenticated device.
#[derive(Debug, Clone, Copy)]
pub struct DeviceIdentity {
    /// api_keys.id of the token (stored with every row the device sends; revoking it closes
    /// the connection).
    pub device_id: Uuid,
    /// agents.id of the agent it belongs to.
    pub agent_id: Uuid,
}

/// Why a device was not let in.
#[derive(Debug, thiserror::Error)]
pub enum DeviceAuthError {
    /// Unknown, revoked or expired token, or its agent or user is gone or not active.
    #[error("invalid, expired or revoked device token")]
    Refused,
    /// The database failed: not a verdict on the token.
    #[error(transparent)]
    Db(#[from] DbError),
}

/// Resolves a device token. Revoked, expired and unknown tokens, and those of deleted agents
/// or of users who are not ACTIVE, are refused.
pub async fn authenticate_device(
    pool: &Pool,
    secret: &str,
) -> Result<DeviceIdentity, DeviceAuthError> {
    let client = pool.get().await.map_err(DbError::from)?;
    // Prepared once per pooled connection: devices connect by the thousand.
    let statement = client
        .prepare_cached(
            "UPDATE api_keys k SET last_used_at = now()
             FROM agents a JOIN users u ON u.id = a.user_id
             WHERE k.key_hash = $1 AND k.kind = 'DEVICE' AND k.revoked_at IS NULL
               AND (k.expires_at IS NULL OR k.expires_at > now())
               AND a.id = k.agent_id AND a.deleted_at IS NULL AND u.deleted_at IS NULL AND u.status = 'ACTIVE'
             RETURNING k.id AS device_id, a.id AS agent_id",
        )
        .await
        .map_err(DbError::from)?;
    let row = client
        .query_opt(&statement, &[&token::digest(secret)])
        .await
        .map_err(DbError::from)?
        .ok_or(DeviceAuthError::Refused)?;
    let read = || -> Result<DeviceIdentity, ColumnError> {
        Ok(DeviceIdentity {
            device_id: row.col("device_id")?,
            agent_id: row.col("agent_id")?,
        })
    };
    Ok(read().map_err(DbError::from)?)
}
