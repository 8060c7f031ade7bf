//! Dispatch: the live picture of agents, shift assignment (one or many shifts) and
//! emergency auto-dispatch with escalation.

pub mod actor;
pub mod assign;
pub mod live_state;
pub mod load;
