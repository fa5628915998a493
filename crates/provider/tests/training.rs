//! Training jobs end to end on a local network: a task blob as the job's model, a
//! training state as its input, and the steps cut into stages run by different
//! provider daemons. The market returns exactly the state a single local run
//! produces, and pays each provider `ops × price`. A training cheater (`wrong-step`:
//! one bit flipped inside one step) is caught by an audit, bisected to one step and
//! then to one unit of it, refereed by the validators re-running that unit, and
//! slashed.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use agentic_compute::train::task::TrainState;
use agentic_compute::train::trace::merkle_root;
use agentic_compute::train::units::{self, CarryLimits, StepCarry};
use agentic_compute::train::GptParams;
use agentic_protocol::state::{DisputeKind, DisputePhase, JobStatus, State};
use agentic_protocol::types::VerificationLevel;
use agentic_protocol::{Address, Amount, Hash};
use agentic_provider::misbehave::wrong_step;
use agentic_provider::Misbehaviour;
use common::*;

/// A short text to fine-tune on (the fables' first lines would do as well).
const TEXT: &str = "The Fox and the Crow. A Crow having taken a piece of cheese out of a \
cottage window, flew up into a high tree with it, in order to eat it; which a Fox \
observing, came and sat underneath, and began to compliment the Crow upon her beauty.";

