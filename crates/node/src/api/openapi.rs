//! The OpenAPI 3.1 description of the node API, served at `GET /openapi.json`.
//!
//! Written out by hand next to the handlers (no macro generator), and checked by
//! `tests/api.rs`: every route the router serves is described here, and every
//! described path answers.

use serde_json::{json, Value};

fn err(desc: &str) -> Value {
    json!({"description": desc, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}})
}

fn ok(desc: &str, schema: Value) -> Value {
    json!({"description": desc, "content": {"application/json": {"schema": schema}}})
}

fn r(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

fn path_param(name: &str, desc: &str, schema: Value) -> Value {
    json!({"name": name, "in": "path", "required": true, "description": desc, "schema": schema})
}

fn hex64() -> Value {
    json!({"type": "string", "pattern": "^[0-9a-fA-F]{64}$"})
}

fn id_param(name: &str, what: &str) -> Value {
    path_param(name, what, json!({"type": "integer", "minimum": 0}))
}

fn get_one(summary: &str, param: Value, schema: Value) -> Value {
    json!({"get": {
        "summary": summary,
        "parameters": [param],
        "responses": {
            "200": ok("found", schema),
            "400": err("malformed id"),
            "404": err("unknown id"),
        }
    }})
}

fn get_list(summary: &str, key: &str, paged: bool) -> Value {
    let params = if paged {
        json!([
            {"name": "after", "in": "query", "required": false, "description": "only ids greater than this", "schema": {"type": "integer", "minimum": 0}},
            {"name": "limit", "in": "query", "required": false, "description": "at most this many (capped by the node)", "schema": {"type": "integer", "minimum": 1}},
        ])
    } else {
        json!([])
    };
    json!({"get": {
        "summary": summary,
        "parameters": params,
        "responses": {
            "200": ok("the list at the current height", json!({
                "type": "object",
                "required": ["height", key],
                "properties": {"height": {"type": "integer"}, key: {"type": "array", "items": {"type": "object"}}}
            })),
            "400": err("malformed query"),
        }
    }})
}

/// The whole document.
pub fn document() -> Value {
    let mut paths = serde_json::Map::new();
    paths.insert(
        "/v1/status".into(),
        json!({"get": {"summary": "Chain id, finalized height, state root, mempool size",
            "responses": {"200": ok("status", r("Status"))}}}),
    );
    paths.insert(
        "/v1/txs".into(),
        json!({"post": {
            "summary": "Submit a signed transaction",
            "description": "The transaction is checked against the finalized state (signature, chain id, fee, nonce, fee balance), pooled and gossiped. Its receipt appears at /v1/txs/{id} once a block including it is finalized.",
            "requestBody": {"required": true, "content": {"application/json": {"schema": r("SubmitTx")}}},
            "responses": {
                "202": ok("admitted to the mempool", json!({"type": "object", "required": ["id", "status"], "properties": {"id": hex64(), "status": {"const": "pending"}}})),
                "400": err("malformed JSON, bad hex, or bytes that do not decode as a transaction"),
                "409": err("already pooled"),
                "413": err("body or transaction too large"),
                "422": err("refused: bad_signature, wrong_chain, fee_too_low, stale_nonce, nonce_too_far_ahead, nonce_taken, cannot_pay_fee"),
                "503": err("mempool full"),
            }
        }}),
    );
    paths.insert(
        "/v1/txs/{id}".into(),
        get_one(
            "A transaction's receipt (or pending status)",
            path_param("id", "transaction id (blake3, hex)", hex64()),
            r("Receipt"),
        ),
    );
    paths.insert(
        "/v1/accounts/{address}".into(),
        get_one(
            "An account (zero balances if never used)",
            path_param(
                "address",
                "account address (ed25519 public key, hex)",
                hex64(),
            ),
            r("Account"),
        ),
    );
    paths.insert(
        "/v1/providers".into(),
        get_list("Registered providers", "providers", false),
    );
    paths.insert(
        "/v1/providers/{address}".into(),
        get_one(
            "One provider",
            path_param("address", "provider address", hex64()),
            json!({"type": "object"}),
        ),
    );
    paths.insert(
        "/v1/providers/{address}/work".into(),
        get_one(
            "Jobs in which a provider holds an open role (a replica slot, or the audit of a stage: drawn at commit time to be committed, or being reported; also a failed job's stages still verified), and the open disputes (bisecting or awaiting the referee) where it is the defendant or the challenger, each with its id (what a provider daemon polls)",
            path_param("address", "provider address", hex64()),
            json!({"type": "object", "required": ["height", "jobs", "disputes"],
                "properties": {"height": {"type": "integer"},
                    "jobs": {"type": "array", "items": {"type": "object"}},
                    "disputes": {"type": "array", "items": {"type": "object", "required": ["id"], "description": "as GET /v1/disputes/{id}"}}}}),
        ),
    );
    paths.insert(
        "/v1/offers".into(),
        get_list("Offers of providers that have not retired", "offers", false),
    );
    paths.insert("/v1/jobs".into(), get_list("Jobs", "jobs", true));
    paths.insert(
        "/v1/jobs/{id}".into(),
        get_one(
            "One job",
            id_param("id", "job id"),
            json!({"type": "object"}),
        ),
    );
    paths.insert(
        "/v1/disputes".into(),
        get_list("Disputes", "disputes", true),
    );
    paths.insert(
        "/v1/disputes/{id}".into(),
        get_one(
            "One dispute",
            id_param("id", "dispute id"),
            json!({"type": "object"}),
        ),
    );
    paths.insert(
        "/v1/proposals".into(),
        get_list("Governance proposals", "proposals", true),
    );
    paths.insert(
        "/v1/proposals/{id}".into(),
        get_one(
            "One proposal",
            id_param("id", "proposal id"),
            json!({"type": "object"}),
        ),
    );
    paths.insert(
        "/v1/mandates/{id}".into(),
        get_one(
            "One agent mandate",
            id_param("id", "mandate id"),
            json!({"type": "object"}),
        ),
    );
    paths.insert(
        "/v1/params".into(),
        json!({"get": {"summary": "Current protocol parameters",
            "responses": {"200": ok("parameters", json!({"type": "object", "required": ["height", "params"]}))}}}),
    );
    paths.insert(
        "/v1/blocks".into(),
        json!({"get": {
            "summary": "A page of finalized blocks, ascending",
            "parameters": [
                {"name": "from", "in": "query", "required": false, "schema": {"type": "integer", "minimum": 1}, "description": "first height (default: the latest page)"},
                {"name": "limit", "in": "query", "required": false, "schema": {"type": "integer", "minimum": 1}, "description": "page size (capped)"},
            ],
            "responses": {
                "200": ok("blocks", json!({"type": "object", "required": ["height", "blocks"], "properties": {"height": {"type": "integer"}, "blocks": {"type": "array", "items": r("Block")}}})),
                "400": err("malformed query"),
            }
        }}),
    );
    paths.insert(
        "/v1/blocks/latest".into(),
        json!({"get": {"summary": "The latest finalized block",
            "responses": {"200": ok("block", r("Block")), "404": err("no block finalized yet")}}}),
    );
    paths.insert(
        "/v1/blocks/{height}".into(),
        get_one(
            "The finalized block at a height",
            id_param("height", "block height (1 is the first block)"),
            r("Block"),
        ),
    );
    paths.insert(
        "/v1/events".into(),
        json!({"get": {
            "summary": "Server-sent events: each finalized block's ledger events, then the block",
            "description": "Event `ledger` carries {height, tx, event} for every ledger event (transfers, bonds, jobs, commits, payments, audits, disputes, slashes, votes); event `block` carries a Block after all of that block's ledger events; event `lagged` says how many events a slow reader missed. With `from`, the stored blocks from that height are replayed first, then the stream continues live: a reader that saw block h resumes with from = h + 1.",
            "parameters": [
                {"name": "from", "in": "query", "required": false, "schema": {"type": "integer", "minimum": 1}, "description": "replay from this height (default: live only)"},
            ],
            "responses": {"200": {"description": "an event stream", "content": {"text/event-stream": {"schema": {"type": "string"}}}}}
        }}),
    );
    let blob_hash = path_param("hash", "blake3 of the blob's bytes (hex)", hex64());
    paths.insert(
        "/v1/blobs/{hash}".into(),
        json!({
            "put": {
                "summary": "Store a blob under its blake3 hash",
                "parameters": [blob_hash.clone()],
                "requestBody": {"required": true, "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}},
                "responses": {
                    "201": ok("stored", r("BlobStored")),
                    "200": ok("already present", r("BlobStored")),
                    "400": err("the name is not a hash"),
                    "413": err("larger than the node accepts"),
                    "422": err("the bytes do not hash to the name"),
                }
            },
            "get": {
                "summary": "Fetch a blob",
                "parameters": [blob_hash.clone()],
                "responses": {
                    "200": {"description": "the bytes", "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}},
                    "400": err("the name is not a hash"),
                    "404": err("not stored here"),
                }
            },
            "head": {
                "summary": "Whether a blob is stored, and its size",
                "parameters": [blob_hash],
                "responses": {"200": {"description": "present; Content-Length is its size"}, "404": {"description": "absent"}}
            }
        }),
    );
    paths.insert(
        "/openapi.json".into(),
        json!({"get": {"summary": "This document", "responses": {"200": ok("OpenAPI 3.1", json!({"type": "object"}))}}}),
    );
    paths.insert(
        "/metrics".into(),
        json!({"get": {
            "summary": "Prometheus metrics",
            "description": "One Prometheus text exposition ending in a single `# EOF`: commonware's runtime, consensus, marshal, p2p and storage metrics, the node's own (`<context>_api_*`, `<context>_mempool_*`, `<context>_ledger_*`, `<context>_engine_executor_*`, `<context>_engine_gossip_*`, where `<context>` is `validator` under `agentic node run`), and the summary gauges `agentic_finalized_height`, `agentic_mempool_txs`, `agentic_mempool_bytes`. Ledger amounts are base units (float samples). The crate README lists every metric.",
            "responses": {"200": {"description": "text exposition format", "content": {"text/plain": {"schema": {"type": "string"}}}}}
        }}),
    );

    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Agentic node API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Submit signed transactions, query the finalized ledger, follow events, and store content-addressed blobs. Amounts are decimal strings of base units; hashes, addresses and transaction bytes are hex.",
        },
        "paths": Value::Object(paths),
        "components": {"schemas": {
            "Error": {"type": "object", "required": ["error"], "properties": {"error": {
                "type": "object", "required": ["code", "message"],
                "properties": {"code": {"type": "string"}, "message": {"type": "string"}}}}},
            "SubmitTx": {"type": "object", "required": ["tx"], "additionalProperties": false,
                "properties": {"tx": {"type": "string", "pattern": "^([0-9a-fA-F]{2})+$", "description": "the canonical encoding of a SignedTx, hex"}}},
            "Status": {"type": "object", "required": ["chain_id", "height", "state_root", "mempool"], "properties": {
                "chain_id": {"type": "integer"}, "height": {"type": "integer"}, "state_root": hex64(),
                "latest_block": {"oneOf": [r("Block"), {"type": "null"}]},
                "mempool": {"type": "object", "properties": {"txs": {"type": "integer"}, "bytes": {"type": "integer"}}},
                "version": {"type": "string"},
                "supply": {"type": "object", "required": ["genesis", "issued", "burned", "total", "bonded"], "properties": {
                    "genesis": {"type": "string"}, "issued": {"type": "string"}, "burned": {"type": "string"},
                    "total": {"type": "string", "description": "genesis + issued − burned"}, "bonded": {"type": "string"}}},
                "validators": {"type": "array", "items": hex64(), "description": "ed25519 public keys of the validator set, in consensus order"}}},
            "Account": {"type": "object", "required": ["address", "balance", "nonce", "bonded", "withdrawable"], "properties": {
                "address": hex64(), "balance": {"type": "string"}, "nonce": {"type": "integer"},
                "bonded": {"type": "string"}, "withdrawable": {"type": "string"},
                "height": {"type": "integer"}, "is_provider": {"type": "boolean"}}},
            "Receipt": {"type": "object", "required": ["id", "status"], "properties": {
                "id": hex64(), "status": {"enum": ["pending", "finalized"]},
                "height": {"type": "integer"}, "index": {"type": "integer"},
                "result": {"type": "object", "properties": {"ok": {"type": "boolean"}, "error": {"type": "string"}, "detail": {}}},
                "events": {"type": "array", "items": {"type": "object"}}}},
            "Block": {"type": "object", "required": ["height", "digest", "view", "timestamp_ms", "beacon", "state_root", "txs"], "properties": {
                "height": {"type": "integer"}, "digest": hex64(), "view": {"type": "integer"},
                "timestamp_ms": {"type": "integer"}, "beacon": hex64(), "state_root": hex64(),
                "txs": {"type": "array", "items": hex64()}, "succeeded": {"type": "integer"}}},
            "BlobStored": {"type": "object", "required": ["hash", "size", "new"], "properties": {
                "hash": hex64(), "size": {"type": "integer"}, "new": {"type": "boolean"}}},
        }}
    })
}
