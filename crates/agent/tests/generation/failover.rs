//! A generation session survives the death of any one of its stage providers: on a
//! local market (one validator with real consensus, provider daemons), three generation
//! jobs of smollm2-135m over three stages run one after another, and in each the
//! provider of a different stage (0, then 1, then 2) is killed mid-generation, as a
//! crash would (no goodbye). The survivors report it (`ReplaceStage`), the ledger
//! matches a replacement, the replacement rebuilds its cache by one prefill of the
//! tokens so far, and the requester's stream goes on: every job streams exactly the
//! tokens of one local run, each index once; every stage is paid once, by the provider
//! that holds it at the end, exactly its metered ops × its price; the dead provider is
//! paid nothing and pays exactly the miss penalty (burned whole: a report pays nobody);
//! the requester's balance is exact.

use std::time::{Duration, Instant};

use agentic_agent::requester::{GenerationInput, JobInput, JobRequest, PlacementChoice, Requester};
use agentic_compute::llm::Sampler;
use agentic_protocol::event::Event;
use agentic_protocol::types::VerificationLevel;
use agentic_protocol::{Address, Amount, TxBody};
use agentic_provider::local::{self, MarketSpec};
use agentic_provider::Provider;

const PROMPT: &str = "Write a short poem about the sea.";
const TOKENS: u32 = 48;
/// The requester has seen this many tokens when the stage's provider is killed.
const KILL_AT: u32 = 8;
const NAMES: [&str; 10] = ["p1", "p2", "p3", "p4", "p5", "p6", "p7", "p8", "p9", "p10"];

