//! The commands that talk to a running node over its HTTP API, and the key files
//! they sign with:
//!
//! ```text
//!   agentic keys  new|show            key files (ed25519), no node needed
//!   agentic tx    --key FILE <KIND>   sign one transaction, submit it, wait for its receipt
//!   agentic query <WHAT>              read the finalized chain, follow its events, move blobs
//!                      │
//!                      ▼
//!            agentic_client::Client ──HTTP/JSON──▶ node API (`/v1/...`)
//! ```
//!
//! The node is `--node URL`, else `$AGENTIC_NODE`, else `http://127.0.0.1:8000`.
//! The client answers with the API's typed bodies (`agentic_client::api`); every
//! command prints readable text by default and, with `--json`, those bodies as the
//! JSON the API documents.
//! Failures (unreadable key file, unreachable node, the API's refusal with its
//! `code`, the ledger's rejection in a receipt) exit non-zero with the reason.

pub mod keys;
pub mod query;
pub mod tx;

use std::path::Path;

use agentic_client::keystore::KeyFile;
use agentic_client::Client;
use agentic_protocol::coord::Coord;
use agentic_protocol::tx::StageSpec;
use agentic_protocol::types::{Capabilities, Endpoint, VerificationLevel};
use agentic_protocol::{Address, Amount, Hash, ParamKey};
use serde_json::Value;

/// The node API a command talks to.
pub const DEFAULT_NODE: &str = "http://127.0.0.1:8000";

/// Where the node is (shared by `tx` and `query`).
#[derive(clap::Args, Clone, Debug)]
pub struct NodeArgs {
    /// The node's API URL [env: AGENTIC_NODE] [default: http://127.0.0.1:8000].
    #[arg(long, global = true, value_name = "URL")]
    pub node: Option<String>,
}

impl NodeArgs {
    /// The URL: the flag, else `$AGENTIC_NODE`, else [`DEFAULT_NODE`].
    pub fn url(&self) -> String {
        self.node
            .clone()
            .or_else(|| std::env::var("AGENTIC_NODE").ok().filter(|s| !s.is_empty()))
            .unwrap_or_else(|| DEFAULT_NODE.to_string())
    }

    /// A client of that node.
    pub fn client(&self) -> Client {
        Client::new(self.url())
    }
}

/// A single-threaded runtime for one command's requests.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

// ---- argument parsers (clap `value_parser`s): typed values, clear messages ----

/// A decimal amount of base units.
pub fn amount(s: &str) -> Result<Amount, String> {
    Amount::from_decimal(s).ok_or_else(|| format!("{s:?} is not a whole number of base units"))
}

/// 64 hex digits.
pub fn hash(s: &str) -> Result<Hash, String> {
    s.parse::<Hash>()
        .map_err(|e| format!("{s:?} is not 64 hex digits ({e})"))
}

/// An address: 64 hex digits, or a key file whose address to use.
pub fn address(s: &str) -> Result<Address, String> {
    if let Ok(a) = s.parse::<Address>() {
        return Ok(a);
    }
    let path = Path::new(s);
    if path.is_file() {
        return KeyFile::read(path)
            .map(|k| k.address())
            .map_err(|e| format!("{s:?} is not an address and not a usable key file: {e}"));
    }
    Err(format!(
        "{s:?} is not an address (64 hex digits) nor a key file"
    ))
}

/// A network coordinate `x,y,height` in microseconds.
pub fn coord(s: &str) -> Result<Coord, String> {
    let parts: Vec<&str> = s.split(',').map(str::trim).collect();
    let bad = || format!("{s:?} is not a coordinate x,y,height (µs; x and y signed)");
    let [x, y, h] = parts.as_slice() else {
        return Err(bad());
    };
    Ok(Coord::new(
        x.parse().map_err(|_| bad())?,
        y.parse().map_err(|_| bad())?,
        h.parse().map_err(|_| bad())?,
    ))
}

/// Capabilities: a comma list of `cpu`, `gpu`, `training`, `large-memory`, or a bit mask.
pub fn capabilities(s: &str) -> Result<Capabilities, String> {
    if let Ok(bits) = s.parse::<u64>() {
        return Ok(Capabilities(bits));
    }
    let mut caps = Capabilities(0);
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        caps = caps
            | match part.to_ascii_lowercase().replace('_', "-").as_str() {
                "cpu" => Capabilities::CPU,
                "gpu" => Capabilities::GPU,
                "training" => Capabilities::TRAINING,
                "large-memory" => Capabilities::LARGE_MEMORY,
                other => {
                    return Err(format!(
                "unknown capability {other:?} (cpu, gpu, training, large-memory, or a bit mask)"
            ))
                }
            };
    }
    Ok(caps)
}

