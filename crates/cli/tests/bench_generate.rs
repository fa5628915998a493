//! `agentic bench generate` through the built binary with 8 tokens and 2 rounds: the JSON
//! has the documented shape (the figures are one round's, every round is listed); the
//! 1-stage jobs, the 3-stage rings and the ring over delayed links generated the same
//! tokens; and every stage of each ring was audited (past stage 0 from the input rows the
//! stage received). No timing is asserted beyond being positive.

use std::process::Command;

use serde_json::Value;

#[test]
fn one_stage_and_three_stage_generations_stream_the_same_tokens() {
    let out = Command::new(env!("CARGO_BIN_EXE_agentic"))
        .args([
            "bench", "generate", "--json", "--tokens", "8", "--runs", "2",
        ])
        .args(["--timeout", "240"])
        .output()
        .expect("run agentic");
    assert!(
        out.status.success(),
        "bench generate failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    assert_eq!(v["bench"], "generate");
    assert!(
        v["ratio"]
            .as_f64()
            .is_some_and(|r| r.is_finite() && r > 0.0),
        "{v}"
    );
    assert_eq!(v["tokens"], 8);
    assert_eq!(v["stages"], 3);
    assert_eq!(v["tokens_identical"], true);

    let ids = |run: &str| -> Vec<u64> {
        let r = &v[run];
        assert_eq!(r["tokens"], 8, "{run}");
        for k in [
            "ttft_submit_ms",
            "ttft_session_ms",
            "decode_tokens_per_s",
            "per_token_ms",
        ] {
            assert!(
                r[k].as_f64().is_some_and(|x| x.is_finite() && x > 0.0),
                "{run} {k}: {r}"
            );
        }
        assert!(
            r["ttft_submit_ms"].as_f64() >= r["ttft_session_ms"].as_f64(),
            "{run}: the session starts after the submission"
        );
        r["token_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_u64().unwrap())
            .collect()
    };
    let one = ids("one_stage");
    let ring = ids("ring");
    let ring_rtt = ids("ring_rtt");
    assert_eq!(one.len(), 8);
    assert_eq!(one, ring, "1 stage and 3 stages: the same tokens");
    assert_eq!(one, ring_rtt, "and over delayed links");
    assert_eq!(v["one_stage"]["stages"], 1);
    assert_eq!(v["ring"]["stages"], 3);
    assert_eq!(v["ring"]["session_wall_ms"].as_array().unwrap().len(), 3);
    assert_eq!(v["stage_layers"].as_array().unwrap().len(), 3);
    assert_eq!(v["hops"]["hops_per_token"], 3);
    assert!(v["hops"]["per_hop_ms"].as_f64().is_some_and(f64::is_finite));

    let rtt = &v["rtt"];
    assert_eq!(rtt["rtt_ms"], 20);
    assert!(rtt["bound_per_token_ms"].as_f64().unwrap() > 30.0, "{rtt}");
    assert!(
        rtt["per_token_ms"].as_f64().unwrap() >= 30.0,
        "each token crosses 3 hops of 10 ms: {rtt}"
    );

    // Every stage of the ring audited; past stage 0 from the rows the stage received.
    // (The audit figures are the median audit round's, which need not be the median
    // speed round's: checked against `runs` below.)
    let audit = &v["audit"];
    let stages = audit["stages"].as_array().unwrap();
    assert_eq!(stages.len(), 3, "{audit}");
    for (i, st) in stages.iter().enumerate() {
        assert_eq!(st["stage"], i as u64, "{audit}");
        assert_eq!(st["from_rows"], i > 0, "{audit}");
        assert!(st["replay_ms"].as_f64().unwrap() > 0.0, "{audit}");
    }
    for k in [
        "longest_replay_ms",
        "all_replays_ms",
        "generation_ms",
        "ratio",
    ] {
        assert!(audit[k].as_f64().unwrap() > 0.0, "audit {k}: {audit}");
    }
    assert!(audit["all_replays_ms"].as_f64() >= audit["longest_replay_ms"].as_f64());
    let one = &v["audit_one_stage"];
    for k in ["replay_ms", "generation_ms", "ratio"] {
        assert!(one[k].as_f64().unwrap() > 0.0, "1-stage audit {k}: {one}");
    }
    // Two rounds, each with both jobs and the ring's three audits; the figures above are
    // one of them (the median round, the lower of two).
    let runs = v["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2, "{v}");
    for r in runs {
        assert_eq!(r["stage_replays_ms"].as_array().unwrap().len(), 3, "{r}");
        for k in [
            "ratio",
            "audit_ratio",
            "generation_ms",
            "one_stage_audit_ratio",
        ] {
            assert!(r[k].as_f64().unwrap() > 0.0, "run {k}: {r}");
        }
    }
    assert!(
        runs.iter().any(|r| r["ring_job"] == v["ring"]["job"]
            && r["one_stage_job"] == v["one_stage"]["job"]
            && r["ratio"] == v["ratio"]),
        "the speed figures are one round's: {v}"
    );
    assert!(
        runs.iter().any(|r| r["ring_job"] == audit["job"]
            && r["one_stage_job"] == one["job"]
            && r["audit_ratio"] == audit["ratio"]),
        "the audit figures are one round's: {v}"
    );
    let referee = &v["referee"];
    let (last, worst, job) = (
        referee["ops_last_step"].as_u64().unwrap(),
        referee["ops_worst_leaf"].as_u64().unwrap(),
        referee["job_ops"].as_u64().unwrap(),
    );
    assert!(0 < last && last <= worst && worst < job, "{referee}");
}
