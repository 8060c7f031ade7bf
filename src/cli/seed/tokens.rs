//! The agents' device tokens: stored hashed, the secrets written to an owner-only file.

use std::{io::Write, os::unix::fs::OpenOptionsExt, path::Path};

use tokio_postgres::Transaction;
use uuid::Uuid;

use super::people::Agent;
use crate::{
    auth::token::{self, TokenKind},
    cli::CliError,
    storage::row::RowExt,
};

/// Mints and stores one device token per agent; the CSV of their secrets for the tokens file.
pub(super) async fn insert_device_tokens(
    tx: &Transaction<'_>,
    agents: &[Agent],
    admin_id: Uuid,
) -> Result<String, CliError> {
    let mut lines = String::from("agent_id,employee_id,email,device_token_id,token\n");
    for Agent {
        id: agent_id,
        employee_id,
        email,
    } in agents
    {
        let t = token::mint(TokenKind::Device);
        let id: Uuid = tx
            .query_one(
                "INSERT INTO api_keys (kind, name, key_hash, key_prefix, agent_id, created_by) VALUES ('DEVICE', 'demo phone', $1, $2, $3, $4) RETURNING id",
                &[&t.hash, &t.prefix, agent_id, &admin_id],
            )
            .await
            .map_err(CliError::failed)?
            .col("id")
            .map_err(CliError::failed)?;
        lines.push_str(&format!(
            "{agent_id},{employee_id},{email},{id},{}\n",
            t.secret
        ));
    }
    Ok(lines)
}

/// Writes `lines` to `tokens_file`, which must not exist yet, readable by its owner only;
/// creates its directory if needed.
pub(super) fn write_tokens_file(tokens_file: &Path, lines: &str) -> Result<(), CliError> {
    if let Some(dir) = tokens_file.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| CliError::Failed(format!("{}: {e}", dir.display())))?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(tokens_file)
        .map_err(|e| {
            CliError::Failed(format!(
                "cannot create {}: {e} (remove it, or pass --tokens-file)",
                tokens_file.display()
            ))
        })?;
    file.write_all(lines.as_bytes())
        .map_err(|e| CliError::Failed(format!("{}: {e}", tokens_file.display())))?;
    Ok(())
}
