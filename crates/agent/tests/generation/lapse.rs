//! A stage that lapses after the session ran to its end does not cost the honest
//! stages their pay. On a local market (one validator with real consensus, provider
//! daemons), smollm2-135m over three stages; the last stage's provider runs
//! `--misbehave lapse`: it samples and streams every token, then never commits — and
//! is killed once the requester has the text, so neither its stream nor its copy of
//! the transcript is there any more. The ledger penalizes it at its commit deadline,
//! excludes it and matches the stage again (the other stages committed: the session
//! ended).
//!
//! * Seven providers: the replacement fetches the transcript from stage 0, rebuilds
//!   the stage by one prefill and commits; every stage is audited and paid once,
//!   exactly its metered ops × its price.
//! * Five: the other two audit stages 0 and 1, so nobody can take stage 2 over; at the
//!   match timeout the session is salvaged (`SessionSalvaged`): stages 0 and 1 reveal
//!   — their daemons go on although the job failed — are audited and paid exactly as
//!   above, stage 2 is cancelled, the rest of the escrow comes back (`JobSettled`).
//!
//! Either way the lapsed provider is paid nothing and pays exactly the miss penalty,
//! and the requester's balance is exact.

use std::time::{Duration, Instant};

use agentic_agent::requester::{GenerationInput, JobInput, JobRequest, PlacementChoice, Requester};
use agentic_compute::llm::Sampler;
use agentic_protocol::event::Event;
use agentic_protocol::state::{Job, JobStatus, StagePhase};
use agentic_protocol::types::VerificationLevel;
use agentic_protocol::{Address, Amount};
use agentic_provider::local::{self, MarketSpec};
use agentic_provider::misbehave::Misbehaviour;

const PROMPT: &str = "Name three colours of the sea.";
const TOKENS: u32 = 24;
const NAMES: [&str; 7] = ["q1", "q2", "q3", "q4", "q5", "q6", "q7"];

#[test]
fn a_stage_that_lapses_after_the_session_is_rebuilt_and_every_stage_is_paid() {
    lapse(7);
}

#[test]
fn a_stage_that_lapses_with_nobody_to_take_it_over_leaves_the_others_paid() {
    lapse(5);
}

