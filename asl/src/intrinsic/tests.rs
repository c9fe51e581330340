//! Table-driven tests of parsing and evaluating intrinsic calls. Expected values marked
//! "AWS" were recorded against AWS (LocalStack's AWS-validated snapshots or characterisation
//! suites run on AWS); the rest follow the Developer Guide.

use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};

use crate::expr::{PathExpr, PathRoot};
use crate::failure::{names, Failure};

use super::java_hash::hash_set_order;
use super::java_random::JavaRandom;
use super::java_text::{double_to_string, java_string};
use super::parser::MAX_NESTING;
use super::{lenient_base64, template, IntrinsicCall, IntrinsicEnv};

/// Resolves paths against an input, a context object and variables; random numbers come
/// from a fixed sequence.
struct TestEnv {
    input: Value,
    context: Value,
    variables: Map<String, Value>,
    random: u64,
    random_calls: usize,
}

impl TestEnv {
    fn new(input: Value) -> TestEnv {
        TestEnv {
            context: json!({"Execution": {"Input": input.clone()}}),
            input,
            variables: Map::new(),
            random: 7,
            random_calls: 0,
        }
    }
}

impl IntrinsicEnv for TestEnv {
    fn resolve(&mut self, path: &PathExpr) -> Result<Value, Failure> {
        let root = match &path.root {
            PathRoot::Input => &self.input,
            PathRoot::Context => &self.context,
            PathRoot::Variable(name) => {
                self.variables.get(name).ok_or_else(|| Failure::runtime(format!("no variable {name}")))?
            }
        };
        path.path.select(root).map_err(|e| Failure::runtime(format!("missing {}: {e}", path.text)))
    }

    fn random_u64(&mut self) -> u64 {
        self.random_calls += 1;
        self.random = self.random.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.random
    }
}

fn eval_in(text: &str, env: &mut TestEnv) -> Result<Value, Failure> {
    IntrinsicCall::parse(text).unwrap_or_else(|e| panic!("{text} should parse: {e}")).evaluate(env)
}

fn eval(text: &str, input: Value) -> Result<Value, Failure> {
    eval_in(text, &mut TestEnv::new(input))
}

#[test]
fn parses_valid_calls() {
    let cases = [
        "States.UUID()",
        "States.UUID( )",
        "  States.Array($.a)  ",
        "States.Array( $.a , $.b )",
        "States.Array(1, -2, 3.5, -0.25e-3, 1E+2, true, false, null)",
        "States.Format('it\\'s \\{\\} \\\\ {}', $.a)",
        "States.Format('line\nbreak', $.a)",
        "States.Array($$.Execution.Id, $var, $var.x[0], $['a b'], $.a[?(@.b > 1)], $.a[0,1])",
        "States.Array($.a.length())",
        "States.Format('{}', States.Array(States.Array($.a)))",
        "States.ArrayGetItem(States.StringSplit($$.StateMachine.Name, '-'), 0)",
        "States.Hash()",
        "States.MathAdd(1)",
        "States.StringToJson('{\"a\": \"b, c)\"}')",
        "States.Array('', ',', ')', '$')",
    ];
    for text in cases {
        let call = IntrinsicCall::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(call.as_str(), text);
    }
}

#[test]
fn rejects_invalid_syntax() {
    // (text, part of the message)
    let cases = [
        ("States.Foo()", "unknown intrinsic function 'States.Foo'"),
        ("States.format('x')", "unknown intrinsic function 'States.format'"),
        ("States.", "unknown intrinsic function 'States.'"),
        ("Format('x')", "expected 'States.<function>('"),
        ("States.UUID", "expected '('"),
        ("States.UUID(", "unexpected end"),
        ("States.Array(1", "missing ')'"),
        ("States.Array(1))", "unexpected text after the call"),
        ("States.UUID() trailing", "unexpected text after the call"),
        ("States.UUID)", "expected '('"),
        ("States.UUID(,)", "missing argument"),
        ("States.Array(1,)", "missing argument"),
        ("States.Array(1,,2)", "missing argument"),
        ("States.Array(1 2)", "expected ',' or ')'"),
        ("States.Array('abc)", "unterminated string literal"),
        ("States.Array('abc\\')", "unterminated string literal"),
        // AWS rejects these escapes at creation (corpus: ESCAPE_SEQUENCES_ILLEGAL_INTRINSIC_FUNCTION).
        ("States.StringToJson('{\"text\":\"An \\\"escaped\\\" quote\"}')", "invalid escape '\\\"'"),
        ("States.Format('He said, \\\"Hello, {}!\\\"', 'Test \\\"Name\\\" Here')", "invalid escape '\\\"'"),
        ("States.Base64Decode('YWJj\\nZA==')", "invalid escape '\\n'"),
        ("States.Array(1.)", "invalid number '1.'"),
        ("States.Array(.5)", "unexpected character '.'"),
        ("States.Array(01)", "invalid number '01'"),
        ("States.Array(1x)", "invalid number '1x'"),
        ("States.Array(-)", "invalid number '-'"),
        ("States.Array(1e)", "invalid number '1e'"),
        ("States.Array(True)", "unexpected argument 'True'"),
        ("States.Array(abc)", "unexpected argument 'abc'"),
        ("States.Array([1,2])", "unexpected character '['"),
        ("States.Array(\"a\")", "unexpected character '\"'"),
        ("States.Array($.a[0)", "unbalanced ')' in path"),
        ("States.Array($.a[0]", "missing ')'"),
        ("States.Array($.a[0", "unterminated bracket or quote"),
        ("States.Array($['a)", "unterminated bracket or quote"),
        ("States.Array($.a])", "unbalanced ']'"),
        ("States.Array($.a $.b)", "expected ',' or ')'"),
        ("States.Array(a)", "unexpected argument 'a'"),
    ];
    for (text, message) in cases {
        match IntrinsicCall::parse(text) {
            Ok(call) => panic!("{text} should not parse: {call:?}"),
            Err(e) => assert!(e.message.contains(message), "{text}: {} does not contain {message}", e.message),
        }
    }
}

