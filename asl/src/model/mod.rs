//! The state machine model: what a definition says, typed.

mod state_machine_type;

pub use state_machine_type::StateMachineType;
