//! Training as a market job (`train::task`): the task and state blobs are canonical
//! and decode safely; a run cut into stages at any step, resumed from the encoded
//! state, gives the bytes of the uncut run on one and two threads; the stages' step
//! roots chain into the whole run's root; metering is exact and known in advance.

use agentic_compute::bundle::Bundle;
use agentic_compute::metering::InputShape;
use agentic_compute::train::shipped::CORPUS;
use agentic_compute::train::task::{
    gpt_of_bundle, Init, LrSchedule, TaskError, TaskLimits, TokenWidth, TrainState, TrainTask,
};
use agentic_compute::train::trace::merkle_root;
use agentic_compute::train::{AdamConfig, GptConfig, GptParams, OptimizerConfig};

fn on_threads<R: Send>(threads: usize, f: impl FnOnce() -> R + Send) -> R {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("pool")
        .install(f)
}

/// A small byte-level GPT on the fables, Adam with decay, warm-up then decay.
fn task(steps: u64) -> TrainTask {
    TrainTask {
        config: GptConfig {
            n_layer: 2,
            n_head: 2,
            n_embd: 32,
            vocab_size: 256,
            n_positions: 24,
            layer_norm_epsilon: 1e-5,
        },
        optimizer: OptimizerConfig::Adam(AdamConfig {
            lr: 3e-3,
            beta1: 0.9,
            beta2: 0.99,
            eps: 1e-8,
            weight_decay: 0.01,
        }),
        schedule: LrSchedule::WarmupLinearDecay {
            warmup: 2,
            min_lr_frac: 0.1,
        },
        steps,
        batch: 3,
        seq: 20,
        data_seed: 42,
        token_width: TokenWidth::U8,
        data: CORPUS.as_bytes()[..4000].to_vec(),
    }
}

#[test]
fn task_and_state_bytes_round_trip_and_are_canonical() {
    let t = task(5);
    let bytes = t.encode();
    assert!(TrainTask::is_task(&bytes));
    assert!(!TrainTask::is_task(b"AGMODEL1"));
    let back = TrainTask::decode(&bytes, TaskLimits::default()).unwrap();
    assert_eq!(back, t);
    assert_eq!(back.encode(), bytes);
    assert_eq!(t.hash().0, *blake3::hash(&bytes).as_bytes());

    let s0 = t.initial_state(Init::Seed(7)).unwrap();
    assert_eq!(s0.params, GptParams::init(t.config, 7).unwrap());
    let run = t.run_steps(&s0, 0..2).unwrap();
    for s in [&s0, &run.state] {
        let b = s.encode();
        assert!(TrainState::is_state(&b));
        let d = TrainState::decode(&b, &t).unwrap();
        assert_eq!(&d, s);
        assert_eq!(d.encode(), b);
        assert_eq!(s.hash().0, *blake3::hash(&b).as_bytes());
    }
    // SGD without momentum keeps no moment buffers; with momentum, one.
    for momentum in [0.0, 0.9] {
        let mut sgd = task(3);
        sgd.optimizer = OptimizerConfig::Sgd { lr: 0.1, momentum };
        sgd.schedule = LrSchedule::Constant;
        let s = sgd.initial_state(Init::Seed(1)).unwrap();
        let r = sgd.run_steps(&s, 0..1).unwrap();
        let b = r.state.encode();
        assert_eq!(TrainState::decode(&b, &sgd).unwrap(), r.state);
        // Another optimizer's task does not accept it.
        assert!(matches!(
            TrainState::decode(&b, &t),
            Err(TaskError::StateMismatch(_))
        ));
    }
}

