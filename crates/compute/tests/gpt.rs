//! GPT decoder: generation (greedy and seeded) against the committed full pass,
//! re-execution, metering, determinism, golden roots.

mod common;

use agentic_compute::models::gpt::tokens_from_logits;
use agentic_compute::models::{GenerateConfig, Sampling, StopReason};
use agentic_compute::registry;
use agentic_compute::{reexecute_layer, Activation, Hash};
use common::{gpt_weights, small_gpt, with_threads, GPT_CONFIG};

fn greedy(n: usize) -> GenerateConfig {
    GenerateConfig {
        max_tokens: n,
        sampling: Sampling::Greedy,
        stop_token: None,
    }
}

fn seeded(n: usize, seed: u64) -> GenerateConfig {
    GenerateConfig {
        max_tokens: n,
        sampling: Sampling::Seeded {
            seed,
            temperature: 0.8,
            top_k: Some(40),
        },
        stop_token: None,
    }
}

fn gpt(m: &registry::LoadedModel) -> &agentic_compute::models::Gpt {
    match &m.model {
        agentic_compute::Model::Gpt(g) => g,
        _ => unreachable!("a GPT"),
    }
}

/// The KV-cached decode yields exactly the tokens the committed full pass implies: the
/// verifier re-derives them from the trace's logits, for greedy and seeded sampling.
#[test]
fn cached_generation_matches_the_committed_full_pass() {
    let m = small_gpt();
    let prompt = m
        .tokenizer
        .as_ref()
        .unwrap()
        .encode("Hello, agent")
        .unwrap();
    for cfg in [greedy(20), seeded(20, 42), seeded(20, 7)] {
        let g = gpt(&m).generate(&prompt, &cfg).unwrap();
        assert_eq!(g.tokens.len(), 20);
        assert_eq!(g.stop, StopReason::MaxTokens);
        let derived = tokens_from_logits(&g.run.output, prompt.len(), cfg.sampling).unwrap();
        assert_eq!(derived, g.tokens, "{cfg:?}");
        assert_eq!(
            g.run.ops,
            m.model
                .meter(&agentic_compute::InputShape::Tokens {
                    seq_lens: vec![prompt.len() + 19]
                })
                .unwrap()
        );
    }
}

/// Seeds matter, and the same seed repeats exactly.
#[test]
fn seeded_sampling_is_reproducible() {
    let m = small_gpt();
    let prompt = vec![72, 105, 33];
    let a = gpt(&m).generate(&prompt, &seeded(30, 1)).unwrap();
    let b = gpt(&m).generate(&prompt, &seeded(30, 1)).unwrap();
    let c = gpt(&m).generate(&prompt, &seeded(30, 2)).unwrap();
    assert_eq!(a.tokens, b.tokens);
    assert_eq!(a.run.trace, b.run.trace);
    assert_ne!(a.tokens, c.tokens);
}

/// Generation stops at the context length and at the stop token.
#[test]
fn generation_stops_at_context_and_stop_token() {
    let m = small_gpt();
    let g = gpt(&m).generate(&[1, 2, 3], &greedy(1000)).unwrap();
    assert_eq!(g.stop, StopReason::ContextFull);
    assert_eq!(
        3 + g.tokens.len(),
        48 + 1,
        "the last token is predicted from a full context"
    );
    let first = gpt(&m).generate(&[1, 2, 3], &greedy(1)).unwrap().tokens[0];
    let cfg = GenerateConfig {
        stop_token: Some(first),
        ..greedy(10)
    };
    let g = gpt(&m).generate(&[1, 2, 3], &cfg).unwrap();
    assert_eq!(
        (g.tokens.as_slice(), g.stop),
        ([first].as_slice(), StopReason::StopToken)
    );
}

/// Every layer hash of a full run is reproduced by re-executing that layer alone; the
/// checkpoint loads under the `transformer.` prefix too, with the same results.
#[test]
fn gpt_single_layer_reexecution_and_prefix() {
    let m = small_gpt();
    let input =
        Activation::tokens(&[b"abcdef".iter().map(|&b| b as u32).collect(), vec![9, 8]]).unwrap();
    let run = m.model.run(input.clone()).unwrap();
    assert_eq!(run.ops, m.model.meter(&input.input_shape()).unwrap());
    let mut act = input.clone();
    for i in 0..m.model.layers() {
        assert_eq!(
            reexecute_layer(&m.model, i, &act).unwrap(),
            run.trace.layer_hashes[i]
        );
        act = m.model.run_layer(i, &act).unwrap();
    }
    let prefixed = registry::load_bytes(
        GPT_CONFIG.as_bytes(),
        &gpt_weights(11, "transformer.").bytes(),
        None,
    )
    .unwrap();
    assert_eq!(prefixed.model.run(input).unwrap().trace, run.trace);
}

/// Golden roots of the synthetic decoder (a forward pass and a seeded generation),
/// equal on 1 and 2 threads.
#[test]
fn gpt_golden_roots_any_thread_count() {
    let m = small_gpt();
    let input = Activation::tokens(&[b"The market".iter().map(|&b| b as u32).collect()]).unwrap();
    let go = |threads| {
        with_threads(threads, || {
            let fwd = m.model.run(input.clone()).unwrap().trace.root;
            let g = gpt(&m)
                .generate(&[84, 104, 101], &seeded(16, 2024))
                .unwrap();
            (fwd, g.run.trace.root, g.tokens)
        })
    };
    let one = go(1);
    assert_eq!(one, go(2));
    assert_eq!(
        one.0,
        GPT_FORWARD_GOLDEN.parse::<Hash>().unwrap(),
        "forward {}",
        one.0
    );
    assert_eq!(
        one.1,
        GPT_GENERATE_GOLDEN.parse::<Hash>().unwrap(),
        "generate {}",
        one.1
    );
}

const GPT_FORWARD_GOLDEN: &str = "50f4df3c5babd1646c6eedc3429414e32e9d1ccc7443609f1d13bd57c6badc1a";
const GPT_GENERATE_GOLDEN: &str =
    "b39113da7411405aac83828779d6f10faa442ef253519feccc18c64c889904c1";
