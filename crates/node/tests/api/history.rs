//! The node's history through the API: old blocks and receipts served from disk with the
//! memory window bounded, a restart that keeps them without writing them twice when the
//! blocks are replayed, and archived entities served once the state no longer has them.

use super::*;
use agentic_node::history::RECENT_BLOCKS;
use agentic_node::{EntityKind, HistoryConfig};

/// Reads the event stream at `path` until it contains `until`.
async fn events_until(n: &Node, path: &str, until: &str) -> String {
    use futures::StreamExt;
    let resp = n
        .http
        .get(format!("{}{path}", n.base))
        .send()
        .await
        .unwrap();
    let mut stream = resp.bytes_stream();
    let mut seen = String::new();
    while !seen.contains(until) {
        let chunk = tokio::time::timeout(std::time::Duration::from_secs(20), stream.next())
            .await
            .expect("events within 20 s")
            .expect("stream open")
            .unwrap();
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    seen
}

#[tokio::test]
async fn old_blocks_and_receipts_come_from_disk_and_survive_a_restart() {
    let dir = tmpdir("history-store");
    let config = HistoryConfig::on_disk(&dir);
    let n = start_chain("history-1", Chain::open(&genesis(), &config).unwrap()).await;
    let (status, body) = n.submit(&transfer(1, 0, 2, 250)).await;
    assert_eq!(status, 202, "{body}");
    let id = body["id"].as_str().unwrap().to_string();
    let mut applied = vec![n.finalize_block()];
    let extra = RECENT_BLOCKS as u64 + 20;
    for _ in 0..extra {
        applied.push(n.finalize_block());
    }
    let tip = 1 + extra;
    {
        let c = n.chain.read().unwrap();
        assert_eq!(c.height(), Height(tip));
        assert!(
            c.history().cached_blocks() <= RECENT_BLOCKS,
            "memory holds at most the recent window"
        );
    }
    // Block 1 and its receipt are long out of the window: read from disk.
    let (status, b1) = n.get("/v1/blocks/1").await;
    assert_eq!(status, 200, "{b1}");
    assert_eq!(b1["txs"][0], id.as_str());
    let (status, r) = n.get(&format!("/v1/txs/{id}")).await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(
        (r["status"].as_str(), r["height"].as_u64()),
        (Some("finalized"), Some(1))
    );
    let (_, page) = n.get("/v1/blocks?from=1&limit=3").await;
    let heights: Vec<u64> = page["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["height"].as_u64().unwrap())
        .collect();
    assert_eq!(heights, vec![1, 2, 3]);
    assert_eq!(page["blocks"][0], b1);
    // The event replay pages through the stored blocks, oldest first.
    let seen = events_until(&n, "/v1/events?from=1", &format!("\"height\":{tip}")).await;
    let first_transfer = seen
        .find("Transferred")
        .expect("block 1's transfer replayed");
    assert!(
        first_transfer < seen.find("\"height\":2").unwrap(),
        "{seen}"
    );
    drop(n);

    // Restart: a new chain on the same directory. Before consensus replays anything the
    // history already serves the old blocks; the replay then writes nothing again.
    let log = dir.join("history.log");
    let len = std::fs::metadata(&log).unwrap().len();
    let n = start_chain("history-2", Chain::open(&genesis(), &config).unwrap()).await;
    assert_eq!(n.chain.read().unwrap().height(), Height(0));
    assert_eq!(
        n.get(&format!("/v1/txs/{id}")).await.1["status"],
        "finalized"
    );
    assert_eq!(n.get("/v1/blocks/1").await.1, b1);
    {
        let mut c = n.chain.write().unwrap();
        for block in &applied {
            c.apply(block, &TestReferee::default()).unwrap();
        }
        assert_eq!(c.height(), Height(tip));
        assert!(c.history().cached_blocks() <= RECENT_BLOCKS);
    }
    assert_eq!(
        std::fs::metadata(&log).unwrap().len(),
        len,
        "nothing written twice"
    );
    assert_eq!(n.get("/v1/blocks/1").await.1, b1);
    assert_eq!(n.get("/v1/blocks/latest").await.1["height"], tip);
    drop(n);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn archived_entities_are_served_when_the_state_has_none() {
    let n = start("history-archive").await;
    // A real job, to archive under an id the state does not have (what pruning will do).
    let spec = one_stage_job(VerificationLevel::Audited);
    let tx = SignedTx::sign(
        &key(1),
        Tx {
            chain_id: ChainId(CHAIN),
            nonce: 0,
            fee: Amount(3),
            body: TxBody::SubmitJob { spec },
        },
    );
    let (status, body) = n.submit(&tx).await;
    assert_eq!(status, 202, "{body}");
    n.finalize();
    let id = body["id"].as_str().unwrap().to_string();
    let (_, r) = n.get(&format!("/v1/txs/{id}")).await;
    assert_eq!(r["result"]["ok"], true, "{r}");
    let (_, jobs) = n.get("/v1/jobs").await;
    assert!(jobs["jobs"][0].is_object(), "{jobs}");
    let live = &jobs["jobs"][0];
    let job: agentic_client::api::WithId<agentic_protocol::state::Job> =
        serde_json::from_value(live.clone()).unwrap();
    assert_eq!(n.get("/v1/jobs/1000").await.0, 404);
    {
        let mut c = n.chain.write().unwrap();
        c.archive(EntityKind::Job, 1000, &job.item).unwrap();
        // Not a proposal: an archived body that does not decode is a 404, not a panic.
        c.archive(EntityKind::Proposal, 5, &json!({"not": "a proposal"}))
            .unwrap();
    }
    let (status, archived) = n.get("/v1/jobs/1000").await;
    assert_eq!(status, 200, "{archived}");
    assert_eq!(archived["id"], 1000);
    let mut expected = live.clone();
    expected["id"] = json!(1000);
    assert_eq!(archived, expected);
    assert_eq!(n.get("/v1/jobs/1001").await.0, 404);
    assert_eq!(n.get("/v1/disputes/1000").await.0, 404, "kinds are apart");
    assert_eq!(n.get("/v1/proposals/5").await.0, 404);
}

/// The ledger prunes a finished job after the retention window; the node archives it as it
/// leaves, so the API serves the same job from disk while the state holds none of it.
#[tokio::test]
async fn a_pruned_job_leaves_the_state_and_is_still_served() {
    let params = agentic_protocol::Params {
        match_timeout: 2,
        retention: 3,
        ..agentic_protocol::Params::default()
    };
    let genesis = GenesisBuilder::new(CHAIN)
        .params(params)
        .account(address_of(&key(1)), 1_000_000, 0)
        .build();
    let dir = tmpdir("history-prune");
    let n = start_chain(
        "history-prune",
        Chain::open(&genesis, &HistoryConfig::on_disk(&dir)).unwrap(),
    )
    .await;
    // A job nobody serves: cancelled at its match timeout, refunded, then pruned.
    let spec = one_stage_job(VerificationLevel::Optimistic);
    let body = TxBody::SubmitJob { spec };
    let fee = genesis.params.required_fee(&body);
    let tx = SignedTx::sign(
        &key(1),
        Tx {
            chain_id: ChainId(CHAIN),
            nonce: 0,
            fee,
            body,
        },
    );
    let (status, body) = n.submit(&tx).await;
    assert_eq!(status, 202, "{body}");
    n.finalize();
    let (status, live) = n.get("/v1/jobs/0").await;
    assert_eq!(status, 200, "{live}");
    let mut cancelled = None;
    for _ in 0..12 {
        n.finalize();
        let c = n.chain.read().unwrap();
        match c.state().job(agentic_protocol::JobId(0)) {
            Some(j) if j.status == agentic_protocol::state::JobStatus::Cancelled => {
                cancelled.get_or_insert(c.height());
            }
            Some(_) => {}
            None => break,
        }
    }
    let c = n.chain.read().unwrap().state().clone();
    assert!(cancelled.is_some(), "the job was cancelled first");
    assert!(
        c.job(agentic_protocol::JobId(0)).is_none(),
        "pruned from the state"
    );
    assert_eq!(c.root(), c.full_root(), "and from its root");
    let (status, archived) = n.get("/v1/jobs/0").await;
    assert_eq!(status, 200, "{archived}");
    assert_eq!(archived["status"], "Cancelled", "{archived}");
    assert_eq!(archived["requester"], live["requester"]);
    drop(n);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A one-stage, one-replica job of 1M ops at price ≤ 10 (`test_utils::job_spec`).
fn one_stage_job(verification: VerificationLevel) -> JobSpec {
    JobSpec {
        deadline: 50,
        ..agentic_protocol::test_utils::job_spec(
            Hash([1; 32]),
            Hash([2; 32]),
            &[(1, 1_000_000)],
            10,
            verification,
        )
    }
}
