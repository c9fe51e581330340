//! The function registry behind `--functions <FILE>`: which local command, pool of warm
//! Lambda runtime processes or HTTP endpoint plays the part of each Lambda function a state
//! machine names.
//!
//! ```json
//! {"functions": {
//!     "resize": {"command": ["python3", "resize.py"], "env": {"MODE": "fast"}, "timeout_seconds": 30},
//!     "transform": {"runtime": ["python3", "-m", "awslambdaric", "handler.transform"], "concurrency": 2},
//!     "notify": {"endpoint": "http://127.0.0.1:9000"}
//! }}
//! ```
//! or the same structure in TOML (`[functions.resize]` ...). Keys may be plain function
//! names or ARNs; lookups accept a name, a partial ARN (`123456789012:function:name`) or a
//! full ARN, with or without a qualifier, exactly like Lambda's `FunctionName`.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use crate::error::WorkerError;

/// How a registered function runs.
#[derive(Clone, Debug, PartialEq)]
pub enum FunctionTarget {
    /// A local command: event JSON on stdin; exit 0 with the result on stdout, or exit 1 with
    /// `{"errorType", "errorMessage", "stackTrace"}` on stdout.
    Command { argv: Vec<String>, env: BTreeMap<String, String> },
    /// A pool of `concurrency` long-lived processes, each a Lambda runtime that polls the
    /// Lambda Runtime API stepmap serves for it (`AWS_LAMBDA_RUNTIME_API`), kept warm across
    /// invocations and restarted when they die (see `invoker::warm_pool`).
    Runtime { argv: Vec<String>, env: BTreeMap<String, String>, concurrency: usize },
    /// A base URL speaking the Lambda Invoke API
    /// (`POST {endpoint}/2015-03-31/functions/{name}/invocations`).
    Endpoint { url: String },
}

/// One registered function.
#[derive(Clone, Debug, PartialEq)]
pub struct FunctionSpec {
    pub target: FunctionTarget,
    /// The function's own timeout (Lambda's configured timeout): exceeding it is a
    /// `Sandbox.Timedout` function error, distinct from the state's `TimeoutSeconds`.
    pub timeout: Option<Duration>,
}

impl FunctionSpec {
    pub fn command<I, S>(argv: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        FunctionSpec {
            target: FunctionTarget::Command { argv: argv.into_iter().map(Into::into).collect(), env: BTreeMap::new() },
            timeout: None,
        }
    }

    /// A warm runtime pool of `concurrency` processes (at least one) running `argv`.
    pub fn runtime<I, S>(argv: I, concurrency: usize) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        FunctionSpec {
            target: FunctionTarget::Runtime {
                argv: argv.into_iter().map(Into::into).collect(),
                env: BTreeMap::new(),
                concurrency: concurrency.max(1),
            },
            timeout: None,
        }
    }

    pub fn endpoint(url: impl Into<String>) -> Self {
        FunctionSpec { target: FunctionTarget::Endpoint { url: url.into() }, timeout: None }
    }

    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }
}

/// A parsed Lambda `FunctionName`: name, partial ARN or full ARN, optional qualifier.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FunctionRef {
    pub name: String,
    pub region: Option<String>,
    pub account: Option<String>,
    pub qualifier: Option<String>,
}

impl FunctionRef {
    /// Parses the forms Lambda accepts for `FunctionName`: `name`, `name:qualifier`,
    /// `account:function:name[:qualifier]` and
    /// `arn:<partition>:lambda:<region>:<account>:function:name[:qualifier]`.
    pub fn parse(text: &str) -> Option<FunctionRef> {
        let parts: Vec<&str> = text.split(':').collect();
        let (region, account, rest): (Option<&str>, Option<&str>, &[&str]) = match parts.as_slice() {
            ["arn", _partition, "lambda", region, account, "function", rest @ ..] => {
                (Some(*region), Some(*account), rest)
            }
            [account, "function", rest @ ..] => (None, Some(*account), rest),
            rest => (None, None, rest),
        };
        let (name, qualifier) = match rest {
            [name] => (*name, None),
            [name, qualifier] => (*name, Some(*qualifier)),
            _ => return None,
        };
        if name.is_empty() || qualifier.is_some_and(str::is_empty) {
            return None;
        }
        let non_empty = |s: Option<&str>| s.filter(|s| !s.is_empty()).map(str::to_string);
        Some(FunctionRef {
            name: name.to_string(),
            region: non_empty(region),
            account: non_empty(account),
            qualifier: qualifier.map(str::to_string),
        })
    }