#[test]
fn nesting_is_limited_to_ten_levels() {
    let nested = |depth: usize| format!("{}1{}", "States.Array(".repeat(depth), ")".repeat(depth));
    assert!(IntrinsicCall::parse(&nested(MAX_NESTING)).is_ok());
    let error = IntrinsicCall::parse(&nested(MAX_NESTING + 1)).unwrap_err();
    assert!(error.message.contains("nested at most 10 deep"), "{}", error.message);
    let value = eval(&nested(MAX_NESTING), json!({})).unwrap();
    assert_eq!(value, json!([[[[[[[[[[1]]]]]]]]]]));
}

#[test]
fn evaluates_every_function() {
    // (call, input, expected output)
    let cases: Vec<(&str, Value, Value)> = vec![
        // States.Format: AWS (LocalStack test_format_1/2, test_context_json_path).
        ("States.Format('Formatting argument {}.', $.v)", json!({"v": ""}), json!("Formatting argument .")),
        ("States.Format('Formatting argument {}.', $.v)", json!({"v": "HelloWorld"}), json!("Formatting argument HelloWorld.")),
        ("States.Format('Formatting argument {}.', $.v)", json!({"v": null}), json!("Formatting argument null.")),
        ("States.Format('Formatting argument {}.', $.v)", json!({"v": 1}), json!("Formatting argument 1.")),
        ("States.Format('Formatting argument {}.', $.v)", json!({"v": 1.1}), json!("Formatting argument 1.1.")),
        ("States.Format('{}', $.v)", json!({"v": 1.0}), json!("1.0")),
        ("States.Format('{}', $.v)", json!({"v": 1e20}), json!("1.0E20")),
        ("States.Format('{}|{}', $.a, $.b)", json!({"a": true, "b": -1}), json!("true|-1")),
        (
            "States.Format('fst={} and snd={}.', $.a, $.b)",
            json!({"a": {"Arg1": 1, "Arg2": []}, "b": "{\"Arg1\": 1}"}),
            json!("fst={Arg1=1, Arg2=[]} and snd={\"Arg1\": 1}."),
        ),
        ("States.Format('{}', $.v)", json!({"v": [1, "a", [null, 2.5], {}]}), json!("[1, a, [null, 2.5], {}]")),
        ("States.Format('no placeholders')", json!({}), json!("no placeholders")),
        ("States.Format('  {}  ', 'x')", json!({}), json!("  x  ")),
        ("States.Format('\\{\\} is {}', 'literal')", json!({}), json!("{} is literal")),
        ("States.Format('Name: \\'{}\\', Surname: \"{}\"', 'G', 'M')", json!({}), json!("Name: 'G', Surname: \"M\"")),
        ("States.Format('a\\\\b{}', 1)", json!({}), json!("a\\b1")),
        ("States.Format($.t, $.n)", json!({"t": "Hello, my name is {}.", "n": "Arnav"}), json!("Hello, my name is Arnav.")),
        ("States.Format($.t, 1)", json!({"t": "C:\\dir {}"}), json!("C:\\dir 1")),
        ("States.Format($t, $$.Execution.Input.n)", json!({"n": "Ada"}), json!("Hi Ada")),
        ("States.Format('arn:{}:{}', $.s, States.JsonToString($.o))", json!({"s": "l", "o": {"k": 1}}), json!("arn:l:{\"k\":1}")),
        // States.StringToJson: AWS (test_string_to_json).
        ("States.StringToJson($.v)", json!({"v": ""}), json!(null)),
        ("States.StringToJson($.v)", json!({"v": " "}), json!(null)),
        ("States.StringToJson($.v)", json!({"v": "null"}), json!(null)),
        ("States.StringToJson($.v)", json!({"v": "-0"}), json!(0)),
        ("States.StringToJson($.v)", json!({"v": "1.1"}), json!(1.1)),
        ("States.StringToJson($.v)", json!({"v": "\"HelloWorld\""}), json!("HelloWorld")),
        ("States.StringToJson($.v)", json!({"v": " {\"a\":1} "}), json!({"a": 1})),
        ("States.StringToJson('{\"constant_in_literal\": \"false\"}')", json!({}), json!({"constant_in_literal": "false"})),
        // States.JsonToString: AWS (test_json_to_string); key order kept.
        ("States.JsonToString($.v)", json!({"v": null}), json!("null")),
        ("States.JsonToString($.v)", json!({"v": 1.1}), json!("1.1")),
        ("States.JsonToString($.v)", json!({"v": "HelloWorld"}), json!("\"HelloWorld\"")),
        ("States.JsonToString($.v)", json!({"v": [1, 2, "HelloWorld"]}), json!("[1,2,\"HelloWorld\"]")),
        ("States.JsonToString($.v)", json!({"v": {"b": 1, "a": []}}), json!("{\"b\":1,\"a\":[]}")),
        ("States.JsonToString('x')", json!({}), json!("\"x\"")),
        // States.Array.
        ("States.Array()", json!({}), json!([])),
        ("States.Array(42, true, null, 'hello', -1.5)", json!({}), json!([42, true, null, "hello", -1.5])),
        ("States.Array($.a, States.Array(2, 3))", json!({"a": {"k": 1}}), json!([{"k": 1}, [2, 3]])),
        ("States.Array($['a b'], $.c[1])", json!({"a b": 1, "c": [0, 2]}), json!([1, 2])),
        // States.ArrayPartition: AWS (test_array_partition; 2.4 and 2.6 truncate).
        ("States.ArrayPartition($.a, 1)", json!({"a": []}), json!([])),
        ("States.ArrayPartition($.a, 3)", json!({"a": [0, 1, 2, 3]}), json!([[0, 1, 2], [3]])),
        ("States.ArrayPartition($.a, 5)", json!({"a": [0, 1]}), json!([[0, 1]])),
        ("States.ArrayPartition($.a, 2.6)", json!({"a": [1, 2, 3, 4, 5]}), json!([[1, 2], [3, 4], [5]])),
        ("States.ArrayPartition($.a, 2147483647)", json!({"a": [1]}), json!([[1]])),
        // States.ArrayContains: AWS (test_array_contains and characterisation on AWS).
        ("States.ArrayContains($.a, $.v)", json!({"a": [], "v": []}), json!(false)),
        ("States.ArrayContains($.a, $.v)", json!({"a": [[1, 2, 3], 2], "v": null}), json!(false)),
        ("States.ArrayContains($.a, $.v)", json!({"a": [[1, 2, 3], 2], "v": [1, 2, 3]}), json!(true)),
        ("States.ArrayContains($.a, $.v)", json!({"a": [{"1": 2, "2": []}], "v": []}), json!(false)),
        ("States.ArrayContains($.a, $.v)", json!({"a": [{"1": 2, "2": []}], "v": {"1": 2, "2": []}}), json!(true)),
        ("States.ArrayContains($.a, $.v)", json!({"a": [{"a": 1, "b": 2}], "v": {"b": 2, "a": 1}}), json!(false)),
        ("States.ArrayContains($.a, false)", json!({"a": [true, false]}), json!(true)),
        ("States.ArrayContains($.a, false)", json!({"a": [0, 1, -1.5]}), json!(false)),
        ("States.ArrayContains($.a, true)", json!({"a": ["true"]}), json!(true)),
        ("States.ArrayContains($.a, null)", json!({"a": [1, null]}), json!(true)),
        ("States.ArrayContains(States.Array(1, 2, 3), 2)", json!({}), json!(true)),
        // States.ArrayRange: AWS (test_array_range and characterisation on AWS).
        ("States.ArrayRange(0, 9, 3)", json!({}), json!([0, 3, 6, 9])),
        ("States.ArrayRange(0, 10, 3)", json!({}), json!([0, 3, 6, 9])),
        ("States.ArrayRange(1, 9, 9)", json!({}), json!([1])),
        ("States.ArrayRange(5, 1, -2)", json!({}), json!([5, 3, 1])),
        ("States.ArrayRange(5, 1, 1)", json!({}), json!([])),
        ("States.ArrayRange(3, 3, -1)", json!({}), json!([3])),
        ("States.ArrayRange(1.4, 5.6, 2.2)", json!({}), json!([1, 3, 5])),
        ("States.ArrayRange(1.6, 1.4, 1)", json!({}), json!([1])),
        ("States.ArrayRange(5.4, -0.6, -2.4)", json!({}), json!([5, 3, 1])),
        // States.ArrayGetItem: AWS.
        ("States.ArrayGetItem($.a, 5)", json!({"a": [1, 2, 3, 4, 5, 6, 7, 8, 9]}), json!(6)),
        ("States.ArrayGetItem($.a, 1.2)", json!({"a": [10, 20, 30]}), json!(20)),
        ("States.ArrayGetItem($.a, 999)", json!({"a": []}), json!(null)),
        ("States.ArrayGetItem($.a, 0)", json!({"a": [{"k": 1}]}), json!({"k": 1})),
        // States.ArrayLength.
        ("States.ArrayLength($.a)", json!({"a": [1, [2, 3], {}]}), json!(3)),
        ("States.ArrayLength(States.Array())", json!({}), json!(0)),
        // States.ArrayUnique: AWS returns Java HashSet order.
        ("States.ArrayUnique($.a)", json!({"a": [1, 2, 2, 3, 3, 4]}), json!([1, 2, 3, 4])),
        ("States.ArrayUnique($.a)", json!({"a": ["a", "b", "a", "c", "b"]}), json!(["a", "b", "c"])),
        ("States.ArrayUnique($.a)", json!({"a": [true, false, true, false]}), json!([false, true])),
        ("States.ArrayUnique($.a)", json!({"a": [null, null, 1, null]}), json!([null, 1])),
        ("States.ArrayUnique($.a)", json!({"a": [1, "1", 1, "01"]}), json!([1, "1", "01"])),
        ("States.ArrayUnique($.a)", json!({"a": [[1, 2], [1, 2], [2, 1]]}), json!([[2, 1], [1, 2]])),
        ("States.ArrayUnique($.a)", json!({"a": [{"a": 1, "b": 2}, {"b": 2, "a": 1}]}), json!([{"a": 1, "b": 2}])),
        // Integer 1 and Double 1.0 differ; 1.0 hashes to bucket 0 (checked against the JDK).
        ("States.ArrayUnique($.a)", json!({"a": [1, 1.0]}), json!([1.0, 1])),
        // States.Base64Encode / Base64Decode: AWS.
        ("States.Base64Encode($.v)", json!({"v": ""}), json!("")),
        ("States.Base64Encode($.v)", json!({"v": "Data to encode"}), json!("RGF0YSB0byBlbmNvZGU=")),
        ("States.Base64Encode('🚀')", json!({}), json!("8J+agA==")),
        ("States.Base64Decode($.v)", json!({"v": ""}), json!("")),
        ("States.Base64Decode($.v)", json!({"v": "RGF0YSB0byBlbmNvZGU="}), json!("Data to encode")),
        ("States.Base64Decode('44GT44KT44Gr44Gh44Gv')", json!({}), json!("こんにちは")),
        ("States.Base64Decode(' YWJjZA== ')", json!({}), json!("abcd")),
        ("States.Base64Decode('YWJjAGRlZg==')", json!({}), json!("abc\u{0}def")),
        // States.Hash: AWS (test_hash and characterisation on AWS).
        ("States.Hash($.d, 'MD5')", json!({"d": "input data"}), json!("812f45842bc6d66ee14572ce20db8e86")),
        ("States.Hash($.d, 'SHA-1')", json!({"d": "input data"}), json!("aaff4a450a104cd177d28d18d74485e8cae074b7")),
        (
            "States.Hash($.d, 'SHA-256')",
            json!({"d": "input data"}),
            json!("b4a697a057313163aee33cd8d40c66e9f0f177e00cac2de32475ffff6169c3e3"),
        ),
        (
            "States.Hash($.d, 'SHA-384')",
            json!({"d": "input data"}),
            json!("d28a7d5cf25a74f11a50a18452b75e04bb3d70c9dd0510d6123aa008c756511b87525bdc835ebb27e1fb9e9374a15562"),
        ),
        (
            "States.Hash($.d, 'SHA-512')",
            json!({"d": "input data"}),
            json!("6ce4adb348546d4f449c4d25aad9a7c9cb711d9e91982d3f0b29ca2f3f47d4ce2deba23bf2954f0f1d593fc50283731a533d30d425402d4f91316d871303aac4"),
        ),
        ("States.Hash('', 'SHA-256')", json!({}), json!("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")),
        ("States.Hash($.d, 'SHA-256')", json!({"d": "✓"}), json!("1dabba21cdad44541f6b15796f8d22978fc7ea10c46aeceeeeb66c23b3ac7604")),
        ("States.Hash(123, 'MD5')", json!({}), json!("202cb962ac59075b964b07152d234b70")),
        // States.JsonMerge: AWS (test_json_merge); right wins, shallow.
        (
            "States.JsonMerge($.a, $.b, false)",
            json!({"a": {"a": {"a1": 1}, "b": 2, "d": 3}, "b": {"a": {"a3": 1}, "c": 3, "d": 4}}),
            json!({"a": {"a3": 1}, "b": 2, "d": 4, "c": 3}),
        ),
        ("States.JsonMerge($.a, $.b, 'false')", json!({"a": {"x": 1}, "b": {}}), json!({"x": 1})),
        (
            "States.JsonMerge(States.StringToJson('{\"k\": \"v\"}'), $$.Execution.Input.f, false)",
            json!({"f": {"c": 1}}),
            json!({"k": "v", "c": 1}),
        ),
        // States.MathAdd: AWS (test_math_add) — Java Math.round.
        ("States.MathAdd($.a, $.b)", json!({"a": -9, "b": 3}), json!(-6)),
        ("States.MathAdd($.a, $.b)", json!({"a": 1.49, "b": 1.5}), json!(3)),
        ("States.MathAdd($.a, $.b)", json!({"a": 1.5, "b": 1.51}), json!(4)),
        ("States.MathAdd($.a, $.b)", json!({"a": -1.49, "b": -1.5}), json!(-2)),
        ("States.MathAdd($.a, $.b)", json!({"a": -1.5, "b": -1.51}), json!(-3)),
        ("States.MathAdd($.a, $.b)", json!({"a": 0.5, "b": 0}), json!(1)),
        ("States.MathAdd($.a, $.b)", json!({"a": -0.5, "b": 0}), json!(0)),
        ("States.MathAdd($.a, $.b)", json!({"a": -2.5, "b": 0}), json!(-2)),
        ("States.MathAdd($.a, $.b)", json!({"a": -3.5, "b": 0}), json!(-3)),
        ("States.MathAdd($.a, $.b)", json!({"a": 0.49999999999999994, "b": 0}), json!(0)),
        ("States.MathAdd(2147483646, 1)", json!({}), json!(2147483647)),
        ("States.MathAdd(-2147483647, -1)", json!({}), json!(-2147483648)),
        ("States.MathAdd(States.MathAdd(States.MathAdd($y, $x), $z), -1)", json!({}), json!(5)),
        // States.StringSplit: AWS (test_string_split, StringTokenizer semantics).
        ("States.StringSplit($.s, $.d)", json!({"s": " ", "d": ","}), json!([" "])),
        ("States.StringSplit($.s, $.d)", json!({"s": ", , ,", "d": ","}), json!([" ", " "])),
        ("States.StringSplit($.s, $.d)", json!({"s": ",,,,", "d": ","}), json!([])),
        ("States.StringSplit($.s, $.d)", json!({"s": "", "d": ","}), json!([])),
        ("States.StringSplit($.s, $.d)", json!({"s": "This.is+a,test=string", "d": ".+,="}), json!(["This", "is", "a", "test", "string"])),
        ("States.StringSplit($.s, $.d)", json!({"s": "split on T and \nnew line", "d": "T\n"}), json!(["split on ", " and ", "new line"])),
        ("States.StringSplit('Hello\nWorld', '\n')", json!({}), json!(["Hello", "World"])),
        ("States.StringSplit('abc', '')", json!({}), json!(["abc"])),
        (
            "States.ArrayGetItem(States.StringSplit($$.Execution.Input.n, '-'), States.MathAdd(States.ArrayLength(States.StringSplit($$.Execution.Input.n, '-')), -1))",
            json!({"n": "a-b-c"}),
            json!("c"),
        ),
    ];
    for (text, input, expected) in cases {
        let mut env = TestEnv::new(input);
        env.variables.insert("t".into(), json!("Hi {}"));
        env.variables.insert("x".into(), json!(1));
        env.variables.insert("y".into(), json!(2));
        env.variables.insert("z".into(), json!(3));
        match eval_in(text, &mut env) {
            Ok(value) => assert_eq!(value, expected, "{text}"),
            Err(e) => panic!("{text} failed: {e}"),
        }
    }
}

