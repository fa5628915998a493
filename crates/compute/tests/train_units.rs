//! One training step cut into units (`train::units`): running the units in order
//! gives the monolithic step's bytes (SGD, SGD with momentum, AdamW; warm-up
//! schedules; two and three blocks); every unit re-executed from its input carry
//! reproduces the next leaf; a corrupted carry changes exactly the leaves from it on
//! and a referee re-executing the disputed unit from the agreed carry catches it; the
//! units' ops sum to the step's; carries round-trip and refuse bad bytes without
//! panicking.

use agentic_compute::train::shipped::CORPUS;
use agentic_compute::train::task::{
    Init, LrSchedule, TaskError, TaskLimits, TokenWidth, TrainState, TrainTask,
};
use agentic_compute::train::trace::hash_bytes;
use agentic_compute::train::units::{
    carry_at, carry_bytes_at, carry_layout, disputed_unit, reexecute_unit, run_unit, step_leaves,
    step_units, unit_kind, unit_ops, CarryLimits, StepCarry, Unit,
};
use agentic_compute::train::{AdamConfig, GptConfig, OptimizerConfig};

fn on_threads<R: Send>(threads: usize, f: impl FnOnce() -> R + Send) -> R {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("pool")
        .install(f)
}

/// A small byte-level GPT on the fables with `n_layer` blocks, warm-up then decay.
fn task(n_layer: usize, optimizer: OptimizerConfig) -> TrainTask {
    TrainTask {
        config: GptConfig {
            n_layer,
            n_head: 2,
            n_embd: 16,
            vocab_size: 256,
            n_positions: 12,
            layer_norm_epsilon: 1e-5,
        },
        optimizer,
        schedule: LrSchedule::WarmupLinearDecay {
            warmup: 2,
            min_lr_frac: 0.1,
        },
        steps: 4,
        batch: 2,
        seq: 10,
        data_seed: 42,
        token_width: TokenWidth::U8,
        data: CORPUS.as_bytes()[..2000].to_vec(),
    }
}

fn adamw() -> OptimizerConfig {
    OptimizerConfig::Adam(AdamConfig {
        lr: 3e-3,
        beta1: 0.9,
        beta2: 0.99,
        eps: 1e-8,
        weight_decay: 0.01,
    })
}

fn optimizers() -> Vec<OptimizerConfig> {
    vec![
        OptimizerConfig::Sgd {
            lr: 0.1,
            momentum: 0.0,
        },
        OptimizerConfig::Sgd {
            lr: 0.05,
            momentum: 0.9,
        },
        adamw(),
    ]
}

fn limits() -> CarryLimits {
    CarryLimits::default()
}

#[test]
fn units_in_order_give_the_monolithic_step_bit_for_bit() {
    for n_layer in [2, 3] {
        for opt in optimizers() {
            let t = task(n_layer, opt);
            let units = step_units(&t);
            assert_eq!(units as usize, 2 * n_layer + 5);
            let mut state = t.initial_state(Init::Seed(7)).unwrap();
            for step in 0..t.steps {
                let mono = t.run_steps(&state, step..step + 1).unwrap().state;
                let (leaves, after) = step_leaves(&t, &state).unwrap();
                assert_eq!(
                    after.encode(),
                    mono.encode(),
                    "{opt:?} L={n_layer} step {step}"
                );
                assert_eq!(after, mono);
                assert_eq!(leaves.len(), units as usize + 1);
                // Leaf 0 and the last leaf are the state hashes the step-level
                // bisection works on.
                assert_eq!(leaves[0], state.hash());
                assert_eq!(leaves[units as usize], mono.hash());
                // Every leaf is distinct (each unit changes the carry).
                for i in 0..leaves.len() {
                    for j in i + 1..leaves.len() {
                        assert_ne!(leaves[i], leaves[j], "leaves {i} and {j}");
                    }
                }
                state = after;
            }
            // And a whole multi-step stage equals the unit-by-unit chain.
            let s0 = t.initial_state(Init::Seed(7)).unwrap();
            assert_eq!(t.run_steps(&s0, 0..t.steps).unwrap().state, state);
        }
    }
}

