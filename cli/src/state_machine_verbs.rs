//! `create-state-machine`, `list-state-machines`: the state machine verbs of the AWS CLI.

use anyhow::Context;
use clap::Args;
use serde_json::json;
use stepmap_proto::v1 as pb;

use crate::api_client::{call, print, with_client, EndpointArgs};

#[derive(Args)]
pub struct CreateStateMachineArgs {
    #[arg(long)]
    name: String,
    /// The definition: JSON text, or @FILE.
    #[arg(long)]
    definition: String,
    /// STANDARD or EXPRESS.
    #[arg(long = "type", default_value = "STANDARD")]
    machine_type: String,
    #[arg(long = "role-arn", default_value = "")]
    role_arn: String,
    #[command(flatten)]
    endpoint: EndpointArgs,
}

#[derive(Args)]
pub struct ListStateMachinesArgs {
    #[arg(long = "max-results", default_value_t = 0)]
    max_results: i32,
    #[arg(long = "next-token", default_value = "")]
    next_token: String,
    #[command(flatten)]
    endpoint: EndpointArgs,
}

pub fn create_state_machine(args: CreateStateMachineArgs) -> anyhow::Result<u8> {
    let definition = match args.definition.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path).with_context(|| format!("cannot read the definition '{path}'"))?,
        None => args.definition.clone(),
    };
    let request = pb::CreateStateMachineRequest {
        name: args.name,
        definition,
        role_arn: args.role_arn,
        r#type: args.machine_type,
    };
    let created = with_client(&args.endpoint, async |client| call!(client, create_state_machine, request))?;
    print(json!({"stateMachineArn": created.state_machine_arn, "creationDate": created.creation_date}));
    Ok(0)
}

pub fn list_state_machines(args: ListStateMachinesArgs) -> anyhow::Result<u8> {
    let request = pb::ListStateMachinesRequest { max_results: args.max_results, next_token: args.next_token };
    let listed = with_client(&args.endpoint, async |client| call!(client, list_state_machines, request))?;
    let machines: Vec<_> = listed
        .state_machines
        .into_iter()
        .map(|m| json!({"stateMachineArn": m.state_machine_arn, "name": m.name, "type": m.r#type, "creationDate": m.creation_date}))
        .collect();
    let mut out = json!({"stateMachines": machines});
    crate::api_client::insert_some(&mut out, "nextToken", Some(listed.next_token).filter(|t| !t.is_empty()));
    print(out);
    Ok(0)
}
