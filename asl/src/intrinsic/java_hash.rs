//! The order in which `States.ArrayUnique` returns values: AWS collects the array into a
//! Java `HashSet` and returns the set's iteration order, which follows the elements' Java
//! `hashCode`, not their position.
//!
//! Observed on AWS: `[true, false, true, false]` gives `[false, true]`;
//! `[[1, 2], [1, 2], [2, 1]]` gives `[[2, 1], [1, 2]]`; `[null, null, 1, null]` gives
//! `[null, 1]`; `[1, "1", 1, "01"]` gives `[1, "1", "01"]`; `{"a":1,"b":2}` and
//! `{"b":2,"a":1}` are duplicates. These match a `HashSet` built from the list
//! (`new HashSet<>(list)`) of the plain Java objects the values are read into, which is
//! what is emulated here: `Boolean` hashes to 1231/1237, `null` to 0, `Integer`/`Long`/
//! `Double`/`String`/`List`/`Map` as the JDK defines them; table size
//! `tableSizeFor(max(n / 0.75 + 1, 16))`, bucket `(h ^ h >>> 16) & (size - 1)`, insertion
//! order within a bucket, and a bucket reaching 8 entries in a table smaller than 64
//! doubles the table as `HashMap.treeifyBin` does. (Once a bucket of a table of 64 or more
//! is turned into a tree the JDK's order within it differs slightly; insertion order is
//! kept here.)

use serde_json::{Number, Value};

/// The distinct values of `items` in Java `HashSet` iteration order.
pub(crate) fn hash_set_order(items: &[Value]) -> Vec<Value> {
    let capacity = ((items.len() as f64 / 0.75) as usize + 1).max(16);
    let mut table: Vec<Vec<(u32, &Value)>> = vec![Vec::new(); capacity.next_power_of_two()];
    for item in items {
        let hash = spread(hash_code(item));
        let index = hash as usize & (table.len() - 1);
        if table[index].iter().any(|(h, existing)| *h == hash && java_equals(existing, item)) {
            continue;
        }
        table[index].push((hash, item));
        if table[index].len() > TREEIFY_THRESHOLD && table.len() < MIN_TREEIFY_CAPACITY {
            table = resize(table);
        }
    }
    table.into_iter().flatten().map(|(_, v)| v.clone()).collect()
}

const TREEIFY_THRESHOLD: usize = 8;
const MIN_TREEIFY_CAPACITY: usize = 64;

/// `HashMap.resize`: doubles the table; each bucket splits into the same index and index +
/// old size, keeping relative order.
fn resize(table: Vec<Vec<(u32, &Value)>>) -> Vec<Vec<(u32, &Value)>> {
    let mut bigger = vec![Vec::new(); table.len() * 2];
    let mask = bigger.len() - 1;
    for (hash, value) in table.into_iter().flatten() {
        bigger[hash as usize & mask].push((hash, value));
    }
    bigger
}

/// `HashMap.hash`: `h ^ (h >>> 16)`.
fn spread(h: i32) -> u32 {
    let h = h as u32;
    h ^ (h >> 16)
}

/// `Object.equals` of the Java forms: numbers of different kinds (`1` and `1.0`) differ,
/// maps compare without regard to key order, lists position by position.
fn java_equals(a: &Value, b: &Value) -> bool {
    a == b
}

/// `Object.hashCode` of the Java form of `value`.
pub(crate) fn hash_code(value: &Value) -> i32 {
    match value {
        Value::Null => 0,
        Value::Bool(true) => 1231,
        Value::Bool(false) => 1237,
        Value::Number(n) => number_hash(n),
        Value::String(s) => string_hash(s),
        Value::Array(items) => items.iter().fold(1i32, |h, item| h.wrapping_mul(31).wrapping_add(hash_code(item))),
        Value::Object(map) => {
            map.iter().fold(0i32, |h, (key, item)| h.wrapping_add(string_hash(key) ^ hash_code(item)))
        }
    }
}

/// `String.hashCode`, over UTF-16 code units.
fn string_hash(s: &str) -> i32 {
    s.encode_utf16().fold(0i32, |h, unit| h.wrapping_mul(31).wrapping_add(i32::from(unit)))
}

/// Integers read as `Integer` when they fit, else `Long`, else `BigInteger`; other numbers
/// as `Double`.
fn number_hash(n: &Number) -> i32 {
    if let Some(i) = n.as_i64() {
        if let Ok(small) = i32::try_from(i) {
            return small;
        }
        return long_hash(i);
    }
    if let Some(u) = n.as_u64() {
        // BigInteger.hashCode over the 32-bit magnitude words, most significant first.
        let words = [(u >> 32) as u32, u as u32];
        return words.iter().fold(0i32, |h, w| (i64::from(h) * 31 + i64::from(*w)) as i32);
    }
    long_hash(n.as_f64().unwrap_or(0.0).to_bits() as i64)
}

/// `Long.hashCode` (also `Double.hashCode` of the bits).
fn long_hash(v: i64) -> i32 {
    let v = v as u64;
    (v ^ (v >> 32)) as i32
}
