//! Table-driven unit tests: small definitions → expected diagnostic code and location.

use serde_json::Value;

use crate::diagnostic::{codes, Severity, ValidationReport};
use crate::model::StateMachineType;

use super::{validate, validate_value};

const STANDARD: StateMachineType = StateMachineType::Standard;
const EXPRESS: StateMachineType = StateMachineType::Express;

const SCHEMA: &str = codes::SCHEMA_VALIDATION_FAILED;
const TARGET: &str = codes::MISSING_TRANSITION_TARGET;

fn run(definition: &str, ty: StateMachineType) -> ValidationReport {
    let value: Value = serde_json::from_str(definition).unwrap_or_else(|e| panic!("bad test JSON {e}: {definition}"));
    validate_value(&value, ty)
}

fn describe(report: &ValidationReport) -> String {
    report
        .diagnostics
        .iter()
        .map(|d| format!("\n  {:?} {} {:?}: {}", d.severity, d.code, d.location, d.message))
        .collect()
}

/// Definitions that must validate without errors.
const VALID: &[(&str, StateMachineType, &str)] = &[
    ("minimal pass", STANDARD, r#"{"StartAt":"A","States":{"A":{"Type":"Pass","End":true}}}"#),
    (
        "every JSONPath data-flow field",
        STANDARD,
        r#"{"Comment":"c","Version":"1.0","TimeoutSeconds":60,"StartAt":"T","States":{
            "T":{"Type":"Task","Resource":"arn:aws:states:::lambda:invoke","InputPath":"$.in","OutputPath":null,
                 "ResultPath":"$.out","ResultSelector":{"p.$":"$.Payload","n":1},
                 "Parameters":{"FunctionName":"f","Payload.$":"$","ctx.$":"$$.Execution.Id","v.$":"$myVar.field",
                   "u.$":"States.UUID()","nested":{"k.$":"$.a[0]"},"list":[{"k.$":"$.b"}]},
                 "TimeoutSeconds":10,"HeartbeatSeconds":5,"Assign":{"x.$":"$.a","y":{"z.$":"$.b"}},
                 "Retry":[{"ErrorEquals":["Custom"],"IntervalSeconds":1,"MaxAttempts":0,"BackoffRate":1,"MaxDelaySeconds":5,"JitterStrategy":"FULL","Comment":"r"},
                          {"ErrorEquals":["States.ALL"]}],
                 "Catch":[{"ErrorEquals":["States.ALL"],"Next":"F","ResultPath":"$.error","Assign":{"e.$":"$.Cause"}}],
                 "Next":"C"},
            "C":{"Type":"Choice","Choices":[
                   {"Variable":"$.n","NumericGreaterThan":1,"Next":"W","Assign":{"c":1}},
                   {"And":[{"Variable":"$$.State.Name","StringMatches":"a*"},{"Not":{"Variable":"$x","IsPresent":true}}],"Next":"S"},
                   {"Variable":"$.t","TimestampEquals":"2016-03-14T01:59:00Z","Next":"S","Comment":"c"},
                   {"Variable":"$.a","StringEqualsPath":"$.b","Next":"S"}],
                 "Default":"F"},
            "W":{"Type":"Wait","SecondsPath":"$.delay","Next":"S"},
            "S":{"Type":"Succeed","OutputPath":"$.x"},
            "F":{"Type":"Fail","ErrorPath":"$.Error","CausePath":"States.Format('cause {}', $.Cause)"}}}"#,
    ),
    (
        "inline and distributed maps",
        STANDARD,
        r#"{"StartAt":"M","States":{
            "M":{"Type":"Map","ItemsPath":"$.items","ItemSelector":{"v.$":"$$.Map.Item.Value"},"MaxConcurrency":0,
                 "ItemProcessor":{"ProcessorConfig":{"Mode":"INLINE"},"StartAt":"P","States":{"P":{"Type":"Pass","End":true}}},
                 "Next":"D"},
            "D":{"Type":"Map","Label":"my-label_1",
                 "ItemReader":{"Resource":"arn:aws:states:::s3:getObject","ReaderConfig":{"InputType":"CSV","CSVHeaderLocation":"GIVEN","CSVHeaders":["a","b"],"MaxItemsPath":"$.max"},
                               "Parameters":{"Bucket.$":"$.bucket","Key":"k.csv"}},
                 "ItemBatcher":{"MaxItemsPerBatch":10,"MaxInputBytesPerBatch":1024,"BatchInput":{"x.$":"$.x"}},
                 "ResultWriter":{"Resource":"arn:aws:states:::s3:putObject","Parameters":{"Bucket":"b","Prefix":"p"},"WriterConfig":{"Transformation":"FLATTEN","OutputType":"JSONL"}},
                 "ToleratedFailurePercentage":5.5,"ToleratedFailureCountPath":"$.count",
                 "ItemProcessor":{"ProcessorConfig":{"Mode":"DISTRIBUTED","ExecutionType":"EXPRESS"},"StartAt":"Q","States":{"Q":{"Type":"Pass","End":true}}},
                 "End":true}}}"#,
    ),
    (
        "legacy iterator with parameters",
        STANDARD,
        r#"{"StartAt":"M","States":{"M":{"Type":"Map","Parameters":{"a.$":"$$.Map.Item.Index"},
            "Iterator":{"StartAt":"P","States":{"P":{"Type":"Pass","End":true}}},"End":true}}}"#,
    ),
    (
        "parallel with loops inside branches",
        STANDARD,
        r#"{"StartAt":"P","States":{"P":{"Type":"Parallel","Branches":[
            {"StartAt":"A","States":{"A":{"Type":"Pass","Next":"B"},"B":{"Type":"Succeed"}}},
            {"StartAt":"C","States":{"C":{"Type":"Wait","Seconds":0,"End":true}}}],"End":true}}}"#,
    ),
    (
        "JSONata machine",
        STANDARD,
        r#"{"QueryLanguage":"JSONata","StartAt":"T","States":{
            "T":{"Type":"Task","Resource":"arn:aws:states:::lambda:invoke","Arguments":{"FunctionName":"f","Payload":"{% $states.input %}"},
                 "Output":"{% $states.result.Payload %}","Assign":{"r":"{% $states.result %}"},"TimeoutSeconds":"{% $t %}",
                 "Catch":[{"ErrorEquals":["States.ALL"],"Output":"{% $states.errorOutput %}","Assign":{"e":"{% $states.errorOutput.Cause %}"},"Next":"S"}],
                 "Next":"C"},
            "C":{"Type":"Choice","Choices":[{"Condition":"{% $r > 1 and ($states.input.x = 'a)') %}","Next":"M","Output":{"a":1}},{"Condition":true,"Next":"S"}],"Default":"S"},
            "M":{"Type":"Map","Items":"{% [1,2,3] %}","MaxConcurrency":"{% 2 %}","ItemSelector":{"v":"{% $states.context.Map.Item.Value %}"},
                 "ItemProcessor":{"StartAt":"P","States":{"P":{"Type":"Pass","Output":"{% $states.input %}","End":true}}},"Next":"W"},
            "W":{"Type":"Wait","Seconds":"{% 1 %}","Next":"S"},
            "S":{"Type":"Succeed","Output":{"done":true}}}}"#,
    ),
    (
        "JSONata state in a JSONPath machine",
        EXPRESS,
        r#"{"StartAt":"Map","QueryLanguage":"JSONPath","States":{"Map":{"Type":"Map","QueryLanguage":"JSONata",
            "ItemProcessor":{"ProcessorConfig":{"Mode":"INLINE"},"StartAt":"Pass","States":{"Pass":{"QueryLanguage":"JSONPath","Type":"Pass","End":true}}},"End":true}}}"#,
    ),
    (
        "unsupported resources are only warnings",
        STANDARD,
        r#"{"StartAt":"T","States":{"T":{"Type":"Task","Resource":"arn:aws:states:::sns:publish","Next":"U"},
            "U":{"Type":"Task","Resource":"arn:aws:states:us-east-1:1:activity:a","Next":"V"},
            "V":{"Type":"Task","Resource":"arn:aws:states:::sqs:sendMessage.waitForTaskToken","Parameters":{"T.$":"$$.Task.Token"},"End":true}}}"#,
    ),
    (
        "variables read but not reassigned in branches",
        STANDARD,
        r#"{"StartAt":"A","States":{"A":{"Type":"Pass","Assign":{"x":1},"Next":"P"},
            "P":{"Type":"Parallel","Branches":[{"StartAt":"B","States":{"B":{"Type":"Pass","Assign":{"y.$":"$x"},"End":true}}}],"End":true}}}"#,
    ),
];