#[test]
fn integers_stay_integers() {
    for text in ["States.MathAdd(1, 2)", "States.ArrayLength(States.Array(1))", "States.ArrayRange(1, 3, 1)"] {
        let value = eval(text, json!({})).unwrap();
        assert!(!serde_json::to_string(&value).unwrap().contains('.'), "{text}: {value}");
    }
    assert_eq!(serde_json::to_string(&eval("States.StringToJson('-0')", json!({})).unwrap()).unwrap(), "0");
    let nested =
        eval("States.StringToJson($.t)", json!({"t": "[-0, -0.0, \"-0\", {\"a\": -0, \"b\": -0e1}]"})).unwrap();
    assert_eq!(serde_json::to_string(&nested).unwrap(), "[0,-0.0,\"-0\",{\"a\":0,\"b\":-0.0}]");
}

#[test]
fn reports_invalid_arguments_as_runtime_failures() {
    let long = "a".repeat(10_001);
    let big_array: Vec<Value> = (0..30_000).map(|i| json!(format!("item-{i}"))).collect();
    // (call, input, part of the cause)
    let cases: Vec<(&str, Value, &str)> = vec![
        ("States.Hash()", json!({}), "Invalid arguments in States.Hash: expected 2 arguments, got 0"),
        ("States.ArrayContains($.a)", json!({"a": []}), "expected 2 arguments, got 1"),
        ("States.Format()", json!({}), "expected at least 1 argument, got 0"),
        ("States.MathRandom(1)", json!({}), "expected 2 to 3 arguments, got 1"),
        ("States.StringToJson($.a, $.b)", json!({"a": "1", "b": 2}), "expected 1 argument, got 2"),
        ("States.Format('{} {}', 'x')", json!({}), "number of arguments do not match the occurrences of {}"),
        ("States.Format('{}', 'x', 'y')", json!({}), "the template has 1, 2 given"),
        (
            "States.Format('Hello {', 'x')",
            json!({}),
            "Invalid template in States.Format: matching '}' not found for '{'.",
        ),
        ("States.Format('Hello {{}}', 'x')", json!({}), "matching '}' not found for '{'."),
        ("States.Format('}')", json!({}), "matching '{' not found for '}'."),
        ("States.Format($.t)", json!({"t": "open \\"}), "open escape"),
        (
            "States.Format($.t, 'x')",
            json!({"t": 123}),
            "the template (first argument) must be a string, got the number 123",
        ),
        ("States.StringToJson($.v)", json!({"v": "{bad json}"}), "the first argument is not valid JSON"),
        ("States.StringToJson($.v)", json!({"v": "undefined"}), "not valid JSON"),
        ("States.StringToJson($.v)", json!({"v": 123}), "the first argument must be a string, got the number 123"),
        ("States.ArrayPartition('not-array', 2)", json!({}), "the first argument must be an array, got a string"),
        ("States.ArrayPartition($.a, 0.49)", json!({"a": [1]}), "the chunk size must be a positive integer, got 0.49"),
        ("States.ArrayPartition($.a, 0.6)", json!({"a": [1]}), "the chunk size must be a positive integer"),
        ("States.ArrayPartition($.a, -1)", json!({"a": [1]}), "the chunk size must be a positive integer"),
        ("States.ArrayPartition($.a, '2')", json!({"a": [1]}), "the second argument must be a number, got a string"),
        ("States.ArrayPartition($.a, null)", json!({"a": [1]}), "the second argument must be a number, got null"),
        ("States.ArrayPartition($.a, 1)", json!({"a": big_array}), "more than the limit of 262144"),
        ("States.ArrayContains('not-array', 'x')", json!({}), "the first argument must be an array"),
        (
            "States.ArrayRange('a', 5, 1)",
            json!({}),
            "Invalid arguments in States.ArrayRange: the first argument must be a number",
        ),
        ("States.ArrayRange(1, 10, 0)", json!({}), "the step (third argument) must not be 0"),
        ("States.ArrayRange(1, 10, 0.49)", json!({}), "must not be 0"),
        ("States.ArrayRange(1, 1001, 1)", json!({}), "the range has 1001 items, more than the limit of 1000"),
        ("States.ArrayRange(1001, 1, -1)", json!({}), "the range has 1001 items"),
        ("States.ArrayRange(0, 3000000000, 1)", json!({}), "the second argument must be a 32-bit integer"),
        (
            "States.ArrayGetItem($.a, 3)",
            json!({"a": [10, 20, 30]}),
            "the index 3 is out of bounds for an array of length 3",
        ),
        ("States.ArrayGetItem($.a, -1)", json!({"a": [10, 20, 30]}), "the index must not be negative, got -1"),
        ("States.ArrayGetItem($.a, '1')", json!({"a": [10]}), "the second argument must be a number"),
        ("States.ArrayGetItem('x', 0)", json!({}), "the first argument must be an array"),
        ("States.ArrayLength($.o)", json!({"o": {"k": 1}}), "the first argument must be an array, got an object"),
        ("States.ArrayUnique('not-array')", json!({}), "Invalid arguments in States.ArrayUnique"),
        ("States.Base64Encode(123)", json!({}), "the first argument must be a string, got the number 123"),
        ("States.Base64Encode($.v)", json!({"v": long.clone()}), "has 10001 characters, more than the limit of 10000"),
        ("States.Base64Decode($.v)", json!({"v": ["x"]}), "must be a string, got an array"),
        ("States.Base64Decode($.v)", json!({"v": long.clone()}), "more than the limit of 10000"),
        ("States.Hash($.v, 'SHA-256')", json!({"v": long}), "has 10001 characters"),
        ("States.Hash('hello', 123)", json!({}), "the second argument must be a string"),
        ("States.Hash('data', 'sha-256')", json!({}), "unsupported hash algorithm 'sha-256'"),
        ("States.Hash('data', 'SHA256')", json!({}), "unsupported hash algorithm"),
        ("States.Hash('data', 'MD-5')", json!({}), "unsupported hash algorithm"),
        ("States.Hash('data', '')", json!({}), "unsupported hash algorithm ''"),
        ("States.JsonMerge($.a, $.b, true)", json!({"a": {}, "b": {}}), "deep merging is not supported"),
        (
            "States.JsonMerge($.a, $.b, false)",
            json!({"a": null, "b": {}}),
            "the first argument must be an object, got null",
        ),
        (
            "States.JsonMerge($.a, $.b, false)",
            json!({"a": {}, "b": "x"}),
            "the second argument must be an object, got a string",
        ),
        (
            "States.JsonMerge($.a, $.b, false)",
            json!({"a": [], "b": {}}),
            "the first argument must be an object, got an array",
        ),
        ("States.JsonMerge($.a, $.b)", json!({"a": {}, "b": {}}), "expected 3 arguments, got 2"),
        ("States.MathRandom(1, 1)", json!({}), "the start (1) must be less than the end (1)"),
        ("States.MathRandom(10, 5)", json!({}), "must be less than the end"),
        ("States.MathRandom(1.4, 1.6)", json!({}), "must be less than the end"),
        ("States.MathRandom('a', 10)", json!({}), "the first argument must be a number, got a string"),
        ("States.MathRandom(1, 10, 'seed')", json!({}), "the seed (third argument) must be a number, got a string"),
        ("States.MathRandom(1, 10, null)", json!({}), "the seed (third argument) must be a number, got null"),
        ("States.MathRandom(-2147483648, 2147483647)", json!({}), "is too large"),
        ("States.MathAdd(2147483647, 1)", json!({}), "the sum of 2147483647 and 1 is outside"),
        ("States.MathAdd(-2147483648, -1)", json!({}), "is outside -2147483648..2147483647"),
        ("States.MathAdd(3000000000, 1)", json!({}), "the first argument must be between -2147483648 and 2147483647"),
        ("States.MathAdd(1, 2147483647.6)", json!({}), "the second argument must be between"),
        ("States.MathAdd($.a, $.b)", json!({"a": 1, "b": "NOT A NUMBER"}), "Invalid arguments in States.MathAdd"),
        ("States.MathAdd(null, 1)", json!({}), "the first argument must be a number, got null"),
        ("States.MathAdd(true, 1)", json!({}), "got the boolean true"),
        ("States.MathAdd('-1', 2)", json!({}), "got a string"),
        ("States.StringSplit($.s, ',')", json!({"s": 123}), "the first argument must be a string"),
        (
            "States.StringSplit($.s, $.d)",
            json!({"s": "a,b", "d": [","]}),
            "the second argument must be a string, got an array",
        ),
        ("States.StringSplit($.s, $.d)", json!({"s": null, "d": ","}), "got null"),
    ];
    for (text, input, cause) in cases {
        match eval(text, input) {
            Ok(value) => panic!("{text} should fail, gave {value}"),
            Err(failure) => {
                assert_eq!(failure.error_name(), names::RUNTIME, "{text}");
                let actual = failure.cause.unwrap_or_default();
                assert!(actual.contains(cause), "{text}: cause {actual:?} does not contain {cause:?}");
                assert!(
                    actual.starts_with("There was an error while evaluating the intrinsic function: States."),
                    "{text}: {actual}"
                );
            }
        }
    }
}

