//! The scenario bodies, written once and run over every `Network` (see `cluster.rs`).

use std::time::Duration;

use stepmap_coordinator::{Error, NodeId, RaftNode, Role};
use tokio::sync::mpsc;

use super::harness::{eventually, Cluster, Options, DEADLINE};
use super::kv::{put, Kv};
use super::network::Network;

/// Three nodes elect exactly one leader, which every node acknowledges; leadership handed to
/// a follower passes to it in a higher term.
pub async fn leader_election(net: impl Network) {
    let cluster = Cluster::start(net, 3, Options::default()).await;
    let leader = cluster.leader().await;
    let term = cluster.status(leader).term;
    assert!(term > 0);
    let leaders: Vec<NodeId> = cluster.ids().into_iter().filter(|id| cluster.status(*id).is_leader()).collect();
    assert_eq!(leaders, vec![leader]);

    let successor = cluster.ids().into_iter().find(|id| *id != leader).expect("a follower");
    cluster.node(leader).transfer_leadership(successor).await.expect("transfer leadership");
    let new_leader = eventually("the successor to lead", || async {
        let new_leader = cluster.leader().await;
        (new_leader == successor).then_some(new_leader)
    })
    .await;
    assert!(cluster.status(new_leader).term > term, "a new election happens in a higher term");
    cluster.shutdown().await;
}

/// A single-voter group leads itself and commits alone.
pub async fn single_node(net: impl Network) {
    let cluster = Cluster::start(net, 1, Options::default()).await;
    let last = cluster.put_range(&cluster.running(), "k", 0..10).await;
    let (index, value) = cluster.node(cluster.leader().await).read(|kv| kv.entries.get("k9").cloned()).await.unwrap();
    assert!(index >= last);
    assert_eq!(value.as_deref(), Some("v9"));
    cluster.shutdown().await;
}

/// Commands proposed on the leader are applied, in log order, on every node; followers send
/// clients to the leader; ReadIndex reads see every acknowledged write.
pub async fn log_replication_and_reads(net: impl Network) {
    let cluster = Cluster::start(net, 3, Options::default()).await;
    let last = cluster.put_range(&cluster.running(), "k", 0..50).await;
    for id in cluster.ids() {
        cluster.wait_applied(id, last).await;
    }
    cluster.assert_all_have("k", 0..50).await;

    let leader = cluster.leader().await;
    let applied = cluster.node(leader).propose(put("k0", "overwritten")).await.expect("propose on leader");
    assert_eq!(applied.response, b"v0", "the state machine answers with the previous value");
    let (index, value) = cluster.node(leader).read(|kv| kv.entries.get("k0").cloned()).await.expect("read");
    assert!(index >= applied.index, "a linearizable read reflects the acknowledged write");
    assert_eq!(value.as_deref(), Some("overwritten"));

    let follower = cluster.ids().into_iter().find(|id| *id != leader).expect("a follower");
    for error in [
        cluster.node(follower).propose(put("x", "y")).await.expect_err("follower refuses proposals"),
        cluster.node(follower).read(|kv| kv.entries.len()).await.expect_err("follower refuses reads"),
    ] {
        match error {
            Error::NotLeader { leader_id, leader_address, .. } => {
                assert_eq!(leader_id, Some(leader));
                assert_eq!(leader_address.as_deref(), cluster.node(leader).peer_address(leader));
            }
            other => panic!("expected NotLeader, got {other}"),
        }
    }
    cluster.converged().await;
    cluster.shutdown().await;
}