/// Definitions with one expected finding: (name, type, definition, code, location).
const INVALID: &[(&str, StateMachineType, &str, &str, Option<&str>)] = &[
    ("not an object", STANDARD, r#"[]"#, SCHEMA, None),
    ("no StartAt", STANDARD, r#"{"States":{"A":{"Type":"Succeed"}}}"#, SCHEMA, Some("/")),
    (
        "unknown top-level field",
        STANDARD,
        r#"{"StartAt":"A","Foo":1,"States":{"A":{"Type":"Succeed"}}}"#,
        SCHEMA,
        Some("/"),
    ),
    (
        "bad QueryLanguage",
        STANDARD,
        r#"{"QueryLanguage":"jsonata","StartAt":"A","States":{"A":{"Type":"Succeed"}}}"#,
        SCHEMA,
        Some("/QueryLanguage"),
    ),
    (
        "missing Next target",
        STANDARD,
        r#"{"StartAt":"A","States":{"A":{"Type":"Pass","Next":"B"}}}"#,
        TARGET,
        Some("/States/A/Next"),
    ),
    (
        "missing StartAt target",
        STANDARD,
        r#"{"StartAt":"X","States":{"A":{"Type":"Succeed"}}}"#,
        TARGET,
        Some("/StartAt"),
    ),
    (
        "missing Choice target",
        STANDARD,
        r#"{"StartAt":"C","States":{"C":{"Type":"Choice","Choices":[{"Variable":"$.a","IsNull":true,"Next":"X"}],"Default":"S"},"S":{"Type":"Succeed"}}}"#,
        TARGET,
        Some("/States/C/Choices[0]/Next"),
    ),
    (
        "missing Default target",
        STANDARD,
        r#"{"StartAt":"C","States":{"C":{"Type":"Choice","Choices":[{"Variable":"$.a","IsNull":true,"Next":"S"}],"Default":"X"},"S":{"Type":"Succeed"}}}"#,
        TARGET,
        Some("/States/C/Default"),
    ),
    (
        "missing Catch target",
        STANDARD,
        r#"{"StartAt":"T","States":{"T":{"Type":"Task","Resource":"arn:aws:states:::lambda:invoke","Catch":[{"ErrorEquals":["States.ALL"],"Next":"X"}],"End":true}}}"#,
        TARGET,
        Some("/States/T/Catch[0]/Next"),
    ),
    (
        "unreachable state",
        STANDARD,
        r#"{"StartAt":"A","States":{"A":{"Type":"Succeed"},"B":{"Type":"Succeed"}}}"#,
        TARGET,
        Some("/States/B"),
    ),
    (
        "no terminal state",
        STANDARD,
        r#"{"StartAt":"A","States":{"A":{"Type":"Pass","Next":"B"},"B":{"Type":"Pass","Next":"A"}}}"#,
        codes::MISSING_END_STATE,
        None,
    ),
    (
        "transition out of a branch",
        STANDARD,
        r#"{"StartAt":"P","States":{"P":{"Type":"Parallel","Branches":[{"StartAt":"A","States":{"A":{"Type":"Pass","Next":"S"}}}],"Next":"S"},"S":{"Type":"Succeed"}}}"#,
        TARGET,
        Some("/States/P/Branches[0]/States/A/Next"),
    ),
    (
        "duplicate name in a nested block",
        STANDARD,
        r#"{"StartAt":"P","States":{"P":{"Type":"Parallel","Branches":[{"StartAt":"S","States":{"S":{"Type":"Succeed"}}}],"Next":"S"},"S":{"Type":"Succeed"}}}"#,
        codes::DUPLICATE_STATE_NAME,
        Some("/States/S"),
    ),
    (
        "state name too long",
        STANDARD,
        r#"{"StartAt":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA","States":{"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA":{"Type":"Succeed"}}}"#,
        SCHEMA,
        Some("/States/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
    ),
    (
        "Next and End",
        STANDARD,
        r#"{"StartAt":"A","States":{"A":{"Type":"Pass","Next":"A","End":true}}}"#,
        SCHEMA,
        Some("/States/A"),
    ),
    (
        "neither Next nor End",
        STANDARD,
        r#"{"StartAt":"A","States":{"A":{"Type":"Pass"},"B":{"Type":"Succeed"}}}"#,
        SCHEMA,
        Some("/States/A"),
    ),
    (
        "unknown state field",
        STANDARD,
        r#"{"StartAt":"A","States":{"A":{"Type":"Pass","Foo":1,"End":true}}}"#,
        SCHEMA,
        Some("/States/A"),
    ),
    (
        "ResultPath on Wait",
        STANDARD,
        r#"{"StartAt":"A","States":{"A":{"Type":"Wait","Seconds":1,"ResultPath":"$.x","End":true}}}"#,
        SCHEMA,
        Some("/States/A"),
    ),
    (
        "End on Choice",
        STANDARD,
        r#"{"StartAt":"C","States":{"C":{"Type":"Choice","End":true,"Choices":[{"Variable":"$.a","IsNull":true,"Next":"S"}]},"S":{"Type":"Succeed"}}}"#,
        SCHEMA,
        Some("/States/C"),
    ),
    (
        "Next on Succeed",
        STANDARD,
        r#"{"StartAt":"A","States":{"A":{"Type":"Succeed","Next":"A"}}}"#,
        SCHEMA,
        Some("/States/A"),
    ),
    (
        "bad Type",
        STANDARD,
        r#"{"StartAt":"A","States":{"A":{"Type":"Job","End":true}}}"#,
        SCHEMA,
        Some("/States/A/Type"),
    ),
    ("no Type", STANDARD, r#"{"StartAt":"A","States":{"A":{"End":true}}}"#, SCHEMA, Some("/States/A")),
    (
        "Task without Resource",
        STANDARD,
        r#"{"StartAt":"A","States":{"A":{"Type":"Task","End":true}}}"#,
        SCHEMA,
        Some("/States/A"),
    ),
    (
        "TimeoutSeconds and TimeoutSecondsPath",
        STANDARD,
        r#"{"StartAt":"A","States":{"A":{"Type":"Task","Resource":"arn:aws:states:::lambda:invoke","TimeoutSeconds":5,"TimeoutSecondsPath":"$.t","End":true}}}"#,
        SCHEMA,
        Some("/States/A"),
    ),
    (
        "heartbeat not below timeout",
        STANDARD,
        r#"{"StartAt":"A","States":{"A":{"Type":"Task","Resource":"arn:aws:states:::lambda:invoke","TimeoutSeconds":5,"HeartbeatSeconds":5,"End":true}}}"#,
        SCHEMA,
        Some("/States/A/HeartbeatSeconds"),
    ),
    (
        "zero TimeoutSeconds",
        STANDARD,
        r#"{"StartAt":"A","States":{"A":{"Type":"Task","Resource":"arn:aws:states:::lambda:invoke","TimeoutSeconds":0,"End":true}}}"#,
        SCHEMA,
        Some("/States/A/TimeoutSeconds"),
    ),
    (
        "Wait without delay",
        STANDARD,
        r#"{"StartAt":"A","States":{"A":{"Type":"Wait","End":true}}}"#,
        SCHEMA,
        Some("/States/A"),
    ),
    (
        "Wait with two delays",
        STANDARD,
        r#"{"StartAt":"A","States":{"A":{"Type":"Wait","Seconds":1,"SecondsPath":"$.s","End":true}}}"#,
        SCHEMA,
        Some("/States/A"),
    ),
    (
        "Wait negative seconds",
        STANDARD,
        r#"{"StartAt":"A","States":{"A":{"Type":"Wait","Seconds":-1,"End":true}}}"#,
        SCHEMA,
        Some("/States/A/Seconds"),
    ),
    (
        "Wait bad timestamp",
        STANDARD,
        r#"{"StartAt":"A","States":{"A":{"Type":"Wait","Timestamp":"2016-12-05 21:29:29Z","End":true}}}"#,
        SCHEMA,
        Some("/States/A/Timestamp"),
    ),
    (
        "JSONata timestamp in a JSONPath state",
        STANDARD,
        r#"{"StartAt":"A","States":{"A":{"Type":"Wait","Timestamp":"{% '2016-03-14T01:59:00Z' %}","End":true}}}"#,
        SCHEMA,
        Some("/States/A/Timestamp"),
    ),
    (
        "States.ALL not alone",
        STANDARD,
        r#"{"StartAt":"A","States":{"A":{"Type":"Task","Resource":"arn:aws:states:::lambda:invoke","Retry":[{"ErrorEquals":["States.ALL","X"]}],"End":true}}}"#,
        SCHEMA,
        Some("/States/A/Retry[0]/ErrorEquals"),
    ),
    (
        "States.ALL not last",
        STANDARD,
        r#"{"StartAt":"A","States":{"A":{"Type":"Task","Resource":"arn:aws:states:::lambda:invoke","Retry":[{"ErrorEquals":["States.ALL"]},{"ErrorEquals":["X"]}],"End":true}}}"#,
        SCHEMA,
        Some("/States/A/Retry[0]"),
    ),
    (
        "BackoffRate below 1",
        STANDARD,
        r#"{"StartAt":"A","States":{"A":{"Type":"Task","Resource":"arn:aws:states:::lambda:invoke","Retry":[{"ErrorEquals":["X"],"BackoffRate":0.5}],"End":true}}}"#,
        SCHEMA,
        Some("/States/A/Retry[0]/BackoffRate"),
    ),
    (
        "bad JitterStrategy",
        STANDARD,
        r#"{"StartAt":"A","States":{"A":{"Type":"Task","Resource":"arn:aws:states:::lambda:invoke","Retry":[{"ErrorEquals":["X"],"JitterStrategy":"PARTIAL"}],"End":true}}}"#,
        SCHEMA,
        Some("/States/A/Retry[0]/JitterStrategy"),
    ),
    (
        "empty ErrorEquals",
        STANDARD,
        r#"{"StartAt":"A","States":{"A":{"Type":"Task","Resource":"arn:aws:states:::lambda:invoke","Catch":[{"ErrorEquals":[],"Next":"A"}],"End":true}}}"#,
        SCHEMA,
        Some("/States/A/Catch[0]/ErrorEquals"),
    ),
    (
        "Catch without Next",
        STANDARD,
        r#"{"StartAt":"A","States":{"A":{"Type":"Task","Resource":"arn:aws:states:::lambda:invoke","Catch":[{"ErrorEquals":["X"]}],"End":true}}}"#,
        SCHEMA,
        Some("/States/A/Catch[0]"),
    ),
    (
        "Retry on Pass",
        STANDARD,
        r#"{"StartAt":"A","States":{"A":{"Type":"Pass","Retry":[],"End":true}}}"#,
        SCHEMA,
        Some("/States/A"),
    ),
    (
        "top-level rule without Next",
        STANDARD,
        r#"{"StartAt":"C","States":{"C":{"Type":"Choice","Choices":[{"Variable":"$.a","IsNull":true}],"Default":"S"},"S":{"Type":"Succeed"}}}"#,
        SCHEMA,
        Some("/States/C/Choices[0]"),
    ),
    (
        "nested rule with Next",
        STANDARD,
        r#"{"StartAt":"C","States":{"C":{"Type":"Choice","Choices":[{"And":[{"Variable":"$.a","IsNull":true,"Next":"S"}],"Next":"S"}]},"S":{"Type":"Succeed"}}}"#,
        SCHEMA,
        Some("/States/C/Choices[0]/And[0]"),
    ),
    (
        "two operators",
        STANDARD,
        r#"{"StartAt":"C","States":{"C":{"Type":"Choice","Choices":[{"Variable":"$.a","IsNull":true,"IsString":true,"Next":"S"}]},"S":{"Type":"Succeed"}}}"#,
        SCHEMA,
        Some("/States/C/Choices[0]"),
    ),
    (
        "operator without Variable",
        STANDARD,
        r#"{"StartAt":"C","States":{"C":{"Type":"Choice","Choices":[{"StringEquals":"x","Next":"S"}]},"S":{"Type":"Succeed"}}}"#,
        SCHEMA,
        Some("/States/C/Choices[0]"),
    ),
    (
        "Variable not a path",
        STANDARD,
        r#"{"StartAt":"C","States":{"C":{"Type":"Choice","Choices":[{"Variable":"a","IsNull":true,"Next":"S"}]},"S":{"Type":"Succeed"}}}"#,
        SCHEMA,
        Some("/States/C/Choices[0]/Variable"),
    ),
    (
        "numeric operator with a string",
        STANDARD,
        r#"{"StartAt":"C","States":{"C":{"Type":"Choice","Choices":[{"Variable":"$.a","NumericEquals":"1","Next":"S"}]},"S":{"Type":"Succeed"}}}"#,
        SCHEMA,
        Some("/States/C/Choices[0]/NumericEquals"),
    ),
    (
        "empty Choices",
        STANDARD,
        r#"{"StartAt":"C","States":{"C":{"Type":"Choice","Choices":[],"Default":"S"},"S":{"Type":"Succeed"}}}"#,
        SCHEMA,
        Some("/States/C/Choices"),
    ),
    (
        "template value not a path",
        STANDARD,
        r#"{"StartAt":"A","States":{"A":{"Type":"Pass","Parameters":{"a":{"b.$":"foo"}},"End":true}}}"#,
        SCHEMA,
        Some("/States/A/Parameters"),
    ),
    (
        "template value not a string",
        STANDARD,
        r#"{"StartAt":"A","States":{"A":{"Type":"Pass","Parameters":{"b.$":23},"End":true}}}"#,
        SCHEMA,
        Some("/States/A/Parameters"),
    ),
    (
        "template key given twice",
        STANDARD,
        r#"{"StartAt":"A","States":{"A":{"Type":"Task","Resource":"arn:aws:states:::lambda:invoke","ResultSelector":{"b":1,"b.$":"$.b"},"End":true}}}"#,
        SCHEMA,
        Some("/States/A/ResultSelector"),
    ),
    (
        "intrinsic with leading space",
        STANDARD,
        r#"{"StartAt":"A","States":{"A":{"Type":"Pass","Parameters":{"b.$":" States.UUID()"},"End":true}}}"#,
        SCHEMA,
        Some("/States/A/Parameters"),
    ),
    (
        "ResultPath on context",
        STANDARD,
        r#"{"StartAt":"A","States":{"A":{"Type":"Pass","ResultPath":"$$.x","End":true}}}"#,
        SCHEMA,
        Some("/States/A/ResultPath"),
    ),
    (
        "ResultPath on a variable",
        STANDARD,
        r#"{"StartAt":"A","States":{"A":{"Type":"Pass","ResultPath":"$v.x","End":true}}}"#,
        SCHEMA,
        Some("/States/A/ResultPath"),
    ),
    (
        "ResultPath not a reference path",
        STANDARD,
        r#"{"StartAt":"A","States":{"A":{"Type":"Pass","ResultPath":"$..x","End":true}}}"#,
        SCHEMA,
        Some("/States/A/ResultPath"),
    ),
    (
        "null ItemsPath",
        STANDARD,
        r#"{"StartAt":"M","States":{"M":{"Type":"Map","ItemsPath":null,"Iterator":{"StartAt":"x","States":{"x":{"Type":"Pass","End":true}}},"End":true}}}"#,
        SCHEMA,
        Some("/States/M/ItemsPath"),
    ),
    (
        "variable sub-path",
        STANDARD,
        r#"{"StartAt":"A","States":{"A":{"Type":"Pass","Assign":{"a.b":1},"End":true}}}"#,
        SCHEMA,
        Some("/States/A/Assign"),
    ),
    (
        "reserved variable",
        STANDARD,
        r#"{"StartAt":"A","States":{"A":{"Type":"Pass","Assign":{"states":1},"End":true}}}"#,
        SCHEMA,
        Some("/States/A/Assign"),
    ),
    (
        "outer variable assigned in a branch",
        STANDARD,
        r#"{"StartAt":"A","States":{"A":{"Type":"Pass","Assign":{"x":1},"Next":"P"},
            "P":{"Type":"Parallel","Branches":[{"StartAt":"B","States":{"B":{"Type":"Pass","Assign":{"x":2},"End":true}}}],"End":true}}}"#,
        SCHEMA,
        Some("/States/P/Branches[0]/States/B/Assign"),
    ),
    (
        "Credentials without RoleArn",
        STANDARD,
        r#"{"StartAt":"A","States":{"A":{"Type":"Task","Resource":"arn:aws:states:::lambda:invoke","Credentials":{},"End":true}}}"#,
        SCHEMA,
        Some("/States/A/Credentials"),
    ),
    (
        "Error and ErrorPath",
        STANDARD,
        r#"{"StartAt":"A","States":{"A":{"Type":"Fail","Error":"E","ErrorPath":"$.e"}}}"#,
        SCHEMA,
        Some("/States/A"),
    ),
    (
        "empty Branches",
        STANDARD,
        r#"{"StartAt":"P","States":{"P":{"Type":"Parallel","Branches":[],"End":true}}}"#,
        SCHEMA,
        Some("/States/P/Branches"),
    ),
    (
        "branch without StartAt",
        STANDARD,
        r#"{"StartAt":"P","States":{"P":{"Type":"Parallel","Branches":[{"States":{"A":{"Type":"Succeed"}}}],"End":true}}}"#,
        SCHEMA,
        Some("/States/P/Branches[0]"),
    ),
    (
        "Iterator and ItemProcessor",
        STANDARD,
        r#"{"StartAt":"M","States":{"M":{"Type":"Map","Iterator":{"StartAt":"x","States":{"x":{"Type":"Pass","End":true}}},
            "ItemProcessor":{"StartAt":"y","States":{"y":{"Type":"Pass","End":true}}},"End":true}}}"#,
        SCHEMA,
        Some("/States/M"),
    ),
    (
        "ItemSelector and Parameters",
        STANDARD,
        r#"{"StartAt":"M","States":{"M":{"Type":"Map","Parameters":{"a":1},"ItemSelector":{"a":1},
            "ItemProcessor":{"StartAt":"y","States":{"y":{"Type":"Pass","End":true}}},"End":true}}}"#,
        SCHEMA,
        Some("/States/M"),
    ),
    (
        "Map without processor",
        STANDARD,
        r#"{"StartAt":"M","States":{"M":{"Type":"Map","End":true}}}"#,
        SCHEMA,
        Some("/States/M"),
    ),
    (
        "ItemReader on an inline Map",
        STANDARD,
        r#"{"StartAt":"M","States":{"M":{"Type":"Map","ItemReader":{"Resource":"arn:aws:states:::s3:getObject","Parameters":{"Bucket":"b","Key":"k"}},
            "ItemProcessor":{"StartAt":"y","States":{"y":{"Type":"Pass","End":true}}},"End":true}}}"#,
        SCHEMA,
        Some("/States/M"),
    ),
    (
        "DISTRIBUTED without ExecutionType",
        STANDARD,
        r#"{"StartAt":"M","States":{"M":{"Type":"Map","ItemProcessor":{"ProcessorConfig":{"Mode":"DISTRIBUTED"},"StartAt":"y","States":{"y":{"Type":"Pass","End":true}}},"End":true}}}"#,
        SCHEMA,
        Some("/States/M/ItemProcessor/ProcessorConfig"),
    ),
    (
        "negative MaxConcurrency",
        STANDARD,
        r#"{"StartAt":"M","States":{"M":{"Type":"Map","MaxConcurrency":-1,"ItemProcessor":{"StartAt":"y","States":{"y":{"Type":"Pass","End":true}}},"End":true}}}"#,
        SCHEMA,
        Some("/States/M/MaxConcurrency"),
    ),
    (
        "label with a space",
        STANDARD,
        r#"{"StartAt":"M","States":{"M":{"Type":"Map","Label":"a b","ItemProcessor":{"ProcessorConfig":{"Mode":"DISTRIBUTED","ExecutionType":"STANDARD"},"StartAt":"y","States":{"y":{"Type":"Pass","End":true}}},"End":true}}}"#,
        SCHEMA,
        Some("/States/M/Label"),
    ),
    (
        "label too long",
        STANDARD,
        r#"{"StartAt":"M","States":{"M":{"Type":"Map","Label":"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa","ItemProcessor":{"ProcessorConfig":{"Mode":"DISTRIBUTED","ExecutionType":"STANDARD"},"StartAt":"y","States":{"y":{"Type":"Pass","End":true}}},"End":true}}}"#,
        SCHEMA,
        Some("/States/M/Label"),
    ),
    (
        "duplicate label",
        STANDARD,
        r#"{"StartAt":"M","States":{
            "M":{"Type":"Map","Label":"L","ItemProcessor":{"ProcessorConfig":{"Mode":"DISTRIBUTED","ExecutionType":"STANDARD"},"StartAt":"y","States":{"y":{"Type":"Pass","End":true}}},"Next":"N"},
            "N":{"Type":"Map","Label":"L","ItemProcessor":{"ProcessorConfig":{"Mode":"DISTRIBUTED","ExecutionType":"STANDARD"},"StartAt":"z","States":{"z":{"Type":"Pass","End":true}}},"End":true}}}"#,
        SCHEMA,
        Some("/States/N/Label"),
    ),
    (
        "ItemBatcher without a size",
        STANDARD,
        r#"{"StartAt":"M","States":{"M":{"Type":"Map","ItemBatcher":{"BatchInput":{}},"ItemProcessor":{"ProcessorConfig":{"Mode":"DISTRIBUTED","ExecutionType":"STANDARD"},"StartAt":"y","States":{"y":{"Type":"Pass","End":true}}},"End":true}}}"#,
        SCHEMA,
        Some("/States/M/ItemBatcher"),
    ),
    (
        "ItemReader resource",
        STANDARD,
        r#"{"StartAt":"M","States":{"M":{"Type":"Map","ItemReader":{"Resource":"arn:aws:states:::s3:putObject"},"ItemProcessor":{"ProcessorConfig":{"Mode":"DISTRIBUTED","ExecutionType":"STANDARD"},"StartAt":"y","States":{"y":{"Type":"Pass","End":true}}},"End":true}}}"#,
        SCHEMA,
        Some("/States/M/ItemReader/Resource"),
    ),
    (
        "bad InputType",
        STANDARD,
        r#"{"StartAt":"M","States":{"M":{"Type":"Map","ItemReader":{"Resource":"arn:aws:states:::s3:getObject","ReaderConfig":{"InputType":"XML"}},"ItemProcessor":{"ProcessorConfig":{"Mode":"DISTRIBUTED","ExecutionType":"STANDARD"},"StartAt":"y","States":{"y":{"Type":"Pass","End":true}}},"End":true}}}"#,
        SCHEMA,
        Some("/States/M/ItemReader/ReaderConfig/InputType"),
    ),
    (
        "ResultWriter resource without Parameters",
        STANDARD,
        r#"{"StartAt":"M","States":{"M":{"Type":"Map","ResultWriter":{"Resource":"arn:aws:states:::s3:putObject"},"ItemProcessor":{"ProcessorConfig":{"Mode":"DISTRIBUTED","ExecutionType":"STANDARD"},"StartAt":"y","States":{"y":{"Type":"Pass","End":true}}},"End":true}}}"#,
        SCHEMA,
        Some("/States/M/ResultWriter"),
    ),
    (
        "express waitForTaskToken",
        EXPRESS,
        r#"{"StartAt":"T","States":{"T":{"Type":"Task","Resource":"arn:aws:states:::sqs:sendMessage.waitForTaskToken","End":true}}}"#,
        SCHEMA,
        Some("/States/T/Resource"),
    ),
    (
        "express sync",
        EXPRESS,
        r#"{"StartAt":"T","States":{"T":{"Type":"Task","Resource":"arn:aws:states:::states:startExecution.sync:2","End":true}}}"#,
        SCHEMA,
        Some("/States/T/Resource"),
    ),
    (
        "express activity",
        EXPRESS,
        r#"{"StartAt":"T","States":{"T":{"Type":"Task","Resource":"arn:aws:states:us-east-1:1:activity:a","End":true}}}"#,
        SCHEMA,
        Some("/States/T/Resource"),
    ),
    (
        "express distributed map",
        EXPRESS,
        r#"{"StartAt":"M","States":{"M":{"Type":"Map","ItemProcessor":{"ProcessorConfig":{"Mode":"DISTRIBUTED","ExecutionType":"EXPRESS"},"StartAt":"y","States":{"y":{"Type":"Pass","End":true}}},"End":true}}}"#,
        SCHEMA,
        Some("/States/M/ItemProcessor/ProcessorConfig/Mode"),
    ),
    (
        "sync inside EXPRESS children",
        STANDARD,
        r#"{"StartAt":"M","States":{"M":{"Type":"Map","ItemProcessor":{"ProcessorConfig":{"Mode":"DISTRIBUTED","ExecutionType":"EXPRESS"},"StartAt":"y","States":{"y":{"Type":"Task","Resource":"arn:aws:states:::ecs:runTask.sync","End":true}}},"End":true}}}"#,
        SCHEMA,
        Some("/States/M/ItemProcessor/States/y/Resource"),
    ),
    (
        "unknown optimized action",
        STANDARD,
        r#"{"StartAt":"Q","States":{"Q":{"Type":"Task","Resource":"arn:aws:states:::dynamodb:query","End":true}}}"#,
        SCHEMA,
        Some("/States/Q/Resource"),
    ),
    (
        "downgrade to JSONPath",
        STANDARD,
        r#"{"QueryLanguage":"JSONata","StartAt":"Pass","States":{"Pass":{"Type":"Pass","End":true,"QueryLanguage":"JSONPath"}}}"#,
        SCHEMA,
        Some("/States/Pass"),
    ),
    (
        "JSONPath field in a JSONata state",
        STANDARD,
        r#"{"QueryLanguage":"JSONata","StartAt":"A","States":{"A":{"Type":"Pass","InputPath":"$.a","End":true}}}"#,
        SCHEMA,
        Some("/States/A"),
    ),
    (
        "JSONata field in a JSONPath state",
        STANDARD,
        r#"{"StartAt":"A","States":{"A":{"Type":"Pass","Output":{"a":1},"End":true}}}"#,
        SCHEMA,
        Some("/States/A"),
    ),
    (
        "Variable in a JSONata Choice",
        STANDARD,
        r#"{"QueryLanguage":"JSONata","StartAt":"C","States":{"C":{"Type":"Choice","Choices":[{"Variable":"$.a","IsNull":true,"Next":"S"}]},"S":{"Type":"Succeed"}}}"#,
        SCHEMA,
        Some("/States/C/Choices[0]"),
    ),
    (
        "errorOutput outside a catcher",
        STANDARD,
        r#"{"QueryLanguage":"JSONata","StartAt":"A","States":{"A":{"Type":"Pass","Output":{"e":"{% $states.errorOutput %}"},"End":true}}}"#,
        SCHEMA,
        Some("/States/A/Output/e"),
    ),
    (
        "result in a Pass state",
        STANDARD,
        r#"{"QueryLanguage":"JSONata","StartAt":"A","States":{"A":{"Type":"Pass","Output":"{% $states.result %}","End":true}}}"#,
        SCHEMA,
        Some("/States/A/Output"),
    ),
    (
        "unbalanced expression",
        STANDARD,
        r#"{"QueryLanguage":"JSONata","StartAt":"A","States":{"A":{"Type":"Pass","Output":"{% $sum([1,2) %}","End":true}}}"#,
        SCHEMA,
        Some("/States/A/Output"),
    ),
    (
        "JSONata Condition not boolean",
        STANDARD,
        r#"{"QueryLanguage":"JSONata","StartAt":"C","States":{"C":{"Type":"Choice","Choices":[{"Condition":"yes","Next":"S"}]},"S":{"Type":"Succeed"}}}"#,
        SCHEMA,
        Some("/States/C/Choices[0]/Condition"),
    ),
];