#[test]
fn failure_cause_quotes_the_failing_call() {
    let failure = eval("States.Format('{}', States.MathAdd($.a,   'x'))", json!({"a": 1})).unwrap_err();
    assert_eq!(
        failure.cause.as_deref(),
        Some(
            "There was an error while evaluating the intrinsic function: States.MathAdd($.a, 'x'). Invalid arguments \
             in States.MathAdd: the second argument must be a number, got a string"
        )
    );
}

#[test]
fn unresolved_paths_fail_with_the_environment_failure() {
    let failure = eval("States.Format('{}', States.Array($.missing))", json!({})).unwrap_err();
    assert_eq!(failure.error_name(), names::RUNTIME);
    assert!(failure.cause.unwrap().starts_with("missing $.missing"));
    let mut env = TestEnv::new(json!({}));
    let failure = eval_in("States.Array($nope)", &mut env).unwrap_err();
    assert_eq!(failure.cause.as_deref(), Some("no variable nope"));
}

#[test]
fn uuid_is_v4_from_the_environment_and_ignores_arguments() {
    let pattern = regex::Regex::new("^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$").unwrap();
    let mut first = TestEnv::new(json!({}));
    let mut second = TestEnv::new(json!({}));
    let a = eval_in("States.UUID()", &mut first).unwrap();
    let b = eval_in("States.UUID()", &mut second).unwrap();
    assert_eq!(a, b, "same random source, same UUID");
    assert!(pattern.is_match(a.as_str().unwrap()), "{a}");
    assert_eq!(first.random_calls, 2);
    let c = eval_in("States.UUID()", &mut first).unwrap();
    assert_ne!(a, c);
    for text in ["States.UUID('x')", "States.UUID($.missing)", "States.UUID(1, 2)", "States.UUID(null)"] {
        let value = eval(text, json!({})).unwrap();
        assert!(pattern.is_match(value.as_str().unwrap()), "{text}: {value}");
    }
    assert_eq!(eval("States.Format('{}', States.UUID())", json!({})).unwrap(), a);
}

