//! What EXPRESS workflows may not use (features.md §4, §1.12): `.waitForTaskToken` and
//! `.sync` integrations, activities, and DISTRIBUTED Maps. The rules apply to the machine
//! when it is EXPRESS and to the child workflows of a Distributed Map with
//! `ExecutionType: EXPRESS`.

use crate::model::StateMachineType;
use crate::resource::Resource;

use super::{Loc, StateCx, Validator};

/// Where the EXPRESS rule comes from, for messages.
fn context(v: &Validator) -> &'static str {
    if v.machine_type == StateMachineType::Express {
        ""
    } else {
        " (the child executions of an enclosing Distributed Map are EXPRESS)"
    }
}

pub(crate) fn check_task(v: &mut Validator, cx: &StateCx) {
    if cx.scope.execution_type != StateMachineType::Express {
        return;
    }
    let Some(uri) = cx.get("Resource").and_then(|r| r.as_str()) else { return };
    let resource = Resource::parse(uri);
    let message = if matches!(resource, Resource::Activity { .. }) {
        "Express state machine does not support Activity ARN"
    } else if resource.is_callback() {
        "Express state machine does not support '.waitForTaskToken' service integration "
    } else if resource.is_sync() {
        "Express state machine does not support '.sync' service integration "
    } else {
        return;
    };
    let message = format!("{message}{}", context(v));
    v.schema(message, &cx.at("Resource"));
}

/// A DISTRIBUTED Map at `loc` (its `ProcessorConfig.Mode`).
pub(crate) fn check_distributed_map(v: &mut Validator, cx: &StateCx, loc: &Loc) {
    if cx.scope.execution_type != StateMachineType::Express {
        return;
    }
    let message =
        format!("Express state machine does not support a DISTRIBUTED Map (state '{}'){}", cx.name, context(v));
    v.schema(message, loc);
}