#[test]
fn valid_definitions_have_no_errors() {
    for (name, ty, definition) in VALID {
        let report = run(definition, *ty);
        assert!(report.is_ok(), "{name}: expected valid, got{}", describe(&report));
    }
}

#[test]
fn invalid_definitions_are_reported_where_aws_reports_them() {
    for (name, ty, definition, code, location) in INVALID {
        let report = run(definition, *ty);
        let found = report
            .diagnostics
            .iter()
            .any(|d| d.severity == Severity::Error && d.code == *code && d.location.as_deref() == *location);
        assert!(found, "{name}: expected {code} at {location:?}, got{}", describe(&report));
    }
}

#[test]
fn text_that_is_not_a_definition() {
    let report = validate("   ", STANDARD);
    assert_eq!(report.diagnostics.len(), 1);
    assert_eq!(report.diagnostics[0].code, SCHEMA);
    assert_eq!(report.diagnostics[0].message, "Definition must be a valid JSON object");
    assert_eq!(report.diagnostics[0].location, None);

    let report = validate("not a definition", STANDARD);
    assert_eq!(report.result(), "FAIL");
    assert_eq!(report.diagnostics[0].code, codes::INVALID_JSON_DESCRIPTION);

    let report = validate("{}", STANDARD);
    assert_eq!(report.diagnostics[0].message, "These fields are required: [States, StartAt]");
    assert_eq!(report.diagnostics[0].location.as_deref(), Some("/"));
}

