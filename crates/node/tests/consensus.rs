//! Consensus scenarios under the deterministic runtime: real simplex with BLS threshold keys,
//! real marshal and storage, real ed25519 transactions, simulated lossy links. Every wait is
//! in virtual time; the assertions are about behaviour (agreement, progress, halting), never
//! about how long something took.

mod common;

use common::{assert_agree, runner, sink, submit, transfer, Net};
use commonware_runtime::Runner as _;

/// Four validators finalize blocks with transactions submitted through three of them, and
/// all report the same block and state root at every height.
#[test]
fn four_validators_agree_and_include_submitted_transactions() {
    runner(1).start(|context| async move {
        let net = Net::new(context, 4).await;
        let mut validators = Vec::new();
        for i in 0..4 {
            validators.push(net.start(i).await);
        }
        net.wait_until(|| validators.iter().all(|v| v.height() >= 2))
            .await;

        // Users 0..3 each send two transfers, through different validators.
        let mut ids = Vec::new();
        for user in 0..3u64 {
            for nonce in 0..2 {
                let via = &validators[(user as usize + nonce as usize) % 3];
                ids.push(submit(via, transfer(user, nonce, sink(1), 10)));
            }
        }
        net.wait_until(|| {
            validators
                .iter()
                .all(|v| ids.iter().all(|id| v.receipt(id).is_some()))
        })
        .await;
        let target = validators.iter().map(|v| v.height()).max().unwrap() + 3;
        net.wait_until(|| validators.iter().all(|v| v.height() >= target))
            .await;

        let refs: Vec<_> = validators.iter().collect();
        let common = assert_agree(&refs);
        assert!(common >= target);
        for v in &validators {
            assert!(ids.iter().all(|id| v.receipt(id) == Some(true)));
            assert_eq!(v.balance(&sink(1)).0, 60);
        }
    });
}

/// One validator of four never starts: the other three (a quorum) keep finalizing blocks,
/// transactions still land, and they agree.
#[test]
fn progress_with_one_validator_crashed() {
    runner(2).start(|context| async move {
        let net = Net::new(context, 4).await;
        let mut validators = Vec::new();
        for i in 1..4 {
            validators.push(net.start(i).await);
        }
        let id = submit(&validators[0], transfer(0, 0, sink(2), 5));
        net.wait_until(|| {
            validators
                .iter()
                .all(|v| v.height() >= 8 && v.receipt(&id).is_some())
        })
        .await;
        let refs: Vec<_> = validators.iter().collect();
        assert!(assert_agree(&refs) >= 8);
        assert!(validators.iter().all(|v| v.receipt(&id) == Some(true)));
    });
}

/// A 2|2 partition stops finalization (no side has a quorum); once healed, the network
/// finalizes again and every validator converges on the same blocks and roots.
#[test]
fn partition_stalls_then_heals_and_converges() {
    runner(3).start(|context| async move {
        let net = Net::new(context, 4).await;
        let mut validators = Vec::new();
        for i in 0..4 {
            validators.push(net.start(i).await);
        }
        net.wait_until(|| validators.iter().all(|v| v.height() >= 3))
            .await;

        net.partition(&[0, 1]).await;
        // Let whatever was in flight settle, then watch: nothing more is finalized.
        net.sleep(5).await;
        let stalled: Vec<u64> = validators.iter().map(|v| v.height()).collect();
        // Transactions submitted on both sides during the partition.
        let left = submit(&validators[0], transfer(1, 0, sink(3), 7));
        let right = submit(&validators[3], transfer(2, 0, sink(3), 8));
        net.sleep(30).await;
        let after: Vec<u64> = validators.iter().map(|v| v.height()).collect();
        assert_eq!(stalled, after, "finalized height advanced without a quorum");
        let refs: Vec<_> = validators.iter().collect();
        assert_agree(&refs);

        net.link_all(common::LINK).await;
        let target = after.iter().max().unwrap() + 5;
        net.wait_until(|| {
            validators.iter().all(|v| {
                v.height() >= target && v.receipt(&left).is_some() && v.receipt(&right).is_some()
            })
        })
        .await;
        assert!(assert_agree(&refs) >= target);
        for v in &validators {
            assert_eq!(v.balance(&sink(3)).0, 15);
        }
    });
}

/// With two of four validators down the chain halts without forking; when they come back
/// (from their storage) it resumes and all four agree.
#[test]
fn two_down_halts_without_fork_then_resumes() {
    runner(4).start(|context| async move {
        let net = Net::new(context, 4).await;
        let mut validators = Vec::new();
        for i in 0..4 {
            validators.push(net.start(i).await);
        }
        net.wait_until(|| validators.iter().all(|v| v.height() >= 3))
            .await;

        let v3 = validators.pop().unwrap();
        let v2 = validators.pop().unwrap();
        v3.crash().await;
        v2.crash().await;
        net.sleep(5).await;
        let stalled: Vec<u64> = validators.iter().map(|v| v.height()).collect();
        net.sleep(30).await;
        let after: Vec<u64> = validators.iter().map(|v| v.height()).collect();
        assert_eq!(
            stalled, after,
            "finalized height advanced with two of four down"
        );
        let refs: Vec<_> = validators.iter().collect();
        assert_agree(&refs);

        validators.push(net.start(2).await);
        validators.push(net.start(3).await);
        let id = submit(&validators[2], transfer(3, 0, sink(4), 9));
        let target = after.iter().max().unwrap() + 5;
        net.wait_until(|| {
            validators
                .iter()
                .all(|v| v.height() >= target && v.receipt(&id).is_some())
        })
        .await;
        let refs: Vec<_> = validators.iter().collect();
        assert!(assert_agree(&refs) >= target);
    });
}

