//! Scenarios for [`prepare`] on the shipped tiny-gpt model (4 layers: embeddings,
//! two decoder blocks, ln_f + LM head), and for training jobs on it (steps cut evenly
//! into stages, the result checked against every stage's trace root).

use agentic_compute::bundle::Bundle;
use agentic_compute::registry;
use agentic_compute::train::task::TrainTask;
use agentic_protocol::coord::Coord;
use agentic_protocol::matching::Disqualified;
use agentic_protocol::state::{Job, JobStatus};
use agentic_protocol::tx::Offer;
use agentic_protocol::types::{Capabilities, Region, VerificationLevel};
use agentic_protocol::JobId;
use agentic_protocol::{Address, Amount, Endpoint, Hash, State};

use super::*;

fn texts() -> JobInput {
    JobInput::Texts(vec!["the market clears".into(), "at a price".into()])
}

fn request(stages: usize) -> JobRequest {
    let mut r = JobRequest::new("tiny-gpt", texts());
    r.stages = stages;
    r
}

fn offer(provider: u8, price: u128, speed: u64, coord: Coord) -> OfferView {
    OfferView {
        provider: Address([provider; 32]),
        offer: Offer {
            capabilities: Capabilities::CPU,
            price: Amount(price),
            region: Region(0),
            coord,
            capacity: 4,
            endpoint: Endpoint::default(),
            speed,
        },
        reputation_ppm: 500_000,
        bonded: Amount(10_000),
        open_jobs: 0,
    }
}

/// The metered ops of tiny-gpt on [`texts`], computed independently of `prepare`.
fn metered() -> Vec<u64> {
    let m = registry::load("tiny-gpt").unwrap();
    let JobInput::Texts(t) = texts() else {
        unreachable!()
    };
    let refs: Vec<&str> = t.iter().map(String::as_str).collect();
    let input = m.encode(&refs).unwrap();
    m.model.meter(&input.input_shape()).unwrap()
}

#[test]
fn stages_tile_the_layers_and_sum_to_the_metered_ops() {
    let metered = metered();
    assert_eq!(metered.len(), 4);
    let total: u64 = metered.iter().sum();
    for k in 1..=3 {
        let p = prepare(&request(k), &[]).unwrap();
        assert_eq!(p.spec.stages.len(), k);
        assert_eq!(p.layer_ops, metered);
        // Contiguous, non-empty, covering 0..4.
        let mut next = 0;
        for s in &p.spec.stages {
            assert_eq!(s.first_layer, next);
            assert!(s.layers >= 1);
            let r = s.first_layer as usize..(s.first_layer + s.layers) as usize;
            assert_eq!(s.ops, metered[r].iter().sum::<u64>());
            next += s.layers;
        }
        assert_eq!(next, 4);
        assert_eq!(p.spec.stages.iter().map(|s| s.ops).sum::<u64>(), total);
        assert_eq!(p.total_ops(), total);
        assert_eq!(Some(p.escrow), State::escrow_for(&p.spec));
        assert!(p.escrow > Amount::ZERO);
        // Content addresses: the bundle and the input hash to the spec's names.
        assert_eq!(p.model_hash, Hash(*blake3::hash(&p.bundle).as_bytes()));
        assert_eq!(p.model_hash, Hash(Bundle::of("tiny-gpt").unwrap().hash()));
        assert_eq!(p.input_hash, Hash(*blake3::hash(&p.input).as_bytes()));
        assert_eq!(p.spec.model, p.model_hash);
        assert_eq!(p.spec.input, p.input_hash);
        // The ledger matches: no placement.
        assert!(p.spec.placement.is_empty());
        assert!(p.placement.is_none());
        assert_eq!(p.boundary_bytes.len(), 5);
        assert_eq!(p.boundary_bytes[0], p.input.len() as u64);
    }
}