#[test]
fn three_stage_training_job_returns_the_local_state_and_pays_exactly() {
    with_network(
        "training",
        1,
        &["alice", "p1", "p2", "p3"],
        |net| async move {
            let c = net.client();
            let providers = [
                net.provider("p1", 1_000, |_| {}).await.unwrap(),
                net.provider("p2", 2_000, |_| {}).await.unwrap(),
                net.provider("p3", 3_000, |_| {}).await.unwrap(),
            ];
            let alice = net.key("alice");
            let mut before = BTreeMap::new();
            for a in providers
                .iter()
                .map(|p| p.address())
                .chain([alice.address()])
            {
                before.insert(a, balances(&c, &a).await);
            }

            // 5 steps of tiny-gpt: steps 0..2, 2..4, 4..5 on three providers.
            let p = prepare_training(TEXT, 5, &[2, 4], 10_000, 200);
            let id = submit_spec(&c, &alice, &p.spec, &[&p.task_bytes, &p.init_bytes])
                .await
                .unwrap();
            let t0 = Instant::now();
            let j = wait_finished(&c, id, Duration::from_secs(180)).await;
            eprintln!(
                "training job: 5 steps × {} ops in 3 stages took {:?}",
                p.task.step_ops(),
                t0.elapsed()
            );
            assert_eq!(j.status, JobStatus::Completed, "{j:#?}");

            // Each stage agreed on exactly the local run's state hashes and trace root.
            let mut input = Hash(*blake3::hash(&p.init_bytes).as_bytes());
            for (s, local) in p.local.iter().enumerate() {
                let r = j.stages[s].result.expect("agreed result");
                let out = local.state.hash();
                assert_eq!(r.input, input, "stage {s} input = previous output");
                assert_eq!(r.output, out, "stage {s} output");
                assert_eq!(r.trace_root, local.trace_root, "stage {s} trace root");
                input = out;
            }
            // The last output is the single local run's final state, bit for bit, and
            // the stages' step roots chain into the single run's trace root.
            let last = j.stages[2].result.unwrap().output;
            assert_eq!(last, p.whole.state.hash());
            let bytes = c
                .get_blob(&last)
                .await
                .expect("the final state is on the node");
            assert_eq!(bytes, p.whole.state.encode());
            // The stages' trace leaves (state hashes) chain into the single run's: a
            // stage's first leaf is the previous stage's last.
            let mut leaves = p.local[0].states.clone();
            for r in &p.local[1..] {
                assert_eq!(leaves.last(), r.states.first());
                leaves.extend(r.states[1..].iter().copied());
            }
            assert_eq!(leaves, p.whole.states);
            assert_eq!(merkle_root(&leaves), p.whole.trace_root);
            // The requester reads every step's loss and root from the state (its hash
            // is the last stage's agreed output, so the log is authenticated).
            let state = TrainState::decode(&bytes, &p.task).unwrap();
            assert_eq!(state.log.len(), 5);
            let logged: Vec<_> = state.log.iter().map(|r| r.root).collect();
            let ran: Vec<_> = p.whole.steps.iter().map(|s| s.root).collect();
            assert_eq!(logged, ran);
            // The new weights, as the requester writes them, are the local run's.
            let weights = state.params.to_safetensors().unwrap();
            let back = GptParams::from_safetensors(p.task.config, &weights).unwrap();
            assert_eq!(back, p.whole.state.params);

            // Three different providers, each paid ops × its price to the base unit
            // (ops = steps × step_ops, declared before anything ran); the requester
            // paid exactly that plus its fee.
            let mut paid_total = 0u128;
            let mut seen: Vec<Address> = Vec::new();
            for (s, st) in j.stages.iter().enumerate() {
                let a = st.slots[0].assignment.as_ref().expect("assigned");
                assert!(!seen.contains(&a.provider), "one provider per stage");
                seen.push(a.provider);
                let ops = p.spec.stages[s].ops;
                assert_eq!(ops, p.task.step_ops() * u64::from(p.spec.stages[s].layers));
                assert_eq!(ops, p.local[s].ops, "declared = metered");
                let bill = Amount::cost(ops, a.price).unwrap();
                assert!(bill.0 > 0);
                paid_total += bill.0;
                let (b0, _) = before[&a.provider];
                let (b1, _) = balances(&c, &a.provider).await;
                assert_eq!(b1.0, b0.0 + bill.0 - 2 * min_fee().0, "stage {s} provider");
            }
            let (a0, _) = before[&alice.address()];
            let (a1, _) = balances(&c, &alice.address()).await;
            assert_eq!(a1.0, a0.0 - paid_total - submit_fee(&p.spec));
            assert!(State::escrow_for(&p.spec).unwrap().0 > paid_total);
            assert_eq!(j.escrow, Amount::ZERO);
            for pr in &providers {
                let t = Instant::now();
                while pr.status().stages_paid < 1 && t.elapsed() < Duration::from_secs(10) {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                let st = pr.status();
                assert_eq!(st.stages_paid, 1, "{st:?}");
                assert!(st.ops > 0);
            }
        },
    );
}

#[test]
fn a_training_cheater_is_bisected_to_one_unit_of_one_step_refereed_and_slashed() {
    with_market(
        "training-cheat",
        1,
        &["alice", "aud", "cheat"],
        &[
            ("reveal_window", 20),
            ("challenge_window", 10),
            ("audit_window", 20),
            // Each party replays its stage to the disputed step before it can post
            // its step root: more blocks than the inference games need.
            ("dispute_timeout", 40),
            ("match_timeout", 100),
        ],
        |net| async move {
            let c = net.client();
            let params = params(&c).await;
            // The honest auditor is the only other qualified provider: the ledger
            // draws it.
            let aud = net.provider("aud", 100, |_| {}).await.unwrap();
            let cheat = net
                .provider("cheat", 1_000, |cfg| {
                    cfg.misbehave = Some(Misbehaviour::WrongStep)
                })
                .await
                .unwrap();
            let alice = net.key("alice");

            // One audited stage of 4 steps on the cheater; it corrupts step 2.
            let mut p = prepare_training(TEXT, 4, &[], 10_000, 300);
            p.spec.placement = vec![cheat.address()];
            p.spec.requirements.verification = VerificationLevel::Audited;
            let units = units::step_units(&p.task);
            assert_eq!(p.spec.stages[0].step_units, units);
            let (c0, u0) = (
                snapshot(&c, &cheat.address()).await,
                snapshot(&c, &aud.address()).await,
            );
            let t0 = Instant::now();
            let id = submit_spec(&c, &alice, &p.spec, &[&p.task_bytes, &p.init_bytes])
                .await
                .unwrap();
            let j = wait_finished(&c, id, Duration::from_secs(240)).await;
            eprintln!("training cheat caught in {:?}", t0.elapsed());
            assert_eq!(j.status, JobStatus::Failed, "{j:#?}");
            assert!(j.excluded.contains(&cheat.address()));

            let all = disputes_of(&c, id).await;
            assert_eq!(all.len(), 1, "{all:?}");
            let (_, d) = &all[0];
            eprintln!(
                "{d:?}\nauditor {:?}\ncheater {:?}",
                aud.status(),
                cheat.status()
            );
            assert_eq!(d.phase, DisputePhase::Resolved, "{d:?}");
            assert_eq!(d.kind, DisputeKind::Audit);
            assert_eq!(
                (d.defendant, d.challenger),
                (cheat.address(), aud.address())
            );
            // Bisected to the corrupted step, then to the corrupted unit of it.
            let step = wrong_step::step(4) as u32;
            assert_eq!(d.step, Some(step), "{d:?}");
            assert_eq!(d.step_units, units);
            assert!(d.game.is_finished(), "refereed, not timed out: {d:?}");
            assert_eq!(
                d.game.leaves(),
                units + 1,
                "the inner game is over the units"
            );
            assert_eq!(d.game.lo(), wrong_step::UNIT, "{d:?}");
            assert_eq!(d.referee_layer(0), Some(step * units + wrong_step::UNIT));

            // The agreed carry is on the node, and re-running the one unit from it
            // gives the auditor's next carry, not the cheater's.
            let carry = c.get_blob(&d.agreed).await.expect("the agreed carry");
            let decoded = StepCarry::decode(&carry, &p.task, CarryLimits::default()).unwrap();
            assert_eq!(
                decoded.position(),
                Some((u64::from(step), wrong_step::UNIT))
            );
            let out = units::reexecute_unit(
                &p.task,
                u64::from(step),
                wrong_step::UNIT,
                &carry,
                &d.agreed,
                CarryLimits::default(),
            )
            .unwrap();
            assert_eq!(
                out, d.challenger_hi,
                "the auditor's carry is the honest one"
            );
            assert_ne!(out, d.defendant_hi);

            // The cheater is slashed and unpaid; the auditor's stake is untouched.
            let (c1, u1) = (
                snapshot(&c, &cheat.address()).await,
                snapshot(&c, &aud.address()).await,
            );
            let slash = Amount(c0.bonded).mul_ppm(params.slash_ppm).0;
            assert!(slash > 0);
            assert_eq!(c1.bonded, c0.bonded - slash, "cheater slashed");
            assert_eq!(
                c1.balance,
                c0.balance - c1.fees_since(&c0),
                "cheater unpaid"
            );
            assert_eq!(u1.bonded, u0.bonded);
            assert!(u1.balance > u0.balance - u1.fees_since(&u0), "auditor paid");
            // Both daemons played the step-level and the unit-level games.
            let (sa, sc) = (aud.status(), cheat.status());
            assert_eq!(sa.step_roots_posted, 1, "{sa:?}");
            assert_eq!(sc.step_roots_posted, 1, "{sc:?}");
            assert!(
                sa.bisect_moves >= 3 && sc.bisect_moves >= 3,
                "{sa:?} {sc:?}"
            );
            assert!(
                sa.activations_provided >= 1,
                "the auditor served the carry: {sa:?}"
            );
        },
    );
}
