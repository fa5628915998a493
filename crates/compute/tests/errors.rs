//! Bad input is a typed error, never a panic: wrong shapes, missing tensors, corrupt
//! files, unknown architectures, out-of-range ids, too-long input, misrouted activations.

mod common;

use agentic_compute::activation::{ActivationKind, DecodeLimits};
use agentic_compute::models::{GenerateConfig, Sampling};
use agentic_compute::registry::{self, load_bytes};
use agentic_compute::{Activation, ComputeError, InputShape, Model};
use common::{bert_weights, gpt_weights, small_bert, small_gpt, BERT_CONFIG, GPT_CONFIG};

fn err(r: Result<registry::LoadedModel, ComputeError>) -> ComputeError {
    r.expect_err("expected an error")
}

#[test]
fn wrong_tensor_shape() {
    let mut w = bert_weights(1);
    w.remove("encoder.layer.1.intermediate.dense.weight").rand(
        "encoder.layer.1.intermediate.dense.weight",
        &[64, 31],
        0.1,
    );
    match err(load_bytes(BERT_CONFIG.as_bytes(), &w.bytes(), None)) {
        ComputeError::TensorShape {
            name,
            expected,
            actual,
        } => {
            assert_eq!(name, "encoder.layer.1.intermediate.dense.weight");
            assert_eq!((expected, actual), (vec![64, 32], vec![64, 31]));
        }
        e => panic!("{e}"),
    }
}

#[test]
fn missing_tensor() {
    let mut w = gpt_weights(1, "");
    w.remove("h.1.mlp.c_proj.bias");
    assert!(matches!(
        err(load_bytes(GPT_CONFIG.as_bytes(), &w.bytes(), None)),
        ComputeError::MissingTensor { name } if name == "h.1.mlp.c_proj.bias"
    ));
}

#[test]
fn corrupt_safetensors() {
    let good = gpt_weights(1, "").bytes();
    // Truncated, garbage header, header length pointing past the end, flipped JSON.
    let mut bad_len = good.clone();
    bad_len[..8].copy_from_slice(&(u64::MAX / 2).to_le_bytes());
    let mut bad_json = good.clone();
    bad_json[8] = b'[';
    for bytes in [
        good[..good.len() - 5].to_vec(),
        b"garbage!".to_vec(),
        bad_len,
        bad_json,
        vec![],
    ] {
        assert!(matches!(
            err(load_bytes(GPT_CONFIG.as_bytes(), &bytes, None)),
            ComputeError::CorruptCheckpoint(_)
        ));
    }
}

