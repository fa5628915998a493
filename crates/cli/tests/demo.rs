//! The main job: `agentic demo` runs the whole story, exits 0, and its report
//! shows what the protocol promises (exact pipeline payment, the mandate
//! refusal, the cheater slashed at the faked layer, the parameter change,
//! supply conserved). Two runs give the same state root.

use std::process::Command;

fn demo_json() -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_agentic"))
        .args(["demo", "--json"])
        .output()
        .expect("run agentic demo");
    assert!(
        out.status.success(),
        "demo failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("demo prints JSON")
}

#[test]
fn demo_tells_the_whole_story() {
    let report = demo_json();
    assert_eq!(report["supply_conserved"], true);
    assert_eq!(report["supply_held"], report["supply_expected"]);
    // Pipeline: 20 mega-ops at 5 and 20 at 6 → 220 billed, plus the submit fee.
    assert_eq!(report["pipeline_job"]["requester_spent"], 221);
    assert_eq!(
        report["pipeline_job"]["providers"],
        serde_json::json!(["frankfurt", "virginia"])
    );
    assert!(report["agent_job"]["refused"]
        .as_str()
        .unwrap()
        .contains("per-job cap"));
    let dispute = &report["dispute"];
    assert_eq!(dispute["disputed_layer"], 5);
    assert_eq!(dispute["rounds"], 3);
    assert_eq!(dispute["slash"]["who"], "cut-rate");
    // Default parameters: 50% of the 50,000 bond, split 40% / 30% / rest burned.
    assert_eq!(dispute["slash"]["amount"], "25000");
    assert_eq!(dispute["slash"]["to_winner"], "10000");
    assert_eq!(dispute["slash"]["to_requester"], "7500");
    assert_eq!(dispute["slash"]["burned"], "7500");
    assert_eq!(report["governance"]["after"], 150_000);
    assert_eq!(
        report["state_root"],
        demo_json()["state_root"],
        "the demo is deterministic"
    );
}

#[test]
fn bench_ledger_reports_a_ratio() {
    let out = Command::new(env!("CARGO_BIN_EXE_agentic"))
        .args([
            "bench",
            "ledger",
            "--json",
            "--txs",
            "2000",
            "--accounts",
            "100",
            "--block",
            "500",
            "--reps",
            "1",
        ])
        .output()
        .expect("run agentic bench ledger");
    assert!(
        out.status.success(),
        "bench failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    for field in [
        "ratio",
        "signed_transfers_per_sec",
        "apply_only_transfers_per_sec",
        "raw_ed25519_batch_verify_per_sec",
    ] {
        assert!(
            v[field].as_f64().is_some_and(|x| x > 0.0),
            "{field} missing: {v}"
        );
    }
}
