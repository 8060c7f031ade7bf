//! Opaque bearer tokens: 256 random bits, shown once, stored only as a SHA-256 digest.
//! (A fast hash is right here: the secret is random, not a password, so it cannot be guessed
//! from its digest; argon2 would only slow every request down.)

use sha2::{Digest, Sha256};

/// What a token is for; its prefix tells people (and secret scanners) what they hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    /// A user's login session (REST API and console WebSocket).
    Session,
    /// An agent's phone (agent WebSocket only).
    Device,
}

impl TokenKind {
    fn prefix(self) -> &'static str {
        match self {
            TokenKind::Session => "bls_",
            TokenKind::Device => "bld_",
        }
    }

    /// The `api_keys.kind` label.
    pub fn label(self) -> &'static str {
        match self {
            TokenKind::Session => "SESSION",
            TokenKind::Device => "DEVICE",
        }
    }
}

/// A freshly minted token: the secret (to hand out once) and what to store.
pub struct NewToken {
    /// The secret; returned to the caller once, never stored or logged.
    pub secret: String,
    /// SHA-256 of the secret, for `api_keys.key_hash`.
    pub hash: Vec<u8>,
    /// The first characters, for `api_keys.key_prefix` (safe to show).
    pub prefix: String,
}

/// Mints a new random token.
pub fn mint(kind: TokenKind) -> NewToken {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("OS random source");
    let secret = format!("{}{}", kind.prefix(), hex::encode(bytes));
    let prefix = secret[..12].to_owned();
    NewToken {
        hash: digest(&secret),
        secret,
        prefix,
    }
}

/// The stored form of a presented token.
pub fn digest(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

/// An unguessable checkpoint code (QR payload): 128 random bits.
pub fn checkpoint_code() -> String {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).expect("OS random source");
    format!("BLQR-{}", hex::encode_upper(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_prefixed_and_hashed() {
        let a = mint(TokenKind::Device);
        let b = mint(TokenKind::Device);
        assert!(a.secret.starts_with("bld_") && a.secret.len() == 68);
        assert_ne!(a.secret, b.secret);
        assert_eq!(a.hash, digest(&a.secret));
        assert_eq!(a.hash.len(), 32);
        assert!(a.secret.starts_with(&a.prefix));
        assert_ne!(checkpoint_code(), checkpoint_code());
    }
}
