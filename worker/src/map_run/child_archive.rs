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
pub async fn consolidate(
    stores: &Stores,
    bucket: &str,
    map_run_arn: &str,
    accepted: &[(u64, u64)],
) -> Result<(), StorageError> {
    let store = stores.bucket(bucket)?;
    let key = run_key(map_run_arn);
    let mut written = std::collections::BTreeSet::new();
    let mut units = store.list_sorted(&unit_prefix(map_run_arn), None);
    while let Some(meta) = units.next().await {
        written.insert(meta?.location.to_string());
    }
    drop(units);
    if written.is_empty() && store.get_bytes(&key).await.is_ok() {
        return Ok(()); // consolidated before (a new leader finalising again)
    }
    let mut accepted = accepted.to_vec();
    accepted.sort_unstable();
    let mut text = Vec::new();
    for (unit, epoch) in accepted {
        let unit_key = unit_key(map_run_arn, unit, epoch);
        if !written.contains(&unit_key) {
            tracing::warn!(map_run = map_run_arn, unit, epoch, "no archived executions for an accepted unit");
            continue;
        }
        text.extend_from_slice(&store.get_bytes(&unit_key).await?);
    }
    // A redrive's children replace their earlier executions (same ARNs) in the run's object.
    let earlier = match store.get_bytes(&key).await {
        Ok(bytes) => Some(decode(&bytes, bucket, &key)?),
        Err(StorageError::NotFound { .. }) => None,
        Err(error) => return Err(error),
    };
    if let Some(mut executions) = earlier {
        let mut redriven: Vec<Option<ArchivedExecution>> = decode(&text, bucket, &key)?.into_iter().map(Some).collect();
        let position: std::collections::HashMap<String, usize> =
            redriven.iter().flatten().enumerate().map(|(i, e)| (e.execution_arn.clone(), i)).collect();
        for execution in &mut executions {
            if let Some(again) = position.get(&execution.execution_arn).and_then(|&i| redriven[i].take()) {
                *execution = again;
            }
        }
        // Children without an earlier record (their unit was never archived) go last.
        executions.extend(redriven.into_iter().flatten());
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
        consolidate(&stores, "b", run, &[(1, 2), (0, 1)]).await.unwrap();
        let names: Vec<String> =
            read_run(&stores, "b", run).await.unwrap().unwrap().into_iter().map(|e| e.name).collect();
        assert_eq!(names, ["a", "b", "c"]);
        // Again (a new leader finalising once more): the same object.
        consolidate(&stores, "b", run, &[(1, 2), (0, 1)]).await.unwrap();
        assert_eq!(read_run(&stores, "b", run).await.unwrap().map(|e| e.len()), Some(3));
        let left = stores.bucket("b").unwrap().list_sorted("child-executions/run1/", None).count().await;
        assert_eq!(left, 0);
    }
}
