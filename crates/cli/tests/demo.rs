//! The main job: `agentic demo` runs the whole story on a real local network
//! (validators with consensus, provider daemons, the requester SDK), exits 0,
//! and its JSON report shows what the protocol promises. The test recomputes
//! each claim from the report's raw numbers rather than trusting the demo's
//! own checks: the pipeline output against its own local run of the model, every
//! bill as ops × price, the refusal's reason, the penalty, the parameter after
//! the vote, and the supply.

use std::process::Command;

use serde_json::Value;

fn demo_json() -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_agentic"))
        .args(["demo", "--json"])
        .output()
        .expect("run agentic demo");
    assert!(
        out.status.success(),
        "demo failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    serde_json::from_slice(&out.stdout).expect("demo prints JSON")
}

/// An exact amount: a decimal string.
fn amount(v: &Value) -> u128 {
    v.as_str()
        .unwrap_or_else(|| panic!("not an amount string: {v}"))
        .parse()
        .unwrap()
}

fn int(v: &Value) -> u128 {
    u128::from(v.as_u64().unwrap_or_else(|| panic!("not an integer: {v}")))
}

/// Checks every stage of a bill: ops × price / 10^6, paid once; returns the total.
fn check_bill(stages: &Value) -> u128 {
    let mut total = 0;
    for s in stages.as_array().unwrap() {
        let bill = int(&s["ops"]) * amount(&s["price"]) / 1_000_000;
        assert!(bill > 0, "{s}");
        assert_eq!(amount(&s["bill"]), bill, "{s}");
        assert_eq!(amount(&s["paid"]), bill, "paid exactly the bill: {s}");
        assert_eq!(s["payments"], 1, "paid once: {s}");
        assert_eq!(s["paid_to_deliverer"], true, "{s}");
        total += bill;
    }
    total
}

/// The output hash of one local run of tiny-gpt on `texts`, computed here.
fn local_output_hash(texts: &Value) -> String {
    let texts: Vec<&str> = texts
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    let m = agentic_compute::registry::load("tiny-gpt").unwrap();
    let out = m.model.run(m.encode(&texts).unwrap()).unwrap();
    out.trace.output_hash().to_string()
}

