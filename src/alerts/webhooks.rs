//! Webhook deliveries: every step of an alert (opened, acknowledged, escalated, resolved) is
//! queued in `webhook_deliveries` by the trigger on `alerts`, in the alert's own transaction;
//! this worker posts them, signed, retries failures with a doubling back-off, and records each
//! attempt. It runs apart from ingest: a slow or dead endpoint only delays its own deliveries.
//!
//! Signing (docs/operations.md, "Webhooks"): each webhook's secret is
//! `hex(HMAC-SHA256(key, "webhook:" + id))` with the daemon's key file, shown once when the
//! webhook is created and never stored. Each POST carries
//! `X-BahinLink-Signature: t=<unix seconds>,v1=<hex(HMAC-SHA256(secret, "<t>.<body>"))>`.

use std::{path::Path, time::Duration};

use deadpool_postgres::Pool;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::{
    configuration::WebhookSettings,
    storage::{row::RowExt, DbError},
};

/// Why the key file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("webhooks.key_file {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("webhooks.key_file {0}: must hold exactly 32 bytes")]
    Length(String),
}

/// The signing key: read from the file, or created there (32 random bytes, mode 0600).
pub fn load_or_create_key(path: &Path) -> Result<[u8; 32], KeyError> {
    let io = |source| KeyError::Io {
        path: path.display().to_string(),
        source,
    };
    match std::fs::read(path) {
        Ok(bytes) => bytes
            .try_into()
            .map_err(|_| KeyError::Length(path.display().to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut key = [0u8; 32];
            getrandom::fill(&mut key).map_err(|e| io(std::io::Error::other(e.to_string())))?;
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(io)?;
            }
            // Written whole under a name of its own, then linked into place: a process that
            // reads the key never sees it half written, and of two creating it at once one
            // wins and the other reads the winner's.
            use std::io::Write;
            let tmp = path.with_extension(format!(
                "tmp-{}-{:x}",
                std::process::id(),
                u64::from_le_bytes(key[..8].try_into().unwrap_or_default())
            ));
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let written = options
                .open(&tmp)
                .and_then(|mut f| f.write_all(&key).and_then(|()| f.sync_all()));
            if let Err(e) = written {
                let _ = std::fs::remove_file(&tmp);
                return Err(io(e));
            }
            let linked = std::fs::hard_link(&tmp, path);
            let _ = std::fs::remove_file(&tmp);
            match linked {
                Ok(()) => Ok(key),
                // Another process created it first: use theirs.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => load_or_create_key(path),
                Err(e) => Err(io(e)),
            }
        }
        Err(e) => Err(io(e)),
    }
}

/// HMAC-SHA256 (RFC 2104), written out: twelve lines instead of a second `sha2` version.
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let ipad: Vec<u8> = block.iter().map(|b| b ^ 0x36).collect();
    let opad: Vec<u8> = block.iter().map(|b| b ^ 0x5c).collect();
    let inner = Sha256::new()
        .chain_update(ipad)
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(opad)
        .chain_update(inner)
        .finalize()
        .into()
}

/// A webhook's signing secret.
pub fn secret_of(key: &[u8; 32], webhook_id: Uuid) -> String {
    hex::encode(hmac_sha256(key, format!("webhook:{webhook_id}").as_bytes()))
}

/// The `X-BahinLink-Signature` value of a body sent at `t` (Unix seconds).
pub fn signature(secret: &str, t: i64, body: &str) -> String {
    let mac = hmac_sha256(secret.as_bytes(), format!("{t}.{body}").as_bytes());
    format!("t={t},v1={}", hex::encode(mac))
}

/// One delivery claimed for an attempt.
struct Claimed {
    id: Uuid,
    webhook_id: Uuid,
    url: String,
    event: String,
    body: String,
    attempts: i32,
    /// The webhook was deleted or deactivated meanwhile.
    gone: bool,
}

/// The outcome of one attempt.
enum Attempt {
    Delivered(u16),
    Failed { status: Option<u16>, error: String },
}

/// Posts due deliveries until the daemon stops.
pub(crate) async fn run(pool: Pool, settings: WebhookSettings, key: [u8; 32]) {
    let client = awc::Client::builder()
        .timeout(Duration::from_secs(settings.timeout_s))
        .disable_redirects()
        .finish();
    let mut idle = tokio::time::interval(Duration::from_millis(500));
    idle.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        idle.tick().await;
        loop {
            let claimed = match claim(&pool, &settings).await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "webhooks: deliveries not claimed");
                    break;
                }
            };
            if claimed.is_empty() {
                break;
            }
            let attempts = claimed.iter().map(|c| attempt(&client, &key, c));
            let outcomes = futures_util::future::join_all(attempts).await;
            for (c, outcome) in claimed.iter().zip(outcomes) {
                if let Err(e) = record(&pool, &settings, c, outcome).await {
                    tracing::warn!(error = %e, delivery = %c.id, "webhooks: attempt not recorded");
                }
            }
        }
    }
}