#[test]
fn untrusted_bytes_are_refused_with_a_reason_never_a_panic() {
    let mut t = task(4);
    t.data.truncate(200);
    let bytes = t.encode();
    for n in 0..bytes.len() {
        assert!(TrainTask::decode(&bytes[..n], TaskLimits::default()).is_err());
    }
    for i in 0..bytes.len() {
        for flip in [0x01u8, 0x80, 0xff] {
            let mut c = bytes.clone();
            c[i] ^= flip;
            let _ = TrainTask::decode(&c, TaskLimits::default());
        }
    }
    let mut trailing = bytes.clone();
    trailing.push(0);
    assert!(TrainTask::decode(&trailing, TaskLimits::default()).is_err());
    assert!(matches!(
        TrainTask::decode(b"AGMODEL1....", TaskLimits::default()),
        Err(TaskError::NotA("task"))
    ));
    let small = TaskLimits {
        max_bytes: 100,
        ..TaskLimits::default()
    };
    assert!(matches!(
        TrainTask::decode(&bytes, small),
        Err(TaskError::TooLarge { .. })
    ));
    for limits in [
        TaskLimits {
            max_params: 1000,
            ..TaskLimits::default()
        },
        TaskLimits {
            max_steps: 3,
            ..TaskLimits::default()
        },
        TaskLimits {
            max_batch_tokens: 10,
            ..TaskLimits::default()
        },
    ] {
        assert!(matches!(
            TrainTask::decode(&bytes, limits),
            Err(TaskError::TooLarge { .. })
        ));
    }

    // Tasks that decode but cannot run.
    let bad = |f: &dyn Fn(&mut TrainTask)| {
        let mut b = t.clone();
        f(&mut b);
        let r = TrainTask::decode(&b.encode(), TaskLimits::default());
        assert!(matches!(r, Err(TaskError::Invalid(_))), "{b:?}: {r:?}");
    };
    bad(&|b| b.seq = 25); // beyond n_positions
    bad(&|b| b.steps = 0);
    bad(&|b| b.batch = 0);
    bad(&|b| b.data.truncate(21)); // shorter than a window
    bad(&|b| b.config.n_head = 3); // 32 not divisible by 3
    bad(&|b| b.config.vocab_size = 100); // bytes need 256
    bad(&|b| b.optimizer.set_lr(f32::NAN));
    bad(&|b| b.optimizer.set_lr(-0.0));
    bad(&|b| {
        b.schedule = LrSchedule::WarmupLinearDecay {
            warmup: 99,
            min_lr_frac: 0.5,
        }
    });
    bad(&|b| {
        // u32 ids, one outside the vocabulary.
        b.token_width = TokenWidth::U32;
        b.data = (0..40u32)
            .chain([256])
            .flat_map(|x| x.to_le_bytes())
            .collect();
    });
    bad(&|b| {
        b.token_width = TokenWidth::U32;
        b.data = vec![0; 99]; // not whole u32s
    });

    // States: every truncation and corruption is an error or another valid state.
    let s = t.initial_state(Init::Seed(3)).unwrap();
    let run = t.run_steps(&s, 0..1).unwrap();
    let sb = run.state.encode();
    for n in [0, 7, 8, 20, 33, 34, sb.len() / 2, sb.len() - 1] {
        assert!(TrainState::decode(&sb[..n], &t).is_err());
    }
    for i in (0..40).chain(sb.len() - 40..sb.len()) {
        let mut c = sb.clone();
        c[i] ^= 0xff;
        let _ = TrainState::decode(&c, &t);
    }
    let mut longer = sb.clone();
    longer.push(0);
    assert!(TrainState::decode(&longer, &t).is_err());
    assert!(matches!(
        TrainState::decode(&t.encode(), &t),
        Err(TaskError::NotA("state"))
    ));
    // A state of another model shape.
    let mut wide = t.clone();
    wide.config.n_embd = 16;
    assert!(matches!(
        TrainState::decode(&sb, &wide),
        Err(TaskError::StateMismatch(_))
    ));
}

/// One stage of a cut run, as the market would see it.
#[derive(Clone)]
struct Stage {
    /// blake3 of the state bytes it started from.
    input: String,
    /// The state bytes it ended with.
    output: Vec<u8>,
    /// Its trace root.
    root: String,
    /// Its steps' roots.
    steps: Vec<String>,
    /// Its trace leaves (state hashes).
    states: Vec<String>,
    /// Ops charged.
    ops: u64,
}

