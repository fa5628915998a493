//! BERT / MiniLM: embeddings against sentence-transformers, re-execution, metering,
//! determinism, golden trace roots.

mod common;

use agentic_compute::{reexecute_layer, Activation, Hash, Model};
use common::{minilm, small_bert, with_threads};

#[derive(serde::Deserialize)]
struct Reference {
    cases: Vec<Case>,
}

#[derive(serde::Deserialize)]
struct Case {
    text: String,
    tokens: usize,
    embedding: Vec<f32>,
}

fn reference() -> Reference {
    serde_json::from_str(include_str!("fixtures/minilm_reference.json")).unwrap()
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let na: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb)
}

/// The committed sentence-transformers vectors (24 sentences, one of 140 tokens) match
/// ours to cosine ≥ 0.9999, embedding them as one ragged batch.
#[test]
fn minilm_matches_sentence_transformers() {
    let m = minilm();
    let r = reference();
    assert!(r.cases.len() >= 20);
    let texts: Vec<&str> = r.cases.iter().map(|c| c.text.as_str()).collect();
    let input = m.encode(&texts).unwrap();
    let lens: Vec<usize> = r.cases.iter().map(|c| c.tokens).collect();
    assert_eq!(
        input.seq_lens(),
        lens.as_slice(),
        "tokenization differs from the reference"
    );
    let (vecs, run) = m.embed(&texts).unwrap();
    assert_eq!(run.trace.layer_hashes.len(), 8);
    for (case, v) in r.cases.iter().zip(&vecs) {
        let c = cosine(&case.embedding, v);
        assert!(c >= 0.9999, "cosine {c} for {:?}", case.text);
    }
}

/// Every layer hash of a full run is reproduced by re-executing that layer alone from
/// its committed input — the referee's operation — on MiniLM.
#[test]
fn minilm_single_layer_reexecution() {
    let m = minilm();
    let input = m
        .encode(&["Validators re-execute one layer.", "Short one."])
        .unwrap();
    let run = m.model.run(input.clone()).unwrap();
    let mut act = input;
    for i in 0..m.model.layers() {
        assert_eq!(
            reexecute_layer(&m.model, i, &act).unwrap(),
            run.trace.layer_hashes[i]
        );
        act = m.model.run_layer(i, &act).unwrap();
    }
    assert_eq!(act, run.output);
}

/// Metering from shapes equals the ops counted while executing, layer by layer.
#[test]
fn minilm_meter_equals_counted() {
    let m = minilm();
    let input = m
        .encode(&[
            "One sentence.",
            "And a slightly longer second sentence here.",
        ])
        .unwrap();
    let metered = m.model.meter(&input.input_shape()).unwrap();
    let run = m.model.run(input).unwrap();
    assert_eq!(metered, run.ops);
    assert!(
        run.total_ops() > 100_000_000,
        "MiniLM on ~20 tokens is > 0.1 Gop"
    );
}

/// Batching is invisible: a sentence embedded alone or inside a batch gives the same bits.
#[test]
fn minilm_batch_does_not_change_bits() {
    let m = minilm();
    let (alone, _) = m.embed(&["The cat sat on the mat."]).unwrap();
    let (batch, _) = m
        .embed(&["Hello there.", "The cat sat on the mat.", "Bye."])
        .unwrap();
    assert_eq!(alone[0], batch[1]);
}

/// The golden MiniLM trace root: any machine, any thread count, must reproduce it.
#[test]
fn minilm_golden_root_any_thread_count() {
    let m = minilm();
    let texts = [
        "The quick brown fox jumps over the lazy dog.",
        "Agentic sells verifiable compute.",
    ];
    let root = |threads| {
        with_threads(threads, || {
            m.model.run(m.encode(&texts).unwrap()).unwrap().trace.root
        })
    };
    let r1 = root(1);
    assert_eq!(r1, root(2));
    assert_eq!(r1, root(2), "repeated runs agree");
    assert_eq!(r1, MINILM_GOLDEN.parse::<Hash>().unwrap(), "got {r1}");
}

const MINILM_GOLDEN: &str = "418e1702de067801f630e3f1c12c9bd1afbbfe759f85aad73514418760f35f1a";

/// Synthetic BERT (no download): reexecution, metering, stage concatenation, golden root.
#[test]
fn small_bert_layers_meter_and_golden_root() {
    let m = small_bert();
    let input =
        Activation::tokens(&[vec![1, 5, 9, 2], vec![3, 4], vec![7, 7, 7, 7, 7, 99]]).unwrap();
    let run = m.model.run(input.clone()).unwrap();
    assert_eq!(run.ops, m.model.meter(&input.input_shape()).unwrap());
    // Stages 0..2 and 2..4 chain into the whole run.
    let s1 = m.model.run_range(0..2, input.clone()).unwrap();
    let s2 = m
        .model
        .run_range(2..m.model.layers(), s1.output.clone())
        .unwrap();
    assert_eq!(s1.trace.output_hash(), s2.trace.input_hash);
    let joined = agentic_compute::Trace::concat(&[s1.trace, s2.trace]).unwrap();
    assert_eq!(joined, run.trace);
    // Pooled output: one unit vector per sentence.
    assert_eq!(run.output.rows(), 3);
    for v in run.output.tensor().data().chunks(32) {
        let n: f32 = v.iter().map(|x| x * x).sum();
        assert!((n - 1.0).abs() < 1e-5);
    }
    let mut act = input;
    for i in 0..m.model.layers() {
        assert_eq!(
            reexecute_layer(&m.model, i, &act).unwrap(),
            run.trace.layer_hashes[i]
        );
        act = m.model.run_layer(i, &act).unwrap();
    }
    assert!(matches!(m.model, Model::Bert(_)));
    assert_eq!(
        run.trace.root,
        SMALL_BERT_GOLDEN.parse::<Hash>().unwrap(),
        "got {}",
        run.trace.root
    );
}

const SMALL_BERT_GOLDEN: &str = "00791b30fb5aebc015e01332332432003b6a3c3e5017ef447b0b207d699d7188";
