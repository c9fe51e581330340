//! A key-value state machine for the cluster tests: `put KEY VALUE` commands, snapshots as
//! sorted `KEY VALUE` lines. Deterministic, as `StateMachine` requires.

use std::collections::BTreeMap;

use stepmap_coordinator::StateMachine;

#[derive(Default, Debug)]
pub struct Kv {
    pub entries: BTreeMap<String, String>,
    /// The log index of the last applied command, to check that apply sees increasing indexes.
    pub last_index: u64,
}

pub fn put(key: &str, value: &str) -> Vec<u8> {
    format!("put {key} {value}").into_bytes()
}

impl StateMachine for Kv {
    fn apply(&mut self, index: u64, command: &[u8]) -> Vec<u8> {
        assert!(index > self.last_index, "apply went backwards: {index} after {}", self.last_index);
        self.last_index = index;
        let command = String::from_utf8_lossy(command);
        let mut words = command.splitn(3, ' ');
        match (words.next(), words.next(), words.next()) {
            (Some("put"), Some(key), Some(value)) => {
                let previous = self.entries.insert(key.to_owned(), value.to_owned());
                previous.unwrap_or_default().into_bytes()
            }
            // A rejected command is a response, not a failure (StateMachine contract).
            _ => b"error: unknown command".to_vec(),
        }
    }

    fn query(&self, query: &[u8]) -> Vec<u8> {
        let key = String::from_utf8_lossy(query);
        self.entries.get(key.as_ref()).cloned().unwrap_or_default().into_bytes()
    }

    fn snapshot(&self) -> Vec<u8> {
        let mut out = format!("{}\n", self.last_index);
        for (key, value) in &self.entries {
            out.push_str(&format!("{key} {value}\n"));
        }
        out.into_bytes()
    }

    fn restore(&mut self, snapshot: &[u8]) -> Result<(), String> {
        let text = std::str::from_utf8(snapshot).map_err(|e| e.to_string())?;
        let mut lines = text.lines();
        let last_index = lines.next().ok_or("empty snapshot")?.parse().map_err(|e| format!("bad index: {e}"))?;
        let mut entries = BTreeMap::new();
        for line in lines {
            let (key, value) = line.split_once(' ').ok_or_else(|| format!("bad line {line:?}"))?;
            entries.insert(key.to_owned(), value.to_owned());
        }
        *self = Kv { entries, last_index };
        Ok(())
    }
}

#[test]
fn kv_snapshot_round_trip() {
    let mut kv = Kv::default();
    kv.apply(1, &put("a", "1"));
    kv.apply(2, &put("b", "two words"));
    let mut restored = Kv::default();
    restored.restore(&kv.snapshot()).unwrap();
    assert_eq!(restored.entries, kv.entries);
    assert_eq!(restored.last_index, 2);
    assert_eq!(restored.query(b"b"), b"two words");
}