#[test]
fn escrow_counts_replicas_and_the_auditor() {
    let one = prepare(&request(2), &[]).unwrap();
    let mut r = request(2);
    r.replicas = 3;
    r.verification = VerificationLevel::Audited;
    r.max_price = Amount(7);
    let p = prepare(&r, &[]).unwrap();
    let per_copy: u128 = p
        .spec
        .stages
        .iter()
        .map(|s| Amount::cost(s.ops, Amount(7)).unwrap().0)
        .sum();
    assert_eq!(p.escrow, Amount(per_copy * 4));
    assert_eq!(p.spec.stages, one.spec.stages);
    assert_eq!(p.spec.requirements.replicas, 3);
}

#[test]
fn a_tensor_input_is_the_same_job_as_its_texts() {
    let from_texts = prepare(&request(1), &[]).unwrap();
    let tensor = JobRequest::new("tiny-gpt", JobInput::Activation(from_texts.input.clone()));
    let from_tensor = prepare(&tensor, &[]).unwrap();
    assert_eq!(from_tensor.spec, from_texts.spec);
}

#[test]
fn impossible_requests_are_refused_with_a_reason() {
    let err = prepare(&request(5), &[]).unwrap_err();
    assert!(matches!(
        err,
        RequesterError::MoreStagesThanLayers {
            stages: 5,
            layers: 4,
            ..
        }
    ));
    assert!(err.to_string().contains("only 4 layers"), "{err}");
    assert!(matches!(
        prepare(&request(0), &[]),
        Err(RequesterError::ZeroStages)
    ));
    let mut r = request(1);
    r.replicas = 0;
    assert!(matches!(
        prepare(&r, &[]),
        Err(RequesterError::BadReplicas { .. })
    ));
    let mut r = request(1);
    r.max_price = Amount::ZERO;
    assert!(matches!(
        prepare(&r, &[]),
        Err(RequesterError::ZeroMaxPrice)
    ));
    let r = JobRequest::new("tiny-gpt", JobInput::Texts(vec![]));
    assert!(matches!(
        prepare(&r, &[]),
        Err(RequesterError::EmptyInput(_))
    ));
    let r = JobRequest::new("tiny-gpt", JobInput::Activation(vec![]));
    assert!(matches!(
        prepare(&r, &[]),
        Err(RequesterError::EmptyInput(_))
    ));
    let r = JobRequest::new("tiny-gpt", JobInput::Activation(b"not a tensor".to_vec()));
    assert!(matches!(
        prepare(&r, &[]),
        Err(RequesterError::Input { .. })
    ));
    // Longer than the model's 64 positions.
    let r = JobRequest::new("tiny-gpt", JobInput::Texts(vec!["x".repeat(65)]));
    assert!(matches!(
        prepare(&r, &[]),
        Err(RequesterError::Input { .. })
    ));
    let r = JobRequest::new("/no/such/model", texts());
    assert!(matches!(
        prepare(&r, &[]),
        Err(RequesterError::Model { .. })
    ));
}

#[test]
fn auto_placement_gives_the_faster_provider_more_ops() {
    let near = Coord::new(100, 0, 50);
    let offers = vec![
        offer(1, 10, 50_000_000, near),       // slow
        offer(2, 20, 2_000_000_000, near),    // fast
        offer(3, 1_000, 9_000_000_000, near), // fastest, above the price cap
        offer(4, 1, 0, near),                 // cheapest, no reported speed
    ];
    let mut r = request(2);
    r.placement = PlacementChoice::Auto;
    let p = prepare(&r, &offers).unwrap();
    let plan = p.placement.as_ref().unwrap();
    assert_eq!(plan.candidates, 2);
    assert_eq!(plan.stages.len(), 2);
    let named: Vec<Address> = plan.stages.iter().map(|s| s.provider).collect();
    assert_eq!(p.spec.placement, named);
    let by = |a: u8| p.spec.stages[named.iter().position(|x| *x == Address([a; 32])).unwrap()];
    assert!(by(2).ops > by(1).ops, "fast {:?} slow {:?}", by(2), by(1));
    // The plan reports what the spec says, and a predicted latency.
    for (s, spec) in plan.stages.iter().zip(&p.spec.stages) {
        assert_eq!(
            (s.first_layer, s.layers, s.ops),
            (spec.first_layer, spec.layers, spec.ops)
        );
    }
    assert!(plan.latency_s.unwrap() > 0.0);
    assert_eq!(plan.bandwidth_bytes_per_s, ASSUMED_BANDWIDTH_BYTES_PER_S);

    // Three stages need three qualified providers.
    let mut r3 = r.clone();
    r3.stages = 3;
    assert!(matches!(
        prepare(&r3, &offers),
        Err(RequesterError::NotEnoughOffers {
            stages: 3,
            qualified: 2
        })
    ));
    // Requirements filter like the ledger: a stake floor above everyone's bond.
    let mut r = r.clone();
    r.min_stake = Amount(1_000_000);
    assert!(matches!(
        prepare(&r, &offers),
        Err(RequesterError::NoQualifiedOffer { offers: 4, .. })
    ));
}

