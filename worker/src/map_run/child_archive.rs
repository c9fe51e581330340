//! The archive of a map run's STANDARD child executions: what DescribeExecution,
//! GetExecutionHistory and ListExecutions (by map run) answer for children that ran on the
//! worker fleet.
//!
//! Children's histories hold payloads, so they stay out of the Raft log (DESIGN.md §3,
//! "replicated state, not replicated data"): a worker writes the executions of the unit it
//! ran to the archive bucket under (map run, unit, epoch), like staged results; when the run
//! ends, the finaliser concatenates the objects of the accepted epochs, in unit order, into
//! one object per map run and removes the per-unit ones. The coordinator reads them back on
//! request.
//!
//! ```text
//! <bucket>/child-executions/<mapRunId>.jsonl                 one execution per line
//! <bucket>/child-executions/<mapRunId>/unit-<unit>-<epoch>.jsonl   until the run ends
//! ```

use bytes::Bytes;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use stepmap_asl::history::HistoryEvent;
use stepmap_storage::{StorageError, Stores};

const PREFIX: &str = "child-executions";

/// One child execution as archived.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArchivedExecution {
    pub execution_arn: String,
    pub name: String,
    /// The labelled machine: `stateMachine:<machine>/<label>`.
    pub state_machine_arn: String,
    pub map_run_arn: String,
    /// SUCCEEDED, FAILED, TIMED_OUT or ABORTED.
    pub status: String,
    pub start_date: String,
    pub stop_date: String,
    pub input: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<String>,
    pub history: Vec<HistoryEvent>,
}

/// The map run id: the last part of its ARN.
fn run_id(map_run_arn: &str) -> &str {
    map_run_arn.rsplit(':').next().unwrap_or(map_run_arn)
}

fn unit_prefix(map_run_arn: &str) -> String {
    format!("{PREFIX}/{}/", run_id(map_run_arn))
}

fn unit_key(map_run_arn: &str, unit: u64, epoch: u64) -> String {
    format!("{}unit-{unit:012}-{epoch}.jsonl", unit_prefix(map_run_arn))
}

fn run_key(map_run_arn: &str) -> String {
    format!("{PREFIX}/{}.jsonl", run_id(map_run_arn))
}

fn encode(executions: &[ArchivedExecution], key: &str, bucket: &str) -> Result<Vec<u8>, StorageError> {
    let mut text = Vec::new();
    for execution in executions {
        serde_json::to_writer(&mut text, execution).map_err(|e| StorageError::Write {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            message: e.to_string(),
        })?;
        text.push(b'\n');
    }
    Ok(text)
}

/// Writes the executions of one unit attempt; writing the same attempt again replaces them.
pub async fn write_unit(
    stores: &Stores,
    bucket: &str,
    map_run_arn: &str,
    unit: u64,
    epoch: u64,
    executions: &[ArchivedExecution],
) -> Result<(), StorageError> {
    let key = unit_key(map_run_arn, unit, epoch);
    let text = encode(executions, &key, bucket)?;
    stores.bucket(bucket)?.put(&key, Bytes::from(text)).await
}