/// Runs `t` from `init` cut at `cuts`, each stage resumed from the decoded bytes of
/// the previous stage's state.
fn staged(t: &TrainTask, init: &[u8], cuts: &[u64]) -> Vec<Stage> {
    let mut bounds = vec![0];
    bounds.extend_from_slice(cuts);
    bounds.push(t.steps);
    let mut bytes = init.to_vec();
    let mut out = Vec::new();
    for w in bounds.windows(2) {
        let state = TrainState::decode(&bytes, t).unwrap();
        let run = t.run_steps(&state, w[0]..w[1]).unwrap();
        assert_eq!(
            run.ops,
            t.step_ops() * (w[1] - w[0]),
            "ops = step_ops × steps"
        );
        assert_eq!(run.steps.len() as u64, w[1] - w[0]);
        // The trace: the input state's hash, then the state after each step.
        assert_eq!(run.states.len() as u64, w[1] - w[0] + 1);
        assert_eq!(run.states[0].0, *blake3::hash(&bytes).as_bytes());
        assert_eq!(
            run.states.last().unwrap().0,
            *blake3::hash(&run.state.encode()).as_bytes()
        );
        assert_eq!(run.trace_root, merkle_root(&run.states));
        let input = blake3::hash(&bytes).to_hex().to_string();
        bytes = run.state.encode();
        out.push(Stage {
            input,
            output: bytes.clone(),
            root: run.trace_root.to_string(),
            steps: run.steps.iter().map(|s| s.root.to_string()).collect(),
            states: run.states.iter().map(|h| h.to_string()).collect(),
            ops: run.ops,
        });
    }
    out
}

#[test]
fn stages_resumed_from_saved_state_equal_the_whole_run_at_any_thread_count() {
    let t = task(6);
    let init = t.initial_state(Init::Seed(11)).unwrap().encode();
    let whole = on_threads(1, || staged(&t, &init, &[]));
    let Stage {
        output: whole_bytes,
        root: whole_root,
        steps: whole_steps,
        states: whole_states,
        ops: whole_ops,
        ..
    } = whole[0].clone();
    assert_eq!(whole_ops, 6 * t.step_ops());
    for threads in [1, 2] {
        for cuts in [&[3][..], &[1, 4], &[2, 3, 5]] {
            let stages = on_threads(threads, || staged(&t, &init, cuts));
            // Same final state bytes.
            assert_eq!(
                stages.last().unwrap().output,
                whole_bytes,
                "cuts {cuts:?}, {threads} threads"
            );
            // Stage i's output is stage i+1's input.
            for w in stages.windows(2) {
                assert_eq!(blake3::hash(&w[0].output).to_hex().to_string(), w[1].input);
            }
            // The stages' step roots, concatenated, are the whole run's, and their
            // Merkle root is the whole run's trace root.
            let steps: Vec<String> = stages.iter().flat_map(|s| s.steps.clone()).collect();
            assert_eq!(steps, whole_steps);
            // The state hashes are split-invariant: each stage's leaves are the whole
            // run's leaves over its range (a stage's first leaf is the previous
            // stage's last).
            let mut states = stages[0].states.clone();
            for s in &stages[1..] {
                assert_eq!(states.last(), s.states.first());
                states.extend(s.states[1..].iter().cloned());
            }
            assert_eq!(states, whole_states);
            let ops: u64 = stages.iter().map(|s| s.ops).sum();
            assert_eq!(ops, whole_ops);
        }
    }
    // The final state's log holds every step's root.
    let last = TrainState::decode(&whole_bytes, &t).unwrap();
    let logged: Vec<String> = last.log.iter().map(|r| r.root.to_string()).collect();
    assert_eq!(logged, whole_steps);
    // Golden: the format and the arithmetic, pinned.
    assert_eq!(
        blake3::hash(&whole_bytes).to_hex().to_string(),
        "691ec4fbb796468f9eefb04488c20e63054fb3f3731f4316e44b602137588687",
        "final state hash"
    );
    assert_eq!(
        whole_root, "2169f4beababfd096c6f581a37937ea55bdd24f1fbff45eddf8ab417ca5c4aa6",
        "trace root"
    );
}

