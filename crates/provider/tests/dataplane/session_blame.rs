//! A generation session blames the stage that breaks the protocol: a real stage (the
//! session runtime on its data plane, smollm2-135m) paired with a scripted peer that
//! speaks the link protocol and then sends a malformed or out-of-order frame reports
//! exactly that peer's stage and provider (what the daemon turns into `ReplaceStage`,
//! penalized on chain as a missed deadline), keeps its own state, and gives up only
//! after the replacement patience, with a typed error.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use agentic_client::blobs::{BlobStore, DEFAULT_MAX_BLOB};
use agentic_compute::llm::generate::{load_gguf, LlmModel};
use agentic_compute::llm::stage::{GenerationRequest, StageRange};
use agentic_compute::llm::Sampler;
use agentic_compute::registry;
use agentic_protocol::coord::VivaldiNode;
use agentic_protocol::{Address, JobId};
use agentic_provider::dataplane::{router, PlaneState};
use agentic_provider::session::frame::Frame;
use agentic_provider::session::link;
use agentic_provider::session::run::{self, epoch_of, Peer, SessionError, SessionPlan};
use agentic_provider::session::Sessions;
use commonware_cryptography::ed25519::PrivateKey;
use commonware_cryptography::Signer as _;
use tokio::io::AsyncWriteExt as _;

fn model() -> Arc<LlmModel> {
    static M: OnceLock<Arc<LlmModel>> = OnceLock::new();
    M.get_or_init(|| {
        let path = registry::fetch_smollm2(&registry::smollm2_dir()).expect("fetch SmolLM2");
        Arc::new(load_gguf(&path).expect("load SmolLM2"))
    })
    .clone()
}

/// A provider's data plane on loopback: its endpoint and sessions registry.
struct Plane {
    key: PrivateKey,
    address: Address,
    endpoint: String,
    sessions: Arc<Sessions>,
    store: Arc<BlobStore>,
}

async fn plane(seed: u64, dir: &std::path::Path) -> Plane {
    let key = PrivateKey::from_seed(seed);
    let address = Address::from(&key.public_key());
    let store =
        Arc::new(BlobStore::open(dir.join(format!("blobs{seed}")), DEFAULT_MAX_BLOB).unwrap());
    let sessions = Arc::new(Sessions::new(key.clone()));
    let state = PlaneState {
        store: store.clone(),
        inbox: Arc::new(Mutex::new(BTreeMap::new())),
        address,
        vivaldi: Arc::new(Mutex::new(VivaldiNode::default())),
        extra_rtt: Duration::ZERO,
        sessions: sessions.clone(),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        let _ = axum::serve(listener, router(state)).await;
    });
    Plane {
        key,
        address,
        endpoint,
        sessions,
        store,
    }
}

fn peers(a: &Plane, b: &Plane) -> Vec<Peer> {
    vec![
        Peer {
            range: StageRange::new(0, 16),
            provider: a.address,
            endpoint: a.endpoint.clone(),
        },
        Peer {
            range: StageRange::new(16, 16),
            provider: b.address,
            endpoint: b.endpoint.clone(),
        },
    ]
}

fn plan(job: JobId, stage: u32, peers: Vec<Peer>, m: &LlmModel) -> SessionPlan {
    SessionPlan {
        job,
        stage,
        stages: peers,
        request: GenerationRequest {
            prompt: m.encode_prompt("Say hello.", true).unwrap(),
            max_tokens: 6,
            sampler: Sampler::Greedy,
            stop: Vec::new(),
        },
        patience: Duration::from_secs(10),
        replace_patience: Duration::from_secs(1),
        link_delay: Duration::ZERO,
        requester: agentic_protocol::Address([9; 32]),
        fault: None,
    }
}

/// What the scripted peer sends once the session reached it.
#[derive(Clone, Copy, Debug)]
enum Bad {
    /// A token for a step that is not due.
    WrongStep,
    /// Bytes that are no frame.
    Garbage,
    /// Rows of the wrong width.
    RaggedRows,
}