#[test]
fn leaves_do_not_depend_on_the_thread_count() {
    let t = task(2, adamw());
    let s0 = t.initial_state(Init::Seed(3)).unwrap();
    let one = on_threads(1, || step_leaves(&t, &s0).unwrap());
    let two = on_threads(2, || step_leaves(&t, &s0).unwrap());
    assert_eq!(one, two);
}

#[test]
fn each_unit_reexecuted_from_its_carry_reproduces_the_next_leaf() {
    for opt in optimizers() {
        let t = task(2, opt);
        let s0 = t.initial_state(Init::Seed(11)).unwrap();
        // Step 1, so the state carries a log record and Adam non-trivial moments.
        let s1 = t.run_steps(&s0, 0..1).unwrap().state;
        let (leaves, _) = step_leaves(&t, &s1).unwrap();
        for k in 0..step_units(&t) {
            let bytes = carry_bytes_at(&t, &s1, k).unwrap();
            assert_eq!(hash_bytes(&bytes), leaves[k as usize], "leaf {k}");
            // Canonical: decode → encode is the identity; the layout covers it.
            let carry = StepCarry::decode(&bytes, &t, limits()).unwrap();
            assert_eq!(carry.encode(), bytes);
            assert_eq!(carry, carry_at(&t, &s1, k).unwrap());
            let layout = carry_layout(&t, 1, k).unwrap();
            let last = layout.last().unwrap();
            assert_eq!(last.offset + last.len, bytes.len() as u64);
            assert_eq!(carry.is_boundary(), k == 0);
            assert_eq!(carry.position(), (k != 0).then_some((1, k)));
            // The referee's view: the bytes alone (plus the task).
            let out = run_unit(&t, 1, k, &carry).unwrap();
            assert_eq!(out.hash(), leaves[k as usize + 1], "unit {k}");
            assert_eq!(
                reexecute_unit(&t, 1, k, &bytes, &leaves[k as usize], limits()).unwrap(),
                leaves[k as usize + 1]
            );
            // The carry is the input of this unit of this step only.
            assert!(matches!(
                run_unit(&t, 1, k + 1, &carry),
                Err(TaskError::UnitMismatch { .. })
            ));
            assert!(run_unit(&t, 0, k, &carry).is_err());
        }
        // The last carry is the state after the step.
        let last = carry_bytes_at(&t, &s1, step_units(&t)).unwrap();
        let after = t.run_steps(&s1, 1..2).unwrap().state;
        assert_eq!(last, after.encode());
        assert!(matches!(
            run_unit(&t, 1, step_units(&t), &StepCarry::start(s1.clone())),
            Err(TaskError::UnitMismatch { .. })
        ));
        assert!(carry_at(&t, &s1, step_units(&t) + 1).is_err());
    }
}

/// Replaces the f32 number `elem` of `section` of carry bytes with another value.
fn corrupt(t: &TrainTask, step: u64, k: u32, bytes: &mut [u8], section: &str, elem: usize) {
    let layout = carry_layout(t, step, k).unwrap();
    let s = layout
        .iter()
        .find(|s| s.name == section)
        .unwrap_or_else(|| panic!("no section {section} in carry {k}"));
    let at = s.offset as usize + 4 * elem;
    assert!(4 * elem < s.len as usize);
    let x = f32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
    bytes[at..at + 4].copy_from_slice(&(x * 1.5 + 0.25).to_le_bytes());
}

