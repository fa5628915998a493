//! Training scenarios: gradient checks against finite differences (f64), SGD
//! and Adam on an MLP (loss falls, bits independent of thread count, golden
//! parameter hash), and the shipped decoder trained for 200 steps on one and
//! two threads with identical per-step trace roots.

use agentic_compute::train::shipped::{self, Recipe};
use agentic_compute::train::{
    self, optimizer_for, train_step, AdamConfig, ClassBatch, GptConfig, GptParams, MlpParams,
    OptimizerConfig, RunTrace, Trainable,
};

/// Runs `f` on a dedicated rayon pool with `threads` threads.
fn on_threads<R: Send>(threads: usize, f: impl FnOnce() -> R + Send) -> R {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("pool")
        .install(f)
}

/// Central finite differences of `model.loss` for a spread of entries of every
/// tensor, compared to the analytic gradient. Returns the worst relative error.
fn grad_check<M: Trainable<f64>>(model: &mut M, batch: &M::Batch, per_tensor: usize) -> f64 {
    let (_, grads) = model.loss_and_grads(batch).expect("grads");
    let h = 1e-5;
    let mut worst = 0.0f64;
    for (ti, g) in grads.iter().enumerate() {
        let len = model.params().tensors[ti].data.len();
        let picks: Vec<usize> = (0..per_tensor.min(len))
            .map(|i| (i * 7919 + ti * 31) % len)
            .collect();
        for &i in &picks {
            let orig = model.params().tensors[ti].data[i];
            model.params_mut().tensors[ti].data[i] = orig + h;
            let lp = model.loss(batch).expect("loss+");
            model.params_mut().tensors[ti].data[i] = orig - h;
            let lm = model.loss(batch).expect("loss-");
            model.params_mut().tensors[ti].data[i] = orig;
            let numeric = (lp - lm) / (2.0 * h);
            let analytic = g[i];
            let err = (numeric - analytic).abs() / (numeric.abs() + analytic.abs()).max(1e-6);
            assert!(
                err < 1e-5,
                "tensor {} [{i}]: analytic {analytic:e} numeric {numeric:e}",
                model.params().tensors[ti].name
            );
            worst = worst.max(err);
        }
    }
    worst
}

fn tiny_gpt_config() -> GptConfig {
    GptConfig {
        n_layer: 2,
        n_head: 2,
        n_embd: 8,
        vocab_size: 11,
        n_positions: 6,
        layer_norm_epsilon: 1e-5,
    }
}

#[test]
fn gpt_backward_matches_finite_differences() {
    let mut model = GptParams::<f64>::init(tiny_gpt_config(), 3).expect("init");
    // Perturb every tensor (LN γ/β and biases start at constants) so no
    // gradient is trivially symmetric.
    let mut r = train::rng::SplitMix64::new(99);
    for p in &mut model.params.tensors {
        for x in &mut p.data {
            *x += 0.1 * r.normal();
        }
    }
    let batch = train::TokenBatch {
        batch: 2,
        seq: 5,
        tokens: vec![1, 4, 2, 9, 10, 0, 3, 3, 7, 1, 5, 8],
    };
    let worst = grad_check(&mut model, &batch, 6);
    assert!(worst < 1e-5, "worst relative error {worst:e}");
}

#[test]
fn mlp_backward_matches_finite_differences() {
    let mut model = MlpParams::<f64>::init(&[5, 7, 6, 3], 11).expect("init");
    let b = xor_like_batch::<f64>(9, 5, 3, 4);
    let worst = grad_check(&mut model, &b, 8);
    assert!(worst < 1e-5, "worst relative error {worst:e}");
}

/// A deterministic, learnable classification set: the class is which third of
/// the range the sum of the first two features falls in, other features noise.
fn xor_like_batch<T: train::Real>(
    n: usize,
    dim: usize,
    classes: usize,
    seed: u64,
) -> ClassBatch<T> {
    let mut r = train::rng::SplitMix64::new(seed);
    let mut inputs = Vec::with_capacity(n * dim);
    let mut labels = Vec::with_capacity(n);
    for _ in 0..n {
        let xs: Vec<f64> = (0..dim).map(|_| 2.0 * r.next_f64() - 1.0).collect();
        let s = (xs[0] + xs[1] + 2.0) / 4.0; // in (0, 1)
        labels.push(((s * classes as f64) as u32).min(classes as u32 - 1));
        inputs.extend(xs.iter().map(|&x| T::from_f64(x)));
    }
    ClassBatch { n, inputs, labels }
}

struct MlpRun {
    first_loss: f64,
    last_loss: f64,
    final_root: String,
    run_root: String,
}