#[test]
fn math_random_is_in_range_and_seeded_results_repeat() {
    // AWS: seed 42 over [-5, 5) gives -5 (java.util.Random(42).nextInt(10) == 0).
    assert_eq!(eval("States.MathRandom(-5, 5, 42)", json!({})).unwrap(), json!(-5));
    for (start, end) in [(1, 999), (-99999, -9999), (12, 44), (0, 1), (2147483640, 2147483647)] {
        for seed in ["", ", 3", ", -10", ", 0", ", 2.6"] {
            let text = format!("States.MathRandom({start}, {end}{seed})");
            let mut env = TestEnv::new(json!({}));
            let first = eval_in(&text, &mut env).unwrap();
            let n = first.as_i64().unwrap();
            assert!((start..end).contains(&n), "{text}: {n}");
            let again = eval_in(&text, &mut env).unwrap();
            if !seed.is_empty() {
                assert_eq!(first, again, "{text}: a seeded call repeats");
                assert_eq!(env.random_calls, 0, "{text}: a seeded call uses no environment randomness");
            }
        }
    }
    // Truncated bounds: (12.5, 44.51) draws from [12, 44).
    let mut env = TestEnv::new(json!({"a": 12.5, "b": 44.51}));
    for _ in 0..200 {
        let n = eval_in("States.MathRandom($.a, $.b)", &mut env).unwrap().as_i64().unwrap();
        assert!((12..44).contains(&n), "{n}");
    }
    assert_eq!(env.random_calls, 200);
}