    /// The qualified ARN AWS prints for this reference (`...:function:name:$LATEST` when no
    /// qualifier was given), with the execution's region and account filling the gaps.
    pub fn qualified_arn(&self, region: &str, account: &str) -> String {
        format!(
            "arn:aws:lambda:{}:{}:function:{}:{}",
            self.region.as_deref().unwrap_or(region),
            self.account.as_deref().unwrap_or(account),
            self.name,
            self.qualifier.as_deref().unwrap_or("$LATEST")
        )
    }
}

/// The registry: function name → how to run it.
#[derive(Clone, Debug, Default)]
pub struct FunctionRegistry {
    functions: BTreeMap<String, FunctionSpec>,
}

/// One entry as written in the file; validated into a [`FunctionSpec`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FunctionEntry {
    command: Option<Vec<String>>,
    runtime: Option<Vec<String>>,
    endpoint: Option<String>,
    concurrency: Option<u64>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    timeout_seconds: Option<f64>,
}

/// The file's top level. Entries stay generic values so that an error inside one entry can
/// name the function it belongs to.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RegistryFile<V> {
    functions: BTreeMap<String, V>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    Json,
    Toml,
}

impl FunctionRegistry {
    pub fn new() -> Self {
        Self::default()
    }

    /// Loads a registry file; `.json` and `.toml` decide the format, any other name is tried
    /// as JSON and then as TOML.
    pub fn load(path: &Path) -> Result<Self, WorkerError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| WorkerError::RegistryRead { path: path.to_path_buf(), source })?;
        let origin = path.display().to_string();
        let extension = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
        match extension.as_deref() {
            Some("json") => Self::parse(&text, Format::Json, &origin),
            Some("toml") => Self::parse(&text, Format::Toml, &origin),
            _ => Self::parse(&text, Format::Json, &origin).or_else(|json_error| {
                Self::parse(&text, Format::Toml, &origin).map_err(|toml_error| WorkerError::RegistryParse {
                    origin: origin.clone(),
                    message: format!("neither JSON ({json_error}) nor TOML ({toml_error})"),
                })
            }),
        }
    }

    /// Parses registry JSON; `origin` names the source in error messages.
    pub fn from_json_str(text: &str, origin: &str) -> Result<Self, WorkerError> {
        Self::parse(text, Format::Json, origin)
    }

    /// Parses registry TOML; `origin` names the source in error messages.
    pub fn from_toml_str(text: &str, origin: &str) -> Result<Self, WorkerError> {
        Self::parse(text, Format::Toml, origin)
    }

    fn parse(text: &str, format: Format, origin: &str) -> Result<Self, WorkerError> {
        let parse_error = |message: String| WorkerError::RegistryParse { origin: origin.to_string(), message };
        let entries: Vec<(String, Result<FunctionEntry, String>)> = match format {
            Format::Json => {
                let file: RegistryFile<serde_json::Value> =
                    serde_json::from_str(text).map_err(|e| parse_error(e.to_string()))?;
                entries_of(file, |v| serde_json::from_value(v).map_err(|e| e.to_string()))
            }
            Format::Toml => {
                let file: RegistryFile<toml::Value> = toml::from_str(text).map_err(|e| parse_error(e.to_string()))?;
                entries_of(file, |v| v.try_into().map_err(|e: toml::de::Error| e.to_string()))
            }
        };
        let mut registry = FunctionRegistry::new();
        for (key, entry) in entries {
            let function_error = |message: String| WorkerError::RegistryFunction {
                origin: origin.to_string(),
                function: key.clone(),
                message,
            };
            let spec = entry.and_then(FunctionEntry::validate).map_err(function_error)?;
            let name = FunctionRef::parse(&key)
                .map(|r| r.name)
                .ok_or_else(|| function_error("not a function name or Lambda function ARN".into()))?;
            if registry.functions.contains_key(&name) {
                return Err(function_error(format!("function {name:?} is registered twice")));
            }
            registry.functions.insert(name, spec);
        }
        Ok(registry)
    }

    /// Registers (or replaces) a function. `name` may be a name or an ARN; it is reduced to
    /// the function name like every lookup.
    pub fn insert(&mut self, name: &str, spec: FunctionSpec) {
        let key = FunctionRef::parse(name).map(|r| r.name).unwrap_or_else(|| name.to_string());
        self.functions.insert(key, spec);
    }

    /// Finds a function by name, partial ARN or full ARN (the qualifier is ignored: every
    /// registered function has a single version).
    pub fn lookup(&self, function_name: &str) -> Option<(&str, &FunctionSpec)> {
        let reference = FunctionRef::parse(function_name)?;
        self.functions.get_key_value(&reference.name).map(|(k, v)| (k.as_str(), v))
    }

    pub fn len(&self) -> usize {
        self.functions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.functions.is_empty()
    }

    /// Registered function names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.functions.keys().map(String::as_str)
    }
}

