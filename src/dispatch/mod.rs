//! Dispatch: the live picture of agents, shift assignment (one or many shifts) and
//! emergency auto-dispatch with escalation.
//!
//! - `actor`: the `Dispatcher` actor, its state and its simple handlers;
//! - `messages`: every message it takes and answers, and the `dispatch` device frame;
//! - `emergency`: staffing emergencies and panics, escalation;
//! - `store`: its SQL (state at start, pending panics, emergency records);
//! - `live_state`: where on-duty agents are, in an R-tree;
//! - `assign`: the pure shift-assignment rules and matchings; `load`: their inputs from the
//!   database.

pub mod actor;
pub mod assign;
mod emergency;
pub mod live_state;
pub mod load;
pub mod messages;
mod store;
