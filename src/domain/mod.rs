//! Domain types that parse, not validate: once built, a value is known to be good.

pub mod agent;
pub mod alarm;
pub mod alert;
pub mod checkpoint;
pub mod email;
pub mod enums;
pub mod geo;
pub mod geofence;