fn entries_of<V>(
    file: RegistryFile<V>,
    decode: impl Fn(V) -> Result<FunctionEntry, String>,
) -> Vec<(String, Result<FunctionEntry, String>)> {
    file.functions.into_iter().map(|(name, value)| (name, decode(value))).collect()
}

impl FunctionEntry {
    fn validate(self) -> Result<FunctionSpec, String> {
        let timeout = match self.timeout_seconds {
            None => None,
            Some(t) if t.is_finite() && t > 0.0 => Some(Duration::from_secs_f64(t)),
            Some(t) => return Err(format!("timeout_seconds must be a positive number, got {t}")),
        };
        if self.concurrency.is_some() && self.runtime.is_none() {
            return Err("concurrency applies to runtime pools only".into());
        }
        let target = match (self.command, self.runtime, self.endpoint) {
            (Some(argv), None, None) => {
                if argv.first().is_none_or(|program| program.is_empty()) {
                    return Err("command must name a program: [\"program\", \"arg\", ...]".into());
                }
                FunctionTarget::Command { argv, env: self.env }
            }
            (None, Some(argv), None) => {
                if argv.first().is_none_or(|program| program.is_empty()) {
                    return Err("runtime must name a program: [\"program\", \"arg\", ...]".into());
                }
                let concurrency = match self.concurrency {
                    None => default_concurrency(),
                    Some(n) if (1..=MAX_CONCURRENCY).contains(&n) => n as usize,
                    Some(n) => return Err(format!("concurrency must be between 1 and {MAX_CONCURRENCY}, got {n}")),
                };
                FunctionTarget::Runtime { argv, env: self.env, concurrency }
            }
            (None, None, Some(url)) => {
                if !self.env.is_empty() {
                    return Err("env applies to commands and runtimes only, not to endpoints".into());
                }
                match reqwest::Url::parse(&url) {
                    Ok(parsed) if matches!(parsed.scheme(), "http" | "https") => {}
                    Ok(parsed) => {
                        return Err(format!(
                            "endpoint must be an http:// or https:// URL, got scheme {:?}",
                            parsed.scheme()
                        ))
                    }
                    Err(e) => return Err(format!("endpoint {url:?} is not a URL: {e}")),
                }
                FunctionTarget::Endpoint { url }
            }
            (None, None, None) => {
                return Err("give a command ([argv...]), a runtime ([argv...]) or an endpoint (URL)".into())
            }
            (command, runtime, endpoint) => {
                let given: Vec<&str> =
                    [("command", command.is_some()), ("runtime", runtime.is_some()), ("endpoint", endpoint.is_some())]
                        .into_iter()
                        .filter_map(|(name, present)| present.then_some(name))
                        .collect();
                return Err(match given.as_slice() {
                    [a, b] => format!("give either {a} or {b}, not both"),
                    _ => "give only one of command, runtime and endpoint".to_string(),
                });
            }
        };
        Ok(FunctionSpec { target, timeout })
    }
}

/// The most processes one runtime pool may have; a guard against typos, far above what a
/// machine runs usefully.
const MAX_CONCURRENCY: u64 = 1024;

/// A runtime pool without `concurrency` has one process per available CPU: warm handlers are
/// meant for CPU-bound batch work, which gains nothing from more processes than cores.
fn default_concurrency() -> usize {
    std::thread::available_parallelism().map(usize::from).unwrap_or(1)
}
