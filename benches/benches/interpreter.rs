//! Interpreter throughput: state transitions per second along a Pass chain, and executions
//! per second of a 10-state JSONPath workflow.
//!
//! `cargo bench -p stepmap-benches --bench interpreter`

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use serde_json::json;
use stepmap_asl::interpreter::ExecutionStatus;
use stepmap_benches::{execute, load, pass_chain, ten_state_input, ten_state_workflow};

fn transitions(c: &mut Criterion) {
    const LENGTH: usize = 1000;
    let machine = load(pass_chain(LENGTH));
    let input = json!({"payload": {"id": 1, "values": [1, 2, 3], "name": "a small object"}});
    assert_eq!(execute(&machine, &input).status, ExecutionStatus::Succeeded);
    let mut group = c.benchmark_group("pass_chain");
    group.throughput(Throughput::Elements(LENGTH as u64));
    group.bench_function("transitions", |b| b.iter(|| execute(&machine, &input)));
    group.finish();
}

fn workflow(c: &mut Criterion) {
    let machine = load(ten_state_workflow());
    let input = ten_state_input();
    let outcome = execute(&machine, &input);
    assert_eq!(outcome.status, ExecutionStatus::Succeeded, "{:?} {:?}", outcome.error, outcome.cause);
    let mut group = c.benchmark_group("ten_state_workflow");
    group.throughput(Throughput::Elements(1));
    group.bench_function("executions", |b| b.iter(|| execute(&machine, &input)));
    group.finish();
}

criterion_group!(benches, transitions, workflow);
criterion_main!(benches);
