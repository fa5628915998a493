//! Training jobs end to end on a local network: a task blob as the job's model, a
//! training state as its input, and the steps cut into stages run by different
//! provider daemons. The market returns exactly the state a single local run
//! produces, and pays each provider `ops × price`.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use agentic_compute::train::task::TrainState;
use agentic_compute::train::trace::merkle_root;
use agentic_compute::train::GptParams;
use agentic_protocol::state::{JobStatus, State};
use agentic_protocol::{Address, Amount, Hash};
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
                let out = Hash(local.state.hash().0);
                assert_eq!(r.input, input, "stage {s} input = previous output");
                assert_eq!(r.output, out, "stage {s} output");
                assert_eq!(
                    r.trace_root,
                    Hash(local.trace_root.0),
                    "stage {s} trace root"
                );
                input = out;
            }
            // The last output is the single local run's final state, bit for bit, and
            // the stages' step roots chain into the single run's trace root.
            let last = j.stages[2].result.unwrap().output;
            assert_eq!(last, Hash(p.whole.state.hash().0));
            let bytes = c
                .get_blob(&last)
                .await
                .expect("the final state is on the node");
            assert_eq!(bytes, p.whole.state.encode());
            let step_roots: Vec<_> = p
                .local
                .iter()
                .flat_map(|r| r.steps.iter().map(|s| s.root))
                .collect();
            assert_eq!(merkle_root(&step_roots), p.whole.trace_root);
            // The requester reads every step's loss from the state and checks each
            // stage's agreed trace root against it.
            let state = TrainState::decode(&bytes, &p.task).unwrap();
            assert_eq!(state.log.len(), 5);
            for (s, spec) in p.spec.stages.iter().enumerate() {
                let range = u64::from(spec.first_layer)..u64::from(spec.first_layer + spec.layers);
                assert_eq!(
                    Hash(state.trace_root_of(range).unwrap().0),
                    j.stages[s].result.unwrap().trace_root
                );
            }
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
