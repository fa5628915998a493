//! The genesis file: everything every node of a network must agree on before the
//! first block — the chain id, the ledger's initial accounts and parameters, and
//! the validator set with its threshold public key.
//!
//! JSON, so operators can read and diff it. Amounts are decimal strings (they are
//! `u128` base units, beyond what JSON numbers carry exactly in most clients);
//! keys and addresses are 64 hex digits.
//!
//! ```json
//! {
//!   "chain_id": 7,
//!   "treasury": "…64 hex…",
//!   "params": { "min_fee": "1" },
//!   "accounts": [ { "address": "…", "balance": "1000000", "bonded": "0" } ],
//!   "validators": [ { "public_key": "…", "p2p": "127.0.0.1:7001", "api": "127.0.0.1:8001" } ],
//!   "threshold_public": "…hex of the BLS12-381 public polynomial…"
//! }
//! ```

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;

use agentic_protocol::{
    Address, Amount, ChainId, Genesis, GenesisAccount, ParamChange, ParamKey, Params,
};
use serde::{Deserialize, Serialize};

/// Why a genesis file was refused.
#[derive(Debug, thiserror::Error)]
pub enum GenesisFileError {
    /// Reading or writing the file failed.
    #[error("genesis file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// Not valid JSON of the expected shape.
    #[error("genesis file is not valid: {0}")]
    Json(#[from] serde_json::Error),
    /// A field has a bad value.
    #[error("genesis field {field}: {reason}")]
    Field {
        /// Which field.
        field: String,
        /// Why.
        reason: String,
    },
    /// The ledger refused the genesis.
    #[error("genesis refused by the ledger: {0}")]
    Ledger(#[from] agentic_protocol::GenesisError),
}

fn field(field: impl Into<String>, reason: impl Into<String>) -> GenesisFileError {
    GenesisFileError::Field {
        field: field.into(),
        reason: reason.into(),
    }
}

/// One initial account.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountEntry {
    /// 64 hex digits (the ed25519 public key).
    pub address: String,
    /// Spendable base units (decimal string).
    pub balance: String,
    /// Bonded base units (decimal string).
    #[serde(default = "zero")]
    pub bonded: String,
}

fn zero() -> String {
    "0".to_string()
}

/// One validator.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValidatorEntry {
    /// The validator's ed25519 public key (64 hex digits): its p2p identity.
    pub public_key: String,
    /// Where its p2p listener is reachable.
    pub p2p: SocketAddr,
    /// Where its HTTP API is reachable (informational; clients may use any node).
    pub api: SocketAddr,
}

/// The genesis file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenesisFile {
    /// The chain id every transaction must carry.
    pub chain_id: u64,
    /// Receives issuance (64 hex digits).
    pub treasury: String,
    /// Parameters that differ from the defaults: name → decimal value.
    #[serde(default)]
    pub params: BTreeMap<String, String>,
    /// Initial accounts.
    pub accounts: Vec<AccountEntry>,
    /// The validator set, in any order (consensus sorts it).
    pub validators: Vec<ValidatorEntry>,
    /// The BLS12-381 threshold public polynomial (hex), dealt for this validator set.
    pub threshold_public: String,
}