/// A data-plane endpoint `HOST:PORT` (a name, an IPv4 address or a bracketed IPv6
/// address, and a port 1–65535); empty for none.
pub fn endpoint(s: &str) -> Result<Endpoint, String> {
    if s.is_empty() {
        return Ok(Endpoint::NONE);
    }
    let bad = |why: &str| format!("{s:?} is not an endpoint HOST:PORT: {why}");
    let (host, port) = s.rsplit_once(':').ok_or_else(|| bad("no :PORT"))?;
    if host.is_empty() {
        return Err(bad("no host"));
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => {}
        _ => return Err(bad("the port must be a number 1-65535")),
    }
    Endpoint::new(s).map_err(|e| bad(&e.to_string()))
}

/// A verification level: `optimistic`, `sampled` or `audited`.
pub fn level(s: &str) -> Result<VerificationLevel, String> {
    match s.to_ascii_lowercase().as_str() {
        "optimistic" => Ok(VerificationLevel::Optimistic),
        "sampled" => Ok(VerificationLevel::Sampled),
        "audited" => Ok(VerificationLevel::Audited),
        _ => Err(format!(
            "{s:?} is not a verification level (optimistic, sampled, audited)"
        )),
    }
}

/// A governed parameter by its name in `/v1/params` (`challenge_window`; dashes allowed).
pub fn param_key(s: &str) -> Result<ParamKey, String> {
    let name = s.replace('-', "_");
    ParamKey::ALL
        .iter()
        .copied()
        .find(|k| k.name() == name)
        .ok_or_else(|| {
            let names: Vec<&str> = ParamKey::ALL.iter().map(|k| k.name()).collect();
            format!("unknown parameter {s:?}; one of: {}", names.join(", "))
        })
}

/// A stage `FIRST:LAYERS:OPS` (first layer index, number of layers, metered ops).
pub fn stage(s: &str) -> Result<StageSpec, String> {
    let bad = || format!("{s:?} is not a stage FIRST_LAYER:LAYERS:OPS");
    let parts: Vec<&str> = s.split(':').map(str::trim).collect();
    let [first, layers, ops] = parts.as_slice() else {
        return Err(bad());
    };
    Ok(StageSpec {
        first_layer: first.parse().map_err(|_| bad())?,
        layers: layers.parse().map_err(|_| bad())?,
        ops: ops.parse().map_err(|_| bad())?,
        step_units: 0,
        step_ops: 0,
        key_ops: 0,
    })
}

// ---- readable output ----

/// A scalar as text (`-` for null); compound values as compact JSON.
pub fn scalar(v: &Value) -> String {
    match v {
        Value::Null => "-".to_string(),
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        // A unit-like enum variant with data (`{"Passed": {...}}`) reads as its name.
        Value::Object(m) if m.len() == 1 => match m.iter().next() {
            Some((k, inner)) => format!("{k} {inner}"),
            None => "{}".to_string(),
        },
        other => other.to_string(),
    }
}

/// A JSON value as indented `key: value` lines.
pub fn render(v: &Value) -> String {
    let mut out = String::new();
    render_into(&mut out, v, 0);
    out
}

fn is_leaf(v: &Value) -> bool {
    match v {
        Value::Array(a) => a.is_empty() || a.iter().all(|x| !x.is_object() && !x.is_array()),
        Value::Object(m) => m.is_empty(),
        _ => true,
    }
}

fn leaf(v: &Value) -> String {
    match v {
        Value::Array(a) if a.is_empty() => "[]".to_string(),
        Value::Array(a) => a.iter().map(scalar).collect::<Vec<_>>().join(", "),
        Value::Object(_) => "{}".to_string(),
        other => scalar(other),
    }
}

fn render_into(out: &mut String, v: &Value, indent: usize) {
    let pad = " ".repeat(indent);
    match v {
        Value::Object(m) => {
            // Sorted by key, whatever serde_json's map order is in this build.
            let mut entries: Vec<(&String, &Value)> = m.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            for (k, val) in entries {
                if is_leaf(val) {
                    out.push_str(&format!("{pad}{k}: {}\n", leaf(val)));
                } else {
                    out.push_str(&format!("{pad}{k}:\n"));
                    render_into(out, val, indent + 2);
                }
            }
        }
        Value::Array(a) => {
            for (i, item) in a.iter().enumerate() {
                if is_leaf(item) {
                    out.push_str(&format!("{pad}- {}\n", leaf(item)));
                } else {
                    out.push_str(&format!("{pad}[{i}]\n"));
                    render_into(out, item, indent + 2);
                }
            }
        }
        other => out.push_str(&format!("{pad}{}\n", scalar(other))),
    }
}