#[test]
fn step_ranges_are_checked() {
    let t = task(4);
    let s0 = t.initial_state(Init::Seed(1)).unwrap();
    let err = |r: std::ops::Range<u64>, s: &TrainState| {
        matches!(t.run_steps(s, r), Err(TaskError::StepRange { .. }))
    };
    assert!(err(1..2, &s0), "the state has done 0 steps");
    assert!(err(0..5, &s0), "beyond the task");
    assert!(err(0..0, &s0), "empty");
    let s2 = t.run_steps(&s0, 0..2).unwrap().state;
    assert!(err(0..3, &s2));
    assert!(t.run_steps(&s2, 2..4).is_ok());
}

#[test]
fn metering_extends_the_inference_meter_and_is_known_in_advance() {
    // tiny-gpt's shape: the forward part of a step equals the inference meter of the
    // same batch.
    let bundle = Bundle::of("tiny-gpt").unwrap();
    let (config, weights) = gpt_of_bundle(&bundle).unwrap();
    let mut t = task(2);
    t.config = config;
    t.seq = 32;
    t.batch = 2;
    let m = bundle.load().unwrap();
    let meter: u64 = m
        .model
        .meter(&InputShape::Tokens {
            seq_lens: vec![32; 2],
        })
        .unwrap()
        .iter()
        .sum();
    assert_eq!(t.forward_ops(), meter);
    // Backward + optimizer roughly double the forward (≈ 3× in all).
    let ratio = t.step_ops() as f64 / meter as f64;
    assert!((2.5..4.0).contains(&ratio), "step/forward = {ratio}");
    eprintln!(
        "tiny-gpt, batch 2 × seq 32: {} ops per step ({} forward, ratio {ratio:.2})",
        t.step_ops(),
        meter
    );
    // Starting from the bundle's weights.
    let s = t.initial_state(Init::Safetensors(weights)).unwrap();
    let run = t.run_steps(&s, 0..2).unwrap();
    assert_eq!(run.ops, 2 * t.step_ops());
    assert!(run.steps.iter().all(|s| s.loss.is_finite()));
}

#[test]
fn a_hundred_and_fifty_steps_learn_the_text() {
    let mut t = task(150);
    t.batch = 4;
    let s = t.initial_state(Init::Seed(5)).unwrap();
    let run = t.run_steps(&s, 0..150).unwrap();
    let first: f64 = run.steps[..10].iter().map(|s| s.loss).sum::<f64>() / 10.0;
    let last: f64 = run.steps[140..].iter().map(|s| s.loss).sum::<f64>() / 10.0;
    eprintln!("loss {first:.3} → {last:.3}");
    assert!(first > 4.5, "starts near ln 256 = 5.55: {first}");
    assert!(last < first - 1.5, "loss {first} → {last}");
}

#[test]
fn each_step_draws_its_own_batch() {
    let t = task(4);
    let b1 = t.batch_at(1).unwrap();
    assert_eq!(
        b1,
        t.batch_at(1).unwrap(),
        "a pure function of (task, step)"
    );
    assert_ne!(b1, t.batch_at(2).unwrap());
    assert_eq!(b1.tokens.len(), 3 * 21);
    let mut other = t.clone();
    other.data_seed += 1;
    assert_ne!(b1, other.batch_at(1).unwrap());
    // A task that cannot run has no batches (and never panics).
    let mut short = t.clone();
    short.data.truncate(5);
    assert!(matches!(short.batch_at(0), Err(TaskError::Invalid(_))));
}