/// A leader cut off from the majority steps down (check-quorum); the majority elects a new
/// leader and goes on; nothing acknowledged before or during the partition is lost, and what
/// the old leader accepted while isolated is never acknowledged unless it really committed.
pub async fn partitioned_leader_steps_down(net: impl Network) {
    let cluster = Cluster::start(net, 3, Options::default()).await;
    cluster.put_range(&cluster.running(), "before", 0..10).await;
    let old_leader = cluster.leader().await;
    let majority: Vec<NodeId> = cluster.ids().into_iter().filter(|id| *id != old_leader).collect();

    cluster.net.filter().isolate(old_leader);
    // Proposed to the isolated leader: it may append it, but cannot commit it.
    let stranded = tokio::spawn({
        let node = cluster.node(old_leader).clone();
        async move { node.propose(put("stranded", "yes")).await }
    });
    cluster
        .node(old_leader)
        .wait_for(DEADLINE, |status| status.role != Role::Leader)
        .await
        .expect("the isolated leader steps down");
    let new_leader = cluster.leader_among(&majority).await;
    assert_ne!(new_leader, old_leader);
    cluster.put_range(&majority, "during", 0..10).await;

    cluster.net.filter().heal();
    cluster.put_range(&cluster.running(), "after", 0..5).await;
    let state = cluster.converged().await;
    cluster.assert_all_have("before", 0..10).await;
    cluster.assert_all_have("during", 0..10).await;
    cluster.assert_all_have("after", 0..5).await;
    match stranded.await.expect("proposal task") {
        Ok(_) => assert_eq!(state.get("stranded").map(String::as_str), Some("yes"), "acknowledged means applied"),
        Err(Error::ProposalDropped { .. } | Error::Timeout { .. } | Error::ProposalOutcomeUnknown { .. }) => {}
        Err(other) => panic!("unexpected error for the stranded proposal: {other}"),
    }
    cluster.shutdown().await;
}

/// With every node cut off from every other, nothing commits: the commit index stands still
/// until the leader has stepped down, and no proposal is acknowledged. After healing the
/// cluster commits again.
pub async fn minority_cannot_commit(net: impl Network) {
    let cluster = Cluster::start(net, 3, Options::default()).await;
    cluster.put_range(&cluster.running(), "k", 0..5).await;
    // Everyone knows everything committed so far; nothing is in flight.
    cluster.converged().await;
    let leader = cluster.leader().await;
    let [a, b, c] = <[NodeId; 3]>::try_from(cluster.ids()).expect("three nodes");
    cluster.net.filter().partition(&[&[a], &[b], &[c]]);
    let commit_before: Vec<u64> = cluster.ids().iter().map(|id| cluster.status(*id).commit_index).collect();

    let attempt = tokio::spawn({
        let node = cluster.node(leader).clone();
        async move { node.propose(put("minority", "no")).await }
    });
    cluster
        .node(leader)
        .wait_for(DEADLINE, |status| status.role != Role::Leader)
        .await
        .expect("a leader without quorum steps down");
    let commit_after: Vec<u64> = cluster.ids().iter().map(|id| cluster.status(*id).commit_index).collect();
    assert_eq!(commit_before, commit_after, "no node committed anything while partitioned");
    assert!(!attempt.is_finished() || !matches!(attempt.await, Ok(Ok(_))), "nothing acknowledged without quorum");
    for id in cluster.ids() {
        let refused = cluster.node(id).propose(put("minority", "no")).await;
        assert!(refused.is_err(), "{id} acknowledged a proposal without quorum");
    }

    cluster.net.filter().heal();
    cluster.put_range(&cluster.running(), "healed", 0..5).await;
    cluster.converged().await;
    cluster.shutdown().await;
}