#[test]
fn java_random_matches_the_jdk() {
    assert_eq!(JavaRandom::new(42).next_i32(), -1170105035);
    assert_eq!(JavaRandom::new(42).next_int(10), 0);
    assert_eq!(JavaRandom::new(0).next_i32(), -1155484576);
    let mut random = JavaRandom::new(42);
    let values: Vec<i32> = (0..5).map(|_| random.next_int(100)).collect();
    assert_eq!(values, [30, 63, 48, 84, 70]);
    // A power-of-two bound takes the high bits.
    assert!((0..16).contains(&JavaRandom::new(7).next_int(16)));
}

#[test]
fn format_templates_split_into_text_and_placeholders() {
    use template::Piece::{Placeholder, Text};
    let ok = [
        ("", vec![]),
        ("{}", vec![Placeholder]),
        ("a{}b{}", vec![Text("a".into()), Placeholder, Text("b".into()), Placeholder]),
        ("\\{\\}", vec![Text("{}".into())]),
        ("\\'\\\\", vec![Text("'\\".into())]),
        ("a\\b", vec![Text("a\\b".into())]),
    ];
    for (input, pieces) in ok {
        assert_eq!(template::parse(input).unwrap(), pieces, "{input}");
    }
    for (input, error) in [
        ("{", "matching '}' not found for '{'."),
        ("{x}", "matching '}' not found for '{'."),
        ("a}", "matching '{' not found for '}'."),
        ("\\\\{ \"name\" \\\\}", "matching '}' not found for '{'."),
        ("x\\", "open escape"),
    ] {
        assert!(template::parse(input).unwrap_err().contains(error), "{input}");
    }
}