/// Concatenates the accepted `(unit, epoch)` attempts, in unit order, into the run's object,
/// then removes every per-unit object (accepted or not). Running it again gives the same
/// object. An accepted attempt without an object (its worker archived nothing) is skipped
/// with a warning: the archive is a record of the run, not its result.
///
/// A redrive passes the accepted attempts of earlier rounds as `carried`: those whose objects
/// are still there (their round ended without consolidating) are gathered too, and each
/// attempt's children replace earlier records of the same ARN — in the run's object or from
/// an older attempt — so a redriven child shows how it ended last.
pub async fn consolidate(
    stores: &Stores,
    bucket: &str,
    map_run_arn: &str,
    accepted: &[(u64, u64)],
    carried: &[(u64, u64)],
) -> Result<(), StorageError> {
    let store = stores.bucket(bucket)?;
    let key = run_key(map_run_arn);
    let mut written = std::collections::BTreeSet::new();
    let mut units = store.list_sorted(&unit_prefix(map_run_arn), None);
    while let Some(meta) = units.next().await {
        written.insert(meta?.location.to_string());
    }
    drop(units);
    let earlier = match store.get_bytes(&key).await {
        Ok(bytes) => Some(bytes),
        Err(StorageError::NotFound { .. }) => None,
        Err(error) => return Err(error),
    };
    if written.is_empty() && earlier.is_some() {
        return Ok(()); // consolidated before (a new leader finalising again)
    }
    for &(unit, epoch) in accepted {
        if !written.contains(&unit_key(map_run_arn, unit, epoch)) {
            tracing::warn!(map_run = map_run_arn, unit, epoch, "no archived executions for an accepted unit");
        }
    }
    // Every attempt to gather, by unit and then epoch (a unit's later attempts are redrives).
    let mut attempts: Vec<(u64, u64)> = accepted
        .iter()
        .chain(carried)
        .copied()
        .filter(|&(unit, epoch)| written.contains(&unit_key(map_run_arn, unit, epoch)))
        .collect();
    attempts.sort_unstable();
    attempts.dedup();
    let redriven = earlier.is_some() || !carried.is_empty();
    let mut text = Vec::new();
    if !redriven {
        for (unit, epoch) in attempts {
            text.extend_from_slice(&store.get_bytes(&unit_key(map_run_arn, unit, epoch)).await?);
        }
    } else {
        let mut executions = match &earlier {
            Some(bytes) => decode(bytes, bucket, &key)?,
            None => Vec::new(),
        };
        let mut position: std::collections::HashMap<String, usize> =
            executions.iter().enumerate().map(|(i, e)| (e.execution_arn.clone(), i)).collect();
        for (unit, epoch) in attempts {
            let unit_key = unit_key(map_run_arn, unit, epoch);
            for execution in decode(&store.get_bytes(&unit_key).await?, bucket, &unit_key)? {
                match position.get(&execution.execution_arn) {
                    Some(&i) => executions[i] = execution,
                    None => {
                        position.insert(execution.execution_arn.clone(), executions.len());
                        executions.push(execution);
                    }
                }
            }
        }
        text = encode(&executions, &key, bucket)?;
    }
    store.put(&key, Bytes::from(text)).await?;
    for unit_key in written {
        store.delete(&unit_key).await?;
    }
    Ok(())
}

/// The archived children of a map run that has ended, in item order; `None` before its
/// archive was consolidated (see [`read_units`] for a running one).
pub async fn read_run(
    stores: &Stores,
    bucket: &str,
    map_run_arn: &str,
) -> Result<Option<Vec<ArchivedExecution>>, StorageError> {
    let key = run_key(map_run_arn);
    match stores.bucket(bucket)?.get_bytes(&key).await {
        Ok(bytes) => decode(&bytes, bucket, &key).map(Some),
        Err(StorageError::NotFound { .. }) => Ok(None),
        Err(error) => Err(error),
    }
}

/// The archived children of the `(unit, epoch)` attempts of a running map run that were
/// accepted so far, in unit order (attempts without an object are skipped).
pub async fn read_units(
    stores: &Stores,
    bucket: &str,
    map_run_arn: &str,
    accepted: &[(u64, u64)],
) -> Result<Vec<ArchivedExecution>, StorageError> {
    let store = stores.bucket(bucket)?;
    let mut accepted = accepted.to_vec();
    accepted.sort_unstable();
    let mut executions = Vec::new();
    for (unit, epoch) in accepted {
        let key = unit_key(map_run_arn, unit, epoch);
        match store.get_bytes(&key).await {
            Ok(bytes) => executions.extend(decode(&bytes, bucket, &key)?),
            Err(StorageError::NotFound { .. }) => {}
            Err(error) => return Err(error),
        }
    }
    Ok(executions)
}