/// Claims up to `concurrency` due deliveries: their next attempt moves past this one's
/// timeout, so a daemon that dies mid-attempt leaves them to be retried, never lost.
async fn claim(pool: &Pool, s: &WebhookSettings) -> Result<Vec<Claimed>, DbError> {
    let db = pool.get().await?;
    let lease = (s.timeout_s + 30) as f64;
    let rows = db
        .query(
            "UPDATE webhook_deliveries d SET next_attempt_at = now() + make_interval(secs => $1)
             FROM webhooks w
             WHERE w.id = d.webhook_id AND d.id IN (
                 SELECT id FROM webhook_deliveries
                 WHERE status = 'PENDING' AND next_attempt_at <= now()
                 ORDER BY next_attempt_at LIMIT $2 FOR UPDATE SKIP LOCKED)
             RETURNING d.id, d.webhook_id, w.url, d.event, d.body::text AS body, d.attempts,
                       (w.deleted_at IS NOT NULL OR NOT w.is_active) AS gone",
            &[&lease, &(s.concurrency as i64)],
        )
        .await?;
    rows.iter()
        .map(|r| {
            Ok(Claimed {
                id: r.col("id")?,
                webhook_id: r.col("webhook_id")?,
                url: r.col("url")?,
                event: r.col("event")?,
                body: r.col("body")?,
                attempts: r.col("attempts")?,
                gone: r.col("gone")?,
            })
        })
        .collect()
}

async fn attempt(client: &awc::Client, key: &[u8; 32], c: &Claimed) -> Attempt {
    if c.gone {
        return Attempt::Failed {
            status: None,
            error: "the webhook was deleted or deactivated".into(),
        };
    }
    let t = chrono::Utc::now().timestamp();
    let sig = signature(&secret_of(key, c.webhook_id), t, &c.body);
    let sent = client
        .post(&c.url)
        .insert_header(("Content-Type", "application/json"))
        .insert_header(("User-Agent", "BahinLink-Webhooks/1"))
        .insert_header(("X-BahinLink-Signature", sig))
        .insert_header(("X-BahinLink-Timestamp", t.to_string()))
        .insert_header(("X-BahinLink-Event", c.event.clone()))
        .insert_header(("X-BahinLink-Delivery", c.id.to_string()))
        .send_body(c.body.clone())
        .await;
    match sent {
        Ok(resp) if resp.status().is_success() => Attempt::Delivered(resp.status().as_u16()),
        Ok(resp) => Attempt::Failed {
            status: Some(resp.status().as_u16()),
            error: format!("the endpoint answered {}", resp.status()),
        },
        Err(e) => Attempt::Failed {
            status: None,
            error: e.to_string().chars().take(500).collect(),
        },
    }
}

async fn record(
    pool: &Pool,
    s: &WebhookSettings,
    c: &Claimed,
    outcome: Attempt,
) -> Result<(), DbError> {
    let db = pool.get().await?;
    let attempts = c.attempts + 1;
    match outcome {
        Attempt::Delivered(status) => {
            metrics::counter!("webhook_deliveries_total", "outcome" => "delivered").increment(1);
            db.execute(
                "UPDATE webhook_deliveries SET status = 'DELIVERED', attempts = $2, delivered_at = now(),
                     last_status_code = $3, last_error = NULL WHERE id = $1",
                &[&c.id, &attempts, &(status as i32)],
            )
            .await?;
        }
        Attempt::Failed { status, error } => {
            let final_ = attempts >= s.max_attempts || c.gone;
            let wait = s
                .retry_base_s
                .saturating_mul(1u64 << (attempts - 1).clamp(0, 20))
                .min(3600) as f64;
            metrics::counter!("webhook_deliveries_total", "outcome" => if final_ { "failed" } else { "retry" })
                .increment(1);
            db.execute(
                "UPDATE webhook_deliveries SET attempts = $2, last_status_code = $3, last_error = $4,
                     status = CASE WHEN $5 THEN 'FAILED'::\"WebhookDeliveryStatus\" ELSE 'PENDING' END,
                     next_attempt_at = now() + make_interval(secs => $6)
                 WHERE id = $1",
                &[&c.id, &attempts, &status.map(i32::from), &error, &final_, &wait],
            )
            .await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231() {
        // Test case 2.
        assert_eq!(
            hex::encode(hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // Test case 6: a key longer than the block.
        assert_eq!(
            hex::encode(hmac_sha256(
                &[0xaa; 131],
                b"Test Using Larger Than Block-Size Key - Hash Key First"
            )),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn signatures_cover_time_and_body() {
        let s = signature("k", 10, "{}");
        assert!(s.starts_with("t=10,v1="));
        assert_ne!(s, signature("k", 11, "{}"));
        assert_ne!(s, signature("k", 10, "{ }"));
    }
}
