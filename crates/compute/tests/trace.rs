//! Determinism of traces: the same model and input give the same trace root on 1 and
//! 2 threads, on the SIMD path and the forced scalar path, across repeated runs; the
//! shipped decoder has a golden root; pipeline stages chain; canonical bytes decode
//! back into the referee's input.

mod common;

use agentic_compute::activation::DecodeLimits;
use agentic_compute::kernels::set_force_scalar;
use agentic_compute::models::{GenerateConfig, Sampling};
use agentic_compute::registry;
use agentic_compute::{reexecute_layer, Activation, Hash, Model, Trace};
use common::{minilm, small_bert, with_threads};

/// Runs `f` with every combination of 1/2 threads and SIMD/scalar; all results equal.
fn same_everywhere<T: PartialEq + std::fmt::Debug + Send>(f: impl Fn() -> T + Sync) -> T {
    let mut results = Vec::new();
    for scalar in [false, true] {
        set_force_scalar(scalar);
        for threads in [1, 2, 2] {
            results.push(with_threads(threads, &f));
        }
    }
    set_force_scalar(false);
    let first = results.remove(0);
    for r in &results {
        assert_eq!(&first, r);
    }
    first
}

#[test]
fn shipped_decoder_golden_roots_threads_and_scalar() {
    let m = registry::load("tiny-gpt").unwrap();
    let Model::Gpt(gpt) = &m.model else {
        panic!("tiny-gpt is a decoder")
    };
    let prompt = m
        .tokenizer
        .as_ref()
        .unwrap()
        .encode("The Fox and the")
        .unwrap();
    let (fwd, gen, tokens) = same_everywhere(|| {
        let fwd = m
            .model
            .run(Activation::tokens(std::slice::from_ref(&prompt)).unwrap())
            .unwrap()
            .trace
            .root;
        let cfg = GenerateConfig {
            max_tokens: 32,
            sampling: Sampling::Seeded {
                seed: 5,
                temperature: 0.8,
                top_k: Some(40),
            },
            stop_token: None,
        };
        let g = gpt.generate(&prompt, &cfg).unwrap();
        (fwd, g.run.trace.root, g.tokens)
    });
    assert_eq!(tokens.len(), 32);
    assert_eq!(
        fwd,
        TINY_GPT_FORWARD.parse::<Hash>().unwrap(),
        "forward {fwd}"
    );
    assert_eq!(
        gen,
        TINY_GPT_GENERATE.parse::<Hash>().unwrap(),
        "generate {gen}"
    );
}

const TINY_GPT_FORWARD: &str = "9aa7bf1c17e695d688f8fa95540c6d0d5d653b84453fbe8ce055d8eed9957fdf";
const TINY_GPT_GENERATE: &str = "5ca1241dc4ca34046b5d2c6bb4b03cdcbb7a2024b7a5a8093e80c8c784f35163";

#[test]
fn minilm_root_threads_and_scalar() {
    let m = minilm();
    let root = same_everywhere(|| {
        m.model
            .run(
                m.encode(&["Scalar or SIMD, one thread or two.", "Same bits."])
                    .unwrap(),
            )
            .unwrap()
            .trace
            .root
    });
    assert_ne!(root, Hash::default());
}

/// A provider's pipeline: three stages on different "machines" (thread pools), handing
/// activations over as canonical bytes; the joined trace equals the single-job trace,
/// and the referee re-executes any layer from the decoded bytes.
#[test]
fn pipeline_stages_over_canonical_bytes() {
    let m = small_bert();
    let input = Activation::tokens(&[vec![4, 8, 15, 16, 23, 42], vec![1, 2]]).unwrap();
    let whole = m.model.run(input.clone()).unwrap();
    let mut act = input;
    let mut traces = Vec::new();
    for (i, range) in [0..1, 1..3, 3..4].into_iter().enumerate() {
        let out = with_threads(1 + i % 2, || {
            m.model.run_range(range.clone(), act.clone()).unwrap()
        });
        let bytes = out.output.canonical_bytes();
        act = Activation::from_canonical_bytes(&bytes, DecodeLimits::default()).unwrap();
        assert_eq!(act.hash(), out.trace.output_hash());
        traces.push(out.trace);
    }
    assert_eq!(Trace::concat(&traces).unwrap(), whole.trace);
    // A stage that claims a different input does not chain.
    let mut broken = traces.clone();
    broken[1].input_hash = Hash([7; 32]);
    assert!(Trace::concat(&broken).is_err());
    // Referee: layer 2 from stage 1's decoded input bytes.
    let l1 = m
        .model
        .run_range(
            0..2,
            Activation::tokens(&[vec![4, 8, 15, 16, 23, 42], vec![1, 2]]).unwrap(),
        )
        .unwrap();
    let decoded =
        Activation::from_canonical_bytes(&l1.output.canonical_bytes(), DecodeLimits::default())
            .unwrap();
    assert_eq!(
        reexecute_layer(&m.model, 2, &decoded).unwrap(),
        whole.trace.layer_hashes[2]
    );
}

/// A cheating provider's trace (one layer perturbed) disagrees with re-execution at
/// exactly that layer.
#[test]
fn tampered_layer_is_caught_by_reexecution() {
    let m = small_bert();
    let input = Activation::tokens(&[vec![3, 1, 4, 1, 5]]).unwrap();
    let honest = m.model.run(input.clone()).unwrap();
    let mut acts = vec![input];
    for i in 0..m.model.layers() {
        let next = m.model.run_layer(i, acts.last().unwrap()).unwrap();
        acts.push(next);
    }
    // The cheater flips one bit of layer 1's output and continues honestly from there.
    let mut data = acts[2].tensor().data().to_vec();
    data[0] = f32::from_bits(data[0].to_bits() ^ 1);
    let bad = Activation::from_parts(
        acts[2].kind(),
        acts[2].seq_lens().to_vec(),
        vec![],
        acts[2].rows(),
        acts[2].width(),
        data,
    )
    .unwrap();
    let rest = m.model.run_range(2..m.model.layers(), bad.clone()).unwrap();
    let mut hashes = vec![honest.trace.layer_hashes[0], bad.hash()];
    hashes.extend(rest.trace.layer_hashes);
    let cheat = Trace::from_hashes(0, honest.trace.input_hash, hashes);
    assert_ne!(cheat.root, honest.trace.root);
    // Bisection would find layer 1: inputs agree, outputs differ; re-execution decides.
    let first_diff = (0..m.model.layers())
        .find(|&i| cheat.layer_hashes[i] != honest.trace.layer_hashes[i])
        .unwrap();
    assert_eq!(first_diff, 1);
    assert_eq!(
        reexecute_layer(&m.model, 1, &acts[1]).unwrap(),
        honest.trace.layer_hashes[1]
    );
    assert_ne!(
        reexecute_layer(&m.model, 1, &acts[1]).unwrap(),
        cheat.layer_hashes[1]
    );
}
