//! `agentic bench pipeline` through the built binary on a tiny batch: the JSON has the
//! documented shape, every job completed in both runs, and the 1-stage and 3-stage runs
//! returned the same outputs (and the bench's local reference's). No timing is asserted.

use std::process::Command;

use serde_json::Value;

#[test]
fn tiny_batch_completes_with_identical_outputs_on_one_and_three_providers() {
    let out = Command::new(env!("CARGO_BIN_EXE_agentic"))
        .args(["bench", "pipeline", "--json"])
        .args(["--jobs", "2", "--lines", "2", "--stages", "3"])
        .args(["--validators", "1", "--challenge-window", "1"])
        .args(["--timeout", "120"])
        .output()
        .expect("run agentic");
    assert!(
        out.status.success(),
        "bench pipeline failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");

    for key in ["ratio", "added_latency_per_stage_ms", "block_interval_ms"] {
        assert!(v[key].as_f64().is_some_and(f64::is_finite), "{key}: {v}");
    }
    assert!(v["ratio"].as_f64().unwrap() > 0.0);
    assert_eq!(v["jobs"], 2);
    assert_eq!(v["stages"], 3);
    assert_eq!(v["outputs_identical"], true);

    let outputs = |phase: &str| -> Vec<String> {
        let p = &v[phase];
        assert_eq!(p["jobs"], 2, "{phase}");
        assert_eq!(p["completed"], 2, "{phase}: every job completed");
        assert_eq!(p["deadline_misses"], 0, "{phase}");
        assert!(p["jobs_per_s"].as_f64().unwrap() > 0.0, "{phase}");
        for k in ["mean", "p50", "max"] {
            assert!(p["latency_ms"][k].as_f64().unwrap() > 0.0, "{phase} {k}");
        }
        p["outputs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| {
                let h = h.as_str().expect("every job has an output").to_string();
                assert_eq!(h.len(), 64, "a blake3 hash in hex: {h}");
                h
            })
            .collect()
    };
    let single = outputs("single");
    let pipeline = outputs("pipeline");
    assert_eq!(v["single"]["stages"], 1);
    assert_eq!(v["pipeline"]["stages"], 3);
    assert_eq!(single.len(), 2);
    assert_eq!(
        single, pipeline,
        "1-stage and 3-stage outputs are the same bits"
    );
    let reference: Vec<String> = v["reference_outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h.as_str().unwrap().to_string())
        .collect();
    assert_eq!(single, reference, "and those of a local run");
    assert_ne!(single[0], single[1], "different inputs, different outputs");
    // Job 0 again, alone, in each run: the same output once more.
    for phase in ["single", "pipeline"] {
        assert_eq!(
            v[phase]["solo_job"]["output"], v["reference_outputs"][0],
            "{phase}"
        );
    }

    // Every stage of the pipeline has a timeline, and the breakdown one entry per hop.
    assert_eq!(v["pipeline"]["timeline"].as_array().unwrap().len(), 3);
    assert_eq!(v["pipeline"]["hop_ms"].as_array().unwrap().len(), 2);
    let b = &v["breakdown"];
    assert_eq!(b["compute_ms_per_stage"].as_array().unwrap().len(), 3);
    assert_eq!(b["activation_push_ms_per_hop"].as_array().unwrap().len(), 2);
    assert_eq!(b["activation_bytes_per_hop"].as_array().unwrap().len(), 2);
}
