//! Credentials: argon2id password hashing and opaque bearer tokens.

pub mod password;
pub mod throttle;
pub mod token;
