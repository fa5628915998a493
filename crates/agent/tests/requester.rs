//! The requester against a real node API served in this process.
//!
//! The node is the API over a `Chain`, a `Mempool` and a blob store, with no
//! consensus: a background task finalizes a block every 50 ms (empty ones too,
//! so deadlines and challenge windows pass), as consensus would. Two providers
//! register with measured speeds; in the pipeline scenario they are small
//! honest test actors that run their stage with the real runtime, publish the
//! output blob, commit and reveal — enough for a job to run to its end.

use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use agentic_agent::requester::{
    cost, JobInput, JobRequest, PlacementChoice, Requester, RequesterError,
};
use agentic_client::blobs::BlobStore;
use agentic_client::Client;
use agentic_compute::activation::DecodeLimits;
use agentic_compute::bundle::{Bundle, BundleLimits};
use agentic_compute::{registry, Activation};
use agentic_node::api::{self, ApiConfig, ApiState};
use agentic_node::{
    AdmitError, Chain, FinalizedBlock, Mempool, MempoolLimits, SharedChain, SharedMempool, Submit,
};
use agentic_protocol::coord::Coord;
use agentic_protocol::state::{JobStatus, StagePhase};
use agentic_protocol::test_utils::{
    address_of, fast_params, key, offer, GenesisBuilder, TestReferee,
};
use agentic_protocol::tx::StageResult;
use agentic_protocol::{Address, Amount, Hash, JobId, Params, SignedTx, TxBody};
use commonware_cryptography::ed25519::PrivateKey;

const CHAIN: u64 = 31;
const REQUESTER_FUNDS: u128 = 10_000_000;
const PROVIDER_FUNDS: u128 = 100_000;
const STAKE: u128 = 10_000;
/// Provider 2 is 20× faster than provider 3.
const SPEEDS: [(u64, u64); 2] = [(2, 2_000_000_000), (3, 100_000_000)];

struct LocalSubmit {
    chain: SharedChain,
    mempool: SharedMempool,
}

impl Submit for LocalSubmit {
    fn submit(&self, tx: SignedTx) -> Result<Hash, AdmitError> {
        let chain = self.chain.read().unwrap();
        self.mempool.lock().unwrap().admit(tx, chain.state())
    }
}

/// Finalizes the next block with what the mempool proposes (possibly nothing).
fn finalize(chain: &SharedChain, mempool: &SharedMempool) {
    let mut chain = chain.write().unwrap();
    let txs = mempool
        .lock()
        .unwrap()
        .select(chain.state(), &[], 1000, 1 << 20);
    let h = chain.height().plus(1);
    let block = FinalizedBlock {
        height: h,
        digest: [h.0 as u8; 32],
        view: h.0,
        timestamp_ms: 1_700_000_000_000 + h.0,
        beacon: [7; 32],
        txs,
    };
    chain.apply(&block, &TestReferee::default()).unwrap();
    mempool
        .lock()
        .unwrap()
        .remove_finalized(&block.txs, chain.state());
}

/// A node on 127.0.0.1 with a funded requester (key 1), two registered providers
/// (keys 2 and 3) and a poor account (key 4).
struct Net {
    url: String,
    rt: tokio::runtime::Runtime,
    _dir: TempDir,
}

struct TempDir(std::path::PathBuf);
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn start(name: &str) -> Net {
    let dir = std::env::temp_dir().join(format!("agentic-agent-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    // Short windows, but wide enough (at 50 ms a block) for a loaded test machine.
    let params = Params {
        reveal_window: 40,
        match_timeout: 40,
        ..fast_params()
    };
    let mut genesis = GenesisBuilder::new(CHAIN)
        .params(params)
        .account(address_of(&key(1)), REQUESTER_FUNDS, 0)
        .account(address_of(&key(4)), 10, 0);
    for (seed, _) in SPEEDS {
        genesis = genesis.account(address_of(&key(seed)), PROVIDER_FUNDS, 0);
    }
    let chain: SharedChain = Arc::new(RwLock::new(Chain::new(&genesis.build()).unwrap()));
    let mempool: SharedMempool = Arc::new(Mutex::new(Mempool::new(MempoolLimits::default())));
    let state = ApiState {
        chain: chain.clone(),
        mempool: mempool.clone(),
        submit: Arc::new(LocalSubmit {
            chain: chain.clone(),
            mempool: mempool.clone(),
        }),
        blobs: Arc::new(BlobStore::open(dir.join("blobs"), 64 << 20).unwrap()),
        config: ApiConfig::default(),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    rt.spawn(api::serve(listener, state, std::future::pending()));
    rt.spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(50)).await;
            finalize(&chain, &mempool);
        }
    });
    let net = Net {
        url,
        rt,
        _dir: TempDir(dir),
    };
    net.rt.block_on(async {
        let client = Client::new(&net.url);
        for (seed, speed) in SPEEDS {
            let mut o = offer(10 + seed as u128, 2);
            o.speed = speed;
            o.coord = Coord::new(1_000 * seed as i32, 0, 100);
            client
                .send(
                    &key(seed),
                    TxBody::RegisterProvider {
                        offer: o,
                        stake: Amount(STAKE),
                    },
                    Duration::from_secs(10),
                )
                .await
                .unwrap();
        }
    });
    net
}