fn run_mlp(config: OptimizerConfig, threads: usize) -> MlpRun {
    on_threads(threads, || {
        let mut model = MlpParams::<f32>::init(&[8, 32, 32, 4], 5).expect("init");
        let mut opt = optimizer_for(&model, config);
        let mut run = RunTrace::default();
        for step in 0..150u64 {
            let batch = xor_like_batch::<f32>(64, 8, 4, 1000 + step % 10);
            run.push(train_step(&mut model, &mut opt, &batch).expect("step"));
        }
        MlpRun {
            first_loss: run.steps[0].loss,
            last_loss: run.steps[run.steps.len() - 1].loss,
            final_root: model.params.root().to_hex(),
            run_root: run.root().to_hex(),
        }
    })
}

fn check_mlp(config: OptimizerConfig, golden: &str) {
    let one = run_mlp(config, 1);
    let two = run_mlp(config, 2);
    let three = run_mlp(config, 3);
    eprintln!(
        "mlp {config:?}: loss {:.4} -> {:.4}",
        one.first_loss, one.last_loss
    );
    assert!(
        one.last_loss < 0.6 * one.first_loss,
        "loss {} -> {}",
        one.first_loss,
        one.last_loss
    );
    assert_eq!(
        one.final_root, two.final_root,
        "final parameters depend on the thread count"
    );
    assert_eq!(
        one.run_root, two.run_root,
        "step traces depend on the thread count"
    );
    assert_eq!(one.run_root, three.run_root);
    assert_eq!(
        one.final_root, golden,
        "final parameters drifted from the committed golden hash"
    );
}

#[test]
fn mlp_sgd_learns_deterministically() {
    check_mlp(
        OptimizerConfig::Sgd {
            lr: 0.1,
            momentum: 0.9,
        },
        "39aceed14939cfbdd42e76c74f18a9830f0413f39df7054b5b0eabbed877eddb",
    );
}

#[test]
fn mlp_adam_learns_deterministically() {
    check_mlp(
        OptimizerConfig::Adam(AdamConfig {
            lr: 3e-3,
            ..AdamConfig::default()
        }),
        "1b7d8dcaf16f766df724f90059fb52ddd8c874d200240bab1a639587a34eeaf2",
    );
}

#[test]
fn bad_batches_are_rejected_without_changing_state() {
    let mut model = MlpParams::<f32>::init(&[4, 3], 1).expect("init");
    let mut opt = optimizer_for(
        &model,
        OptimizerConfig::Sgd {
            lr: 0.1,
            momentum: 0.0,
        },
    );
    let before = model.params.root();
    let bad_label = ClassBatch {
        n: 1,
        inputs: vec![0.0; 4],
        labels: vec![3],
    };
    assert!(train_step(&mut model, &mut opt, &bad_label).is_err());
    let bad_shape = ClassBatch {
        n: 2,
        inputs: vec![0.0; 4],
        labels: vec![0, 1],
    };
    assert!(train_step(&mut model, &mut opt, &bad_shape).is_err());
    assert_eq!(model.params.root(), before);
    assert_eq!(opt.step, 0);

    let mut gpt = GptParams::<f32>::init(tiny_gpt_config(), 1).expect("init");
    let mut gopt = optimizer_for(&gpt, OptimizerConfig::Adam(AdamConfig::default()));
    let too_long = train::TokenBatch {
        batch: 1,
        seq: 7,
        tokens: vec![0; 8],
    };
    assert!(train_step(&mut gpt, &mut gopt, &too_long).is_err());
    let bad_token = train::TokenBatch {
        batch: 1,
        seq: 2,
        tokens: vec![0, 11, 1],
    };
    assert!(train_step(&mut gpt, &mut gopt, &bad_token).is_err());
}

/// 200 steps of the shipped decoder's architecture from its fixed init (small
/// batches to keep the test quick), on one and on two threads.
#[test]
fn shipped_decoder_200_steps_identical_across_thread_counts() {
    let recipe = Recipe {
        steps: 200,
        batch: 4,
        seq: 32,
        warmup: 20,
        ..Recipe::shipped()
    };
    let corpus = shipped::CORPUS.as_bytes();
    let run = |threads| {
        on_threads(threads, || {
            let mut model = GptParams::<f32>::init(recipe.config, recipe.init_seed).expect("init");
            let trace = shipped::train(&recipe, corpus, &mut model, |_| {}).expect("train");
            (model.params.root(), trace)
        })
    };
    let (root1, trace1) = run(1);
    let (root2, trace2) = run(2);
    assert_eq!(
        trace1.step_roots(),
        trace2.step_roots(),
        "a step trace depends on the thread count"
    );
    assert_eq!(trace1.root(), trace2.root());
    assert_eq!(root1, root2, "final parameters depend on the thread count");
    assert_eq!(trace1.steps.len(), 200);
    let mean = |s: &[train::StepTrace]| s.iter().map(|t| t.loss).sum::<f64>() / s.len() as f64;
    let first = mean(&trace1.steps[..10]);
    let last = mean(&trace1.steps[190..]);
    eprintln!(
        "shipped decoder, 200 steps: loss {first:.3} -> {last:.3}, run root {}",
        trace1.root()
    );
    assert!(last < first - 1.0, "loss {first} -> {last}");
}