#[test]
fn demo_tells_the_whole_story() {
    let r = demo_json();
    let failed: Vec<&Value> = r["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["held"] != true)
        .collect();
    assert!(failed.is_empty(), "failed checks: {failed:?}");
    assert_eq!(r["all_checks_held"], true);
    assert!(r["checks"].as_array().unwrap().len() >= 15);

    // A three-stage job on three providers: the same bits as a local run, each
    // stage paid ops × price, the requester charged that plus its fee.
    let p = &r["pipeline_job"];
    let id = &p["identity"];
    assert_eq!(id["bit_identical"], true);
    assert_eq!(id["output_bytes_equal"], true);
    assert_eq!(id["output_hash"], id["local_output_hash"]);
    assert_eq!(
        id["output_hash"].as_str().unwrap(),
        local_output_hash(&p["texts"]),
        "the network's output is this test's own local run"
    );
    assert_eq!(id["trace_roots"], id["local_trace_roots"]);
    assert_eq!(id["trace_roots"].as_array().unwrap().len(), 3);
    let mut names: Vec<&str> = p["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["provider"].as_str().unwrap())
        .collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), 3, "three different providers");
    let paid = check_bill(&p["stages"]);
    assert_eq!(amount(&p["paid"]), paid);
    assert_eq!(amount(&p["requester_spent"]), paid + amount(&p["fee"]));
    assert_eq!(amount(&p["refund"]), amount(&p["escrow"]) - paid);
    for (s, t) in p["stages"]
        .as_array()
        .unwrap()
        .iter()
        .zip(p["providers"].as_array().unwrap())
    {
        assert_eq!(s["provider"], t["provider"]);
        assert!(int(&t["txs"]) >= 2, "a commit and a reveal: {t}");
        assert_eq!(amount(&t["fees"]), int(&t["txs"]), "the minimum fee is 1");
        assert_eq!(
            amount(&t["after"]) + amount(&t["fees"]),
            amount(&t["before"]) + amount(&s["bill"]),
            "{t}"
        );
        assert!(int(&t["reputation_after_ppm"]) > int(&t["reputation_before_ppm"]));
    }

    // An agent under a mandate: within the caps the principal pays the bills;
    // over the per-job cap the ledger refuses, naming the cap, and nobody pays.
    let a = &r["agent_job"];
    let cap = amount(&a["terms"]["per_job_cap"]);
    assert!(amount(&a["escrow"]) <= cap);
    let paid = check_bill(&a["stages"]);
    assert_eq!(amount(&a["principal_paid"]), paid);
    assert_eq!(amount(&a["mandate_spent"]), paid);
    assert_eq!(
        amount(&a["agent_paid"]),
        amount(&a["fee"]),
        "the agent pays its fee only"
    );
    // Fees by work: min_fee 1 + one slot per stage (one replica, optimistic: no auditor).
    assert_eq!(
        amount(&a["fee"]),
        1 + a["stages"].as_array().unwrap().len() as u128
    );
    let refused = a["refused"].as_str().unwrap();
    assert!(refused.contains("per-job cap"), "{refused}");
    assert!(refused.contains(&cap.to_string()), "{refused}");
    assert!(amount(&a["refused_escrow"]) > cap);
    assert_eq!(amount(&a["principal_lost_on_refusal"]), 0);
    assert_eq!(amount(&a["agent_lost_on_refusal"]), 0);

    // A provider killed mid-stage: re-routed, same bits, penalty exactly
    // miss_penalty_ppm of its stake (part refunded to the requester), a failure
    // on its record, the requester paying each stage once.
    let f = &r["failover"];
    assert_eq!(f["identity"]["bit_identical"], true);
    let victim = f["victim"]["name"].as_str().unwrap();
    let stage = f["stage"].as_u64().unwrap() as usize;
    assert_ne!(f["replacement"], victim);
    assert_eq!(f["stages"][stage]["provider"], f["replacement"]);
    let bonded = amount(&f["bonded_before"]);
    let penalty = bonded * int(&f["miss_penalty_ppm"]) / 1_000_000;
    assert!(penalty > 0);
    assert_eq!(amount(&f["penalty"]), penalty);
    assert_eq!(amount(&f["bonded_after"]), bonded - penalty);
    let to_requester = penalty * int(&f["slash_requester_ppm"]) / 1_000_000;
    assert_eq!(amount(&f["to_requester"]), to_requester);
    assert_eq!(amount(&f["burned"]), penalty - to_requester);
    assert!(int(&f["reputation_failure"]) > 0);
    assert!(int(&f["reputation_after_ppm"]) < int(&f["reputation_before_ppm"]));
    let paid = check_bill(&f["stages"]);
    assert_eq!(
        amount(&f["requester_spent"]) + to_requester,
        paid + amount(&f["fee"])
    );

    // The dispute: the cheater is caught by the audit, the game ends at one
    // layer, the slash is exactly the governed amounts.
    let d = &r["dispute"];
    assert_eq!(d["misbehaviour"], "perturb-ulp");
    let rounds = d["rounds"].as_array().unwrap();
    assert!(!rounds.is_empty() && rounds.len() as u64 <= int(&d["max_rounds"]) as u64);
    let last = rounds.last().unwrap();
    assert_eq!(int(&last["hi"]), int(&last["lo"]) + 1);
    assert_ne!(d["claimed_output"], d["honest_output"]);
    let bonded = amount(&d["bonded_before"]);
    let slashed = bonded * int(&d["slash_ppm"]) / 1_000_000;
    assert!(slashed > 0);
    assert_eq!(amount(&d["slashed"]), slashed);
    assert_eq!(amount(&d["bonded_after"]), bonded - slashed);
    assert_eq!(
        amount(&d["to_winner"]),
        slashed * int(&d["slash_winner_ppm"]) / 1_000_000
    );
    assert_eq!(
        amount(&d["to_requester"]),
        slashed * int(&d["slash_requester_ppm"]) / 1_000_000
    );
    assert_eq!(
        amount(&d["auditor_fee"]),
        amount(&d["escrow"]) - amount(&d["refund"])
    );
    assert_eq!(
        amount(&d["requester_spent"]) + amount(&d["to_requester"]),
        amount(&d["fee"]) + amount(&d["auditor_fee"])
    );
    // One Audited stage, one replica: two slots (the replica and the auditor) over the
    // minimum fee. The auditor committed before the cheater could reveal.
    assert_eq!(amount(&d["fee"]), 1 + 2);
    assert!(
        int(&d["audit_committed_at"]) <= int(&d["revealed_at"]),
        "{d}"
    );

    // Governance: the voted value, in force from its activation height.
    let g = &r["governance"];
    assert_eq!(g["param"], "miss_penalty_ppm");
    assert_eq!(g["after"], g["proposed"]);
    assert_eq!(int(&g["after"]), 2 * int(&g["before"]));
    assert_eq!(g["effective_height"], g["activates"]);

    // Supply conserved, on one agreed state.
    // A chat completion from smollm2-135m over three providers, bought under a
    // mandate: the tokens are a local run's, each stage audited and paid the ops of
    // the tokens generated × its price, the principal charged exactly that.
    let g = &r["generation"];
    assert_eq!(g["same_as_local_run"], true, "{g}");
    assert_eq!(g["transcript_on_chain"], true, "{g}");
    assert!(int(&g["tokens"]) > 0 && !g["text"].as_str().unwrap().is_empty());
    let mut paid = 0;
    for st in g["stages"].as_array().unwrap() {
        let bill = int(&st["ops"]) * amount(&st["price"]) / 1_000_000;
        assert!(bill > 0, "{st}");
        assert_eq!(amount(&st["bill"]), bill, "{st}");
        assert_eq!(amount(&st["paid"]), bill, "{st}");
        assert_eq!(st["audit"], "agreed", "{st}");
        paid += bill;
    }
    assert_eq!(g["stages"].as_array().unwrap().len(), 3);
    assert!(amount(&g["paid"]) > paid, "the auditors' fees on top: {g}");
    assert_eq!(amount(&g["principal_paid"]), amount(&g["paid"]));

    let s = &r["supply"];
    assert_eq!(r["supply_conserved"], true);
    assert_eq!(amount(&s["held"]), amount(&s["expected"]));
    assert_eq!(amount(&s["expected"]), amount(&s["genesis"]));
    assert_eq!(s["validators_agree"], true);
    assert_eq!(s["events_missed"], 0);
    let held: u128 = r["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| amount(&a["balance"]) + amount(&a["bonded"]))
        .sum();
    assert!(held <= amount(&s["held"]));
    assert_eq!(
        amount(&s["held"]) - held,
        amount(&s["burned"]),
        "with no job open, what the accounts do not hold was burned"
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
