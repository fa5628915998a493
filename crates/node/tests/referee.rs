//! The validators' referee: one disputed layer, re-executed from fetched data.
//!
//! The arbiter fetches the model bundle and the agreed input activation (its own blob store
//! first, then the parties' data planes over HTTP, hash-checked), runs exactly one layer,
//! and its metered operations equal that layer's operations. Missing or hostile data gives
//! the typed "unavailable" findings; a verdict is checked the same way a voter checks it.

use std::sync::Arc;
use std::time::Duration;

use agentic_client::blobs::{BlobStore, DEFAULT_MAX_BLOB};
use agentic_compute::activation::Activation;
use agentic_compute::bundle::Bundle;
use agentic_compute::registry;
use agentic_node::consensus::{Arbiter, Question};
use agentic_protocol::{Finding, Hash};

fn tiny_gpt_bundle() -> Vec<u8> {
    Bundle::of("tiny-gpt").unwrap().encode()
}

fn hash(bytes: &[u8]) -> Hash {
    Hash(*blake3::hash(bytes).as_bytes())
}

/// Asks until the background task settles (the proposer's path).
async fn settled(arbiter: &Arbiter, q: &Question, sources: &[String]) -> Finding {
    for _ in 0..600 {
        if let Some(f) = arbiter.finding(q, sources) {
            return f;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the arbiter never settled {q:?}");
}

/// Serves `store` like a provider's data plane does (`GET /v1/blobs/{hash}`).
async fn serve(store: Arc<BlobStore>) -> String {
    let app: axum::Router = agentic_client::blob_routes::routes(store);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    format!("http://{addr}")
}

#[tokio::test]
async fn referee_runs_one_layer_from_fetched_data_and_meters_exactly_it() {
    let loaded = registry::load("tiny-gpt").unwrap();
    let model = &loaded.model;
    let prompt = loaded
        .tokenizer
        .as_ref()
        .unwrap()
        .encode("The fox and the crow")
        .unwrap();
    let input = Activation::tokens(std::slice::from_ref(&prompt)).unwrap();
    let layers = model.layers();
    assert!(layers >= 3, "tiny-gpt has {layers} layers");
    // The agreed activation is the input of a middle layer, as after a bisection.
    let layer = layers / 2;
    let prefix = model.run_range(0..layer, input.clone()).unwrap();
    let agreed = prefix.output.clone();
    let agreed_bytes = agreed.canonical_bytes();
    let agreed_hash = hash(&agreed_bytes);
    assert_eq!(agreed_hash.0, agreed.hash().0);
    let expected_out = model.run_layer(layer, &agreed).unwrap().hash();
    let per_layer = model.meter(&input.input_shape()).unwrap();
    let whole: u64 = per_layer.iter().sum();

    // The party's data plane holds both blobs; the validator holds nothing.
    let dir = TempDir::new("referee");
    let party = Arc::new(BlobStore::open(dir.path().join("party"), DEFAULT_MAX_BLOB).unwrap());
    let bundle = tiny_gpt_bundle();
    let model_hash = hash(&bundle);
    party.put(&model_hash, &bundle).unwrap();
    party.put(&agreed_hash, &agreed_bytes).unwrap();
    let url = serve(party).await;
    let mine = Arc::new(BlobStore::open(dir.path().join("validator"), DEFAULT_MAX_BLOB).unwrap());
    let arbiter = Arbiter::new(mine.clone());

    let q = Question {
        model: model_hash,
        layer: layer as u32,
        input: agreed_hash,
    };
    // Without the party's address the data cannot be had.
    assert_eq!(settled(&arbiter, &q, &[]).await, Finding::ModelUnavailable);
    // With it: fetched, stored, run.
    let sources = vec!["http://127.0.0.1:9".to_string(), url.clone()];
    let found = arbiter_settle_fresh(&mine, &q, &sources).await;
    assert_eq!(found.0, Finding::Output(expected_out));
    assert!(mine.get(&agreed_hash).unwrap().is_some(), "kept the input");
    assert!(mine.get(&model_hash).unwrap().is_some(), "kept the model");
    // The referee's metered operations are exactly one layer's.
    assert_eq!(found.1, per_layer[layer]);
    assert!(found.1 < whole);

    // A voter agrees with the true verdict and refuses a false one or a false
    // "unavailable" claim.
    let voter = Arbiter::new(Arc::new(
        BlobStore::open(dir.path().join("voter"), DEFAULT_MAX_BLOB).unwrap(),
    ));
    assert!(
        voter
            .agrees(&q.verdict(Finding::Output(expected_out)), &sources)
            .await
    );
    assert!(
        !voter
            .agrees(&q.verdict(Finding::Output(Hash([9; 32]))), &sources)
            .await
    );
    assert!(
        !voter
            .agrees(&q.verdict(Finding::InputUnavailable), &sources)
            .await
    );

    // An input nobody has: unavailable; a layer the model lacks: out of range.
    let missing = Question {
        input: Hash([7; 32]),
        ..q
    };
    assert_eq!(
        settled(&arbiter, &missing, &sources).await,
        Finding::InputUnavailable
    );
    assert!(
        voter
            .agrees(&missing.verdict(Finding::InputUnavailable), &sources)
            .await
    );
    let beyond = Question {
        layer: layers as u32,
        ..q
    };
    assert_eq!(
        settled(&arbiter, &beyond, &sources).await,
        Finding::LayerOutOfRange
    );

    // Bytes that hash to the name but are no activation count as unavailable.
    let junk = b"not an activation".to_vec();
    mine.put(&hash(&junk), &junk).unwrap();
    let garbage = Question {
        input: hash(&junk),
        ..q
    };
    assert_eq!(
        settled(&arbiter, &garbage, &sources).await,
        Finding::InputUnavailable
    );
}

/// The availability probe (`ClaimUnavailable`): the model and the job's input fetched and
/// hash-checked, nothing executed; `Output(ZERO)` when both can be had.
#[tokio::test]
async fn availability_probe_fetches_both_blobs_and_runs_nothing() {
    use agentic_protocol::referee::AVAILABILITY_PROBE;
    let dir = TempDir::new("probe");
    let bundle = tiny_gpt_bundle();
    let model_hash = hash(&bundle);
    let input = b"a job input (a probe never decodes it)".to_vec();
    let input_hash = hash(&input);
    let q = Question {
        model: model_hash,
        layer: AVAILABILITY_PROBE,
        input: input_hash,
    };
    // A provider's data plane with the model only: the input is unavailable.
    let party = Arc::new(BlobStore::open(dir.path().join("party"), DEFAULT_MAX_BLOB).unwrap());
    party.put(&model_hash, &bundle).unwrap();
    let url = serve(party.clone()).await;
    let mine = Arc::new(BlobStore::open(dir.path().join("validator"), DEFAULT_MAX_BLOB).unwrap());
    let arbiter = Arbiter::new(mine.clone());
    assert_eq!(settled(&arbiter, &q, &[]).await, Finding::ModelUnavailable);
    let sources = vec![url];
    let (f, _) = arbiter_settle_fresh(&mine, &q, &sources).await;
    assert_eq!(f, Finding::InputUnavailable);
    assert!(mine.get(&model_hash).unwrap().is_some(), "kept the model");
    // A voter that cannot get the input either agrees it is unavailable.
    let voter = Arbiter::new(Arc::new(
        BlobStore::open(dir.path().join("voter"), DEFAULT_MAX_BLOB).unwrap(),
    ));
    assert!(
        voter
            .agrees(&q.verdict(Finding::InputUnavailable), &sources)
            .await
    );
    // Once the input is published (here: on the party's plane) both can be had: the
    // answer is `Output(ZERO)` and no layer ran. A voter refuses the stale
    // "unavailable" claim.
    party.put(&input_hash, &input).unwrap();
    let (f, ops) = arbiter_settle_fresh(&mine, &q, &sources).await;
    assert_eq!(f, Finding::Output(Hash::ZERO));
    assert_eq!(ops, 0, "a probe executes nothing");
    assert!(mine.get(&input_hash).unwrap().is_some(), "kept the input");
    assert!(
        !voter
            .agrees(&q.verdict(Finding::InputUnavailable), &sources)
            .await
    );
    assert!(
        voter
            .agrees(&q.verdict(Finding::Output(Hash::ZERO)), &sources)
            .await
    );
    // Another job's input that nobody published: unavailable, even from a validator
    // that fetches the model afresh.
    let fresh = Arc::new(BlobStore::open(dir.path().join("fresh"), DEFAULT_MAX_BLOB).unwrap());
    let missing = Question {
        input: Hash([5; 32]),
        ..q
    };
    let (f, _) = arbiter_settle_fresh(&fresh, &missing, &sources).await;
    assert_eq!(f, Finding::InputUnavailable);
}

/// A generation dispute that ends on stage 0's input leaf asks the referee to derive it
/// from the request and the transcript blobs: the prompt's tokens at step 0, the token
/// sampled at step t − 1 after; nothing runs, and bytes that are not a transcript, or a
/// step past it, are out of range.
#[tokio::test]
async fn input_leaf_questions_derive_stage0_input_from_request_and_transcript() {
    use agentic_compute::llm::stage::{tokens_leaf, transcript_bytes, GenerationRequest};
    use agentic_protocol::referee::INPUT_LEAF_BASE;
    let dir = TempDir::new("input-leaf");
    let request = GenerationRequest {
        prompt: vec![1, 17, 42],
        max_tokens: 8,
        sampler: agentic_compute::llm::Sampler::Greedy,
        stop: Vec::new(),
    }
    .encode();
    let transcript = transcript_bytes(&[7, 9, 11, 2]);
    let (rq, tr) = (hash(&request), hash(&transcript));
    let party = Arc::new(BlobStore::open(dir.path().join("party"), DEFAULT_MAX_BLOB).unwrap());
    party.put(&rq, &request).unwrap();
    party.put(&tr, &transcript).unwrap();
    let sources = vec![serve(party.clone()).await];
    let mine = Arc::new(BlobStore::open(dir.path().join("validator"), DEFAULT_MAX_BLOB).unwrap());
    let node = |tokens: &[u32]| {
        Finding::Output(Hash(agentic_protocol::merkle::hash_leaf(
            &tokens_leaf(tokens).0,
        )))
    };
    let q = |step: u32, model: Hash, input: Hash| Question {
        model,
        layer: INPUT_LEAF_BASE + step,
        input,
    };
    let (f, ops) = arbiter_settle_fresh(&mine, &q(0, rq, tr), &sources).await;
    assert_eq!(f, node(&[1, 17, 42]), "step 0: the prompt");
    assert_eq!(ops, 0, "nothing executed");
    let (f, _) = arbiter_settle_fresh(&mine, &q(3, rq, tr), &sources).await;
    assert_eq!(f, node(&[11]), "step 3: the token sampled at step 2");
    let (f, _) = arbiter_settle_fresh(&mine, &q(4, rq, tr), &sources).await;
    assert_eq!(f, Finding::LayerOutOfRange, "past the transcript");
    // The request named as the transcript: not a transcript.
    let (f, _) = arbiter_settle_fresh(&mine, &q(1, rq, rq), &sources).await;
    assert_eq!(f, Finding::LayerOutOfRange);
    // Blobs nobody serves.
    let (f, _) = arbiter_settle_fresh(&mine, &q(1, Hash([3; 32]), tr), &sources).await;
    assert_eq!(f, Finding::ModelUnavailable);
    let (f, _) = arbiter_settle_fresh(&mine, &q(1, rq, Hash([4; 32])), &sources).await;
    assert_eq!(f, Finding::InputUnavailable);
    // A voter re-derives the same answer.
    let voter = Arbiter::new(Arc::new(
        BlobStore::open(dir.path().join("voter"), DEFAULT_MAX_BLOB).unwrap(),
    ));
    assert!(
        voter
            .agrees(&q(3, rq, tr).verdict(node(&[11])), &sources)
            .await
    );
    assert!(
        !voter
            .agrees(&q(3, rq, tr).verdict(node(&[9])), &sources)
            .await
    );
}

/// A scratch directory removed on drop.
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("agentic-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }

    fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A fresh arbiter over `store`, settled on `q`: the finding and its metered ops.
async fn arbiter_settle_fresh(
    store: &Arc<BlobStore>,
    q: &Question,
    sources: &[String],
) -> (Finding, u64) {
    let arbiter = Arbiter::new(store.clone());
    let f = settled(&arbiter, q, sources).await;
    (f, arbiter.ops_of(q).unwrap_or(0))
}

/// A small training task (2 blocks, d = 16, AdamW) on the fables.
fn train_task() -> agentic_compute::train::task::TrainTask {
    use agentic_compute::train::task::{LrSchedule, TokenWidth, TrainTask};
    use agentic_compute::train::{AdamConfig, GptConfig, OptimizerConfig};
    TrainTask {
        config: GptConfig {
            n_layer: 2,
            n_head: 2,
            n_embd: 16,
            vocab_size: 256,
            n_positions: 12,
            layer_norm_epsilon: 1e-5,
        },
        optimizer: OptimizerConfig::Adam(AdamConfig {
            lr: 3e-3,
            beta1: 0.9,
            beta2: 0.99,
            eps: 1e-8,
            weight_decay: 0.01,
        }),
        schedule: LrSchedule::Constant,
        steps: 3,
        batch: 2,
        seq: 10,
        data_seed: 42,
        token_width: TokenWidth::U8,
        data: agentic_compute::train::shipped::CORPUS.as_bytes()[..2000].to_vec(),
    }
}

#[tokio::test]
async fn referee_runs_one_unit_of_one_training_step_from_a_fetched_carry() {
    use agentic_compute::train::task::Init;
    use agentic_compute::train::units::{carry_bytes_at, step_leaves, step_units, unit_ops};
    let task = train_task();
    let units = step_units(&task);
    assert_eq!(units, 2 * 2 + 5);
    // The state before step 1, and that step's unit leaves.
    let s0 = task.initial_state(Init::Seed(7)).unwrap();
    let (_, s1) = step_leaves(&task, &s0).unwrap();
    let (leaves, _) = step_leaves(&task, &s1).unwrap();
    // The disputed unit: the second block's forward pass (unit 2) of step 1.
    let unit = 2u32;
    let carry = carry_bytes_at(&task, &s1, unit).unwrap();
    let carry_hash = hash(&carry);
    assert_eq!(
        carry_hash.0, leaves[unit as usize].0,
        "the carry is leaf {unit}"
    );

    let dir = TempDir::new("referee-train");
    let party = Arc::new(BlobStore::open(dir.path().join("party"), DEFAULT_MAX_BLOB).unwrap());
    let task_bytes = task.encode();
    let task_hash = hash(&task_bytes);
    party.put(&task_hash, &task_bytes).unwrap();
    party.put(&carry_hash, &carry).unwrap();
    let url = serve(party).await;
    let sources = vec![url];
    let mine = Arc::new(BlobStore::open(dir.path().join("validator"), DEFAULT_MAX_BLOB).unwrap());

    // The question names unit `step × units + unit`.
    let q = Question {
        model: task_hash,
        layer: units + unit,
        input: carry_hash,
    };
    let (found, ops) = arbiter_settle_fresh(&mine, &q, &sources).await;
    assert_eq!(found, Finding::Output(leaves[unit as usize + 1]));
    // Exactly one unit's ops: a fraction of the step's.
    assert_eq!(ops, unit_ops(&task, unit));
    assert!(ops < task.step_ops());

    // A voter agrees with it and refuses another output.
    let voter = Arbiter::new(Arc::new(
        BlobStore::open(dir.path().join("voter"), DEFAULT_MAX_BLOB).unwrap(),
    ));
    assert!(voter.agrees(&q.verdict(found), &sources).await);
    assert!(
        !voter
            .agrees(&q.verdict(Finding::Output(Hash([3; 32]))), &sources)
            .await
    );

    // The same carry asked as another unit does not decode for that position: as good
    // as absent. A step outside the task is out of range.
    let other = Question {
        layer: units + unit + 1,
        ..q
    };
    assert_eq!(
        arbiter_settle_fresh(&mine, &other, &sources).await.0,
        Finding::InputUnavailable
    );
    let beyond = Question {
        layer: units * 3,
        ..q
    };
    assert_eq!(
        arbiter_settle_fresh(&mine, &beyond, &sources).await.0,
        Finding::LayerOutOfRange
    );
}
