//! A cheating stage in a generation session, on a local market (one validator with real
//! consensus, provider daemons with their data planes): smollm2-135m over three
//! providers, the last one started with `perturb-step` (its middle block's rows negated
//! at step 3, generated on from there). The prefill audit of its stage (from the input
//! rows the cheater received, checked against the input claim it published) disagrees, the
//! descent over the two (step, layer) trace trees lands on exactly that step and layer,
//! the cheater names the layer's input rows for the prefix, the validators re-run that
//! one block at that step, and the cheater is slashed by exactly `slash_ppm` of its stake,
//! split by the slash rules; the honest stages are paid, the requester gets the rest.

use std::time::Duration;

use crate::common::*;
use agentic_compute::llm::stage::{self, GenerationRequest, StageRange};
use agentic_compute::llm::Sampler;
use agentic_compute::registry;
use agentic_protocol::event::{Event, Resolution};
use agentic_protocol::state::{DisputeKind, DisputePhase, JobStatus};
use agentic_protocol::tx::{GenerationSpec, JobSpec, Requirements, StageSpec};
use agentic_protocol::types::VerificationLevel;
use agentic_protocol::{Amount, Hash, Height};
use agentic_provider::misbehave::perturb_step;
use agentic_provider::Misbehaviour;
use futures::StreamExt;

const TOKENS: u32 = 12;
const PRICE: u128 = 1_000;
const CHEAT_PRICE: u128 = 1_100;