impl GenesisFile {
    /// Reads and parses a genesis file (the semantic checks are in [`Self::ledger`]
    /// and [`Self::validator_keys`]).
    pub fn read(path: &Path) -> Result<GenesisFile, GenesisFileError> {
        let text = std::fs::read_to_string(path).map_err(|source| GenesisFileError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Ok(serde_json::from_str(&text)?)
    }

    /// Writes the file (pretty JSON).
    pub fn write(&self, path: &Path) -> Result<(), GenesisFileError> {
        let text = serde_json::to_string_pretty(self)?;
        std::fs::write(path, text + "\n").map_err(|source| GenesisFileError::Io {
            path: path.display().to_string(),
            source,
        })
    }

    /// The ledger's genesis, checked: addresses parse, amounts parse, parameter names
    /// exist and their values pass the ledger's validation.
    pub fn ledger(&self) -> Result<Genesis, GenesisFileError> {
        let mut params = Params::default();
        for (name, value) in &self.params {
            let key = ParamKey::ALL
                .iter()
                .copied()
                .find(|k| k.name() == name)
                .ok_or_else(|| field(format!("params.{name}"), "no such parameter"))?;
            let value: u128 = value
                .parse()
                .map_err(|_| field(format!("params.{name}"), "not a non-negative integer"))?;
            params = params
                .with_change(ParamChange { key, value })
                .map_err(|e| field(format!("params.{name}"), e.to_string()))?;
        }
        let mut accounts = Vec::with_capacity(self.accounts.len());
        for (i, a) in self.accounts.iter().enumerate() {
            accounts.push(GenesisAccount {
                address: a.address.parse::<Address>().map_err(|e| {
                    field(
                        format!("accounts[{i}].address"),
                        format!("not 64 hex digits ({e})"),
                    )
                })?,
                balance: Amount::from_decimal(&a.balance).ok_or_else(|| {
                    field(format!("accounts[{i}].balance"), "not a decimal amount")
                })?,
                bonded: Amount::from_decimal(&a.bonded).ok_or_else(|| {
                    field(format!("accounts[{i}].bonded"), "not a decimal amount")
                })?,
            });
        }
        let genesis = Genesis {
            chain_id: ChainId(self.chain_id),
            params,
            accounts,
            treasury: self
                .treasury
                .parse::<Address>()
                .map_err(|e| field("treasury", format!("not 64 hex digits ({e})")))?,
            // Providers register on chain; the file format has no section for them.
            providers: Vec::new(),
        };
        // Let the ledger check the rest (duplicates, overflow, parameter rules).
        agentic_protocol::State::new(&genesis)?;
        Ok(genesis)
    }

    /// The validators' public keys (raw 32 bytes each), in file order; refuses bad hex
    /// and duplicates.
    pub fn validator_keys(&self) -> Result<Vec<[u8; 32]>, GenesisFileError> {
        if self.validators.is_empty() {
            return Err(field("validators", "at least one validator is required"));
        }
        let mut out: Vec<[u8; 32]> = Vec::with_capacity(self.validators.len());
        for (i, v) in self.validators.iter().enumerate() {
            let k = v
                .public_key
                .parse::<Address>()
                .map_err(|e| {
                    field(
                        format!("validators[{i}].public_key"),
                        format!("not 64 hex digits ({e})"),
                    )
                })?
                .0;
            if out.contains(&k) {
                return Err(field(format!("validators[{i}].public_key"), "listed twice"));
            }
            out.push(k);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agentic_protocol::hex;

    fn sample() -> GenesisFile {
        GenesisFile {
            chain_id: 7,
            treasury: hex::encode(&[9; 32]),
            params: BTreeMap::from([("min_fee".to_string(), "2".to_string())]),
            accounts: vec![AccountEntry {
                address: hex::encode(&[1; 32]),
                balance: "1000000000000000000000000".to_string(),
                bonded: "5".to_string(),
            }],
            validators: vec![ValidatorEntry {
                public_key: hex::encode(&[3; 32]),
                p2p: "127.0.0.1:7001".parse().unwrap(),
                api: "127.0.0.1:8001".parse().unwrap(),
            }],
            threshold_public: "00".to_string(),
        }
    }

    #[test]
    fn round_trips_and_builds_the_ledger_genesis() {
        let g = sample();
        let text = serde_json::to_string(&g).unwrap();
        let back: GenesisFile = serde_json::from_str(&text).unwrap();
        assert_eq!(back, g);
        let l = g.ledger().unwrap();
        assert_eq!(l.chain_id, ChainId(7));
        assert_eq!(l.params.min_fee, Amount(2));
        assert_eq!(l.accounts[0].balance, Amount(10u128.pow(24)));
        assert_eq!(g.validator_keys().unwrap(), vec![[3; 32]]);
    }

    #[test]
    fn bad_fields_are_named() {
        let mut g = sample();
        g.accounts[0].balance = "-1".into();
        assert!(g
            .ledger()
            .unwrap_err()
            .to_string()
            .contains("accounts[0].balance"));
        let mut g = sample();
        g.params.insert("no_such".into(), "1".into());
        assert!(g
            .ledger()
            .unwrap_err()
            .to_string()
            .contains("params.no_such"));
        let mut g = sample();
        g.validators.push(g.validators[0].clone());
        assert!(g
            .validator_keys()
            .unwrap_err()
            .to_string()
            .contains("twice"));
        assert!(serde_json::from_str::<GenesisFile>("{\"chain_id\": 1}").is_err());
        assert!(hex::decode("abc").ok().is_none());
        assert!(hex::decode("zz").ok().is_none());
    }
}