#[test]
fn java_text_of_values() {
    let cases = [
        (json!(null), "null"),
        (json!(true), "true"),
        (json!(-7), "-7"),
        (json!(18446744073709551615u64), "18446744073709551615"),
        (json!(1.5), "1.5"),
        (json!("a b"), "a b"),
        (json!([]), "[]"),
        (json!({}), "{}"),
        (json!({"Id": "arn", "n": [1, {"x": null}]}), "{Id=arn, n=[1, {x=null}]}"),
    ];
    for (value, text) in cases {
        assert_eq!(java_string(&value), text, "{value}");
    }
}

#[test]
fn doubles_print_as_java_does() {
    let cases = [
        (0.0, "0.0"),
        (-0.0, "-0.0"),
        (1.0, "1.0"),
        (-1.5, "-1.5"),
        (100.0, "100.0"),
        (0.001, "0.001"),
        (0.0001, "1.0E-4"),
        (1.2345e-5, "1.2345E-5"),
        (1234567.5, "1234567.5"),
        (9999999.0, "9999999.0"),
        (1e7, "1.0E7"),
        (12345678.9, "1.23456789E7"),
        (1e20, "1.0E20"),
        (f64::MAX, "1.7976931348623157E308"),
        (0.1 + 0.2, "0.30000000000000004"),
    ];
    for (x, text) in cases {
        assert_eq!(double_to_string(x), text, "{x}");
    }
}

