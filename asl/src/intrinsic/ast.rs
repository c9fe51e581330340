//! The parsed form of an intrinsic call: the function, its arguments, and how both are
//! written back as text (failure causes quote the call that failed).

use std::fmt;

use serde_json::Number;

use crate::expr::PathExpr;

/// One intrinsic function. The set is closed: AWS rejects a definition naming any other
/// `States.*` function (names are case-sensitive: `States.format` is invalid).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Function {
    Format,
    StringToJson,
    JsonToString,
    Array,
    ArrayPartition,
    ArrayContains,
    ArrayRange,
    ArrayGetItem,
    ArrayLength,
    ArrayUnique,
    Base64Encode,
    Base64Decode,
    Hash,
    JsonMerge,
    MathRandom,
    MathAdd,
    StringSplit,
    Uuid,
}

impl Function {
    pub(crate) const ALL: [Function; 18] = [
        Function::Format,
        Function::StringToJson,
        Function::JsonToString,
        Function::Array,
        Function::ArrayPartition,
        Function::ArrayContains,
        Function::ArrayRange,
        Function::ArrayGetItem,
        Function::ArrayLength,
        Function::ArrayUnique,
        Function::Base64Encode,
        Function::Base64Decode,
        Function::Hash,
        Function::JsonMerge,
        Function::MathRandom,
        Function::MathAdd,
        Function::StringSplit,
        Function::Uuid,
    ];

    /// The full name, `States.Format`.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Function::Format => "States.Format",
            Function::StringToJson => "States.StringToJson",
            Function::JsonToString => "States.JsonToString",
            Function::Array => "States.Array",
            Function::ArrayPartition => "States.ArrayPartition",
            Function::ArrayContains => "States.ArrayContains",
            Function::ArrayRange => "States.ArrayRange",
            Function::ArrayGetItem => "States.ArrayGetItem",
            Function::ArrayLength => "States.ArrayLength",
            Function::ArrayUnique => "States.ArrayUnique",
            Function::Base64Encode => "States.Base64Encode",
            Function::Base64Decode => "States.Base64Decode",
            Function::Hash => "States.Hash",
            Function::JsonMerge => "States.JsonMerge",
            Function::MathRandom => "States.MathRandom",
            Function::MathAdd => "States.MathAdd",
            Function::StringSplit => "States.StringSplit",
            Function::Uuid => "States.UUID",
        }
    }

    /// The function called `States.<short_name>`, if there is one.
    pub(crate) fn from_short_name(short_name: &str) -> Option<Function> {
        Function::ALL.into_iter().find(|f| &f.name()["States.".len()..] == short_name)
    }

    /// How many arguments the function takes: `(min, max)`, `max` `None` when unbounded.
    ///
    /// AWS accepts a definition whatever the argument count and fails the execution when the
    /// call is evaluated (observed: `States.ArrayContains($.arr)` and `States.Hash()` create
    /// fine and fail with `States.Runtime`), so the count is checked at run time.
    /// `States.UUID` ignores any arguments it is given (observed: `States.UUID('x')` and
    /// `States.UUID(1, 2)` return a UUID).
    pub(crate) fn arity(self) -> (usize, Option<usize>) {
        match self {
            Function::Format => (1, None),
            Function::Array => (0, None),
            Function::Uuid => (0, None),
            Function::StringToJson
            | Function::JsonToString
            | Function::ArrayLength
            | Function::ArrayUnique
            | Function::Base64Encode
            | Function::Base64Decode => (1, Some(1)),
            Function::ArrayPartition
            | Function::ArrayContains
            | Function::ArrayGetItem
            | Function::Hash
            | Function::MathAdd
            | Function::StringSplit => (2, Some(2)),
            Function::ArrayRange | Function::JsonMerge => (3, Some(3)),
            Function::MathRandom => (2, Some(3)),
        }
    }
}

/// A call: `States.<function>(<args>)`.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Call {
    pub(crate) function: Function,
    pub(crate) args: Vec<Arg>,
}

/// One argument of a call.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Arg {
    /// A single-quoted literal. `raw` is the text between the quotes with its escapes intact
    /// (`States.Format` needs them to tell a placeholder `{}` from escaped braces `\{\}`);
    /// `value` has the escapes resolved.
    String {
        raw: String,
        value: String,
    },
    /// A number literal, kept as JSON reads it (integers stay integers).
    Number(Number),
    Bool(bool),
    Null,
    /// `$…`, `$$…` or `$name…`, resolved through the environment at run time.
    Path(PathExpr),
    /// A nested call.
    Call(Box<Call>),
}

/// The call in canonical form: `States.Format('a {}', $.b)`.
impl fmt::Display for Call {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}(", self.function.name())?;
        for (i, arg) in self.args.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{arg}")?;
        }
        f.write_str(")")
    }
}

impl fmt::Display for Arg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Arg::String { raw, .. } => write!(f, "'{raw}'"),
            Arg::Number(n) => write!(f, "{n}"),
            Arg::Bool(b) => write!(f, "{b}"),
            Arg::Null => f.write_str("null"),
            Arg::Path(path) => f.write_str(&path.text),
            Arg::Call(call) => write!(f, "{call}"),
        }
    }
}