#[test]
fn auto_placement_prefers_near_providers_when_compute_is_equal() {
    let offers = vec![
        offer(1, 10, 1_000_000_000, Coord::new(400_000, 0, 0)), // 400 ms away
        offer(2, 10, 1_000_000_000, Coord::new(1_000, 0, 0)),
        offer(3, 10, 1_000_000_000, Coord::new(1_200, 0, 0)),
    ];
    let mut r = request(2);
    r.placement = PlacementChoice::Auto;
    let p = prepare(&r, &offers).unwrap();
    assert!(!p.spec.placement.contains(&Address([1; 32])));
}

#[test]
fn named_placement_is_checked() {
    let offers = vec![
        offer(1, 10, 1_000_000, Coord::ORIGIN),
        offer(2, 500, 1_000_000, Coord::ORIGIN),
    ];
    let a = |n: u8| Address([n; 32]);
    let mut r = request(2);
    r.placement = PlacementChoice::Named(vec![a(1), a(9)]);
    // a(9) is not listed: left to the ledger; no latency prediction without its speed.
    let p = prepare(&r, &offers).unwrap();
    assert_eq!(p.spec.placement, vec![a(1), a(9)]);
    assert_eq!(p.placement.as_ref().unwrap().latency_s, None);
    // Same ranges as the ledger placement (balanced by ops).
    assert_eq!(
        p.spec.stages,
        prepare(&request(2), &[]).unwrap().spec.stages
    );

    r.placement = PlacementChoice::Named(vec![a(1), a(2)]);
    match prepare(&r, &offers) {
        Err(RequesterError::Unqualified {
            stage: 1,
            reason:
                Disqualified::PriceTooHigh {
                    price: 500,
                    max: 100,
                },
            ..
        }) => {}
        other => panic!("{other:?}"),
    }
    r.placement = PlacementChoice::Named(vec![a(1)]);
    assert!(matches!(
        prepare(&r, &offers),
        Err(RequesterError::PlacementLength {
            named: 1,
            stages: 2
        })
    ));
    r.placement = PlacementChoice::Named(vec![a(1), a(1)]);
    assert!(matches!(
        prepare(&r, &offers),
        Err(RequesterError::DuplicateProvider(_))
    ));
    // Both listed with speeds: a predicted latency.
    r.max_price = Amount(1_000);
    r.placement = PlacementChoice::Named(vec![a(2), a(1)]);
    let p = prepare(&r, &offers).unwrap();
    assert!(p.placement.unwrap().latency_s.is_some());
}

// ---- training jobs ----

const FABLE: &str = "The Fox and the Crow. A Crow having taken a piece of cheese out of a \
cottage window, flew up into a high tree with it, in order to eat it.";

fn training(stages: usize, steps: u64) -> JobRequest {
    let mut t = TrainingInput::new(FABLE.as_bytes().to_vec(), steps);
    t.batch = 2;
    t.seq = 16;
    let mut r = JobRequest::new("tiny-gpt", JobInput::Training(t));
    r.stages = stages;
    r
}

