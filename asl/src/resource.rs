//! Task `Resource` URIs: what they name, and whether stepmap can run them
//! (features.md §1.3 Task; DESIGN.md §3 Tasks).

/// How a service integration is awaited (`.sync`, `.sync:2`, `.waitForTaskToken`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IntegrationPattern {
    RequestResponse,
    Sync,
    Sync2,
    WaitForTaskToken,
}

/// A classified Task resource.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resource {
    /// `arn:aws:lambda:<region>:<account>:function:<name>[:<qualifier>]` — the legacy
    /// Lambda form; the result is the function's payload itself.
    LambdaFunction { arn: String, function_name: String },
    /// `arn:aws:states:::<service>:<action>[.<pattern>]`, including `lambda:invoke`,
    /// `http:invoke` and `aws-sdk:<service>:<action>`.
    Integration { service: String, action: String, pattern: IntegrationPattern },
    /// `arn:aws:states:<region>:<account>:activity:<name>`.
    Activity { arn: String, name: String },
    /// Anything else.
    Unknown,
}

impl Resource {
    pub fn parse(uri: &str) -> Resource {
        let parts: Vec<&str> = uri.splitn(6, ':').collect();
        if parts.len() < 6 || parts[0] != "arn" {
            return Resource::Unknown;
        }
        match (parts[2], parts[5]) {
            ("lambda", rest) if rest.starts_with("function:") => {
                let name = rest["function:".len()..].split(':').next().unwrap_or_default();
                if name.is_empty() {
                    return Resource::Unknown;
                }
                Resource::LambdaFunction { arn: uri.to_string(), function_name: name.to_string() }
            }
            ("states", rest) if rest.starts_with("activity:") => {
                Resource::Activity { arn: uri.to_string(), name: rest["activity:".len()..].to_string() }
            }
            ("states", _) if parts[3].is_empty() && parts[4].is_empty() => {
                // arn:aws:states:::service:action[.pattern]; aws-sdk has one more segment.
                let tail = &uri[uri.find(":::").map(|i| i + 3).unwrap_or(uri.len())..];
                let (service, action) = match tail.strip_prefix("aws-sdk:") {
                    Some(sdk) => match sdk.split_once(':') {
                        Some((svc, action)) => (format!("aws-sdk:{svc}"), action),
                        None => return Resource::Unknown,
                    },
                    None => match tail.split_once(':') {
                        Some((svc, action)) => (svc.to_string(), action),
                        None => return Resource::Unknown,
                    },
                };
                let (action, pattern) = if let Some(a) = action.strip_suffix(".waitForTaskToken") {
                    (a, IntegrationPattern::WaitForTaskToken)
                } else if let Some(a) = action.strip_suffix(".sync:2") {
                    (a, IntegrationPattern::Sync2)
                } else if let Some(a) = action.strip_suffix(".sync") {
                    (a, IntegrationPattern::Sync)
                } else {
                    (action, IntegrationPattern::RequestResponse)
                };
                if service.is_empty() || action.is_empty() {
                    return Resource::Unknown;
                }
                Resource::Integration { service, action: action.to_string(), pattern }
            }
            _ => Resource::Unknown,
        }
    }

    /// Whether this build of stepmap can run the resource. Anything else is valid ASL but
    /// refused by `run` before the execution starts.
    pub fn is_supported(&self) -> bool {
        match self {
            Resource::LambdaFunction { .. } => true,
            Resource::Integration { service, action, pattern } => matches!(
                (service.as_str(), action.as_str(), pattern),
                ("lambda", "invoke", IntegrationPattern::RequestResponse)
                    | ("http", "invoke", IntegrationPattern::RequestResponse)
            ),
            Resource::Activity { .. } | Resource::Unknown => false,
        }
    }

    /// The `.waitForTaskToken` pattern (Express machines may not use it).
    pub fn is_callback(&self) -> bool {
        matches!(self, Resource::Integration { pattern: IntegrationPattern::WaitForTaskToken, .. })
    }

    /// `.sync` / `.sync:2` (Express machines may not use them).
    pub fn is_sync(&self) -> bool {
        matches!(self, Resource::Integration { pattern: IntegrationPattern::Sync | IntegrationPattern::Sync2, .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_aws_resource_forms() {
        assert_eq!(
            Resource::parse("arn:aws:lambda:us-east-1:111111111111:function:f:$LATEST"),
            Resource::LambdaFunction {
                arn: "arn:aws:lambda:us-east-1:111111111111:function:f:$LATEST".into(),
                function_name: "f".into()
            }
        );
        assert_eq!(
            Resource::parse("arn:aws:states:::lambda:invoke"),
            Resource::Integration {
                service: "lambda".into(),
                action: "invoke".into(),
                pattern: IntegrationPattern::RequestResponse
            }
        );
        assert!(Resource::parse("arn:aws:states:::sqs:sendMessage.waitForTaskToken").is_callback());
        assert!(Resource::parse("arn:aws:states:::states:startExecution.sync:2").is_sync());
        assert_eq!(
            Resource::parse("arn:aws:states:::aws-sdk:s3:listBuckets"),
            Resource::Integration {
                service: "aws-sdk:s3".into(),
                action: "listBuckets".into(),
                pattern: IntegrationPattern::RequestResponse
            }
        );
        assert!(matches!(Resource::parse("arn:aws:states:us-east-1:1:activity:work"), Resource::Activity { .. }));
        assert_eq!(Resource::parse("not-an-arn"), Resource::Unknown);
        assert!(Resource::parse("arn:aws:states:::http:invoke").is_supported());
        assert!(!Resource::parse("arn:aws:states:::sns:publish").is_supported());
    }
}
