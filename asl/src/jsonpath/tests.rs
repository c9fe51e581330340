//! Table-driven cases of the Jayway dialect, including the exact messages AWS quotes.

use serde_json::{json, Value};

use super::JsonPath;

fn store() -> Value {
    json!({
        "store": {
            "book": [
                {"category": "reference", "author": "Nigel Rees", "title": "Sayings", "price": 8.95},
                {"category": "fiction", "author": "Evelyn Waugh", "title": "Sword", "price": 12.99},
                {"category": "fiction", "author": "Herman Melville", "title": "Moby Dick", "isbn": "0-553", "price": 8.99},
                {"category": "fiction", "author": "J. R. R. Tolkien", "title": "The Lord", "isbn": "0-395", "price": 22.99}
            ],
            "bicycle": {"color": "red", "price": 19.95}
        },
        "expensive": 10,
        "odd key": {"a.b": 1, "it's": 2}
    })
}

#[test]
fn selections_match_jayway() {
    let doc = store();
    let cases: &[(&str, Value)] = &[
        ("$", doc.clone()),
        ("$.expensive", json!(10)),
        ("$.store.bicycle.color", json!("red")),
        ("$['store']['bicycle']['color']", json!("red")),
        ("$[\"store\"].bicycle", json!({"color": "red", "price": 19.95})),
        ("$.store.book[0].author", json!("Nigel Rees")),
        ("$.store.book[-1].title", json!("The Lord")),
        ("$['odd key']['a.b']", json!(1)),
        ("$['odd key']['it\\'s']", json!(2)),
        ("$.['odd key'].['a.b']", json!(1)),
        ("$.store.book[*].author", json!(["Nigel Rees", "Evelyn Waugh", "Herman Melville", "J. R. R. Tolkien"])),
        ("$.store.book[1:3].title", json!(["Sword", "Moby Dick"])),
        ("$.store.book[:1].title", json!(["Sayings"])),
        ("$.store.book[2:].title", json!(["Moby Dick", "The Lord"])),
        ("$.store.book[-2:].title", json!(["Moby Dick", "The Lord"])),
        ("$.store.book[0,2].title", json!(["Sayings", "Moby Dick"])),
        ("$.store.book[9:20]", json!([])),
        ("$..author", json!(["Nigel Rees", "Evelyn Waugh", "Herman Melville", "J. R. R. Tolkien"])),
        ("$.store..price", json!([8.95, 12.99, 8.99, 22.99, 19.95])),
        ("$.store.*.color", json!(["red"])),
        ("$.store.bicycle.*", json!(["red", 19.95])),
        ("$.store.book[?(@.isbn)].title", json!(["Moby Dick", "The Lord"])),
        ("$.store.book[?(!@.isbn)].title", json!(["Sayings", "Sword"])),
        ("$.store.book[?(@.price < 10)].title", json!(["Sayings", "Moby Dick"])),
        ("$.store.book[?(@.price > $.expensive)].title", json!(["Sword", "The Lord"])),
        ("$.store.book[?(@.category == 'fiction' && @.price < 20)].title", json!(["Sword", "Moby Dick"])),
        ("$.store.book[?(@.category == 'reference' || @.price > 20)].title", json!(["Sayings", "The Lord"])),
        ("$.store.book[?(@.author =~ /.*Melville/)].title", json!(["Moby Dick"])),
        ("$.store.book[?(@.author =~ /herman.*/i)].title", json!(["Moby Dick"])),
        ("$.store.book[?(@.title in ['Sword', 'Nope'])].price", json!([12.99])),
        ("$.store.book[?(@.title nin ['Sword', 'Sayings'])].price", json!([8.99, 22.99])),
        ("$.store.book[?(@.title size 5)].title", json!(["Sword"])),
        ("$.store.book[?(@.missing != 1)].title", json!(["Sayings", "Sword", "Moby Dick", "The Lord"])),
        ("$.store.book.length()", json!(4)),
        ("$.store.book[*].price.length()", json!(4)),
        ("$.store.bicycle['color','price']", json!({"color": "red", "price": 19.95})),
        ("$.store.bicycle['color','nope']", json!({"color": "red"})),
        (
            "$.store.book[*]['title','nope']",
            json!([{"title": "Sayings"}, {"title": "Sword"}, {"title": "Moby Dick"}, {"title": "The Lord"}]),
        ),
    ];
    for (path, expected) in cases {
        let parsed = JsonPath::parse(path).unwrap_or_else(|e| panic!("{path}: {e}"));
        assert_eq!(&parsed.select(&doc).unwrap_or_else(|e| panic!("{path}: {e}")), expected, "{path}");
        // Moving the node out selects the same, whatever the path.
        assert_eq!(&parsed.select_owned(doc.clone()).unwrap_or_else(|e| panic!("{path}: {e}")), expected, "{path}");
    }
}

#[test]
fn owned_selection_fails_as_the_borrowed_one() {
    let doc = store();
    for path in ["$.nope", "$.store.book[9]", "$.expensive.price", "$.store.book.title", "$.store.nope.price"] {
        let parsed = JsonPath::parse(path).unwrap();
        let borrowed = parsed.select(&doc).expect_err(path);
        let owned = parsed.select_owned(doc.clone()).expect_err(path);
        assert_eq!(borrowed.message, owned.message, "{path}");
    }
}