#[test]
fn each_stage_provider_killed_mid_generation_is_replaced_and_the_stream_goes_on() {
    let dir = std::env::temp_dir().join(format!("agentic-failover-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut users = vec!["alice"];
    users.extend(NAMES);
    let spec = MarketSpec::new(1, &users)
        .param("reveal_window", 500)
        .param("challenge_window", 4)
        .param("match_timeout", 60)
        .param("audit_window", 100);
    local::run(&dir, spec, |net| async move {
        let c = net.client();
        let mut providers: Vec<Option<Provider>> = Vec::new();
        for (i, name) in NAMES.iter().enumerate() {
            // Each hop 15 ms one way: a session long enough to kill a stage in.
            let p = net
                .provider(name, 1_000 + 100 * i as u128, |cfg| {
                    cfg.link_delay = Duration::from_millis(15);
                })
                .await
                .unwrap();
            providers.push(Some(p));
        }
        let alice = net.key("alice");
        let req = Requester::new(c.clone(), alice.key.clone());
        let sampler = Sampler::Sample {
            seed: 11,
            temperature: 0.8,
            top_k: 40,
            top_p: 0.95,
        };
        let input = JobInput::Generate(GenerationInput {
            prompt: PROMPT.into(),
            chat: true,
            max_tokens: TOKENS,
            sampler,
            stop: Some(Vec::new()), // no stop token: all the tokens
        });
        let (m, _, _) = agentic_agent::requester::generate::load_llm("smollm2-135m").unwrap();
        let mut expected: Option<Vec<u32>> = None;

        for victim_stage in 0..3usize {
            // The next three live providers hold the stages, in order.
            let live: Vec<usize> = (0..NAMES.len())
                .filter(|&i| providers[i].is_some())
                .collect();
            let holders: Vec<usize> = live[..3].to_vec();
            let addrs: Vec<Option<Address>> = providers
                .iter()
                .map(|p| p.as_ref().map(|p| p.address()))
                .collect();
            let addr = |i: usize| addrs[i].unwrap();
            let mut r = JobRequest::new("smollm2-135m", input.clone());
            r.stages = 3;
            r.max_price = Amount(10_000);
            r.deadline = 400;
            r.verification = VerificationLevel::Audited;
            r.placement = PlacementChoice::Named(holders.iter().map(|&i| addr(i)).collect());
            let prepared = req.prepare(&r).await.expect("prepare");
            let request =
                agentic_compute::llm::stage::GenerationRequest::decode(&prepared.input).unwrap();
            let local = expected
                .get_or_insert_with(|| m.generate_request(&request, |_| {}).unwrap().tokens)
                .clone();
            assert_eq!(local.len(), TOKENS as usize);

            let sub = req.submit_detailed(&prepared).await.expect("submit");
            let after_submit = c.account(&alice.address()).await.unwrap().account.balance;
            let escrow = sub.escrow;

            // Stream in the background; kill the victim once KILL_AT tokens arrived.
            let (seen_tx, mut seen_rx) = tokio::sync::mpsc::unbounded_channel::<u32>();
            let streamer = {
                let req = Requester::new(c.clone(), alice.key.clone());
                let job = sub.job;
                tokio::spawn(async move {
                    let mut seen: Vec<u32> = Vec::new();
                    let s = req
                        .stream(job, Duration::from_secs(300), |i, t| {
                            assert_eq!(i as usize, seen.len(), "each token once, in order");
                            seen.push(t);
                            let _ = seen_tx.send(i + 1);
                        })
                        .await;
                    (s, seen)
                })
            };
            let t0 = Instant::now();
            loop {
                let n = tokio::time::timeout(Duration::from_secs(120), seen_rx.recv())
                    .await
                    .expect("tokens flow before the kill")
                    .expect("the stream ended before the kill");
                if n >= KILL_AT {
                    break;
                }
            }
            let victim = holders[victim_stage];
            let victim_addr = addr(victim);
            let victim_bonded = c.account(&victim_addr).await.unwrap().account.bonded;
            providers[victim].take().unwrap().kill();
            eprintln!(
                "job {}: killed stage {victim_stage}'s provider {} after {KILL_AT} tokens ({:?})",
                sub.job.0,
                NAMES[victim],
                t0.elapsed()
            );
            let (streamed, seen) = streamer.await.unwrap();
            let streamed = streamed.expect("the stream goes on after the kill");
            eprintln!(
                "job {}: {} tokens streamed in {:?}",
                sub.job.0,
                streamed.tokens.len(),
                t0.elapsed()
            );
            assert_eq!(streamed.tokens, seen);
            assert_eq!(streamed.tokens, local, "the tokens are a local run's");

            // The job settles: every stage audited and agreed, each paid once.
            let (job, events) = super::completed_and_audited(
                &c,
                &req,
                sub.job,
                &streamed.tokens,
                Duration::from_secs(300),
            )
            .await;
            let replaced: Vec<(u32, Address, Amount)> = events
                .iter()
                .filter_map(|e| match e {
                    Event::StageReplaced {
                        stage,
                        provider,
                        penalty,
                        ..
                    } => Some((*stage, *provider, *penalty)),
                    _ => None,
                })
                .collect();
            assert_eq!(replaced.len(), 1, "one replacement: {events:#?}");
            let (stage, who, penalty) = replaced[0];
            assert_eq!((stage as usize, who), (victim_stage, victim_addr));
            assert!(penalty > Amount::ZERO);
            for (s, st) in job.stages.iter().enumerate() {
                let a = st.slots[0].assignment.as_ref().unwrap();
                if s == victim_stage {
                    assert_ne!(a.provider, victim_addr, "stage {s} was replaced");
                } else {
                    assert_eq!(a.provider, addr(holders[s]), "stage {s} kept its provider");
                }
            }
            let paid_total = super::check_stage_pay(&events, &job, &prepared.spec, TOKENS, 3);
            let audit_fees = super::audit_fees(&events);

            // The dead provider: nothing paid, exactly the miss penalty taken.
            assert!(!events.iter().any(|e| matches!(e,
                Event::StagePaid { provider, .. } if *provider == victim_addr)));
            let now_bonded = c.account(&victim_addr).await.unwrap().account.bonded;
            assert_eq!(
                victim_bonded.0 - now_bonded.0,
                penalty.0,
                "the dead provider pays the penalty"
            );
            // The requester: the escrow less what was paid (a reported provider's
            // penalty is burned whole: nobody earns from a report).
            let final_balance = c.account(&alice.address()).await.unwrap().account.balance;
            assert_eq!(
                final_balance.0,
                after_submit.0 + escrow.0 - paid_total - audit_fees,
                "the requester's balance is exact"
            );

            // Its operator retires the dead provider so no later job is matched to it.
            let key = net.key(NAMES[victim]).key;
            c.send(&key, TxBody::Retire, Duration::from_secs(30))
                .await
                .expect("retire the dead provider");
        }
    })
    .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
