//! Password hashing with argon2id. Hashing takes tens of milliseconds of CPU on purpose, so
//! callers run it on the blocking pool, never on the async executor.

use argon2::{
    password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString},
    Algorithm, Argon2, Params, Version,
};

/// Shortest password accepted.
pub const MIN_PASSWORD_LEN: usize = 10;
/// Longest password accepted (bounds the hashing work an attacker can ask for).
pub const MAX_PASSWORD_LEN: usize = 256;

/// A password that meets the policy. Never logged: `Debug` hides it.
#[derive(Clone)]
pub struct Password(String);

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

impl Password {
    /// Checks the length policy.
    pub fn parse(raw: String) -> Result<Password, String> {
        let n = raw.chars().count();
        if n < MIN_PASSWORD_LEN {
            return Err(format!(
                "password must have at least {MIN_PASSWORD_LEN} characters"
            ));
        }
        if n > MAX_PASSWORD_LEN {
            return Err(format!(
                "password must have at most {MAX_PASSWORD_LEN} characters"
            ));
        }
        Ok(Password(raw))
    }

    /// The secret itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

pub use crate::configuration::HashCost;

fn hasher(cost: HashCost) -> Argon2<'static> {
    let params = Params::new(cost.memory_kib, cost.iterations, 1, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Hashes `password` into a PHC string (salt and parameters included).
pub fn hash_password(password: &Password, cost: HashCost) -> String {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).expect("OS random source");
    let salt = SaltString::encode_b64(&bytes).expect("16 bytes is a valid salt length");
    hasher(cost)
        .hash_password(password.expose().as_bytes(), &salt)
        .expect("argon2 hashing with valid parameters cannot fail")
        .to_string()
}

/// Verifies `candidate` against a stored PHC string. A malformed or locked hash ("!") never
/// matches.
pub fn verify_password(candidate: &str, stored: &str) -> bool {
    match PasswordHash::new(stored) {
        Ok(parsed) => Argon2::default()
            .verify_password(candidate.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// Whether `stored` is a hash a password can be verified against (not a lock marker such as
/// "!", not empty). Logins verify a decoy instead when it is not, so that an account without a
/// password answers as slowly as one with a wrong password.
pub fn is_verifiable(stored: &str) -> bool {
    PasswordHash::new(stored).is_ok()
}

/// A valid hash of a random password, verified against when the email is unknown so that a
/// login takes the same time whether the account exists or not.
pub fn decoy_hash(cost: HashCost) -> String {
    let mut bytes = [0u8; 24];
    getrandom::fill(&mut bytes).expect("OS random source");
    hash_password(&Password(hex::encode(bytes)), cost)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHEAP: HashCost = HashCost {
        memory_kib: 1024,
        iterations: 1,
    };

    #[test]
    fn hashes_verify_and_differ_by_salt() {
        let p = Password::parse("correct horse battery".into()).unwrap();
        let a = hash_password(&p, CHEAP);
        let b = hash_password(&p, CHEAP);
        assert!(a.starts_with("$argon2id$"));
        assert_ne!(a, b);
        assert!(verify_password("correct horse battery", &a));
        assert!(!verify_password("wrong horse battery", &a));
        assert!(!verify_password("anything", "!"));
        assert!(is_verifiable(&a));
        assert!(!is_verifiable("!") && !is_verifiable(""));
        assert!(!format!("{p:?}").contains("horse"));
    }

    #[test]
    fn policy_bounds_length() {
        assert!(Password::parse("short".into()).is_err());
        assert!(Password::parse("x".repeat(257)).is_err());
        assert!(Password::parse("long enough!".into()).is_ok());
    }
}