/// Runs the honest stage `honest` against a scripted peer that misbehaves with `bad`;
/// returns what the honest stage reported and how its session ended.
async fn play(
    job: JobId,
    honest: &Plane,
    fake: &Plane,
    honest_stage: u32,
    bad: Bad,
) -> (Vec<(JobId, u32, Address)>, SessionError) {
    let m = model();
    let lineup = if honest_stage == 0 {
        peers(honest, fake)
    } else {
        peers(fake, honest)
    };
    let epoch = epoch_of(job, &lineup);
    let p = plan(job, honest_stage, lineup, &m);
    let (sessions, store) = (honest.sessions.clone(), honest.store.clone());
    let task = tokio::spawn(run::run(p, m, sessions, store));
    let fake_stage = 1 - honest_stage;
    // The scripted peer: dial the honest stage, take its link.
    let mut down = link::dial(
        &honest.endpoint,
        &fake.key,
        job,
        (fake_stage, honest_stage),
        epoch,
        honest.address,
    )
    .await
    .expect("dial the honest stage");
    let (_hello, mut up) = fake
        .sessions
        .take(
            job,
            (honest_stage, fake_stage),
            epoch,
            Duration::from_secs(10),
        )
        .await
        .expect("the honest stage links to us");
    if fake_stage == 1 {
        // As the last stage: our (empty) transcript, then the honest stage 0 resumes
        // and sends the prompt's rows.
        Frame::Sync { tokens: vec![] }
            .write(&mut down)
            .await
            .unwrap();
        let resume = Frame::read(&mut up, 1 << 20, 64).await.unwrap();
        assert_eq!(resume, Frame::Resume { tokens: vec![] });
        let rows = Frame::read(&mut up, 1 << 20, 64).await.unwrap();
        assert!(matches!(rows, Frame::Rows { step: 0, .. }), "{rows:?}");
    } else {
        // As stage 0: the honest last stage's transcript comes first.
        let sync = Frame::read(&mut up, 1 << 20, 64).await.unwrap();
        assert_eq!(sync, Frame::Sync { tokens: vec![] });
        Frame::Resume { tokens: vec![] }
            .write(&mut down)
            .await
            .unwrap();
    }
    match bad {
        Bad::WrongStep => Frame::Token {
            step: 5,
            token: 1,
            last: false,
        }
        .write(&mut down)
        .await
        .unwrap(),
        Bad::Garbage => {
            down.write_all(&[9, 0, 0, 0, 0, 0, 0, 0, 0]).await.unwrap();
            down.flush().await.unwrap();
        }
        Bad::RaggedRows => Frame::Rows {
            step: 0,
            rows: vec![0.5; 3],
        }
        .write(&mut down)
        .await
        .unwrap(),
    }
    // The report stands while the session waits for the chain's replacement (the
    // daemon reads it every turn); the session forgets it when it ends.
    let mut faults = Vec::new();
    let until = tokio::time::Instant::now() + Duration::from_secs(60);
    while !task.is_finished() && tokio::time::Instant::now() < until {
        let now = honest.sessions.faults();
        if !now.is_empty() {
            faults = now;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let end = task.await.unwrap().expect_err("no result without the peer");
    assert!(honest.sessions.faults().is_empty(), "forgotten at the end");
    (faults, end)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_sending_a_bad_frame_is_the_stage_blamed() {
    let dir = std::env::temp_dir().join(format!("agentic-blame-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let a = plane(201, &dir).await;
    let b = plane(202, &dir).await;
    let cases = [
        (0, Bad::WrongStep),
        (0, Bad::Garbage),
        (1, Bad::RaggedRows),
        (1, Bad::Garbage),
    ];
    for (i, (honest_stage, bad)) in cases.into_iter().enumerate() {
        let job = JobId(100 + i as u64);
        let (honest, fake) = if honest_stage == 0 {
            (&a, &b)
        } else {
            (&b, &a)
        };
        let (faults, end) = play(job, honest, fake, honest_stage, bad).await;
        let fake_stage = 1 - honest_stage;
        assert_eq!(
            faults,
            vec![(job, fake_stage, fake.address)],
            "{bad:?}: the peer's stage and provider are blamed"
        );
        assert!(
            matches!(end, SessionError::NotReplaced { stage, .. } if stage == fake_stage),
            "{bad:?}: {end}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
