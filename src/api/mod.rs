//! The HTTP surface: operations endpoints and the `/api/v1` control plane. Each handler
//! module maps its requests to the layers below and their errors to `ApiError`; the routes
//! themselves are registered in `startup`.

pub mod agents;
pub mod alert_records;
pub mod alerts;
pub mod audit;
pub mod auth;
pub mod checkpoints;
pub mod clients;
pub mod compliance;
pub(crate) mod crud;
pub mod device_tokens;
pub mod dispatch;
pub mod error;
pub mod extract;
pub mod limit;
pub mod list;
pub mod lone_worker;
pub mod notifications;
pub mod openapi;
pub mod ops;
pub mod shifts;
pub mod sites;
pub mod time_off;
pub mod tours;
pub mod users;
pub mod validate;
pub mod webhooks;