/// The lapse on a market of `count` stage providers (7: rebuilt; 5: salvaged).
fn lapse(count: usize) {
    let salvage = count < 7;
    let dir = std::env::temp_dir().join(format!("agentic-lapse-{count}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut users = vec!["bob"];
    users.extend(&NAMES[..count]);
    let spec = MarketSpec::new(1, &users)
        .param("reveal_window", 500)
        .param("challenge_window", 4)
        .param("match_timeout", 60)
        .param("audit_window", 100);
    local::run(&dir, spec, move |net| async move {
        let c = net.client();
        let mut providers = Vec::new();
        for (i, name) in NAMES[..count].iter().enumerate() {
            let p = net
                .provider(name, 1_000 + 100 * i as u128, |cfg| {
                    if i == 2 {
                        cfg.misbehave = Some(Misbehaviour::Lapse);
                    }
                })
                .await
                .unwrap();
            providers.push(Some(p));
        }
        let addrs: Vec<Address> = providers
            .iter()
            .map(|p| p.as_ref().unwrap().address())
            .collect();
        let lapsed = addrs[2];
        let bob = net.key("bob");
        let req = Requester::new(c.clone(), bob.key.clone());
        let input = JobInput::Generate(GenerationInput {
            prompt: PROMPT.into(),
            chat: true,
            max_tokens: TOKENS,
            sampler: Sampler::Sample {
                seed: 5,
                temperature: 0.7,
                top_k: 40,
                top_p: 0.9,
            },
            stop: Some(Vec::new()), // no stop token: all the tokens
        });
        let (m, _, _) = agentic_agent::requester::generate::load_llm("smollm2-135m").unwrap();
        let params = c.params().await.unwrap();
        let mut r = JobRequest::new("smollm2-135m", input);
        r.stages = 3;
        r.max_price = Amount(10_000);
        r.deadline = 150;
        r.verification = VerificationLevel::Audited;
        r.placement = PlacementChoice::Named(addrs[..3].to_vec());
        let prepared = req.prepare(&r).await.expect("prepare");
        let request =
            agentic_compute::llm::stage::GenerationRequest::decode(&prepared.input).unwrap();
        let local = m.generate_request(&request, |_| {}).unwrap().tokens;
        assert_eq!(local.len(), TOKENS as usize);

        let lapsed_bonded = c.account(&lapsed).await.unwrap().account.bonded;
        let lapsed_balance = c.account(&lapsed).await.unwrap().account.balance;
        let sub = req.submit_detailed(&prepared).await.expect("submit");
        let after_submit = c.account(&bob.address()).await.unwrap().account.balance;
        let t0 = Instant::now();
        let streamed = req
            .stream(sub.job, Duration::from_secs(300), |_, _| {})
            .await
            .expect("the session streams every token");
        assert_eq!(streamed.tokens, local, "the tokens are a local run's");
        eprintln!(
            "job {}: {} tokens streamed in {:?}; killing the lapsed last stage",
            sub.job.0,
            streamed.tokens.len(),
            t0.elapsed()
        );
        // It never commits; now it is gone, with its stream and its transcript.
        providers[2].take().unwrap().kill();

        let (job, events) = if salvage {
            salvaged(&c, &req, sub.job, &streamed.tokens).await
        } else {
            super::completed_and_audited(
                &c,
                &req,
                sub.job,
                &streamed.tokens,
                Duration::from_secs(400),
            )
            .await
        };
        eprintln!("job {}: settled after {:?}", sub.job.0, t0.elapsed());
        let missed: Vec<(u32, Address, Amount)> = events
            .iter()
            .filter_map(|e| match e {
                Event::DeadlineMissed {
                    stage,
                    provider,
                    penalty,
                    ..
                } => Some((*stage, *provider, *penalty)),
                _ => None,
            })
            .collect();
        assert_eq!(missed.len(), 1, "one missed deadline: {events:#?}");
        let (stage, who, penalty) = missed[0];
        assert_eq!((stage, who), (2, lapsed));
        assert!(penalty > Amount::ZERO);
        assert_eq!(
            events.iter().any(|e| matches!(e, Event::JobFailed { .. })),
            salvage
        );
        for (s, st) in job.stages.iter().enumerate() {
            let holder = st.slots[0].assignment.as_ref().map(|a| a.provider);
            if s < 2 {
                assert_eq!(holder, Some(addrs[s]), "stage {s} kept its provider");
            } else if salvage {
                assert_eq!(st.phase, StagePhase::Cancelled, "stage 2 was dropped");
            } else {
                assert_ne!(holder, Some(lapsed), "stage 2 was rebuilt by another");
            }
        }
        let paid_stages = if salvage { 2 } else { 3 };
        let paid_total = super::check_stage_pay(&events, &job, &prepared.spec, TOKENS, paid_stages);
        let audit_fees = super::audit_fees(&events);
        // The lapsed provider: nothing paid, exactly the miss penalty taken.
        let acct = c.account(&lapsed).await.unwrap().account;
        assert_eq!(
            acct.balance, lapsed_balance,
            "the lapsed provider is paid nothing"
        );
        assert_eq!(lapsed_bonded.0 - acct.bonded.0, penalty.0);
        // The requester: the escrow less what was paid, plus its share of the penalty.
        let share = penalty.mul_ppm(params.slash_requester_ppm);
        let final_balance = c.account(&bob.address()).await.unwrap().account.balance;
        assert_eq!(
            final_balance.0,
            after_submit.0 + sub.escrow.0 - paid_total - audit_fees + share.0,
            "the requester's balance is exact"
        );
    })
    .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

/// Waits for the salvaged job `id` to settle, then checks that it failed, that
/// `SessionSalvaged` kept stages 0 and 1, that both were audited by prefill (agreed)
/// and that stage 0's committed input names `tokens`; the job and its events.
async fn salvaged(
    c: &agentic_client::Client,
    req: &Requester,
    id: agentic_protocol::JobId,
    tokens: &[u32],
) -> (Job, Vec<Event>) {
    let job = super::settled(c, id, Duration::from_secs(400)).await;
    assert_eq!(job.status, JobStatus::Failed, "{job:#?}");
    let events = req.job_events(id).await.unwrap();
    assert!(
        events.contains(&Event::SessionSalvaged {
            job: id,
            stages: vec![0, 1]
        }),
        "{events:#?}"
    );
    assert!(events.iter().any(|e| matches!(e, Event::JobSettled { .. })));
    let agreed: Vec<u32> = events
        .iter()
        .filter_map(|e| match e {
            Event::AuditAgreed { stage, .. } => Some(*stage),
            _ => None,
        })
        .collect();
    assert_eq!(agreed.len(), 2, "stages 0 and 1 audited: {events:#?}");
    let fed = job.stages[0].result.expect("stage 0 revealed").input;
    assert_eq!(fed, agentic_compute::llm::stage::tokens_hash(tokens));
    (job, events)
}
