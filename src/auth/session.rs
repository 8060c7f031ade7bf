//! Session tokens: which user a REST request or a console connection belongs to.

use deadpool_postgres::Pool;
use uuid::Uuid;

use crate::{
    auth::token::{self, TokenKind},
    domain::enums::UserRole,
    storage::{
        row::{ColumnError, RowExt},
        DbError,
    },
};

/// The user behind a session token.
#[derive(Debug, Clone, Copy)]
pub struct Session {
    /// The token's api_keys.id (logout revokes it).
    pub token_id: Uuid,
    /// users.id
    pub user_id: Uuid,
    /// The user's role.
    pub role: UserRole,
    /// For CLIENT users: the one client they belong to.
    pub client_id: Option<Uuid>,
    /// For AGENT users: their agents.id.
    pub agent_id: Option<Uuid>,
}

/// Why a session token was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// Unknown, revoked or expired, or its user is gone or not ACTIVE.
    #[error("invalid or expired token")]
    Invalid,
    /// A device token: those authenticate on the agent WebSocket only.
    #[error("device tokens authenticate only on the agent WebSocket (/ws/agent)")]
    DeviceToken,
    /// The database failed: not a verdict on the token.
    #[error(transparent)]
    Db(#[from] DbError),
}

/// Resolves a session token to its user. Revoked or expired tokens, and tokens of users who
/// are not ACTIVE or are deleted, are refused; so are device tokens (WebSocket only).
pub async fn authenticate_session(pool: &Pool, token: &str) -> Result<Session, SessionError> {
    let client = pool.get().await.map_err(DbError::from)?;
    let row = client
        .query_opt(
            "SELECT k.id AS token_id, k.kind, u.id AS user_id, u.role, u.client_id, a.id AS agent_id,
                    (k.last_used_at IS NULL OR k.last_used_at < now() - interval '60 seconds') AS touch
             FROM api_keys k
             LEFT JOIN users u ON u.id = k.user_id AND u.status = 'ACTIVE' AND u.deleted_at IS NULL
             LEFT JOIN agents a ON a.user_id = u.id AND a.deleted_at IS NULL
             WHERE k.key_hash = $1 AND k.revoked_at IS NULL
               AND (k.expires_at IS NULL OR k.expires_at > now())",
            &[&token::digest(token)],
        )
        .await
        .map_err(DbError::from)?
        .ok_or(SessionError::Invalid)?;
    let kind: String = row.col("kind").map_err(DbError::from)?;
    if kind == TokenKind::Device.label() {
        return Err(SessionError::DeviceToken);
    }
    let user_id: Option<Uuid> = row.col("user_id").map_err(DbError::from)?;
    let user_id = user_id.ok_or(SessionError::Invalid)?;
    let token_id: Uuid = row.col("token_id").map_err(DbError::from)?;
    if row.col::<bool>("touch").map_err(DbError::from)? {
        // Throttled to once a minute per token: a write per request would be wasteful.
        client
            .execute(
                "UPDATE api_keys SET last_used_at = now() WHERE id = $1",
                &[&token_id],
            )
            .await
            .map_err(DbError::from)?;
    }
    let read = || -> Result<Session, ColumnError> {
        Ok(Session {
            user_id,
            role: row.col("role")?,
            client_id: row.col("client_id")?,
            agent_id: row.col("agent_id")?,
            token_id,
        })
    };
    Ok(read().map_err(DbError::from)?)
}