/// A ledger event (`{"Transferred": {"from": …}}`) as one line: `Transferred from=… amount=5`.
pub fn event_line(event: &Value) -> String {
    match event {
        Value::Object(m) if m.len() == 1 => {
            let Some((name, fields)) = m.iter().next() else {
                return event.to_string();
            };
            match fields {
                Value::Object(f) => {
                    // Sorted by name: serde_json's map order depends on whether some
                    // crate in the build enables its `preserve_order` feature.
                    let mut fields: Vec<(&String, &Value)> = f.iter().collect();
                    fields.sort_by(|a, b| a.0.cmp(b.0));
                    let mut line = name.clone();
                    for (k, v) in fields {
                        line.push_str(&format!(" {k}={}", scalar(v)));
                    }
                    line
                }
                other => format!("{name} {}", scalar(other)),
            }
        }
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A typed ledger event as one line ([`event_line`] of its JSON form).
pub fn ledger_event_line(event: &agentic_protocol::event::Event) -> String {
    match serde_json::to_value(event) {
        Ok(v) => event_line(&v),
        Err(e) => format!("{event:?} ({e})"),
    }
}

/// Rows under headers, columns padded to their widest cell.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                s.push_str(cell);
            } else {
                s.push_str(&format!("{cell:<w$}  "));
            }
        }
        s.trim_end().to_string() + "\n"
    };
    let mut out = line(headers.to_vec());
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parsers_accept_the_documented_forms_and_refuse_the_rest() {
        assert_eq!(amount("1000"), Ok(Amount(1000)));
        assert!(amount("-1").is_err() && amount("1e3").is_err() && amount("").is_err());
        assert_eq!(coord("1,-2,3"), Ok(Coord::new(1, -2, 3)));
        assert!(coord("1,2").is_err() && coord("a,b,c").is_err());
        assert_eq!(
            capabilities("cpu,gpu"),
            Ok(Capabilities::CPU | Capabilities::GPU)
        );
        assert_eq!(capabilities("8"), Ok(Capabilities::LARGE_MEMORY));
        assert!(capabilities("tpu").is_err());
        assert_eq!(level("Audited"), Ok(VerificationLevel::Audited));
        assert!(level("strict").is_err());
        assert_eq!(param_key("challenge-window"), Ok(ParamKey::ChallengeWindow));
        assert!(param_key("nope").unwrap_err().contains("min_fee"));
        assert_eq!(
            stage("0:4:1000"),
            Ok(StageSpec {
                first_layer: 0,
                layers: 4,
                ops: 1000,
                step_units: 0,
                step_ops: 0,
                key_ops: 0,
            })
        );
        assert!(stage("0:4").is_err());
        assert_eq!(
            endpoint("10.0.0.7:7400").map(|e| e.0),
            Ok("10.0.0.7:7400".to_string())
        );
        assert!(endpoint("[::1]:7400").is_ok() && endpoint("node.example:1").is_ok());
        assert_eq!(endpoint(""), Ok(Endpoint::NONE));
        for bad in [
            "host",
            ":80",
            "host:0",
            "host:http",
            "host:70000",
            "my host:80",
        ] {
            assert!(endpoint(bad).is_err(), "{bad}");
        }
        assert!(hash("ab").is_err());
        assert!(address("/nonexistent/key.json").is_err());
        assert_eq!(address(&"11".repeat(32)), Ok(Address([0x11; 32])));
    }

    #[test]
    fn readable_forms() {
        assert_eq!(
            event_line(&json!({"Transferred": {"from": "aa", "amount": "5"}})),
            "Transferred amount=5 from=aa"
        );
        let r = render(&json!({"a": 1, "b": {"c": [1, 2]}, "d": [{"e": null}]}));
        assert_eq!(r, "a: 1\nb:\n  c: 1, 2\nd:\n  [0]\n    e: -\n");
        assert_eq!(
            table(&["id", "name"], &[vec!["1".into(), "x".into()]]),
            "id  name\n1   x\n"
        );
    }
}
