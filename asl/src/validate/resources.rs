//! Task `Resource`s (features.md §1.3 Task): a resource naming an AWS optimized integration
//! of a service stepmap knows must name one of that service's actions (AWS answers
//! "The resource provided … is not recognized"); a resource stepmap cannot run is valid
//! ASL but gets an `UNSUPPORTED_RESOURCE` warning.

use crate::diagnostic::codes;
use crate::resource::Resource;

use super::{StateCx, Validator};

/// Actions of the optimized integrations (`arn:aws:states:::<service>:<action>`) whose
/// complete list is known; other services are not checked.
const OPTIMIZED_ACTIONS: &[(&str, &[&str])] = &[
    ("lambda", &["invoke"]),
    ("dynamodb", &["getItem", "putItem", "updateItem", "deleteItem"]),
    ("sqs", &["sendMessage"]),
    ("sns", &["publish"]),
    ("events", &["putEvents"]),
    ("states", &["startExecution"]),
    ("http", &["invoke"]),
    ("apigateway", &["invoke"]),
    ("batch", &["submitJob"]),
    ("glue", &["startJobRun"]),
    ("ecs", &["runTask"]),
    ("athena", &["startQueryExecution", "stopQueryExecution", "getQueryExecution", "getQueryResults"]),
];

pub(crate) fn check_task(v: &mut Validator, cx: &StateCx) {
    let Some(uri) = cx.get("Resource").and_then(|r| r.as_str()) else { return };
    let loc = cx.at("Resource");
    let resource = Resource::parse(uri);
    if let Resource::Integration { service, action, .. } = &resource {
        let known = OPTIMIZED_ACTIONS.iter().find(|(s, _)| s == service);
        if let Some((_, actions)) = known {
            if !actions.contains(&action.as_str()) {
                v.schema(
                    format!(
                        "The resource provided {uri} is not recognized. The value is not a valid resource ARN, or the \
                         resource is not available in this region. (state '{}': the {service} integration has \
                         actions [{}]; use arn:aws:states:::aws-sdk:{service}:{action} for other API actions)",
                        cx.name,
                        actions.join(", ")
                    ),
                    &loc,
                );
                return;
            }
        }
    }
    if !resource.is_supported() {
        let what = match &resource {
            Resource::Activity { .. } => "activities are not supported yet".to_string(),
            Resource::Integration { pattern: crate::resource::IntegrationPattern::WaitForTaskToken, .. } => {
                "the '.waitForTaskToken' pattern is not supported yet".to_string()
            }
            Resource::Integration { service, .. } => format!("the '{service}' integration is not available"),
            Resource::LambdaFunction { .. } => "this Lambda resource is not available".to_string(),
            Resource::Unknown => "the resource is not recognised".to_string(),
        };
        v.warning(
            codes::UNSUPPORTED_RESOURCE,
            format!("State '{}' uses resource '{uri}', which stepmap cannot run: {what}", cx.name),
            Some(&loc),
        );
    }
}
