//! Interpreter throughput: state transitions per second along a Pass chain, executions per
//! second of a 10-state JSONPath workflow, and bytes per second of the check a Task's JSON
//! result goes through (a batch handler's response of 1,000 rows, as JSON text).
//!
//! `cargo bench -p stepmap-benches --bench interpreter`

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use serde_json::json;
use stepmap_asl::interpreter::ExecutionStatus;
use stepmap_asl::payload::JsonText;
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

/// A response as the orders handler sends it (`json.dumps` with compact separators): canonical
/// already, so it is checked and kept; and the same rows with Python's default separators,
/// which are written anew.
fn response_check(c: &mut Criterion) {
    let rows: Vec<String> = (0..1000u64)
        .map(|i| {
            // Two decimals, as `round(x, 2)` gives them: Python writes the shortest text.
            let cents = i * 7919 % 100_000 + 1;
            let fraction = format!("{:02}", cents % 100);
            let fraction = match fraction.trim_end_matches('0') {
                "" => "0",
                digits => digits,
            };
            let total = format!("{}.{fraction}", cents / 100);
            format!(
                r#"{{"order_id":{},"country":"{}","total":{total},"flag":{}}}"#,
                1_000_000 + i,
                ["US", "DE", "FR", "MX"][i as usize % 4],
                i % 9 == 0
            )
        })
        .collect();
    let compact = format!("[{}]", rows.join(","));
    let spaced = compact.replace(',', ", ").replace(':', ": ");
    let mut group = c.benchmark_group("response_check");
    for (name, text) in [("canonical", compact), ("python_spaced", spaced)] {
        let expected = serde_json::from_str::<serde_json::Value>(&text).unwrap().to_string();
        let checked = JsonText::canonicalize_owned(text.clone().into_bytes()).expect("canonicalised");
        assert_eq!(checked.as_str(), expected);
        assert_eq!(checked.array_elements().map(|e| e.len()), Some(1000));
        group.throughput(Throughput::Bytes(text.len() as u64));
        group.bench_function(name, |b| {
            b.iter_batched(
                || text.clone().into_bytes(),
                |bytes| JsonText::canonicalize_owned(bytes).is_ok(),
                criterion::BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, transitions, workflow, response_check);
criterion_main!(benches);