/// One validator equivocates: for every notarize or finalize vote it sees, it signs two
/// conflicting ones for the same round. The three honest validators still finalize one
/// chain and agree on it.
#[test]
fn equivocating_validator_cannot_break_safety() {
    runner(5).start(|context| async move {
        let net = Net::new(context, 4).await;
        let _byzantine = net.start_equivocator(0).await;
        let mut validators = Vec::new();
        for i in 1..4 {
            validators.push(net.start(i).await);
        }
        let id = submit(&validators[1], transfer(4, 0, sink(5), 11));
        net.wait_until(|| {
            validators
                .iter()
                .all(|v| v.height() >= 10 && v.receipt(&id).is_some())
        })
        .await;
        let refs: Vec<_> = validators.iter().collect();
        assert!(assert_agree(&refs) >= 10);
        assert!(validators.iter().all(|v| v.receipt(&id) == Some(true)));
        // The honest validators noticed and blocked the equivocator.
        let blocked = net.oracle.blocked().await.unwrap();
        let byzantine = &net.participants[0];
        for honest in &net.participants[1..] {
            assert!(
                blocked.contains(&(honest.clone(), byzantine.clone())),
                "{honest} did not block the equivocator: {blocked:?}"
            );
        }
    });
}

/// A validator stopped and restarted from its storage rebuilds the same state root at its
/// old height before anything new arrives, then catches up with the others.
#[test]
fn restarted_validator_recovers_its_state_and_catches_up() {
    runner(6).start(|context| async move {
        let net = Net::new(context, 4).await;
        let mut validators = Vec::new();
        for i in 0..4 {
            validators.push(net.start(i).await);
        }
        let id = submit(&validators[0], transfer(5, 0, sink(6), 13));
        net.wait_until(|| {
            validators
                .iter()
                .all(|v| v.height() >= 5 && v.receipt(&id).is_some())
        })
        .await;

        let v0 = validators.remove(0);
        let old_height = v0.height();
        let old_root = v0.root();
        v0.crash().await;

        // The others move on while it is down.
        let target = validators.iter().map(|v| v.height()).max().unwrap() + 5;
        net.wait_until(|| validators.iter().all(|v| v.height() >= target))
            .await;

        let v0 = net.start(0).await;
        net.wait_until(|| v0.height() >= old_height).await;
        assert_eq!(v0.block_at(old_height).unwrap().1, old_root);
        assert_eq!(v0.receipt(&id), Some(true));

        let target = validators.iter().map(|v| v.height()).max().unwrap() + 2;
        validators.insert(0, v0);
        net.wait_until(|| validators.iter().all(|v| v.height() >= target))
            .await;
        let refs: Vec<_> = validators.iter().collect();
        assert!(assert_agree(&refs) >= target);
    });
}

/// The production wiring: four validators on loopback over commonware's authenticated p2p
/// and the tokio runtime (real time, real sockets, storage in a temporary directory). Ignored
/// by default because it binds fixed ports and takes seconds of wall time; run it with
/// `cargo test -p agentic-node --test consensus -- --ignored tokio`.
#[test]
#[ignore]
fn tokio_loopback_network_finalizes() {
    use agentic_node::consensus::{start_authenticated, NetworkConfig, Peer};
    use agentic_node::{Chain, Mempool, MempoolLimits, Submit};
    use commonware_runtime::{tokio, Clock, Supervisor};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    let dir = std::env::temp_dir().join(format!("agentic-consensus-{}", std::process::id()));
    let executor = tokio::Runner::new(tokio::Config::new().with_storage_directory(&dir));
    executor.start(|context| async move {
        let net = common::Keys::new(4);
        let peers: Vec<Peer> = net
            .participants
            .iter()
            .enumerate()
            .map(|(i, pk)| Peer {
                public_key: pk.clone(),
                address: format!("127.0.0.1:{}", 38_400 + i).parse().unwrap(),
            })
            .collect();
        let mut validators = Vec::new();
        for i in 0..4 {
            let chain = Chain::new(&net.genesis).unwrap().shared();
            let mempool = Arc::new(Mutex::new(Mempool::new(MempoolLimits::default())));
            let (handle, submitter) = start_authenticated(
                context.child("validator").with_attribute("index", i),
                net.config(i),
                NetworkConfig {
                    listen: peers[i].address,
                    peers: peers.clone(),
                    local: true,
                },
                chain.clone(),
                mempool,
            )
            .await
            .unwrap();
            validators.push((chain, submitter, handle));
        }
        let id = validators[0].1.submit(transfer(0, 0, sink(9), 3)).unwrap();
        loop {
            let done = validators.iter().all(|(c, _, _)| {
                let c = c.read().unwrap();
                c.height().0 >= 5 && c.receipt(&id).is_some()
            });
            if done {
                break;
            }
            context.sleep(Duration::from_millis(200)).await;
        }
        let root_at_5: Vec<_> = validators
            .iter()
            .map(|(c, _, _)| {
                c.read()
                    .unwrap()
                    .block(agentic_protocol::Height(5))
                    .unwrap()
                    .state_root
            })
            .collect();
        assert!(root_at_5.windows(2).all(|w| w[0] == w[1]));
    });
    let _ = std::fs::remove_dir_all(&dir);
}
