//! The auditor's cost against the provider's: SmolLM2-135M generates 64 tokens after a
//! chat prompt (step by step, a whole-model [`StageSession`]), then [`replay_stage`]
//! re-checks the whole generation as one teacher-forced prefill. Then the same generation
//! split over three stages, each stage replayed from the input rows it received
//! ([`replay_claim_from_rows`], an auditor's cost past stage 0) and from the prefix
//! ([`replay_stage`]). Prints each run's wall time, the ratios replay / generation, and
//! a digest of the bits (trace roots, tokens) so a change to the kernels can be checked
//! for bit-exactness by comparing digests.
//!
//! ```text
//! cargo run --release -p agentic-compute --example llm_replay_speed [-- RUNS [TOKENS [REPLAYS]]]
//! ```

use std::time::Instant;

use agentic_compute::llm::stage::{
    replay_claim_from_rows, replay_stage, rows_input_claim, GenerationRequest, StageInput,
    StageOutput, StageRange, StageSession, StageTrace,
};
use agentic_compute::llm::{self, Sampler};
use agentic_compute::registry;

/// The prompt of `agentic bench generate`.
const PROMPT: &str = "Name three colours of the rainbow.";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let runs: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(3);
    let max_tokens: u32 = args.next().map(|a| a.parse()).transpose()?.unwrap_or(64);
    let replays: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(runs);
    let path = registry::fetch_smollm2(&registry::smollm2_dir())?;
    let m = llm::generate::load_gguf(&path)?;
    let model = &m.model;
    let c = model.config();
    let whole = StageRange::new(0, c.layers());
    let req = GenerationRequest {
        prompt: m.encode_prompt(PROMPT, true)?,
        max_tokens,
        sampler: Sampler::Greedy,
        stop: Vec::new(),
    };
    println!(
        "smollm2-135m: prompt {} tokens + {} generated, rayon threads {}",
        req.prompt.len(),
        max_tokens,
        rayon::current_num_threads()
    );

    // The provider: prefill the prompt, then one decode row per token.
    let generate = || -> Result<(Vec<u32>, StageTrace, f64), Box<dyn std::error::Error>> {
        let t0 = Instant::now();
        let capacity = req.prompt.len() + max_tokens as usize;
        let mut s = StageSession::with_capacity(model, whole, capacity)?;
        let mut trace = StageTrace::default();
        let mut tokens = Vec::new();
        let mut input = req.prompt.clone();
        while tokens.len() < max_tokens as usize {
            let r = s.step(StageInput::Tokens(input))?;
            trace.push(&r);
            let StageOutput::Logits(logits) = r.output else {
                return Err("the whole model returns logits".into());
            };
            let tok = req.sampler.pick(&logits, tokens.len() as u64);
            tokens.push(tok);
            input = vec![tok];
        }
        Ok((tokens, trace, t0.elapsed().as_secs_f64()))
    };

    let mut gen_s = Vec::new();
    let mut reference = None;
    for run in 0..runs {
        let (tokens, trace, s) = generate()?;
        println!("generate run {run}: {:8.1} ms", s * 1e3);
        gen_s.push(s);
        reference = Some((tokens, trace));
    }
    let (tokens, trace) = reference.ok_or("no run")?;

    let mut replay_s = Vec::new();
    for run in 0..replays {
        let t0 = Instant::now();
        let (replayed, picks) = replay_stage(model, &whole, &req.prompt, &tokens, &req.sampler)?;
        let s = t0.elapsed().as_secs_f64();
        println!("replay   run {run}: {:8.1} ms", s * 1e3);
        replay_s.push(s);
        if let Some((t, _)) = (replayed.leaves.iter().zip(&trace.leaves))
            .enumerate()
            .find(|(_, (a, b))| a != b)
        {
            return Err(format!("replay leaves differ from the generation's at step {t}").into());
        }
        if picks.as_deref() != Some(&tokens[..]) {
            return Err("replay picks differ from the generated tokens".into());
        }
    }

    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (g, r) = (median(&mut gen_s), median(&mut replay_s));
    println!(
        "median: generate {:.1} ms, replay {:.1} ms, replay / generate = {:.3}",
        g * 1e3,
        r * 1e3,
        r / g
    );

    // The same generation over three stages; each stage replayed from its input rows.
    let ranges = [
        StageRange::new(0, 11),
        StageRange::new(11, 10),
        StageRange::new(21, c.layers() - 21),
    ];
    let t0 = Instant::now();
    let capacity = req.prompt.len() + max_tokens as usize;
    let mut sessions = ranges
        .iter()
        .map(|r| StageSession::with_capacity(model, *r, capacity))
        .collect::<Result<Vec<_>, _>>()?;
    let mut traces = vec![StageTrace::default(); ranges.len()];
    let mut split = Vec::new();
    let mut next = StageInput::Tokens(req.prompt.clone());
    while split.len() < max_tokens as usize {
        for (s, trace) in sessions.iter_mut().zip(&mut traces) {
            let r = s.step(next)?;
            trace.push(&r);
            next = match r.output {
                StageOutput::Rows(rows) => StageInput::Rows(rows),
                StageOutput::Logits(logits) => {
                    let tok = req.sampler.pick(&logits, split.len() as u64);
                    split.push(tok);
                    StageInput::Tokens(vec![tok])
                }
            };
        }
    }
    let split_s = t0.elapsed().as_secs_f64();
    if split != tokens {
        return Err("the split generation's tokens differ from the whole model's".into());
    }
    println!(
        "3-stage generation (one thread of stages): {:8.1} ms",
        split_s * 1e3
    );
    let mut longest = 0f64;
    let mut total = 0f64;
    for (i, ((r, s), trace)) in ranges.iter().zip(&sessions).zip(&traces).enumerate() {
        let rows = s.input_rows();
        let mut best = f64::MAX;
        for _ in 0..replays.max(1) {
            let t0 = Instant::now();
            let (replayed, input, _) = if i == 0 {
                let (t, _) = replay_stage(model, r, &req.prompt, &tokens, &req.sampler)?;
                (t, Default::default(), Default::default())
            } else {
                replay_claim_from_rows(model, r, &req.prompt, &tokens, rows, &req.sampler)?
            };
            best = best.min(t0.elapsed().as_secs_f64());
            if replayed.root() != trace.root() {
                return Err(format!("stage {i}: the replay's trace differs").into());
            }
            if i > 0 && input != rows_input_claim(model, r, req.prompt.len(), tokens.len(), rows)? {
                return Err(format!("stage {i}: the rows' claim differs").into());
            }
        }
        let t0 = Instant::now();
        let (prefix, _) = replay_stage(model, r, &req.prompt, &tokens, &req.sampler)?;
        let prefix_s = t0.elapsed().as_secs_f64();
        if prefix.root() != trace.root() {
            return Err(format!("stage {i}: the prefix replay's trace differs").into());
        }
        println!(
            "stage {i} (layers {:?}): replay from its rows {:6.1} ms, from the prefix {:6.1} ms",
            r.layers(),
            best * 1e3,
            prefix_s * 1e3
        );
        longest = longest.max(best);
        total += best;
    }
    println!(
        "3 stages: longest stage replay / whole generation = {:.3}, all stages' replays / whole generation = {:.3}",
        longest / g,
        total / g
    );

    let mut digest = blake3::Hasher::new();
    for t in &tokens {
        digest.update(&t.to_le_bytes());
    }
    digest.update(&trace.root().0);
    println!("bits: trace root {:?}", trace.root());
    println!(
        "bits: digest (tokens + root) {}",
        digest.finalize().to_hex()
    );
    Ok(())
}