#[test]
fn a_training_job_splits_its_steps_evenly_at_exact_ops() {
    for (k, steps, lens) in [
        (1, 5, &[5u32][..]),
        (2, 5, &[3, 2]),
        (3, 7, &[3, 2, 2]),
        (5, 5, &[1, 1, 1, 1, 1]),
    ] {
        let p = prepare(&training(k, steps), &[]).unwrap();
        let t = p.training.as_ref().expect("a training job");
        assert_eq!((t.steps, t.batch, t.seq), (steps, 2, 16));
        assert_eq!(t.init, "weights of tiny-gpt");
        let got: Vec<u32> = p.spec.stages.iter().map(|s| s.layers).collect();
        assert_eq!(got, lens);
        let mut next = 0;
        for s in &p.spec.stages {
            assert_eq!(s.first_layer, next);
            assert_eq!(s.ops, t.step_ops * u64::from(s.layers));
            next += s.layers;
        }
        assert_eq!(u64::from(next), steps);
        assert_eq!(p.total_ops(), t.step_ops * steps);
        assert_eq!(p.layer_ops.len() as u64, steps);
        assert_eq!(p.boundary_bytes.len() as u64, steps + 1);
        assert_eq!(p.boundary_bytes[0], p.input.len() as u64);
        // The blobs are the task and the initial state, named by their blake3.
        assert!(TrainTask::is_task(&p.bundle));
        assert_eq!(p.model_hash, Hash(*blake3::hash(&p.bundle).as_bytes()));
        assert_eq!(p.input_hash, Hash(*blake3::hash(&p.input).as_bytes()));
        assert_eq!(p.escrow, State::escrow_for(&p.spec).unwrap());
    }
    // A seed instead of the weights: the same task, another initial state.
    let from_weights = prepare(&training(2, 4), &[]).unwrap();
    let mut r = training(2, 4);
    if let JobInput::Training(t) = &mut r.input {
        t.init_seed = Some(9);
    }
    let from_seed = prepare(&r, &[]).unwrap();
    assert_eq!(from_seed.model_hash, from_weights.model_hash);
    assert_ne!(from_seed.input_hash, from_weights.input_hash);
    assert_eq!(from_seed.training.unwrap().init, "seed 9");
    // Named providers run the even split.
    let mut r = training(2, 5);
    r.placement = PlacementChoice::Named(vec![Address([1; 32]), Address([2; 32])]);
    let p = prepare(&r, &[]).unwrap();
    assert_eq!(p.spec.placement, vec![Address([1; 32]), Address([2; 32])]);
    assert_eq!(p.spec.stages[0].layers, 3);
}

#[test]
fn impossible_training_jobs_are_refused_with_a_reason() {
    let with = |f: &dyn Fn(&mut JobRequest, &mut TrainingInput)| {
        let mut r = training(2, 4);
        let JobInput::Training(mut t) = r.input.clone() else {
            unreachable!()
        };
        f(&mut r, &mut t);
        r.input = JobInput::Training(t);
        prepare(&r, &[]).unwrap_err()
    };
    assert!(matches!(
        with(&|r, _| r.stages = 5),
        RequesterError::MoreStagesThanSteps {
            stages: 5,
            steps: 4
        }
    ));
    assert!(matches!(
        with(&|_, t| t.data.clear()),
        RequesterError::EmptyInput(_)
    ));
    for e in [
        with(&|_, t| t.seq = 65),          // beyond tiny-gpt's 64 positions
        with(&|_, t| t.data.truncate(10)), // shorter than one window
        with(&|_, t| t.steps = 0),
        with(&|_, t| t.optimizer.set_lr(f32::NAN)),
    ] {
        assert!(matches!(e, RequesterError::Training { .. }), "{e}");
    }
    let mut r = training(1, 2);
    r.model = "/no/such/model".into();
    assert!(matches!(
        prepare(&r, &[]).unwrap_err(),
        RequesterError::Model { .. }
    ));
    let mut r = training(2, 4);
    r.placement = PlacementChoice::Named(vec![Address([1; 32])]);
    assert!(matches!(
        prepare(&r, &[]).unwrap_err(),
        RequesterError::PlacementLength {
            named: 1,
            stages: 2
        }
    ));
}