#[test]
fn a_corrupted_carry_changes_exactly_the_leaves_after_it_and_the_referee_catches_it() {
    let t = task(2, adamw());
    let s0 = t.initial_state(Init::Seed(5)).unwrap();
    let (honest, _) = step_leaves(&t, &s0).unwrap();
    let units = step_units(&t);
    // (carry index, section, element): a block's weights, the residual stream, saved
    // activations, the loss, gradients. (A value the rest of the step never reads
    // would change only its own carries: e.g. the query of row 0, whose one-element
    // softmax has zero gradient, so the test corrupts the key of row 0 instead.)
    let d = t.config.n_embd;
    let cases = [
        (2, "param.h.1.attn.c_attn.weight", 0),
        (1, "x", 0),
        (3, "h.0.qkv", d),
        (5, "h.1.fc_act", 3),
        (4, "loss", 0),
        (6, "dx", 0),
        (7, "grad.h.1.mlp.c_fc.weight", 0),
        (8, "grad.wpe.weight", 0),
    ];
    for (k, section, elem) in cases {
        assert!(k < units);
        // The cheater computes honestly up to carry k, then serves a corrupted one
        // and continues honestly from it.
        let mut bytes = carry_bytes_at(&t, &s0, k).unwrap();
        corrupt(&t, 0, k, &mut bytes, section, elem);
        let mut carry = StepCarry::decode(&bytes, &t, limits()).unwrap();
        let mut cheat = honest[..k as usize].to_vec();
        cheat.push(carry.hash());
        for unit in k..units {
            carry = run_unit(&t, 0, unit, &carry).unwrap();
            cheat.push(carry.hash());
        }
        for (i, (h, c)) in honest.iter().zip(&cheat).enumerate() {
            assert_eq!(h == c, i < k as usize, "{section}: leaf {i}");
        }
        // Bisection converges on the unit that produced carry k; the referee runs
        // it from the agreed carry k − 1 and gets the honest leaf, not the claim.
        let unit = disputed_unit(&honest, &cheat).unwrap();
        assert_eq!(unit, k - 1);
        let input = carry_bytes_at(&t, &s0, unit).unwrap();
        let got = reexecute_unit(&t, 0, unit, &input, &honest[unit as usize], limits()).unwrap();
        assert_eq!(got, honest[k as usize]);
        assert_ne!(got, cheat[k as usize]);
        // A served carry that is not the agreed leaf is refused.
        assert!(matches!(
            reexecute_unit(&t, 0, k, &bytes, &honest[k as usize], limits()),
            Err(TaskError::UnitMismatch { .. })
        ));
    }
    assert_eq!(disputed_unit(&honest, &honest), None);
}

#[test]
fn unit_ops_sum_to_the_step_ops() {
    for n_layer in [1, 2, 3] {
        for opt in optimizers()
            .into_iter()
            .chain([OptimizerConfig::Adam(AdamConfig::default())])
        {
            let t = task(n_layer, opt);
            let units = step_units(&t);
            let sum: u64 = (0..units).map(|k| unit_ops(&t, k)).sum();
            assert_eq!(sum, t.step_ops(), "{opt:?} L={n_layer}");
            assert_eq!(unit_ops(&t, units), 0);
            let forward: u64 = (0..units)
                .filter(|&k| matches!(unit_kind(&t, k), Some(Unit::Embed | Unit::BlockForward(_))))
                .map(|k| unit_ops(&t, k))
                .sum();
            // The forward units and the head unit's `ln_f + lm_head` are the
            // inference meter; the head unit adds the cross-entropy.
            assert!(forward < t.forward_ops());
            let head = (0..units)
                .find(|&k| unit_kind(&t, k) == Some(Unit::Head))
                .unwrap();
            assert!(forward + unit_ops(&t, head) > t.forward_ops());
        }
    }
}

