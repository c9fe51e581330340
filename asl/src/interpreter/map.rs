//! The Map state in INLINE mode (features.md §2.2 pipeline): InputPath → ItemsPath →
//! ItemSelector (with `$$.Map.Item`) → one iteration per item, at most MaxConcurrency at a
//! time, results in item order. DISTRIBUTED mode runs on the worker fleet, not here.

use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use serde_json::{json, Value};

use super::data_flow::{compact, Eval};
use super::parallel::AttemptFailure;
use super::retry::{find_catcher, RetryCounters};
use super::runner::{Exit, ResultFields, Runner, Visit};
use super::scope::Scope;
use crate::failure::Failure;
use crate::history::History;
use crate::model::MapState;
use crate::payload::Payload;

/// Records `MapIterationAborted` for an iteration that is dropped before it finished
/// (another iteration failed and the Map state stopped the rest).
struct IterationGuard<'a> {
    history: &'a History,
    clock: &'a dyn crate::clock::Clock,
    name: &'a str,
    index: usize,
    last: u64,
    done: bool,
}

impl Drop for IterationGuard<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.history.record(
                self.clock.now(),
                self.last,
                "MapIterationAborted",
                Some(json!({"name": self.name, "index": self.index})),
            );
        }
    }
}

impl Runner {
    pub(super) async fn map(
        &self,
        visit: &mut Visit<'_>,
        s: &MapState,
        input: Value,
        scope: &Scope,
    ) -> Result<Exit, Failure> {
        let mut counters = RetryCounters::default();
        loop {
            visit.retry_count = counters.total;
            // A retry of a Distributed Map starts a new map run over all items (features.md §2.11).
            let attempt = if s.is_distributed() {
                self.distributed_map_attempt(visit, s, &input, scope).await
            } else {
                self.map_attempt(visit, s, &input, scope).await
            };
            let AttemptFailure { failure, started } = match attempt {
                Ok(exit) => return Ok(exit),
                Err(failure) => failure,
            };
            if let Some(delay) = counters.next_delay(&s.retry, &failure, || self.random_fraction()) {
                self.sleep(delay).await;
                continue;
            }
            if started {
                self.record(visit, "MapStateFailed", None);
            }
            return match find_catcher(&s.catch, &failure) {
                Some(catcher) => self.catch_exit(visit, catcher, input, &failure, scope),
                None => Err(failure),
            };
        }
    }

    async fn map_attempt(
        &self,
        visit: &mut Visit<'_>,
        s: &MapState,
        input: &Value,
        scope: &Scope,
    ) -> Result<Exit, AttemptFailure> {
        let processor = s.processor().ok_or_else(|| Failure::runtime("The Map state has no ItemProcessor."))?;
        let (effective, items, max_concurrency) = {
            let eval = self.eval(visit, scope, None);
            let effective = eval.select_path(&s.input_path, input)?;
            let max_concurrency = max_concurrency(&eval, s, &effective)?;
            let items = eval.select_path(&s.items_path, &effective)?;
            let items = match items {
                Value::Array(items) => items,
                other => {
                    return Err(eval
                        .runtime(format!("Map state input must be an array but was: {}", compact(&other)))
                        .into())
                }
            };
            (effective, items, max_concurrency)
        };
        let started = self.record(visit, "MapStateStarted", Some(json!({"length": items.len()})));
        let outer = Arc::new(scope.clone());
        let limit = if max_concurrency == 0 { usize::MAX } else { max_concurrency as usize };
        let selector = s.selector();
        let visit_ref = &*visit;
        let iterations = futures::stream::iter(items.into_iter().enumerate()).map(|(index, item)| {
            let outer = outer.clone();
            let effective = &effective;
            async move {
                let selected = match selector {
                    Some(template) => {
                        let map_item = json!({"Index": index, "Value": item});
                        let eval = self.eval(visit_ref, &outer, Some(&map_item));
                        eval.template(template, effective)?
                    }
                    None => item,
                };
                let iteration_details = json!({"name": visit_ref.name, "index": index});
                let mut last = self.history.record(
                    self.env.clock.now(),
                    started,
                    "MapIterationStarted",
                    Some(iteration_details.clone()),
                );
                let mut guard = IterationGuard {
                    history: &self.history,
                    clock: &*self.env.clock,
                    name: visit_ref.name,
                    index,
                    last,
                    done: false,
                };
                let mut scope = Scope::inner(outer);
                let result = self
                    .run_block(&processor.block, selected.into(), &mut scope, &mut last)
                    .await
                    .map(Payload::into_value);
                guard.done = true;
                let event = if result.is_ok() { "MapIterationSucceeded" } else { "MapIterationFailed" };
                self.history.record(self.env.clock.now(), last, event, Some(iteration_details));
                result
            }
        });
        let results: Vec<Value> = iterations
            .buffered(limit)
            .try_collect()
            .await
            .map_err(|failure| AttemptFailure { failure, started: true })?;
        visit.last_event = self.history.record(self.env.clock.now(), started, "MapStateSucceeded", None);
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

/// `MaxConcurrency` or the integer `MaxConcurrencyPath` selects; 0 means no limit.
pub(super) fn max_concurrency(eval: &Eval<'_>, s: &MapState, effective: &Value) -> Result<u64, Failure> {
    match (&s.max_concurrency, &s.max_concurrency_path) {
        (Some(value), _) => Ok(value.as_u64().unwrap_or(0)),
        (None, Some(path)) => {
            let value = eval.integer_at_path("MaxConcurrencyPath", path, effective)?;
            u64::try_from(value).ok().filter(|v| *v <= i32::MAX as u64).ok_or_else(|| {
                eval.runtime(format!(
                    "The MaxConcurrencyPath field refers to value \"{value}\" which is not a valid integer: {}",
                    path.text
                ))
            })
        }
        (None, None) => Ok(0),
    }
}
