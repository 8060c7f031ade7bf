//! Domain types that parse, not validate: once built, a value is known to be good.

pub mod enums;
pub mod geofence;