/// The job record the ledger would hold once every stage agreed on `results`.
fn agreed(p: &PreparedJob, results: &[agentic_protocol::tx::StageResult]) -> Job {
    use agentic_protocol::state::{Stage, StagePhase};
    Job {
        requester: Address([7; 32]),
        payer: Address([7; 32]),
        spec: p.spec.clone(),
        submitted_at: agentic_protocol::Height(1),
        escrow: Amount::ZERO,
        status: JobStatus::Completed,
        stages: results
            .iter()
            .map(|r| Stage {
                phase: StagePhase::Finalized,
                slots: vec![],
                result: Some(*r),
                audit: None,
            })
            .collect(),
        excluded: vec![],
        claim: None,
    }
}

#[test]
fn a_training_result_is_checked_against_the_agreed_stage_chain() {
    use agentic_compute::train::task::{TaskLimits, TrainState};
    use agentic_protocol::tx::StageResult;
    let p = prepare(&training(3, 5), &[]).unwrap();
    let task = TrainTask::decode(&p.bundle, TaskLimits::default()).unwrap();
    // Run the stages as three providers would.
    let mut bytes = p.input.clone();
    let mut results = Vec::new();
    let mut states = Vec::new();
    for s in &p.spec.stages {
        let state = TrainState::decode(&bytes, &task).unwrap();
        let a = u64::from(s.first_layer);
        let run = task.run_steps(&state, a..a + u64::from(s.layers)).unwrap();
        assert_eq!(run.ops, s.ops, "declared = metered");
        let out = run.state.encode();
        results.push(StageResult {
            input: Hash(*blake3::hash(&bytes).as_bytes()),
            output: Hash(*blake3::hash(&out).as_bytes()),
            trace_root: run.trace_root,
            steps: 0,
        });
        states.push(out.clone());
        bytes = out;
    }
    let job = agreed(&p, &results);
    let out = results[2].output;
    let (_, state, steps) =
        training::check_training_output(JobId(1), &job, &p.bundle, out, &bytes).unwrap();
    assert_eq!(state.step(), 5);
    let stages: Vec<usize> = steps.iter().map(|s| s.stage).collect();
    assert_eq!(stages, vec![0, 0, 1, 1, 2]);
    assert_eq!(
        steps.iter().map(|s| s.step).collect::<Vec<_>>(),
        vec![1, 2, 3, 4, 5]
    );
    assert!(steps.iter().all(|s| s.loss.is_finite() && s.loss > 0.0));

    // A stage whose agreed input is not the previous stage's output.
    let mut wrong = results.clone();
    wrong[1].input = Hash([0xAB; 32]);
    assert!(matches!(
        training::check_training_output(JobId(1), &agreed(&p, &wrong), &p.bundle, out, &bytes),
        Err(RequesterError::ChainMismatch { stage: 1, .. })
    ));
    // The fetched state is not the last stage's agreed output.
    let mut wrong = results.clone();
    wrong[2].output = Hash([0xAB; 32]);
    assert!(matches!(
        training::check_training_output(JobId(1), &agreed(&p, &wrong), &p.bundle, out, &bytes),
        Err(RequesterError::ChainMismatch { stage: 2, .. })
    ));
    // An intermediate state is not the job's output.
    assert!(matches!(
        training::check_training_output(JobId(1), &job, &p.bundle, out, &states[1]),
        Err(RequesterError::BadTrainingOutput { .. })
    ));
    // Not a task.
    assert!(matches!(
        training::check_training_output(JobId(1), &job, &p.input, out, &bytes),
        Err(RequesterError::BadTask { .. })
    ));
}