#[test]
fn filters_on_numbers_and_users() {
    let doc = json!({"users": [{"status": 0, "n": "a"}, {"status": 1, "n": "b"}, {"n": "c"}], "xs": [1, 5, 3]});
    let select = |p: &str| JsonPath::parse(p).unwrap().select(&doc).unwrap();
    assert_eq!(select("$.users[?(@.status == 0)]"), json!([{"status": 0, "n": "a"}]));
    assert_eq!(select("$.users[?(@.status == 0.0)].n"), json!(["a"]));
    assert_eq!(select("$.users[?(@.status >= 0)].n"), json!(["a", "b"]));
    assert_eq!(select("$.xs[?(@ > 2)]"), json!([5, 3]));
    assert_eq!(select("$.users[?(@.n == \"c\")].n"), json!(["c"]));
    assert_eq!(select("$.users[?((@.n == 'a') || (@.n == 'c'))].n"), json!(["a", "c"]));
}

#[test]
fn definite_paths_fail_with_jayway_messages() {
    let doc = json!({"a": {"b": 1}, "items": [1, 2], "s": "text", "n": null});
    let error = |p: &str| JsonPath::parse(p).unwrap().select(&doc).unwrap_err().message;
    assert_eq!(error("$.NoSuchInputPath"), "No results for path: $['NoSuchInputPath']");
    assert_eq!(error("$.a.c"), "No results for path: $['a']['c']");
    assert_eq!(error("$.x.y.z"), "Missing property in path $['x']");
    assert_eq!(error("$.items[10]"), "No results for path: $['items'][10]");
    assert_eq!(
        error("$.s.x"),
        "Expected to find an object with property ['x'] in path $['s'] but found 'java.lang.String'. \
         This is not a json object according to the JsonProvider: 'com.jayway.jsonpath.spi.json.JacksonJsonProvider'."
    );
    assert_eq!(error("$.a[0]"), "Filter: [0] can only be applied to arrays. Current context is: {\"b\":1}");
    // Indefinite paths never fail: they select nothing.
    assert_eq!(JsonPath::parse("$.x[*].y").unwrap().select(&doc).unwrap(), json!([]));
    assert_eq!(JsonPath::parse("$.n").unwrap().select(&doc).unwrap(), Value::Null);
}

#[test]
fn syntax_errors_are_rejected() {
    for bad in ["", "a.b", "$.", "$..", "$[", "$['a'", "$[a]", "$.a[1:2:3]", "$.a b", "$.a.nofunc()", "$.a[?(@.x ==)]"]
    {
        assert!(JsonPath::parse(bad).is_err(), "{bad} should not parse");
    }
}

#[test]
fn definiteness_and_reference_paths() {
    let cases = [
        ("$", true, true),
        ("$.a.b[0]", true, true),
        ("$['a b'][1]", true, true),
        ("$.a[*]", false, false),
        ("$..a", false, false),
        ("$.a[0,1]", false, false),
        ("$.a[1:]", false, false),
        ("$.a[?(@.x)]", false, false),
        ("$.a['b','c']", true, false),
        ("$.a.length()", true, false),
    ];
    for (path, definite, reference) in cases {
        let parsed = JsonPath::parse(path).unwrap();
        assert_eq!(parsed.is_definite(), definite, "{path} definite");
        assert_eq!(parsed.is_reference_path(), reference, "{path} reference");
    }
}

#[test]
fn assign_creates_intermediates_and_replaces_in_place() {
    let assign = |path: &str, mut root: Value, value: Value| {
        JsonPath::parse(path).unwrap().assign(&mut root, value).map(|_| root).map_err(|e| e.message)
    };
    assert_eq!(assign("$", json!({"a": 1}), json!(2)), Ok(json!(2)));
    assert_eq!(assign("$.r", json!({"a": 1}), json!(2)), Ok(json!({"a": 1, "r": 2})));
    assert_eq!(assign("$.a", json!({"a": 1, "b": 2}), json!(3)), Ok(json!({"a": 3, "b": 2})));
    assert_eq!(assign("$.x.y.z", json!({}), json!(true)), Ok(json!({"x": {"y": {"z": true}}})));
    assert_eq!(assign("$.l[1]", json!({"l": [0, 0]}), json!(9)), Ok(json!({"l": [0, 9]})));
    assert_eq!(assign("$.no.such", json!({"no": 1}), json!(9)), Err("Missing property in path $['no']['such']".into()));
    assert_eq!(assign("$.no", json!("text"), json!(9)), Err("Missing property in path $['no']".into()));
    // Key order is kept: an existing key is replaced where it stands.
    let out = assign("$.a", json!({"a": 1, "b": 2}), json!(0)).unwrap();
    assert_eq!(out.as_object().unwrap().keys().collect::<Vec<_>>(), ["a", "b"]);
}

mod properties {
    use proptest::prelude::*;
    use serde_json::{json, Value};

    use super::JsonPath;

    fn name() -> impl Strategy<Value = String> {
        "[a-z]{1,6}"
    }

    proptest! {
        /// What ResultPath writes at a reference path is what the same path reads back,
        /// and no other top-level field of the input is lost.
        #[test]
        fn assign_then_select_round_trips(
            input in proptest::collection::btree_map(name(), any::<i64>(), 0..6),
            path in proptest::collection::vec(name(), 1..4),
            value in any::<i64>(),
        ) {
            let mut root = json!(input);
            let text = format!("$.{}", path.join("."));
            let compiled = JsonPath::parse(&text).unwrap();
            if compiled.assign(&mut root, json!(value)).is_ok() {
                prop_assert_eq!(compiled.select(&root).unwrap(), json!(value));
                for (key, original) in &input {
                    if key != &path[0] {
                        prop_assert_eq!(&root[key], &Value::from(*original));
                    }
                }
            } else {
                // Only a scalar in the way can stop the write.
                prop_assert!(input.contains_key(&path[0]) && path.len() > 1);
            }
        }
    }
}