#[test]
fn aws_messages_are_kept() {
    let report = run(r#"{"StartAt":"A","States":{"A":{"Type":"Pass","Next":"B"},"C":{"Type":"Succeed"}}}"#, STANDARD);
    let messages: Vec<&str> = report.diagnostics.iter().map(|d| d.message.as_str()).collect();
    assert!(messages.contains(&"Missing 'Next' target: B"), "{messages:?}");
    assert!(messages.contains(&"State \"C\" is not reachable."), "{messages:?}");

    let report = run(
        r#"{"StartAt":"T","States":{"T":{"Type":"Task","Resource":"arn:aws:states:::sns:publish.waitForTaskToken","End":true}}}"#,
        EXPRESS,
    );
    assert!(report
        .diagnostics
        .iter()
        .any(|d| d.message == "Express state machine does not support '.waitForTaskToken' service integration "));

    let report = run(
        r#"{"StartAt":"M","States":{"M":{"Type":"Map","Iterator":{"StartAt":"x","States":{"x":{"Type":"Pass","End":true}}},
            "ItemProcessor":{"StartAt":"y","States":{"y":{"Type":"Pass","End":true}}},"End":true}}}"#,
        STANDARD,
    );
    assert!(report.diagnostics.iter().any(|d| d.message.starts_with("Cannot define both Iterator and ItemProcessor.")));

    let report =
        run(r#"{"StartAt":"A","States":{"A":{"Type":"Pass","Parameters":{"x.$":"nope"},"End":true}}}"#, STANDARD);
    assert!(report.diagnostics.iter().any(|d| d
        .message
        .starts_with("The value for the field 'x.$' must be a valid JSONPath or a valid intrinsic function call")));

    for (label, message) in [
        ("", "Label cannot be empty"),
        ("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "Label cannot exceed 40 characters"),
        ("a:b", "Label contains invalid character: ':'"),
    ] {
        let definition = format!(
            r#"{{"StartAt":"M","States":{{"M":{{"Type":"Map","Label":"{label}","ItemProcessor":{{"ProcessorConfig":{{"Mode":"DISTRIBUTED","ExecutionType":"STANDARD"}},"StartAt":"y","States":{{"y":{{"Type":"Pass","End":true}}}}}},"End":true}}}}}}"#
        );
        let report = run(&definition, STANDARD);
        assert!(report.diagnostics.iter().any(|d| d.message.starts_with(message)), "{label}: {}", describe(&report));
    }
}

#[test]
fn unsupported_resources_warn_and_name_the_state() {
    let report = run(
        r#"{"StartAt":"T","States":{"T":{"Type":"Task","Resource":"arn:aws:states:::sns:publish","End":true}}}"#,
        STANDARD,
    );
    assert!(report.is_ok());
    let warning = report.diagnostics.iter().find(|d| d.code == codes::UNSUPPORTED_RESOURCE).expect("a warning");
    assert_eq!(warning.severity, Severity::Warning);
    assert_eq!(warning.location.as_deref(), Some("/States/T/Resource"));
    assert!(warning.message.contains("'T'") && warning.message.contains("sns:publish"), "{}", warning.message);

    let report = run(
        r#"{"StartAt":"T","States":{"T":{"Type":"Task","Resource":"arn:aws:states:::lambda:invoke","End":true}}}"#,
        STANDARD,
    );
    assert!(report.diagnostics.is_empty(), "{}", describe(&report));
}

mod robustness {
    use proptest::prelude::*;
    use serde_json::{Map, Value};

    use super::{validate, validate_value, EXPRESS, STANDARD};

    const KEYS: &[&str] = &[
        "StartAt",
        "States",
        "Type",
        "Next",
        "End",
        "Resource",
        "Choices",
        "Default",
        "Variable",
        "And",
        "Not",
        "StringEquals",
        "Branches",
        "ItemProcessor",
        "Iterator",
        "ProcessorConfig",
        "Mode",
        "ExecutionType",
        "ItemReader",
        "ReaderConfig",
        "ResultWriter",
        "ItemBatcher",
        "Parameters",
        "x.$",
        "Assign",
        "Retry",
        "Catch",
        "ErrorEquals",
        "QueryLanguage",
        "Output",
        "Label",
        "Seconds",
        "Timestamp",
        "A",
        "B",
    ];
    const STRINGS: &[&str] = &[
        "A",
        "B",
        "Pass",
        "Task",
        "Map",
        "Choice",
        "Parallel",
        "Wait",
        "Succeed",
        "Fail",
        "DISTRIBUTED",
        "EXPRESS",
        "JSONata",
        "JSONPath",
        "$",
        "$$",
        "$.a",
        "$x",
        "States.ALL",
        "States.Format('{}', $.a)",
        "{% $states.result %}",
        "{% (",
        "arn:aws:states:::lambda:invoke",
        "arn:aws:states:::sqs:sendMessage.waitForTaskToken",
        "",
        "é",
    ];

    fn value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            (-3i64..5).prop_map(Value::from),
            Just(Value::from(1.5)),
            proptest::sample::select(STRINGS).prop_map(Value::from),
        ];
        leaf.prop_recursive(6, 64, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                proptest::collection::vec((proptest::sample::select(KEYS), inner), 0..6).prop_map(|entries| {
                    Value::Object(entries.into_iter().map(|(k, v)| (k.to_string(), v)).collect::<Map<_, _>>())
                }),
            ]
        })
    }

    proptest! {
        #[test]
        fn never_panics(definition in value(), states in value()) {
            let _ = validate_value(&definition, STANDARD);
            let mut wrapped = Map::new();
            wrapped.insert("StartAt".into(), Value::from("A"));
            wrapped.insert("States".into(), states);
            let _ = validate_value(&Value::Object(wrapped), EXPRESS);
        }

        #[test]
        fn never_panics_on_text(text in ".{0,40}") {
            let _ = validate(&text, STANDARD);
        }
    }
}