fn decode(bytes: &[u8], bucket: &str, key: &str) -> Result<Vec<ArchivedExecution>, StorageError> {
    bytes
        .split(|&b| b == b'\n')
        .enumerate()
        .filter(|(_, line)| !line.is_empty())
        .map(|(number, line)| {
            serde_json::from_slice(line).map_err(|e| StorageError::Write {
                bucket: bucket.to_owned(),
                key: key.to_owned(),
                message: format!("archived execution {} is invalid: {e}", number + 1),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use stepmap_storage::StoreConfig;

    fn execution(name: &str) -> ArchivedExecution {
        ArchivedExecution {
            execution_arn: format!("arn:aws:states:r:1:execution:m/Map:{name}"),
            name: name.into(),
            state_machine_arn: "arn:aws:states:r:1:stateMachine:m/Map".into(),
            map_run_arn: "arn:aws:states:r:1:mapRun:m/Map:run1".into(),
            status: "SUCCEEDED".into(),
            start_date: "2026-01-01T00:00:00.000Z".into(),
            stop_date: "2026-01-01T00:00:01.000Z".into(),
            input: "{}".into(),
            output: Some("1".into()),
            error: None,
            cause: None,
            history: Vec::new(),
        }
    }

    #[tokio::test]
    async fn accepted_attempts_are_kept_in_unit_order_and_the_rest_removed() {
        let stores = Stores::new(StoreConfig::Memory);
        let run = "arn:aws:states:r:1:mapRun:m/Map:run1";
        write_unit(&stores, "b", run, 1, 2, &[execution("c")]).await.unwrap();
        write_unit(&stores, "b", run, 0, 1, &[execution("a"), execution("b")]).await.unwrap();
        // A lapsed attempt of unit 1 that was not accepted.
        write_unit(&stores, "b", run, 1, 1, &[execution("stale")]).await.unwrap();
        // While the run goes on, the accepted attempts so far.
        let running = read_units(&stores, "b", run, &[(1, 2), (0, 1)]).await.unwrap();
        assert_eq!(running.iter().map(|e| e.name.as_str()).collect::<Vec<_>>(), ["a", "b", "c"]);
        assert_eq!(read_run(&stores, "b", run).await.unwrap(), None);
        consolidate(&stores, "b", run, &[(1, 2), (0, 1)], &[]).await.unwrap();
        let names: Vec<String> =
            read_run(&stores, "b", run).await.unwrap().unwrap().into_iter().map(|e| e.name).collect();
        assert_eq!(names, ["a", "b", "c"]);
        // Again (a new leader finalising once more): the same object.
        consolidate(&stores, "b", run, &[(1, 2), (0, 1)], &[]).await.unwrap();
        assert_eq!(read_run(&stores, "b", run).await.unwrap().map(|e| e.len()), Some(3));
        let left = stores.bucket("b").unwrap().list_sorted("child-executions/run1/", None).count().await;
        assert_eq!(left, 0);
    }

    fn failed(name: &str) -> ArchivedExecution {
        ArchivedExecution { status: "FAILED".into(), ..execution(name) }
    }

    #[tokio::test]
    async fn a_redrive_replaces_its_children_and_gathers_an_unconsolidated_round() {
        let stores = Stores::new(StoreConfig::Memory);
        let run = "arn:aws:states:r:1:mapRun:m/Map:run1";
        async fn statuses(stores: &Stores) -> Vec<String> {
            let run = read_run(stores, "b", "arn:aws:states:r:1:mapRun:m/Map:run1").await.unwrap().unwrap();
            run.into_iter().map(|e| format!("{}={}", e.name, e.status)).collect()
        }
        // Round 0 ends without consolidating (its parent was stopped): unit 0 ran a, b (b
        // failed), unit 1 ran c.
        write_unit(&stores, "b", run, 0, 1, &[execution("a"), failed("b")]).await.unwrap();
        write_unit(&stores, "b", run, 1, 1, &[execution("c")]).await.unwrap();
        // Redrive 1 reran b (unit 0, epoch 2), which failed again; round 0's attempts are carried.
        write_unit(&stores, "b", run, 0, 2, &[failed("b")]).await.unwrap();
        consolidate(&stores, "b", run, &[(0, 2)], &[(0, 1), (1, 1)]).await.unwrap();
        assert_eq!(statuses(&stores).await, ["a=SUCCEEDED", "b=FAILED", "c=SUCCEEDED"]);
        // Redrive 2 reran b, which succeeded; the run's object has everything before.
        write_unit(&stores, "b", run, 0, 3, &[execution("b")]).await.unwrap();
        consolidate(&stores, "b", run, &[(0, 3)], &[(0, 1), (1, 1), (0, 2)]).await.unwrap();
        assert_eq!(statuses(&stores).await, ["a=SUCCEEDED", "b=SUCCEEDED", "c=SUCCEEDED"]);
    }
}
