//! Credentials: argon2id password hashing, opaque bearer tokens, and who a session or device
//! token belongs to. Knows nothing of the HTTP API: its errors are mapped to answers there.

pub mod bearer;
pub mod device;
pub mod password;
pub mod session;
pub mod throttle;
pub mod token;
