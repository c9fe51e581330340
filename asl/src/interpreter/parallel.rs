//! The Parallel state: every branch runs on the same input; the result is the array of
//! branch outputs in branch order; the first failing branch fails the state and stops the
//! others (features.md §1.3 Parallel).

use std::sync::Arc;

use serde_json::Value;

use super::retry::{find_catcher, RetryCounters};
use super::runner::{Exit, ResultFields, Runner, Visit};
use super::scope::Scope;
use crate::failure::Failure;
use crate::model::ParallelState;
use crate::payload::Payload;

/// A failed attempt, and whether it got as far as `...StateStarted` (only then does AWS
/// record a `...StateFailed` event).
pub(super) struct AttemptFailure {
    pub failure: Failure,
    pub started: bool,
}

impl From<Failure> for AttemptFailure {
    fn from(failure: Failure) -> Self {
        AttemptFailure { failure, started: false }
    }
}

impl Runner {
    pub(super) async fn parallel(
        &self,
        visit: &mut Visit<'_>,
        s: &ParallelState,
        input: Value,
        scope: &Scope,
    ) -> Result<Exit, Failure> {
        let mut counters = RetryCounters::default();
        loop {
            visit.retry_count = counters.total;
            let AttemptFailure { failure, started } = match self.parallel_attempt(visit, s, &input, scope).await {
                Ok(exit) => return Ok(exit),
                Err(failure) => failure,
            };
            if let Some(delay) = counters.next_delay(&s.retry, &failure, || self.random_fraction()) {
                self.sleep(delay).await;
                continue;
            }
            if started {
                self.record(visit, "ParallelStateFailed", None);
            }
            return match find_catcher(&s.catch, &failure) {
                Some(catcher) => self.catch_exit(visit, catcher, input, &failure, scope),
                None => Err(failure),
            };
        }
    }

    async fn parallel_attempt(
        &self,
        visit: &mut Visit<'_>,
        s: &ParallelState,
        input: &Value,
        scope: &Scope,
    ) -> Result<Exit, AttemptFailure> {
        let branch_input = {
            let eval = self.eval(visit, scope, None);
            let effective = eval.select_path(&s.input_path, input)?;
            match &s.parameters {
                Some(template) => eval.template(template, &effective)?,
                None => effective,
            }
        };
        let started = self.record(visit, "ParallelStateStarted", None);
        let outer = Arc::new(scope.clone());
        let branches = s.branches.iter().map(|branch| {
            let outer = outer.clone();
            let branch_input = branch_input.clone();
            async move {
                let mut scope = Scope::inner(outer);
                let mut last = started;
                self.run_block(branch, branch_input.into(), &mut scope, &mut last).await.map(Payload::into_value)
            }
        });
        let results = futures::future::try_join_all(branches)
            .await
            .map_err(|failure| AttemptFailure { failure, started: true })?;
        // AWS records no ParallelStateSucceeded (none in any recorded history): the state's
        // exit follows the last branch event.
        visit.last_event = self.history.len() as u64;
        let result = Value::Array(results);
        let fields = ResultFields {
            result_selector: s.result_selector.as_ref(),
            assign: s.assign.as_ref(),
            result_path: &s.result_path,
            output_path: &s.output_path,
            next: &s.next,
        };
        Ok(self.result_exit(visit, scope, fields, input.clone(), result.into())?)
    }
}
