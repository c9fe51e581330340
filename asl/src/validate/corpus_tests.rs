//! Runs the conformance corpus (`/work/shared/conformance/corpus`, when present) through the
//! validator, judging cases the way `conformance/run.py` (`run_validation_case`) does:
//!
//! * `validation/` AWS-recorded cases: valid/invalid must match, and for invalid ones with
//!   diagnostic codes (other than CreateStateMachine's `InvalidDefinition`) one of the codes;
//! * `validation/` statelint cases: counted, not asserted (a linter's opinion);
//! * `workflows_parse/`: valid once `${…}` substitutions are filled with Lambda ARNs;
//! * every `definition` of `pure/`, `services/`, `distributed_map/`: valid (AWS ran them).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::diagnostic::{Severity, ValidationReport};
use crate::model::StateMachineType;

use super::validate;

/// Cases the validator is known to judge differently from the corpus, with the reason.
/// The test fails on any other mismatch.
const KNOWN_MISMATCHES: &[(&str, &str)] = &[(
    "wf__shared-fallback-state-jsonata__statemachine__statemachine",
    "the published definition puts \"QueryLanguage\": \"JSONata\" inside States, where it is a \
         state whose value is not an object; AWS cannot accept it either",
)];

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("..").join("shared").join("conformance").join("corpus")
}

fn cases(dir: &Path) -> Vec<Value> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    paths.sort();
    paths
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .filter_map(|text| serde_json::from_str::<Value>(&text).ok())
        .collect()
}

fn machine_type(case: &Value) -> StateMachineType {
    case.get("state_machine_type").and_then(Value::as_str).and_then(|t| t.parse().ok()).unwrap_or_default()
}

fn errors(report: &ValidationReport) -> Vec<String> {
    report
        .diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .map(|d| format!("{}: {} at {}", d.code, d.message, d.location.as_deref().unwrap_or("-")))
        .collect()
}

/// `fill_substitutions` of run.py: every `${Name}` becomes a Lambda ARN named after the
/// alphanumeric characters of `Name`.
fn fill_substitutions(definition: &Value) -> Option<Value> {
    let text = serde_json::to_string(definition).ok()?;
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_str();
    while let Some(start) = rest.find("${") {
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else { break };
        let name: String = after[..end].chars().filter(|c| c.is_ascii_alphanumeric()).collect();
        let name = if name.is_empty() { "x".to_string() } else { name };
        out.push_str(&rest[..start]);
        out.push_str(&format!("arn:aws:lambda:us-east-1:111111111111:function:{name}"));
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    serde_json::from_str(&out).ok()
}

#[derive(Default)]
struct Tally {
    passed: usize,
    total: usize,
    failures: Vec<(String, String)>,
}

impl Tally {
    fn record(&mut self, id: &str, ok: bool, detail: impl FnOnce() -> String) {
        self.total += 1;
        if ok {
            self.passed += 1;
        } else {
            self.failures.push((id.to_string(), detail()));
        }
    }
}

#[test]
fn corpus_cases_are_judged_like_aws() {
    let root = corpus_dir();
    if !root.is_dir() {
        eprintln!("note: no conformance corpus at {}; skipping", root.display());
        return;
    }
    let mut aws = Tally::default();
    let mut statelint = Tally::default();
    let mut workflows = Tally::default();
    let mut executions = Tally::default();

    for case in cases(&root.join("validation")) {
        let id = case["id"].as_str().unwrap_or("?").to_string();
        let text = match case.get("definition_raw").and_then(Value::as_str) {
            Some(raw) => raw.to_string(),
            None => serde_json::to_string(&case["definition"]).unwrap_or_default(),
        };
        let report = validate(&text, machine_type(&case));
        let errs = errors(&report);
        let valid = errs.is_empty();
        let expected_valid = case["valid"].as_bool().unwrap_or(true);
        let mut ok = valid == expected_valid;
        let aws_recorded = case["trust"].as_str() == Some("aws-recorded");
        if ok && aws_recorded && !expected_valid {
            let codes: BTreeSet<&str> = case["expected_errors"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|e| e.get("code").and_then(Value::as_str))
                .collect();
            let ours: BTreeSet<&str> =
                report.diagnostics.iter().filter(|d| d.severity == Severity::Error).map(|d| d.code.as_str()).collect();
            let only_create = codes.iter().all(|c| *c == "InvalidDefinition");
            if !codes.is_empty() && !only_create && codes.is_disjoint(&ours) {
                ok = false;
            }
        }
        let tally = if aws_recorded { &mut aws } else { &mut statelint };
        tally.record(&id, ok, || {
            format!(
                "judged {}, expected {}: {:?} / expected {}",
                if valid { "valid" } else { "invalid" },
                if expected_valid { "valid" } else { "invalid" },
                errs,
                case["expected_errors"]
            )
        });
    }

    for case in cases(&root.join("workflows_parse")) {
        let id = case["id"].as_str().unwrap_or("?").to_string();
        let Some(definition) = fill_substitutions(&case["definition"]) else {
            workflows.record(&id, false, || "substitution broke the JSON".to_string());
            continue;
        };
        let errs = errors(&super::validate_value(&definition, machine_type(&case)));
        workflows.record(&id, errs.is_empty(), || format!("{errs:?}"));
    }

    for category in ["pure", "services", "distributed_map"] {
        for case in cases(&root.join(category)) {
            let id = case["id"].as_str().unwrap_or("?").to_string();
            let Some(definition) = case.get("definition") else { continue };
            let errs = errors(&super::validate_value(definition, machine_type(&case)));
            executions.record(&id, errs.is_empty(), || format!("{errs:?}"));
        }
    }

    let mut unexpected = Vec::new();
    for (name, tally, asserted) in [
        ("aws-recorded validation", &aws, true),
        ("workflows_parse", &workflows, true),
        ("execution definitions", &executions, true),
        ("statelint (opinion, not asserted)", &statelint, false),
    ] {
        eprintln!("{name}: {}/{}", tally.passed, tally.total);
        for (id, detail) in &tally.failures {
            let known = KNOWN_MISMATCHES.iter().find(|(k, _)| k == id);
            match known {
                Some((_, reason)) => eprintln!("  known mismatch {id}: {reason}"),
                None => eprintln!("  FAIL {id}: {detail}"),
            }
            if asserted && known.is_none() {
                unexpected.push(id.clone());
            }
        }
    }
    assert!(unexpected.is_empty(), "cases judged differently from the corpus: {unexpected:?}");
}