#[test]
fn a_perturbed_layer_at_one_step_is_bisected_to_that_step_and_layer_and_slashed() {
    with_market(
        "generation-dispute",
        1,
        &["alice", "p0", "p1", "cheat", "a1", "a2", "a3"],
        &[
            ("reveal_window", 500),
            ("challenge_window", 4),
            ("match_timeout", 40),
            ("audit_window", 100),
            ("dispute_timeout", 20),
        ],
        |net| async move {
            let c = net.client();
            let params = params(&c).await;
            let path = registry::fetch_smollm2(&registry::smollm2_dir()).expect("SmolLM2");
            let m = agentic_compute::llm::generate::load_gguf(&path).expect("load SmolLM2");
            let mut providers = Vec::new();
            for name in ["p0", "p1", "a1", "a2", "a3"] {
                providers.push(net.provider(name, PRICE, |_| {}).await.unwrap());
            }
            let cheat = net
                .provider("cheat", CHEAT_PRICE, |cfg| {
                    cfg.misbehave = Some(Misbehaviour::PerturbStep)
                })
                .await
                .unwrap();

            // The job: three stages, the cheater on the last (it holds the head).
            let total = m.model.config().layers();
            let ranges = [
                StageRange::new(0, 11),
                StageRange::new(11, 10),
                StageRange::new(21, total - 21),
            ];
            let request = GenerationRequest {
                prompt: m.encode_prompt("Name three colours.", true).unwrap(),
                max_tokens: TOKENS,
                sampler: Sampler::Sample {
                    seed: 7,
                    temperature: 0.8,
                    top_k: 40,
                    top_p: 0.95,
                },
                stop: Vec::new(),
            };
            let p = request.prompt.len();
            let stages: Vec<StageSpec> = ranges
                .iter()
                .map(|r| {
                    let cost = stage::stage_cost(&m.model, r, p);
                    StageSpec {
                        first_layer: r.first as u32,
                        layers: r.count as u32,
                        ops: cost.prefill,
                        step_units: 0,
                        step_ops: cost.step,
                        key_ops: cost.per_key,
                    }
                })
                .collect();
            let input = request.encode();
            let spec = JobSpec {
                mandate: None,
                model: registry::SMOLLM2_GGUF_BLAKE3.parse::<Hash>().unwrap(),
                input: Hash(*blake3::hash(&input).as_bytes()),
                stages,
                max_price: Amount(10_000),
                deadline: 400,
                requirements: Requirements {
                    replicas: 1,
                    verification: VerificationLevel::Audited,
                    ..Requirements::default()
                },
                coord: Default::default(),
                placement: vec![
                    providers[0].address(),
                    providers[1].address(),
                    cheat.address(),
                ],
                generation: Some(GenerationSpec {
                    prompt_tokens: p as u32,
                    max_tokens: TOKENS,
                }),
            };
            let alice = net.key("alice");
            let a0 = snapshot(&c, &alice.address()).await;
            let c0 = snapshot(&c, &cheat.address()).await;
            let id = submit_spec(&c, &alice, &spec, &[&input]).await.unwrap();
            let job = wait_job(&c, id, Duration::from_secs(600), |j| {
                j.status != JobStatus::Active && j.escrow == Amount::ZERO
            })
            .await;
            assert_eq!(job.status, JobStatus::Failed, "{job:#?}");
            assert!(job.excluded.contains(&cheat.address()));

            // The one dispute: the last stage's auditor against the cheater, down to the
            // perturbed (step, layer).
            let (did, d) = {
                let mut all = disputes_of(&c, id).await;
                assert_eq!(all.len(), 1, "{all:#?}");
                all.remove(0)
            };
            assert_eq!((d.stage, d.kind), (2, DisputeKind::Audit));
            assert_eq!(d.defendant, cheat.address());
            assert_eq!(d.phase, DisputePhase::Resolved);
            let auditor = d.challenger;
            let (step, layer) = perturb_step::fault(ranges[2], m.model.config().n_layer).unwrap();
            assert_eq!((step, layer), (perturb_step::STEP, 26));
            let width = ranges[2].count + 1;
            let leaf = (step * width + (layer - ranges[2].first + 1)) as u32;
            assert_eq!(d.game.descent_leaf(), Some(leaf), "{d:#?}");
            assert_eq!(d.step, Some(step as u32));

            // Its events: each round narrowed the span, the last to that one leaf; the
            // referee re-ran that layer; the cheater was slashed.
            let events = all_events(&c, net.height() + 1).await;
            let narrowed: Vec<(u32, u32)> = events
                .iter()
                .filter_map(|e| match e {
                    Event::BisectionNarrowed { dispute, lo, hi } if *dispute == did => {
                        Some((*lo, *hi))
                    }
                    _ => None,
                })
                .collect();
            let n_leaves = job.stages[2].result.unwrap().steps * width as u32;
            assert_eq!(job.stages[2].result.unwrap().steps, TOKENS);
            assert!(
                !narrowed.is_empty()
                    && narrowed.len() as u32 <= u32::BITS - (n_leaves - 1).leading_zeros(),
                "⌈log2 {n_leaves}⌉ rounds at most: {narrowed:?}"
            );
            assert!(narrowed
                .windows(2)
                .all(|w| w[1].0 >= w[0].0 && w[1].1 <= w[0].1));
            assert_eq!(narrowed.last(), Some(&(leaf, leaf + 1)), "{narrowed:?}");
            let resolved = events.iter().find_map(|e| match e {
                Event::DisputeResolved {
                    dispute,
                    winner,
                    resolution,
                } if *dispute == did => Some((*winner, *resolution)),
                _ => None,
            });
            assert_eq!(
                resolved,
                Some((
                    Some(auditor),
                    Resolution::Refereed {
                        layer: layer as u32
                    }
                )),
                "refereed at layer {layer}"
            );

            // Exactly the slash rules: slash_ppm of the cheater's stake, split.
            let slash = Amount(c0.bonded).mul_ppm(params.slash_ppm);
            assert!(slash.0 > 0);
            let to_winner = slash.mul_ppm(params.slash_winner_ppm);
            let to_requester = slash.mul_ppm(params.slash_requester_ppm);
            let slashes: Vec<_> = events
                .iter()
                .filter_map(|e| match e {
                    Event::Slashed {
                        who,
                        amount,
                        to_winner,
                        to_requester,
                        burned,
                    } if *who == cheat.address() => {
                        Some((*amount, *to_winner, *to_requester, *burned))
                    }
                    _ => None,
                })
                .collect();
            assert_eq!(
                slashes,
                vec![(
                    slash,
                    to_winner,
                    to_requester,
                    Amount(slash.0 - to_winner.0 - to_requester.0)
                )]
            );
            let c1 = snapshot(&c, &cheat.address()).await;
            assert_eq!(c1.bonded, c0.bonded - slash.0, "the cheater's stake");
            // (It may have audited another stage honestly, and been paid for that.)
            let audited: u128 = events
                .iter()
                .filter_map(|e| match e {
                    Event::AuditAgreed { auditor, fee, .. } if *auditor == cheat.address() => {
                        Some(fee.0)
                    }
                    _ => None,
                })
                .sum();
            assert_eq!(
                c1.balance,
                c0.balance - c1.fees_since(&c0) + audited,
                "the cheater is never paid for its stage"
            );

            // The job's money: the honest stages and the auditors paid exactly their
            // metered ops × price, the requester gets the rest and its share.
            let mut paid_out = 0u128;
            for e in events.iter().filter(|e| e.job() == Some(id)) {
                match e {
                    Event::StagePaid {
                        stage,
                        provider,
                        amount,
                        ..
                    } => {
                        assert!(*stage < 2, "the cheater's stage is never paid");
                        let s = *stage as usize;
                        let ops = spec.stages[s]
                            .generation_ops(p as u32, job.stages[s].result.unwrap().steps)
                            .unwrap();
                        assert_eq!(*provider, spec.placement[s]);
                        assert_eq!(amount.0, Amount::cost(ops, Amount(PRICE)).unwrap().0);
                        paid_out += amount.0;
                    }
                    Event::AuditAgreed { fee, .. } => paid_out += fee.0,
                    Event::AuditPaid {
                        stage,
                        auditor: a,
                        fee,
                        ..
                    } => {
                        assert_eq!((*stage, *a), (2, auditor));
                        let ops = spec.stages[2].generation_ops(p as u32, TOKENS).unwrap();
                        assert_eq!(fee.0, Amount::cost(ops, Amount(PRICE)).unwrap().0);
                        paid_out += fee.0;
                    }
                    _ => {}
                }
            }
            let compensated: u128 = events
                .iter()
                .filter_map(|e| match e {
                    Event::PayerCompensated { job, amount, .. } if *job == id => Some(amount.0),
                    _ => None,
                })
                .sum();
            let a1 = snapshot(&c, &alice.address()).await;
            assert_eq!(a1.nonce, a0.nonce + 1);
            assert_eq!(
                a1.balance,
                a0.balance - submit_fee(&spec) - paid_out + to_requester.0 + compensated,
                "the requester: the escrow back but the honest work, plus its share"
            );
            assert!(
                cheat.status().activations_provided >= 1,
                "the rows were named"
            );
            // The auditors past stage 0 replayed only their stage's layers, from the
            // input rows the stage received (checked against its published input claim).
            let audits: Vec<_> = providers
                .iter()
                .chain([&cheat])
                .filter_map(|x| x.status().last_audit)
                .filter(|a| a.job == id)
                .collect();
            assert!(
                audits.iter().any(|a| a.stage == 2),
                "the cheater's stage audit is recorded: {audits:?}"
            );
            for a in &audits {
                assert_eq!(a.from_rows, a.stage > 0, "stage {}'s audit", a.stage);
            }
        },
    );
}

/// Every ledger event up to the block at height `until`, from the API's feed.
async fn all_events(c: &agentic_client::Client, until: u64) -> Vec<Event> {
    use agentic_client::api::Event as Item;
    let mut feed = Box::pin(c.events_from(Height(0)).await.unwrap());
    let mut out = Vec::new();
    while let Ok(Some(Ok(item))) = tokio::time::timeout(Duration::from_secs(10), feed.next()).await
    {
        match item {
            Item::Ledger(e) => out.push(e.event),
            Item::Block(b) if b.height.0 >= until => break,
            _ => {}
        }
    }
    out
}