#[test]
fn unknown_architecture_and_bad_config() {
    let w = gpt_weights(1, "").bytes();
    assert!(matches!(
        err(load_bytes(br#"{"model_type":"llama"}"#, &w, None)),
        ComputeError::UnknownArchitecture(t) if t == "llama"
    ));
    for cfg in [
        &br#"{"n_layer":2}"#[..],
        br#"not json"#,
        br#"{"model_type":"gpt2","n_layer":2,"n_head":5,"n_embd":32,"vocab_size":256,"n_positions":48}"#,
        br#"{"model_type":"gpt2","n_layer":-1,"n_head":4,"n_embd":32,"vocab_size":256,"n_positions":48}"#,
    ] {
        assert!(matches!(err(load_bytes(cfg, &w, None)), ComputeError::InvalidConfig(_)));
    }
    assert!(matches!(
        err(registry::load("/definitely/not/a/model")),
        ComputeError::ModelNotFound { .. }
    ));
}

#[test]
fn token_ids_out_of_range() {
    let bert = small_bert();
    let bad = Activation::tokens(&[vec![1, 2, 100]]).unwrap();
    assert!(matches!(
        bert.model.run(bad.clone()),
        Err(ComputeError::TokenOutOfRange {
            id: 100,
            vocab: 100
        })
    ));
    let gpt = small_gpt();
    let bad = Activation::tokens(&[vec![256]]).unwrap();
    assert!(matches!(
        gpt.model.run(bad),
        Err(ComputeError::TokenOutOfRange { id: 256, .. })
    ));
    let cfg = GenerateConfig {
        max_tokens: 3,
        sampling: Sampling::Greedy,
        stop_token: None,
    };
    let Model::Gpt(g) = &gpt.model else {
        unreachable!()
    };
    assert!(matches!(
        g.generate(&[1, 999], &cfg),
        Err(ComputeError::TokenOutOfRange { .. })
    ));
    assert!(matches!(
        g.generate(&[], &cfg),
        Err(ComputeError::EmptyInput(_))
    ));
}

#[test]
fn too_long_input() {
    let bert = small_bert();
    let long = Activation::tokens(&[vec![1; 65]]).unwrap();
    assert!(matches!(
        bert.model.run(long),
        Err(ComputeError::InputTooLong { len: 65, max: 64 })
    ));
    assert!(matches!(
        bert.model.meter(&InputShape::Tokens {
            seq_lens: vec![3, 65]
        }),
        Err(ComputeError::InputTooLong { len: 65, max: 64 })
    ));
    let gpt = small_gpt();
    let Model::Gpt(g) = &gpt.model else {
        unreachable!()
    };
    let cfg = GenerateConfig {
        max_tokens: 3,
        sampling: Sampling::Greedy,
        stop_token: None,
    };
    assert!(matches!(
        g.generate(&[1; 49], &cfg),
        Err(ComputeError::InputTooLong { len: 49, max: 48 })
    ));
}

#[test]
fn misrouted_activations_and_layers() {
    let bert = small_bert();
    let tokens = Activation::tokens(&[vec![1, 2]]).unwrap();
    // Token ids handed to an encoder block; a layer past the end; a range past the end.
    assert!(matches!(
        bert.model.run_layer(1, &tokens),
        Err(ComputeError::BadActivation { layer: 1, .. })
    ));
    assert!(matches!(
        bert.model.run_layer(4, &tokens),
        Err(ComputeError::LayerOutOfRange { .. })
    ));
    assert!(matches!(
        bert.model.run_range(2..9, tokens.clone()),
        Err(ComputeError::LayerOutOfRange { .. })
    ));
    // Hidden states of the wrong width.
    let h = Activation::from_parts(ActivationKind::Hidden, vec![2], vec![], 2, 3, vec![0.0; 6])
        .unwrap();
    assert!(matches!(
        bert.model.run_layer(2, &h),
        Err(ComputeError::BadActivation { .. })
    ));
    // A GPT layer fed MLP features; metering a GPT with feature rows.
    let gpt = small_gpt();
    let f = Activation::features(1, 32, vec![0.0; 32]).unwrap();
    assert!(matches!(
        gpt.model.run_layer(0, &f),
        Err(ComputeError::BadActivation { .. })
    ));
    assert!(gpt
        .model
        .meter(&InputShape::Rows { rows: 1, width: 32 })
        .is_err());
    // Inconsistent parts and empty input.
    assert!(
        Activation::from_parts(ActivationKind::Hidden, vec![3], vec![], 2, 1, vec![0.0; 2])
            .is_err()
    );
    assert!(matches!(
        Activation::tokens(&[]),
        Err(ComputeError::EmptyInput(_))
    ));
    assert!(matches!(
        Activation::tokens(&[vec![]]),
        Err(ComputeError::EmptyInput(_))
    ));
    assert!(Activation::from_canonical_bytes(b"AGACT1\x09", DecodeLimits::default()).is_err());
}

#[test]
fn sampling_settings_are_checked() {
    let gpt = small_gpt();
    let Model::Gpt(g) = &gpt.model else {
        unreachable!()
    };
    for (temperature, top_k) in [(0.0, None), (f32::NAN, None), (-1.0, None), (1.0, Some(0))] {
        let cfg = GenerateConfig {
            max_tokens: 2,
            sampling: Sampling::Seeded {
                seed: 1,
                temperature,
                top_k,
            },
            stop_token: None,
        };
        assert!(matches!(
            g.generate(&[1], &cfg),
            Err(ComputeError::InvalidConfig(_))
        ));
    }
}

#[test]
fn bad_tokenizer_json() {
    let w = bert_weights(1).bytes();
    assert!(matches!(
        err(load_bytes(
            BERT_CONFIG.as_bytes(),
            &w,
            Some(b"{\"broken\": ")
        )),
        ComputeError::Tokenizer(_)
    ));
}