#[test]
fn array_unique_follows_java_hash_set_order() {
    // (input, expected) — the first rows are AWS observations.
    let cases = [
        (json!([true, false, true, false]), json!([false, true])),
        (json!([[1, 2], [1, 2], [2, 1]]), json!([[2, 1], [1, 2]])),
        (json!([null, null, 1, null]), json!([null, 1])),
        (json!([1, "1", 1, "01"]), json!([1, "1", "01"])),
        (json!([1, 2, 1, 3, 2, 4]), json!([1, 2, 3, 4])),
        (json!([]), json!([])),
        // 17 and 1 share bucket 1 of a 16-slot table; insertion order within it.
        (json!([17, 1, 2]), json!([17, 1, 2])),
        // 20 items: 32 slots, so 17 no longer shares a bucket with 1.
        (json!((0..20).rev().collect::<Vec<i32>>()), json!((0..20).collect::<Vec<i32>>())),
        // Nine values in bucket 0 of a 16-slot table: the table doubles (treeifyBin) and the
        // bucket splits into 0 and 16 (checked against JDK 17 and 25).
        (json!([0, 16, 32, 48, 64, 80, 96, 112, 128]), json!([0, 32, 64, 96, 128, 16, 48, 80, 112])),
    ];
    for (input, expected) in cases {
        assert_eq!(Value::Array(hash_set_order(input.as_array().unwrap())), expected, "{input}");
    }
}

#[test]
fn base64_decoding_is_lenient() {
    let cases: [(&str, &[u8]); 6] = [
        ("aGVsbG8=", b"hello"),
        ("abc", b"i\xb7"),
        ("ab==cd", b"i"),
        ("!!!aGVs!!!bG8=", b"hello"),
        ("-_-_", &[0xfb, 0xff, 0xbf]),
        ("", b""),
    ];
    for (text, bytes) in cases {
        assert_eq!(lenient_base64::decode(text), bytes, "{text}");
    }
}

/// Replays the intrinsic cases of the conformance corpus that a single Pass state with
/// intrinsic-only `Parameters` can express (skipping random results and context fields
/// the test environment does not have).
#[test]
fn conformance_corpus_single_pass_cases() {
    let dir = corpus_dir();
    let Ok(entries) = std::fs::read_dir(&dir) else { return };
    let mut checked = 0;
    for path in entries.filter_map(|e| e.ok().map(|e| e.path())) {
        let Some(case) = std::fs::read_to_string(&path).ok().and_then(|t| serde_json::from_str::<Value>(&t).ok())
        else {
            continue;
        };
        let Some((parameters, input, expected)) = single_pass_case(&case) else { continue };
        let mut env = TestEnv::new(input);
        let mut output = Map::new();
        for (key, value) in parameters {
            let text = value.as_str().unwrap_or_default();
            let name = key.trim_end_matches(".$").to_string();
            let value = eval_in(text, &mut env).unwrap_or_else(|e| panic!("{}: {text}: {e}", path.display()));
            output.insert(name, value);
        }
        assert_eq!(Value::Object(output), expected, "{}", path.display());
        checked += 1;
    }
    assert!(checked > 50, "only {checked} corpus cases checked");
}

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/conformance/corpus/pure")
}

/// `(parameters, input, expected output)` of a case whose definition is one Pass state with
/// `Parameters` made only of intrinsic calls, and which succeeded on AWS.
fn single_pass_case(case: &Value) -> Option<(Map<String, Value>, Value, Value)> {
    let states = case["definition"]["States"].as_object()?;
    let state = states.values().next().filter(|_| states.len() == 1)?;
    if state["Type"] != "Pass" || case["expected"]["status"] != "SUCCEEDED" {
        return None;
    }
    let parameters = state["Parameters"].as_object()?;
    let usable = parameters.iter().all(|(key, value)| {
        let text = value.as_str().unwrap_or_default();
        key.ends_with(".$")
            && text.starts_with("States.")
            && !["MathRandom", "UUID", "$$.StateMachine", "$$.Execution.Name"].iter().any(|s| text.contains(s))
    });
    if !usable || state.get("ResultPath").is_some() || state.get("OutputPath").is_some() {
        return None;
    }
    let input = serde_json::from_str(case["input_text"].as_str()?).ok()?;
    Some((parameters.clone(), input, case["expected"]["output"].clone()))
}
