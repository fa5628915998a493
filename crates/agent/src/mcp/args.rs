//! The tools' inputs: what a caller may send, with the JSON schemas
//! `tools/list` publishes (generated from these types by schemars, so the
//! schema and the parser cannot drift apart).
//!
//! Every input refuses unknown fields (a misspelt `max_prise` is an error, not
//! a silently ignored option). Amounts are [`TokenAmount`]s: a decimal string
//! of base units (`"1500"`) or a non-negative JSON integer — a float, a
//! negative number or any other text is refused with a reason.

use std::borrow::Cow;

use agentic_protocol::types::VerificationLevel;
use agentic_protocol::{Address, Amount};
use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

/// A token amount in base units, read from a decimal string or a
/// non-negative JSON integer; never from a float.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TokenAmount(pub Amount);

impl<'de> Deserialize<'de> for TokenAmount {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = TokenAmount;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an amount of base units: a decimal string like \"1500\" or a non-negative integer")
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<TokenAmount, E> {
                Ok(TokenAmount(Amount(u128::from(v))))
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<TokenAmount, E> {
                if v < 0 {
                    return Err(E::custom(format!("amounts cannot be negative (got {v})")));
                }
                Ok(TokenAmount(Amount(v as u128)))
            }

            fn visit_f64<E: de::Error>(self, v: f64) -> Result<TokenAmount, E> {
                Err(E::custom(format!(
                    "amounts are whole base units, never floats (got {v}); send a decimal string like \"1500\""
                )))
            }

            fn visit_str<E: de::Error>(self, s: &str) -> Result<TokenAmount, E> {
                let t = s.trim();
                if t.starts_with('-') {
                    return Err(E::custom(format!("amounts cannot be negative (got {s:?})")));
                }
                if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(E::custom(format!(
                        "{s:?} is not an amount: send whole base units as digits, like \"1500\""
                    )));
                }
                t.parse::<u128>()
                    .map(|v| TokenAmount(Amount(v)))
                    .map_err(|_| E::custom(format!("{s:?} does not fit in 128 bits")))
            }
        }
        d.deserialize_any(V)
    }
}

impl JsonSchema for TokenAmount {
    fn schema_name() -> Cow<'static, str> {
        "TokenAmount".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "Base units of the network's token: a decimal string (\"1500\") or a non-negative integer. Never a float.",
            "anyOf": [
                {"type": "string", "pattern": "^[0-9]{1,39}$"},
                {"type": "integer", "minimum": 0}
            ]
        })
    }
}

/// How results are checked before providers are paid.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Verification {
    /// Only the challenge window protects the buyer (anyone may challenge).
    Optimistic,
    /// The block beacon samples stages for an independent audit.
    Sampled,
    /// Every stage is re-executed by an independent auditor (escrow reserves its fee).
    Audited,
}

impl From<Verification> for VerificationLevel {
    fn from(v: Verification) -> Self {
        match v {
            Verification::Optimistic => VerificationLevel::Optimistic,
            Verification::Sampled => VerificationLevel::Sampled,
            Verification::Audited => VerificationLevel::Audited,
        }
    }
}

/// Who picks the providers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Placement {
    /// The ledger matches each stage (price, reputation, latency).
    Ledger,
    /// The server's partitioner picks providers and layer splits from the current offers.
    Auto,
}

/// An inference job: `quote_job` and `submit_job` take the same input.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JobArgs {
    /// The model: a registry name (`tiny-gpt`, `minilm`) or a model directory on the server's machine.
    #[schemars(length(min = 1))]
    pub model: String,
    /// The input texts, one sequence each, tokenized by the model's own tokenizer.
    #[schemars(length(min = 1))]
    pub texts: Vec<String>,
    /// Pipeline stages: contiguous layer ranges, one provider each (default 1).
    #[schemars(range(min = 1, max = 64))]
    pub stages: Option<u32>,
    /// Independent providers per stage; more than one lets replicas check each other (default 1).
    #[schemars(range(min = 1, max = 8))]
    pub replicas: Option<u8>,
    /// Highest price paid, base units per mega-op (10^6 metered operations) (default 100).
    pub max_price: Option<TokenAmount>,
    /// Blocks a provider has to deliver after it is assigned (default 100).
    #[schemars(range(min = 1))]
    pub deadline: Option<u64>,
    /// How results are verified (default: the mandate's minimum under a mandate, else `optimistic`).
    pub verification: Option<Verification>,
    /// `ledger` (default): the ledger matches; `auto`: the server places stages on current offers.
    pub placement: Option<Placement>,
    /// Name the providers instead, one 64-hex-digit address per stage in pipeline order.
    pub providers: Option<Vec<String>>,
}