impl Net {
    fn requester(&self, seed: u64) -> Requester {
        let mut r = Requester::new(Client::new(&self.url), key(seed));
        r.poll_interval = Duration::from_millis(50);
        // `wait` must be driven by the node's event feed: the fallback re-read alone
        // would take longer than the tests allow.
        r.resync_interval = Duration::from_secs(30);
        r
    }
}

fn texts() -> JobInput {
    JobInput::Texts(vec!["pay per op".into(), "verify by hash".into()])
}

#[test]
fn auto_placement_submit_then_cancel_refunds_everything_but_fees() {
    let net = start("cancel");
    let req = net.requester(1);
    net.rt.block_on(async {
        let offers = req.offers().await.unwrap();
        assert_eq!(offers.len(), 2);
        assert!(offers.iter().any(|o| o.offer.speed == 2_000_000_000));

        let mut r = JobRequest::new("tiny-gpt", texts());
        r.stages = 2;
        r.placement = PlacementChoice::Auto;
        let job = req.prepare(&r).await.unwrap();
        // The fast provider runs the bigger stage.
        let fast = address_of(&key(2));
        let i = job.spec.placement.iter().position(|a| *a == fast).unwrap();
        assert!(job.spec.stages[i].ops > job.spec.stages[1 - i].ops);

        let before = req.balance().await.unwrap();
        let sub = req.submit_detailed(&job).await.unwrap();
        assert_eq!(sub.escrow, job.escrow);
        // Fees by work: two stages of one replica each, no auditor (optimistic): two
        // slots over the minimum fee.
        let params = Client::new(&net.url).params().await.unwrap();
        assert_eq!(
            job.spec.requirements.verification,
            agentic_protocol::types::VerificationLevel::Optimistic
        );
        assert_eq!(sub.fee.0, params.min_fee.0 + 2 * params.fee_per_slot.0);
        assert_eq!(sub.fee, job.fee(&params));
        assert_eq!(sub.payer, req.address());
        assert_eq!(
            sub.uploaded_bytes,
            (job.bundle.len() + job.input.len()) as u64
        );
        // Both blobs are on the node now.
        let client = Client::new(&net.url);
        assert_eq!(
            client.blob_size(&job.model_hash).await.unwrap(),
            Some(job.bundle.len() as u64)
        );
        let on_chain = req.job(sub.job).await.unwrap();
        assert_eq!(on_chain.spec, job.spec);
        assert_eq!(on_chain.escrow, job.escrow);
        assert_eq!(
            req.balance().await.unwrap(),
            Amount(before.0 - job.escrow.0 - sub.fee.0)
        );

        // Submitting the same model again uploads only what is new (nothing).
        let again = req.submit_detailed(&job).await.unwrap();
        assert_eq!(again.uploaded_bytes, 0);
        assert_eq!(again.job, JobId(sub.job.0 + 1));

        // Nobody committed yet: cancelling returns the whole escrow.
        for id in [sub.job, again.job] {
            assert_eq!(req.cancel(id).await.unwrap(), job.escrow);
            let j = req.job(id).await.unwrap();
            assert_eq!(j.status, JobStatus::Cancelled);
            let c = req.bill(id).await.unwrap();
            assert_eq!(c.paid, Amount::ZERO);
            assert_eq!(c.refund, Some(job.escrow));
        }
        // Two submissions and two cancellations (a cancel matches nothing: the
        // minimum fee).
        assert_eq!(
            req.balance().await.unwrap(),
            Amount(before.0 - 2 * sub.fee.0 - 2 * params.min_fee.0)
        );
        // A second cancel is a ledger rejection with its reason.
        match req.cancel(sub.job).await {
            Err(RequesterError::Rejected { kind, reason, .. }) => {
                assert_eq!(kind, "cancel_job");
                assert!(!reason.is_empty());
            }
            other => panic!("{other:?}"),
        }
        // And the result of a cancelled job is a clear error.
        assert!(matches!(
            req.result(sub.job).await,
            Err(RequesterError::NoResult { .. })
        ));
    });
}

#[test]
fn a_poor_requester_is_told_before_uploading() {
    let net = start("poor");
    let poor = net.requester(4);
    net.rt.block_on(async {
        let job = poor
            .prepare(&JobRequest::new("tiny-gpt", texts()))
            .await
            .unwrap();
        match poor.submit(&job).await {
            Err(RequesterError::InsufficientBalance { escrow, have, .. }) => {
                assert_eq!(escrow, job.escrow);
                assert_eq!(have, Amount(10));
            }
            other => panic!("{other:?}"),
        }
        let client = Client::new(&net.url);
        assert_eq!(client.blob_size(&job.model_hash).await.unwrap(), None);
    });
}