/// A node stopped and restarted on its data directory recovers its state from its own
/// snapshot plus the log behind it, before hearing from anyone; then it rejoins. A whole
/// cluster restarted keeps everything it acknowledged.
pub async fn restart_recovers_from_snapshot_and_log(net: impl Network) {
    let options = Options { snapshot_interval: 20, log_retention: 5 };
    let mut cluster = Cluster::start(net, 3, options).await;
    let mut last = cluster.put_range(&cluster.running(), "k", 0..50).await;
    let leader = cluster.leader().await;
    let follower = cluster.ids().into_iter().find(|id| *id != leader).expect("a follower");
    // The follower must have applied everything itself for its own disk to hold it all, and
    // some of it must lie behind its latest snapshot, in the log.
    let mut count = 50;
    loop {
        let status = cluster.wait_applied(follower, last).await;
        if status.snapshot_index > 0 && status.snapshot_index < status.applied_index {
            break;
        }
        last = cluster.propose(put(&format!("k{count}"), &format!("v{count}"))).await.index;
        count += 1;
    }
    let applied = cluster.stop_node(follower).await.applied_index;

    // Alone on the network, the restarted node can only use its own disk.
    cluster.net.filter().isolate(follower);
    cluster.start_node(follower);
    let status = cluster.status(follower);
    assert!(status.snapshot_index > 0, "a snapshot was taken and recovered: {status:?}");
    assert!(status.snapshot_index < applied, "part of the state comes from the log: {status:?}");
    cluster.wait_applied(follower, applied).await;
    let state = cluster.local_state(follower).await;
    for i in 0..count {
        assert_eq!(state.get(&format!("k{i}")).map(String::as_str), Some(format!("v{i}").as_str()));
    }

    cluster.net.filter().rejoin(follower);
    cluster.put_range(&cluster.running(), "later", 0..10).await;
    cluster.converged().await;

    // Stop everything, start everything: nothing acknowledged is lost.
    for id in cluster.ids() {
        cluster.stop_node(id).await;
    }
    for id in cluster.ids() {
        cluster.start_node(id);
    }
    cluster.put_range(&cluster.running(), "restarted", 0..5).await;
    cluster.converged().await;
    cluster.assert_all_have("k", 0..count).await;
    cluster.assert_all_have("later", 0..10).await;
    cluster.assert_all_have("restarted", 0..5).await;
    cluster.shutdown().await;
}

/// A node away while the leader compacted its log past the node's last entry can only catch
/// up through a snapshot (Raft paper §7, InstallSnapshot); it does, and then follows the log.
pub async fn lagging_node_catches_up_via_snapshot(net: impl Network) {
    let options = Options { snapshot_interval: 20, log_retention: 5 };
    let mut cluster = Cluster::start(net, 3, options).await;
    cluster.put_range(&cluster.running(), "early", 0..5).await;
    let leader = cluster.leader().await;
    let lagging = cluster.ids().into_iter().find(|id| *id != leader).expect("a follower");
    let lagging_last = cluster.stop_node(lagging).await.last_index;

    let majority = cluster.running();
    cluster.put_range(&majority, "k", 0..60).await;
    let leader = cluster.leader_among(&majority).await;
    eventually("the leader to compact past the lagging node", || async {
        (cluster.status(leader).first_index > lagging_last + 1).then_some(())
    })
    .await;

    cluster.start_node(lagging);
    let leader_commit = cluster.status(leader).commit_index;
    let status = cluster.wait_applied(lagging, leader_commit).await;
    assert!(status.snapshot_index > lagging_last, "caught up through a snapshot: {status:?}");
    cluster.put_range(&cluster.running(), "after", 0..5).await;
    cluster.converged().await;
    cluster.assert_all_have("early", 0..5).await;
    cluster.assert_all_have("k", 0..60).await;
    cluster.assert_all_have("after", 0..5).await;
    cluster.shutdown().await;
}

/// With a fifth of all messages lost and the rest delayed by random amounts (so reordered),
/// the cluster still commits every command exactly once into the same state everywhere.
pub async fn message_loss_and_reordering(net: impl Network) {
    let options = Options { snapshot_interval: 15, log_retention: 3 };
    let cluster = Cluster::start(net, 3, options).await;
    cluster.leader().await;
    cluster.net.filter().drop_messages(0.2);
    cluster.net.filter().delay(Duration::ZERO, Duration::from_millis(15));
    cluster.put_range(&cluster.running(), "k", 0..40).await;
    cluster.net.filter().heal();
    let state = cluster.converged().await;
    assert_eq!(state.len(), 40, "every key once: {state:?}");
    cluster.assert_all_have("k", 0..40).await;
    cluster.shutdown().await;
}