/// `generate`: text generated by an LLM split over providers.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GenerateArgs {
    /// The LLM: `smollm2-135m` (default) or a .gguf file on the server's machine.
    pub model: Option<String>,
    /// The prompt.
    #[schemars(length(min = 1))]
    pub prompt: String,
    /// Wrap the prompt as one user turn of the model's chat template (default true).
    pub chat: Option<bool>,
    /// Most tokens to generate (default 64); the escrow covers them all, the bill counts those generated.
    #[schemars(range(min = 1, max = 8192))]
    pub max_tokens: Option<u32>,
    /// The most likely token at each step (default false: seeded sampling).
    pub greedy: Option<bool>,
    /// Sampling seed (default 0): the text is a pure function of it.
    pub seed: Option<u64>,
    /// Sampling temperature (default 0.8), positive.
    pub temperature: Option<f32>,
    /// Sample among the k most likely tokens (default 40; 0 = all).
    pub top_k: Option<u32>,
    /// Sample within the smallest set of tokens holding this much probability (default 0.95), in (0, 1].
    pub top_p: Option<f32>,
    /// Pipeline stages: the model's layers split over this many providers (default 1).
    #[schemars(range(min = 1, max = 32))]
    pub stages: Option<u32>,
    /// Highest price paid, base units per mega-op (default 100).
    pub max_price: Option<TokenAmount>,
    /// Blocks the providers have to deliver (default 100).
    #[schemars(range(min = 1))]
    pub deadline: Option<u64>,
    /// How results are verified (default: the mandate's minimum under a mandate, else `optimistic`).
    pub verification: Option<Verification>,
    /// Seconds to wait for the generation and its settlement (default 300).
    #[schemars(range(min = 1, max = 3600))]
    pub timeout_secs: Option<u64>,
}

/// `list_offers`: the market's standing offers.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListOffersArgs {
    /// Only offers at or below this price per mega-op.
    pub max_price: Option<TokenAmount>,
    /// At most this many offers, cheapest first (default 50).
    #[schemars(range(min = 1, max = 1000))]
    pub limit: Option<u32>,
}

/// A job, by id.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JobIdArgs {
    /// The job id `submit_job` returned.
    pub job: u64,
}

/// `get_result`: a job's output.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ResultArgs {
    /// The job id `submit_job` returned.
    pub job: u64,
    /// Most output values (f32, row-major) to return (default 256; the hash covers them all).
    #[schemars(range(max = 65536))]
    pub max_values: Option<u32>,
}

/// `challenge_result`: dispute one stage's agreed result.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ChallengeArgs {
    /// The job id.
    pub job: u64,
    /// The stage (0-based, pipeline order) whose agreed result to recompute and dispute.
    pub stage: u32,
}

/// A tool without arguments.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NoArgs {}

/// Parses a provider address (64 hex digits).
pub(crate) fn address(s: &str) -> Option<Address> {
    s.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn amount(v: serde_json::Value) -> Result<Amount, String> {
        serde_json::from_value::<TokenAmount>(v)
            .map(|a| a.0)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn amounts_are_strings_or_integers_never_floats() {
        assert_eq!(amount(json!("1500")), Ok(Amount(1500)));
        assert_eq!(amount(json!(7)), Ok(Amount(7)));
        assert_eq!(
            amount(json!("340282366920938463463374607431768211455")),
            Ok(Amount(u128::MAX))
        );
        assert!(amount(json!(-3)).unwrap_err().contains("negative"));
        assert!(amount(json!("-3")).unwrap_err().contains("negative"));
        assert!(amount(json!(1.5)).unwrap_err().contains("floats"));
        assert!(amount(json!("1.5")).unwrap_err().contains("not an amount"));
        assert!(amount(json!("ten")).unwrap_err().contains("not an amount"));
        assert!(amount(json!(null)).is_err());
    }

    #[test]
    fn job_args_refuse_unknown_and_missing_fields() {
        let ok: JobArgs =
            serde_json::from_value(json!({"model": "tiny-gpt", "texts": ["hi"], "max_price": "5"}))
                .unwrap();
        assert_eq!(ok.max_price, Some(TokenAmount(Amount(5))));
        let e = serde_json::from_value::<JobArgs>(json!({"texts": ["hi"]})).unwrap_err();
        assert!(e.to_string().contains("missing field `model`"), "{e}");
        let e = serde_json::from_value::<JobArgs>(
            json!({"model": "tiny-gpt", "texts": ["hi"], "max_prise": 5}),
        )
        .unwrap_err();
        assert!(e.to_string().contains("unknown field `max_prise`"), "{e}");
    }
}