/// An honest provider: for every stage of `job` assigned to it whose input is
/// known, run it, publish the output, commit, reveal.
async fn honest_provider(url: String, key: PrivateKey, job: JobId) {
    let client = Client::new(&url);
    let me = address_of(&key);
    let mut done: Vec<u32> = Vec::new();
    let mut model = None;
    loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let Ok(j) = client.job(job).await else {
            continue;
        };
        if j.status != JobStatus::Active {
            return;
        }
        for (s, st) in j.stages.iter().enumerate() {
            let s = s as u32;
            let mine = st.slots.iter().any(|slot| {
                slot.assignment
                    .as_ref()
                    .is_some_and(|a| a.provider == me && a.commitment.is_none())
            });
            if !mine || done.contains(&s) || !matches!(st.phase, StagePhase::Running { .. }) {
                continue;
            }
            let input = if s == 0 {
                j.spec.input
            } else {
                match j.stages[s as usize - 1].result {
                    Some(r) => r.output,
                    None => continue,
                }
            };
            if model.is_none() {
                let bytes = client.get_blob(&j.spec.model).await.unwrap();
                model = Some(
                    Bundle::decode(&bytes, BundleLimits::default())
                        .unwrap()
                        .load()
                        .unwrap(),
                );
            }
            let m = model.as_ref().unwrap();
            let bytes = client.get_blob(&input).await.unwrap();
            let act = Activation::from_canonical_bytes(&bytes, DecodeLimits::default()).unwrap();
            let spec = j.spec.stages[s as usize];
            let range = spec.first_layer as usize..(spec.first_layer + spec.layers) as usize;
            let run = m.model.run_range(range, act).unwrap();
            assert_eq!(run.total_ops(), spec.ops, "metering = execution");
            let result = StageResult {
                input,
                output: run.output.hash(),
                trace_root: run.trace.root,
                steps: 0,
            };
            client.put_blob(run.output.canonical_bytes()).await.unwrap();
            let salt = Hash([s as u8 + 1; 32]);
            let timeout = Duration::from_secs(10);
            client
                .send(
                    &key,
                    TxBody::CommitResult {
                        job,
                        stage: s,
                        commitment: result.commitment(job, s, &salt, &me),
                    },
                    timeout,
                )
                .await
                .unwrap();
            client
                .send(
                    &key,
                    TxBody::RevealResult {
                        job,
                        stage: s,
                        result,
                        salt,
                    },
                    timeout,
                )
                .await
                .unwrap();
            done.push(s);
        }
    }
}

#[test]
fn a_pipeline_job_runs_to_a_verified_result_and_an_exact_bill() {
    let net = start("pipeline");
    let req = net.requester(1);
    net.rt.block_on(async {
        let mut r = JobRequest::new("tiny-gpt", texts());
        r.stages = 2;
        r.deadline = 100;
        let job = req.prepare(&r).await.unwrap();
        let before = req.balance().await.unwrap();
        let sub = req.submit_detailed(&job).await.unwrap();
        for (seed, _) in SPEEDS {
            tokio::spawn(honest_provider(net.url.clone(), key(seed), sub.job));
        }
        let mut phases: Vec<Vec<String>> = Vec::new();
        let done = req
            .wait(sub.job, Duration::from_secs(60), |j| {
                phases.push(j.stages.iter().map(|s| format!("{:?}", s.phase)).collect())
            })
            .await
            .unwrap();
        assert_eq!(done.status, JobStatus::Completed, "{phases:?}");
        assert!(phases.len() >= 3, "progress was reported: {phases:?}");

        // The output is the model's output on the input, computed here.
        let res = req.result(sub.job).await.unwrap();
        let m = registry::load("tiny-gpt").unwrap();
        let JobInput::Texts(t) = texts() else {
            unreachable!()
        };
        let refs: Vec<&str> = t.iter().map(String::as_str).collect();
        let local = m.model.run(m.encode(&refs).unwrap()).unwrap();
        assert_eq!(res.output, local.output);
        assert_eq!(res.output_hash, local.output.hash());
        assert_eq!(res.stage_results.len(), 2);
        assert_eq!(res.stage_results[0].output, res.stage_results[1].input);
        assert_eq!(res.stage_results[0].input, job.input_hash);

        // The bill, from the ledger's events: each stage's provider was paid ops × its
        // price; the rest came back.
        let c = req.bill(sub.job).await.unwrap();
        assert_eq!(
            c,
            cost(&done, sub.job, &req.job_events(sub.job).await.unwrap())
        );
        let mut paid = 0u128;
        for (st, spec) in c.stages.iter().zip(&job.spec.stages) {
            let slot = &st.slots[0];
            let price = slot.price.unwrap();
            assert_eq!(slot.paid, Amount::cost(spec.ops, price).unwrap());
            paid += slot.paid.0;
        }
        assert_eq!(c.paid, Amount(paid));
        assert_eq!(c.locked, job.escrow);
        assert_eq!(c.refund, Some(Amount(job.escrow.0 - paid)));
        // …and the ledger agrees to the base unit.
        assert_eq!(
            req.balance().await.unwrap(),
            Amount(before.0 - sub.fee.0 - paid)
        );
        let providers: Vec<Address> = c
            .stages
            .iter()
            .map(|s| s.slots[0].provider.unwrap())
            .collect();
        assert_ne!(providers[0], providers[1]);
    });
}