#[test]
fn untrusted_carry_bytes_are_refused_never_a_panic() {
    let t = task(2, adamw());
    let s0 = t.initial_state(Init::Seed(9)).unwrap();
    let units = step_units(&t);
    for k in [0, 1, 3, 4, 6, 7, 8, units] {
        let bytes = carry_bytes_at(&t, &s0, k).unwrap();
        // Every truncation.
        for n in 0..bytes.len() {
            assert!(
                StepCarry::decode(&bytes[..n], &t, limits()).is_err(),
                "carry {k} cut to {n}"
            );
        }
        // One byte too many.
        let mut long = bytes.clone();
        long.push(0);
        assert!(StepCarry::decode(&long, &t, limits()).is_err());
        // Over the limit.
        let small = CarryLimits {
            max_bytes: bytes.len() as u64 - 1,
        };
        assert!(matches!(
            StepCarry::decode(&bytes, &t, small),
            Err(TaskError::TooLarge { .. })
        ));
        // Flipped header bytes (magic, step, position, the state's header): an
        // error or a carry that still runs (or refuses to) without panicking.
        for i in 0..64.min(bytes.len()) {
            for flip in [0x01u8, 0x80, 0xff] {
                let mut c = bytes.clone();
                c[i] ^= flip;
                if let Ok(carry) = StepCarry::decode(&c, &t, limits()) {
                    let _ = run_unit(&t, 0, k, &carry);
                }
            }
        }
    }
    // Garbage, and carries claiming positions the task does not have.
    assert!(matches!(
        StepCarry::decode(b"AGMODEL1........", &t, limits()),
        Err(TaskError::NotA("carry"))
    ));
    let mut g = 0x9e37_79b9_7f4a_7c15u64;
    for len in [0usize, 7, 8, 19, 20, 21, 64, 1000, 5000] {
        let mut junk = b"AGCARRY1".to_vec();
        while junk.len() < len {
            g ^= g << 13;
            g ^= g >> 7;
            g ^= g << 17;
            junk.push(g as u8);
        }
        junk.truncate(len);
        assert!(StepCarry::decode(&junk, &t, limits()).is_err());
    }
    for (step, done) in [
        (t.steps, 1u32),
        (0, 0),
        (0, units),
        (0, u32::MAX),
        (u64::MAX, 3),
    ] {
        let mut h = b"AGCARRY1".to_vec();
        h.extend_from_slice(&step.to_le_bytes());
        h.extend_from_slice(&done.to_le_bytes());
        h.extend_from_slice(&[0u8; 64]);
        assert!(StepCarry::decode(&h, &t, limits()).is_err());
    }
    // A carry of one task is not a carry of another batch shape.
    let mut other = t.clone();
    other.batch = 3;
    let bytes = carry_bytes_at(&t, &s0, 3).unwrap();
    assert!(StepCarry::decode(&bytes, &other, limits()).is_err());
    let carry = StepCarry::decode(&bytes, &t, limits()).unwrap();
    assert!(run_unit(&other, 0, 3, &carry).is_err());
    // A state of another optimizer is refused as carry 0.
    let sgd = task(
        2,
        OptimizerConfig::Sgd {
            lr: 0.1,
            momentum: 0.0,
        },
    );
    let sgd_state = sgd.initial_state(Init::Seed(1)).unwrap().encode();
    assert!(StepCarry::decode(&sgd_state, &t, limits()).is_err());
    // An invalid task is refused before the bytes are read.
    let mut bad = t.clone();
    bad.seq = 0;
    assert!(matches!(
        StepCarry::decode(&bytes, &bad, limits()),
        Err(TaskError::Invalid(_))
    ));
}

#[test]
fn carry_sizes_of_the_shipped_shape_are_bounded_by_the_default_limits() {
    // The shipped recipe's shape as a task (not run: only the layout).
    let r = agentic_compute::train::shipped::Recipe::shipped();
    let t = TrainTask {
        config: r.config,
        optimizer: OptimizerConfig::Adam(r.adam),
        schedule: LrSchedule::WarmupLinearDecay {
            warmup: r.warmup,
            min_lr_frac: r.min_lr_frac,
        },
        steps: r.steps,
        batch: r.batch,
        seq: r.seq,
        data_seed: r.data_seed,
        token_width: TokenWidth::U8,
        data: CORPUS.as_bytes().to_vec(),
    };
    t.validate(TaskLimits::default()).unwrap();
    let units = step_units(&t);
    let sizes: Vec<u64> = (0..=units)
        .map(|k| {
            let l = carry_layout(&t, 0, k).unwrap();
            let last = l.last().unwrap();
            last.offset + last.len
        })
        .collect();
    let state = TrainState::decode(&t.initial_state(Init::Seed(1)).unwrap().encode(), &t)
        .unwrap()
        .encode()
        .len() as u64;
    assert_eq!(sizes[0], state);
    let max = *sizes.iter().max().unwrap();
    assert!(max < CarryLimits::default().max_bytes);
    println!("shipped shape: {units} units, carry bytes {sizes:?}");
    let small = task(2, adamw());
    let s0 = small.initial_state(Init::Seed(1)).unwrap();
    let small_sizes: Vec<usize> = (0..=step_units(&small))
        .map(|k| carry_bytes_at(&small, &s0, k).unwrap().len())
        .collect();
    println!("test task (L=2, d=16, 2×10, AdamW): carry bytes {small_sizes:?}");
}
