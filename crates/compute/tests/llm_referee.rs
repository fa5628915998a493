//! The referee of a generation dispute on SmolLM2-135M: a stage that perturbs one
//! layer's rows at one step (and computes on from them) first differs from the auditor's
//! prefill replay at exactly that (step, layer); the input rows of that layer for the
//! prefix, proven against the cheater's own trace root, re-executed by the referee give
//! the auditor's leaf, not the cheater's; and a blob that lies is refused.

use std::sync::OnceLock;

use agentic_compute::llm::referee::{self, PrefixError, PrefixHeader, PrefixLimits, PrefixRows};
use agentic_compute::llm::stage::{
    replay_stage, GenerationRequest, StageInput, StageOutput, StageRange, StageSession, StageTrace,
};
use agentic_compute::llm::{self, LlmModel, Sampler};
use agentic_compute::registry;
use agentic_compute::trace::Hash;

fn smollm2() -> &'static LlmModel {
    static M: OnceLock<LlmModel> = OnceLock::new();
    M.get_or_init(|| {
        let path = registry::fetch_smollm2(&registry::smollm2_dir()).expect("fetch SmolLM2");
        llm::generate::load_gguf(&path).expect("load SmolLM2")
    })
}

const SEEDED: Sampler = Sampler::Sample {
    seed: 7,
    temperature: 0.8,
    top_k: 40,
    top_p: 0.95,
};

/// One stage `range` run as a session on the whole model's rows (the layers before it
/// computed by a clean session), faulted at `fault`; returns its trace and the tokens.
fn run_last_stage(
    m: &LlmModel,
    req: &GenerationRequest,
    fault: Option<(usize, usize)>,
) -> (StageTrace, Vec<u32>) {
    let llama = &m.model;
    let total = llama.config().layers();
    let front = StageRange::new(0, 21);
    let back = StageRange::new(21, total - 21);
    let mut a = StageSession::new(llama, front).unwrap();
    let mut b = StageSession::new(llama, back).unwrap();
    if let Some((t, l)) = fault {
        b.set_fault(t, l);
    }
    let mut trace = StageTrace::default();
    let mut tokens = Vec::new();
    let mut input = req.prompt.clone();
    for step in 0..req.max_tokens {
        let ra = a.step(StageInput::Tokens(input)).unwrap();
        let StageOutput::Rows(rows) = ra.output else {
            panic!("rows")
        };
        let rb = b.step(StageInput::Rows(rows)).unwrap();
        trace.push(&rb);
        let StageOutput::Logits(logits) = rb.output else {
            panic!("logits")
        };
        let t = req.sampler.pick(&logits, u64::from(step));
        tokens.push(t);
        input = vec![t];
    }
    (trace, tokens)
}

#[test]
fn the_referee_re_executes_the_first_perturbed_layer_from_the_prefix_rows() {
    let m = smollm2();
    let llama = &m.model;
    let req = GenerationRequest {
        prompt: m.encode_prompt("Name three colours.", true).unwrap(),
        max_tokens: 6,
        sampler: SEEDED,
        stop: Vec::new(),
    };
    let back = StageRange::new(21, llama.config().layers() - 21);
    let (step, layer) = (3usize, 26usize);
    let (cheat, tokens) = run_last_stage(m, &req, Some((step, layer)));
    // The auditor replays the cheater's transcript honestly.
    let (audit, picks) = replay_stage(llama, &back, &req.prompt, &tokens, &req.sampler).unwrap();
    assert_ne!(
        picks.unwrap(),
        tokens,
        "the perturbation changed a sampled token"
    );
    let (flat_c, flat_a) = (cheat.flat(), audit.flat());
    let w = back.count + 1;
    let first = (0..flat_c.len())
        .find(|&i| flat_c[i] != flat_a[i])
        .expect("the traces differ");
    let j = layer - back.first + 1;
    assert_eq!(
        first,
        step * w + j,
        "first difference at (step {step}, layer {layer})"
    );

    // The cheater names the rows from its own trace (everything before is agreed).
    let header = PrefixHeader {
        model: Hash([9; 32]),
        root: cheat.root(),
        leaves: flat_c.len() as u32,
        width: w as u32,
        first_layer: back.first as u32,
        leaf: first as u32,
    };
    assert_eq!(header.layer(), Some(layer as u32));
    let mut fed = req.prompt.clone();
    fed.extend_from_slice(&tokens);
    let blob = PrefixRows::build(llama, header, &fed, req.prompt.len(), &flat_c).unwrap();
    let bytes = blob.encode();
    let blob = PrefixRows::decode(&bytes, PrefixLimits::default()).unwrap();
    let out = referee::reexecute(llama, &blob).unwrap();
    assert_eq!(out, flat_a[first], "the referee sides with the auditor");
    assert_ne!(out, flat_c[first]);

    // The head and the first block of the range, at another step, agree with both.
    for (s, l) in [(1usize, llama.config().n_layer + 1), (2, back.first)] {
        let f = s * w + (l - back.first + 1);
        let h = PrefixHeader {
            leaf: f as u32,
            root: audit.root(),
            ..header
        };
        let b = PrefixRows::build(llama, h, &fed, req.prompt.len(), &flat_a).unwrap();
        assert_eq!(
            referee::reexecute(llama, &b).unwrap(),
            flat_a[f],
            "({s}, {l})"
        );
    }

    // Rows that are not the committed ones are refused.
    let mut bad = blob.clone();
    bad.rows[0] += 1.0;
    assert!(matches!(
        referee::reexecute(llama, &bad),
        Err(PrefixError::NotProven { step: 0, .. })
    ));
    let mut wrong_root = blob.clone();
    wrong_root.header.root = audit.root();
    assert!(referee::reexecute(llama, &wrong_root).is_err());
    let mut short = blob;
    short.proofs.pop();
    assert!(matches!(
        referee::reexecute(llama, &short),
        Err(PrefixError::Header(_))
    ));
}
