//! Integration tests: one binary, one throwaway PostgreSQL cluster, a database per test.

mod access;
mod alerts;
mod attendance;
mod auth;
mod browser;
mod cli;
mod console_page;
mod control;
mod device;
mod dispatch;
mod embedded;
mod faults;
mod field_ops;
mod gateway;
mod hardening;
mod helpers;
mod ingest;
mod limits;
mod ops;
mod schema;
mod seed;
mod tls;
