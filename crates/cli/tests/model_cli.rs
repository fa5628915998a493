//! `agentic model run` through the built binary: the trace root does not depend on the
//! thread count (RAYON_NUM_THREADS=1 vs 2) nor on SIMD vs the forced scalar path.

use std::process::Command;

use agentic_compute::loader::{to_safetensors, RawTensor};
use agentic_compute::models::gpt::SplitMix64;

fn run(args: &[&str], threads: &str, scalar: bool) -> serde_json::Value {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_agentic"));
    cmd.args(args).env("RAYON_NUM_THREADS", threads);
    if scalar {
        cmd.env("AGENTIC_FORCE_SCALAR", "1");
    }
    let out = cmd.output().expect("run agentic");
    assert!(
        out.status.success(),
        "agentic {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON output")
}

fn root(v: &serde_json::Value) -> String {
    v["trace"]["root"].as_str().expect("trace root").to_string()
}

/// The shipped decoder (the default model): same generation and root on 1 and 2 threads.
#[test]
fn default_model_same_root_on_one_and_two_threads() {
    let args = [
        "model",
        "run",
        "--input",
        "The fox",
        "--max-tokens",
        "24",
        "--seed",
        "7",
        "--json",
    ];
    let one = run(&args, "1", false);
    let two = run(&args, "2", false);
    assert_eq!(root(&one), root(&two));
    assert_eq!(one["output"]["tokens"], two["output"]["tokens"]);
    assert_eq!(one["ops"]["total"], two["ops"]["total"]);
    assert_eq!(
        root(&one),
        root(&run(&args, "2", true)),
        "scalar path agrees"
    );
    assert!(one["ops"]["total"].as_u64().unwrap() > 0);
    assert_eq!(one["architecture"], "gpt2");
}

/// A model directory given by path (a small random GPT-2 written here), with greedy
/// decoding, gives the same root on 1 and 2 threads.
#[test]
fn model_directory_same_root_on_one_and_two_threads() {
    let dir = std::env::temp_dir().join(format!("agentic-model-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (v, d, p) = (256usize, 16usize, 32usize);
    let mut rng = SplitMix64::new(3);
    let mut t = Vec::new();
    let mut rand = |name: &str, shape: &[usize], scale: f32| {
        let n: usize = shape.iter().product();
        let data = (0..n)
            .map(|_| ((rng.next_u64() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale)
            .collect();
        t.push((
            name.to_string(),
            RawTensor {
                shape: shape.to_vec(),
                data,
            },
        ));
    };
    rand("wte.weight", &[v, d], 0.5);
    rand("wpe.weight", &[p, d], 0.1);
    rand("ln_f.weight", &[d], 1.0);
    rand("ln_f.bias", &[d], 0.1);
    for (name, k, n) in [
        ("attn.c_attn", d, 3 * d),
        ("attn.c_proj", d, d),
        ("mlp.c_fc", d, 4 * d),
        ("mlp.c_proj", 4 * d, d),
    ] {
        rand(&format!("h.0.{name}.weight"), &[k, n], 0.3);
        rand(&format!("h.0.{name}.bias"), &[n], 0.05);
    }
    for ln in ["ln_1", "ln_2"] {
        rand(&format!("h.0.{ln}.weight"), &[d], 1.0);
        rand(&format!("h.0.{ln}.bias"), &[d], 0.1);
    }
    let bytes = to_safetensors(t.iter().map(|(n, r)| (n.as_str(), r))).unwrap();
    std::fs::write(dir.join("model.safetensors"), bytes).unwrap();
    std::fs::write(
        dir.join("config.json"),
        r#"{"model_type":"gpt2","n_layer":1,"n_head":2,"n_embd":16,"vocab_size":256,"n_positions":32}"#,
    )
    .unwrap();
    let path = dir.to_str().unwrap();
    let args = [
        "model",
        "run",
        "--model",
        path,
        "--input",
        "abc",
        "--greedy",
        "--max-tokens",
        "10",
        "--json",
    ];
    let one = run(&args, "1", false);
    let two = run(&args, "2", false);
    assert_eq!(root(&one), root(&two));
    assert_eq!(one["layers"], 3);
    assert_eq!(one["trace"]["layer_hashes"].as_array().unwrap().len(), 3);
    std::fs::remove_dir_all(&dir).ok();
}

/// SmolLM2 (fetched once into the cache): a chat turn sampled with every knob gives the
/// same tokens and trace root on 1 and 2 threads and on the scalar path; the human
/// output streams the text, then tokens/s, ops and the root; bad input is a clear error.
#[test]
fn smollm2_chat_same_root_everywhere() {
    let args = [
        "model",
        "run",
        "--model",
        "smollm2-135m",
        "--chat",
        "--input",
        "Name a colour.",
        "--max-tokens",
        "8",
        "--temperature",
        "0.7",
        "--top-k",
        "20",
        "--top-p",
        "0.9",
        "--seed",
        "3",
        "--json",
    ];
    let one = run(&args, "1", false);
    let two = run(&args, "2", false);
    assert_eq!(root(&one), root(&two));
    assert_eq!(one["tokens"], two["tokens"]);
    assert_eq!(
        root(&one),
        root(&run(&args, "2", true)),
        "scalar path agrees"
    );
    assert_eq!(one["architecture"], "llama");
    assert!(one["ops"]["prefill"].as_u64().unwrap() > 0);
    assert!(!one["text"].as_str().unwrap().is_empty());

    let out = Command::new(env!("CARGO_BIN_EXE_agentic"))
        .args(&args[..args.len() - 1])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        one["text"].as_str().unwrap().trim(),
        "streamed text equals the JSON text"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("tokens/s") && err.contains(&root(&one)),
        "{err}"
    );

    for (bad, want) in [
        (vec!["--input", ""], "empty"),
        (vec!["--input", "hi", "--temperature", "0"], "temperature"),
        (vec!["--input", "hi", "--max-tokens", "0"], "max_tokens"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_agentic"))
            .args(["model", "run", "--model", "smollm2-135m"])
            .args(&bad)
            .output()
            .unwrap();
        assert!(!out.status.success());
        let e = String::from_utf8_lossy(&out.stderr);
        assert!(e.contains(want), "{bad:?}: {e}");
        assert!(!e.contains("panicked"), "{e}");
    }
}
