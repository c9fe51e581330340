//! The state machine model: what a definition says, typed. Paths, payload templates and
//! intrinsic calls are compiled while loading, so running a state parses nothing.

mod choice_rule;
mod map_state;
mod path_field;
mod payload_template;
mod retry;
mod state;
mod state_machine;
mod state_machine_type;

pub use choice_rule::{ChoiceRule, Condition, Operand, Operator};
pub use map_state::{
    ItemBatcher, ItemProcessor, ItemReader, MapState, ProcessorConfig, ProcessorMode, ReaderConfig, ResultWriter,
    WriterConfig,
};
pub use path_field::PathField;
pub use payload_template::{AssignTemplate, PayloadTemplate};
pub use retry::{error_matches, Catcher, JitterStrategy, Retrier};
pub use state::{
    ChoiceState, DynamicString, FailState, ParallelState, PassState, State, SucceedState, TaskState, Transition,
    WaitState,
};
pub use state_machine::{DefinitionError, StateBlock, StateMachine};
pub use state_machine_type::StateMachineType;
