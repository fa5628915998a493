//! A generation job on a local market (one validator with real consensus, provider
//! daemons with their data planes): smollm2-135m split over three providers runs as
//! one session, streams its tokens to the requester — the same tokens as one local
//! run with the same seed — and every stage is paid exactly its metered ops × its
//! price after an audit by prefill agreed with it.

/// Each stage provider killed mid-generation in turn (one test binary with this file:
/// a link of the whole stack saved).
#[path = "generation/failover.rs"]
mod failover;

/// A stage provider that runs the session and never commits: the stage is rebuilt.
#[path = "generation/lapse.rs"]
mod lapse;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use agentic_agent::requester::{GenerationInput, JobInput, JobRequest, Requester};
use agentic_compute::llm::stage::{self, StageInput, StageOutput, StageRange, StageSession};
use agentic_compute::llm::Sampler;
use agentic_protocol::event::Event;
use agentic_protocol::state::{Job, JobStatus};
use agentic_protocol::tx::JobSpec;
use agentic_protocol::types::VerificationLevel;
use agentic_protocol::{Address, Amount};
use agentic_provider::local::{self, MarketSpec};

const PROMPT: &str = "Name three colours of the rainbow.";
const TOKENS: u32 = 64;

#[test]
fn a_three_stage_generation_streams_a_local_runs_tokens_and_pays_metered_ops() {
    let dir = std::env::temp_dir().join(format!("agentic-generation-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let spec = MarketSpec::new(1, &["alice", "p1", "p2", "p3", "p4", "p5", "p6"])
        .param("reveal_window", 500)
        .param("challenge_window", 4)
        .param("match_timeout", 40)
        .param("audit_window", 100);
    local::run(&dir, spec, |net| async move {
        let c = net.client();
        let mut providers = Vec::new();
        for (i, name) in ["p1", "p2", "p3", "p4", "p5", "p6"].iter().enumerate() {
            providers.push(
                net.provider(name, 1_000 + 100 * i as u128, |_| {})
                    .await
                    .unwrap(),
            );
        }
        let alice = net.key("alice");
        let req = Requester::new(c.clone(), alice.key.clone());
        let sampler = Sampler::Sample {
            seed: 7,
            temperature: 0.8,
            top_k: 40,
            top_p: 0.95,
        };
        let mut r = JobRequest::new(
            "smollm2-135m",
            JobInput::Generate(GenerationInput {
                prompt: PROMPT.into(),
                chat: true,
                max_tokens: TOKENS,
                sampler,
                stop: Some(Vec::new()), // no stop token: all 64 tokens
            }),
        );
        r.stages = 3;
        r.max_price = Amount(10_000);
        r.deadline = 400;
        r.verification = VerificationLevel::Audited;
        let prepared = req.prepare(&r).await.expect("prepare");
        let g = prepared.spec.generation.expect("a generation spec");
        assert_eq!(g.max_tokens, TOKENS);

        let mut before = BTreeMap::new();
        for p in &providers {
            before.insert(p.address(), c.account(&p.address()).await.unwrap().account);
        }
        let sub = req.submit_detailed(&prepared).await.expect("submit");
        assert_eq!(
            sub.uploaded_bytes,
            prepared.input.len() as u64,
            "the model is not uploaded"
        );
        let t0 = Instant::now();
        let mut seen = Vec::new();
        let streamed = req
            .stream(sub.job, Duration::from_secs(300), |i, t| {
                assert_eq!(i as usize, seen.len(), "each token once, in order");
                seen.push(t);
            })
            .await
            .expect("stream");
        eprintln!(
            "{} tokens streamed, first after {:?}, all after {:?}",
            streamed.tokens.len(),
            streamed.first_token,
            t0.elapsed()
        );
        assert_eq!(streamed.tokens, seen);
        assert_eq!(streamed.tokens.len(), TOKENS as usize);

        // One local whole-model run with the same request gives the same tokens.
        let (m, _, _) = agentic_agent::requester::generate::load_llm("smollm2-135m").unwrap();
        let request =
            agentic_compute::llm::stage::GenerationRequest::decode(&prepared.input).unwrap();
        let local = m.generate_request(&request, |_| {}).unwrap();
        assert_eq!(
            streamed.tokens, local.tokens,
            "the market's tokens are a local run's"
        );

        // The job settles: every stage audited and agreed, each paid exactly.
        let (job, events) = completed_and_audited(
            &c,
            &req,
            sub.job,
            &streamed.tokens,
            Duration::from_secs(300),
        )
        .await;

        // Each stage's metered ops, measured by running its layers locally as a
        // session of its own, are what the ledger paid for at the stage's price.
        let ranges: Vec<StageRange> = prepared
            .spec
            .stages
            .iter()
            .map(|s| StageRange {
                first: s.first_layer as usize,
                count: s.layers as usize,
            })
            .collect();
        let metered = split_ops(&m.model, &ranges, &request.prompt, &local.tokens);
        let mut holders: Vec<Address> = Vec::new();
        for (s, st) in job.stages.iter().enumerate() {
            let a = st.slots[0].assignment.as_ref().unwrap();
            holders.push(a.provider);
            let r = st.result.unwrap();
            assert_eq!(r.steps, TOKENS);
            let ops = prepared.spec.stages[s]
                .generation_ops(g.prompt_tokens, r.steps)
                .unwrap();
            assert_eq!(
                ops, metered[s],
                "stage {s}: the ledger's ops are the runtime's"
            );
            let paid: u128 = events
                .iter()
                .filter_map(|e| match e {
                    Event::StagePaid {
                        stage,
                        provider,
                        amount,
                        ..
                    } if *stage as usize == s && *provider == a.provider => Some(amount.0),
                    _ => None,
                })
                .sum();
            assert_eq!(
                paid,
                Amount::cost(ops, a.price).unwrap().0,
                "stage {s} paid"
            );
        }
        holders.sort();
        holders.dedup();
        assert_eq!(holders.len(), 3, "three providers");
        assert_eq!(
            stage::tokens_hash(&streamed.tokens),
            job.stages[2].result.unwrap().output
        );
    })
    .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

/// Waits, up to `patience`, until job `id` has ended and its escrow is spent or
/// refunded; the job then.
async fn settled(
    c: &agentic_client::Client,
    id: agentic_protocol::JobId,
    patience: Duration,
) -> Job {
    let until = Instant::now() + patience;
    loop {
        let j = c.job(id).await.unwrap();
        if j.status != JobStatus::Active && j.escrow == Amount::ZERO {
            return j;
        }
        assert!(Instant::now() < until, "job not settled: {j:#?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits for job `id` to settle (`settled`), then checks that it completed, that the
/// last stage's committed output names `tokens`, and that each of its three stages'
/// audits agreed; the job and its events.
async fn completed_and_audited(
    c: &agentic_client::Client,
    req: &Requester,
    id: agentic_protocol::JobId,
    tokens: &[u32],
    patience: Duration,
) -> (Job, Vec<Event>) {
    let job = settled(c, id, patience).await;
    assert_eq!(job.status, JobStatus::Completed, "{job:#?}");
    assert!(req.check_transcript(id, tokens).await.unwrap());
    let events = req.job_events(id).await.unwrap();
    let agreed = events
        .iter()
        .filter(|e| matches!(e, Event::AuditAgreed { .. }))
        .count();
    assert_eq!(
        agreed, 3,
        "each stage's audit by prefill agreed: {events:#?}"
    );
    (job, events)
}

/// Each of the first `stages` stages of a finished generation job was paid once, to
/// the provider holding it at the end, exactly the stage's metered ops over the steps
/// it revealed (`steps` each) × its price; returns the total paid.
fn check_stage_pay(events: &[Event], job: &Job, spec: &JobSpec, steps: u32, stages: usize) -> u128 {
    let prompt = spec.generation.expect("a generation job").prompt_tokens;
    let mut total = 0;
    for (s, st) in job.stages.iter().enumerate().take(stages) {
        let a = st.slots[0].assignment.as_ref().unwrap();
        let r = st.result.unwrap();
        assert_eq!(r.steps, steps);
        let ops = spec.stages[s].generation_ops(prompt, r.steps).unwrap();
        let pays: Vec<(Address, u128)> = events
            .iter()
            .filter_map(|e| match e {
                Event::StagePaid {
                    stage,
                    provider,
                    amount,
                    ..
                } if *stage as usize == s => Some((*provider, amount.0)),
                _ => None,
            })
            .collect();
        assert_eq!(
            pays,
            vec![(a.provider, Amount::cost(ops, a.price).unwrap().0)],
            "stage {s}: paid once, to its provider, its ops × its price"
        );
        total += pays[0].1;
    }
    total
}

/// The audit fees a job's events paid.
fn audit_fees(events: &[Event]) -> u128 {
    events
        .iter()
        .filter_map(|e| match e {
            Event::AuditPaid { fee, .. } | Event::AuditAgreed { fee, .. } => Some(fee.0),
            _ => None,
        })
        .sum()
}

/// The ops each stage meters when the generation is run stage by stage locally.
fn split_ops(
    m: &agentic_compute::llm::llama::Llama,
    ranges: &[StageRange],
    prompt: &[u32],
    tokens: &[u32],
) -> Vec<u64> {
    let mut sessions: Vec<StageSession<'_>> = ranges
        .iter()
        .map(|r| StageSession::new(m, *r).unwrap())
        .collect();
    let mut ops = vec![0u64; ranges.len()];
    let mut input = prompt.to_vec();
    for &next in tokens {
        let mut x = StageInput::Tokens(input.clone());
        for (s, sess) in sessions.iter_mut().enumerate() {
            let r = sess.step(x).unwrap();
            ops[s] += r.ops;
            x = match r.output {
                StageOutput::Rows(rows) => StageInput::Rows(rows),
                StageOutput::Logits(_) => StageInput::Tokens(Vec::new()),
            };
        }
        input = vec![next];
    }
    ops
}