/// Five voters tolerate two failures, the leader among them; the stopped nodes come back and
/// catch up.
pub async fn five_nodes_tolerate_two_failures(net: impl Network) {
    let mut cluster = Cluster::start(net, 5, Options::default()).await;
    cluster.put_range(&cluster.running(), "k", 0..5).await;
    let leader = cluster.leader().await;
    let other = cluster.ids().into_iter().find(|id| *id != leader).expect("a follower");
    cluster.stop_node(leader).await;
    cluster.stop_node(other).await;
    cluster.put_range(&cluster.running(), "degraded", 0..10).await;
    cluster.start_node(leader);
    cluster.start_node(other);
    cluster.put_range(&cluster.running(), "whole", 0..5).await;
    cluster.converged().await;
    cluster.assert_all_have("k", 0..5).await;
    cluster.assert_all_have("degraded", 0..10).await;
    cluster.assert_all_have("whole", 0..5).await;
    cluster.shutdown().await;
}

/// Proposes through whichever node currently leads, retrying on everything a client retries
/// on, a stopped node included.
async fn propose_anywhere(nodes: &[RaftNode<Kv>], command: Vec<u8>) {
    eventually("a proposal accepted somewhere", || {
        let command = command.clone();
        async move {
            let leader = nodes.iter().filter(|node| node.status().is_leader()).max_by_key(|node| node.status().term)?;
            match leader.propose(command).await {
                Ok(_) => Some(()),
                Err(
                    Error::NotLeader { .. }
                    | Error::ProposalDropped { .. }
                    | Error::ProposalOutcomeUnknown { .. }
                    | Error::Timeout { .. }
                    | Error::Stopped { .. },
                ) => None,
                Err(other) => panic!("proposal failed: {other}"),
            }
        }
    })
    .await
}

/// Eight clients propose concurrently (so proposals share Ready batches and fsyncs); the
/// leader is stopped mid-way, the clients move to the new leader, the old one restarts and
/// catches up. Every acknowledged command is applied exactly once everywhere.
pub async fn leader_crash_during_concurrent_proposals(net: impl Network) {
    const CLIENTS: usize = 8;
    const EACH: usize = 25;
    let options = Options { snapshot_interval: 50, log_retention: 10 };
    let mut cluster = Cluster::start(net, 3, options).await;
    let leader = cluster.leader().await;
    let nodes: Vec<RaftNode<Kv>> = cluster.ids().iter().map(|id| cluster.node(*id).clone()).collect();
    let (progress, mut acknowledged) = mpsc::unbounded_channel();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|client| {
            let nodes = nodes.clone();
            let progress = progress.clone();
            tokio::spawn(async move {
                for i in 0..EACH {
                    propose_anywhere(&nodes, put(&format!("c{client}-{i}"), &format!("v{i}"))).await;
                    let _ = progress.send(());
                }
            })
        })
        .collect();
    drop(progress);
    let mut count = 0;
    while count < CLIENTS * EACH / 4 {
        acknowledged.recv().await.expect("clients are running");
        count += 1;
    }
    cluster.stop_node(leader).await;
    while count < CLIENTS * EACH / 2 {
        acknowledged.recv().await.expect("clients continue without the old leader");
        count += 1;
    }
    cluster.start_node(leader);
    for client in clients {
        client.await.expect("client task");
    }
    let state = cluster.converged().await;
    assert_eq!(state.len(), CLIENTS * EACH, "each command applied exactly once");
    for client in 0..CLIENTS {
        for i in 0..EACH {
            assert_eq!(state.get(&format!("c{client}-{i}")).map(String::as_str), Some(format!("v{i}").as_str()));
        }
    }
    cluster.shutdown().await;
}