/// A referee re-executes one disputed step from the committed state before it
/// and reproduces the committed step root; a provider that perturbs one weight
/// is caught at exactly that step.
#[test]
fn one_step_re_executes_and_divergence_is_located() {
    let cfg = tiny_gpt_config();
    let opt_cfg = OptimizerConfig::Adam(AdamConfig {
        lr: 1e-2,
        ..AdamConfig::default()
    });
    let batches: Vec<train::TokenBatch> = (0..6u32)
        .map(|s| train::TokenBatch {
            batch: 2,
            seq: 5,
            tokens: (0..12u32).map(|i| (i * 7 + s * 3) % 11).collect(),
        })
        .collect();
    let mut honest = GptParams::<f32>::init(cfg, 9).expect("init");
    let mut opt = optimizer_for(&honest, opt_cfg);
    let mut trace = RunTrace::default();
    let mut before_step_4 = None;
    for (i, b) in batches.iter().enumerate() {
        if i == 3 {
            before_step_4 = Some((honest.clone(), opt.clone()));
        }
        trace.push(train_step(&mut honest, &mut opt, b).expect("step"));
    }
    // The referee: from the committed state after step 3, run step 4 alone.
    let (mut m, mut o) = before_step_4.expect("saved");
    let replay = train_step(&mut m, &mut o, &batches[3]).expect("replay");
    assert_eq!(replay.root, trace.steps[3].root);

    // A cheater nudges one weight by one ulp before step 5.
    let mut cheat = GptParams::<f32>::init(cfg, 9).expect("init");
    let mut copt = optimizer_for(&cheat, opt_cfg);
    let mut ctrace = RunTrace::default();
    for (i, b) in batches.iter().enumerate() {
        if i == 4 {
            let x = &mut cheat.params.tensors[5].data[0];
            *x = f32::from_bits(x.to_bits() + 1);
        }
        ctrace.push(train_step(&mut cheat, &mut copt, b).expect("step"));
    }
    assert_ne!(trace.root(), ctrace.root());
    assert_eq!(trace.first_divergence(&ctrace), Some(4));
    // Within the step, the leaves that differ are parameters and optimizer
    // state, never the batch.
    let (a, b) = (trace.steps[4].leaves(), ctrace.steps[4].leaves());
    assert_eq!(a[0], b[0], "same batch");
    assert!(a.iter().zip(&b).any(|(x, y)| x != y));
}

/// The committed asset loads, matches its recorded hash, and models the corpus
/// far better than byte frequencies alone.
#[test]
fn shipped_model_asset_is_intact_and_trained() {
    let dir = shipped::assets_dir();
    let bytes = std::fs::read(dir.join("model.safetensors")).expect("asset present");
    assert_eq!(
        train::trace::hash_bytes(&bytes).to_hex(),
        shipped::SHIPPED_MODEL_BLAKE3
    );
    let model = shipped::load_assets(dir).expect("load");
    assert_eq!(model.config, Recipe::shipped().config);
    assert_eq!(
        model.to_safetensors().expect("serialize"),
        bytes,
        "save(load(x)) must be x"
    );
    let corpus = shipped::CORPUS.as_bytes();
    // Evaluate on the first 2 KB to keep the test quick.
    let eval = shipped::eval_loss(&model, &corpus[..2048], 64).expect("eval");
    let unigram = shipped::unigram_entropy(corpus);
    assert!(eval < unigram - 1.0, "eval {eval} vs unigram {unigram}");
}

/// The inference runtime (`models::Gpt`, loaded through the registry) and the
/// training forward agree on the shipped model: the same greedy continuation.
#[test]
fn inference_runtime_and_training_forward_agree_on_shipped_model() {
    let loaded = agentic_compute::registry::load("tiny-gpt").expect("registry loads tiny-gpt");
    let agentic_compute::Model::Gpt(gpt) = &loaded.model else {
        panic!("tiny-gpt is not a GPT");
    };
    let prompt = b"THE LION AND THE ";
    let ids: Vec<u32> = prompt.iter().map(|&b| u32::from(b)).collect();
    let cfg = agentic_compute::models::GenerateConfig {
        max_tokens: 24,
        sampling: agentic_compute::models::Sampling::Greedy,
        stop_token: None,
    };
    let inference = gpt.generate(&ids, &cfg).expect("generate").tokens;
    let trained = shipped::load_assets(shipped::assets_dir()).expect("load");
    let ours = shipped::generate(&trained, prompt, 24, 0.0, 0).expect("generate");
    let ours: Vec<u32> = ours[prompt.len()..].iter().map(|&b| u32::from(b)).collect();
    assert_eq!(inference, ours);
}
