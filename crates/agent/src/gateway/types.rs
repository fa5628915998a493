//! OpenAI's JSON as the gateway reads and writes it: the subset of the
//! `chat/completions`, `completions`, `embeddings` and `models` objects it serves, and
//! the error object. Fields the gateway does not act on are ignored when read (a
//! client's `user`, `logit_bias`, … do not fail a request); the few it refuses are
//! listed in the module docs of [`super`].

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

/// OpenAI's error object, with the HTTP status it is sent with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// What went wrong, in words.
    pub message: String,
    /// `invalid_request_error`, `authentication_error`, `not_found_error`, `api_error`.
    pub kind: &'static str,
    /// The request field at fault, if one is.
    pub param: Option<String>,
    /// A machine-readable code (`model_not_found`, `invalid_api_key`, …).
    pub code: Option<&'static str>,
}

impl ApiError {
    /// 400 `invalid_request_error` about `param`.
    pub fn invalid(param: Option<&str>, message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            kind: "invalid_request_error",
            param: param.map(str::to_string),
            code: None,
        }
    }

    /// 404 `model_not_found`.
    pub fn model_not_found(model: &str, served: &[&str]) -> ApiError {
        ApiError {
            status: StatusCode::NOT_FOUND,
            message: format!(
                "The model `{model}` does not exist on this gateway; it serves {}",
                served.join(", ")
            ),
            kind: "invalid_request_error",
            param: Some("model".into()),
            code: Some("model_not_found"),
        }
    }

    /// 401 `invalid_api_key`.
    pub fn unauthorized(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::UNAUTHORIZED,
            message: message.into(),
            kind: "authentication_error",
            param: None,
            code: Some("invalid_api_key"),
        }
    }

    /// 502: the market refused or failed the job (the node, the ledger, the providers).
    pub fn market(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::BAD_GATEWAY,
            message: message.into(),
            kind: "api_error",
            param: None,
            code: Some("market_error"),
        }
    }

    /// The JSON body: `{"error": {"message", "type", "param", "code"}}`.
    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({
            "error": {
                "message": self.message,
                "type": self.kind,
                "param": self.param,
                "code": self.code,
            }
        })
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.status, axum::Json(self.body())).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"agentic-gateway\""),
            );
        }
        r
    }
}

/// A string or a list of strings (`stop`, `input`, `prompt`).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum OneOrMany {
    /// One string.
    One(String),
    /// Several.
    Many(Vec<String>),
}

impl OneOrMany {
    /// The strings, in order.
    pub fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

/// A chat message's content: text, or an array of parts of which only `text` parts
/// are served.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum Content {
    /// Plain text.
    Text(String),
    /// Content parts (`{"type": "text", "text": …}`).
    Parts(Vec<ContentPart>),
}

/// One content part.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct ContentPart {
    /// `text` (anything else is refused).
    #[serde(rename = "type")]
    pub kind: String,
    /// The text of a `text` part.
    #[serde(default)]
    pub text: Option<String>,
}

/// One chat message.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct Message {
    /// `system`, `developer` (read as `system`), `user` or `assistant`.
    pub role: String,
    /// The text (`null` only for an assistant's tool call, which is refused).
    #[serde(default)]
    pub content: Option<Content>,
}

/// Streaming options.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct StreamOptions {
    /// Send a last chunk with `usage` and no choices before `[DONE]`.
    #[serde(default)]
    pub include_usage: bool,
}

/// The sampling and length fields `chat/completions` and `completions` share.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct Sampling {
    /// Most tokens to generate (default 64).
    #[serde(default)]
    pub max_tokens: Option<u32>,
    /// The newer name of `max_tokens` (chat); wins when both are given.
    #[serde(default)]
    pub max_completion_tokens: Option<u32>,
    /// 0 = greedy; default 1; at most 2.
    #[serde(default)]
    pub temperature: Option<f32>,
    /// Nucleus mass in (0, 1]; default 1.
    #[serde(default)]
    pub top_p: Option<f32>,
    /// An extension: the top-k cut (0 = none, the default).
    #[serde(default)]
    pub top_k: Option<usize>,
    /// The sampling seed (default 0).
    #[serde(default)]
    pub seed: Option<i64>,
    /// Strings that end the generation: each must be one token of the model.
    #[serde(default)]
    pub stop: Option<OneOrMany>,
    /// Choices to generate: only 1.
    #[serde(default)]
    pub n: Option<u32>,
    /// Stream server-sent events.
    #[serde(default)]
    pub stream: bool,
    /// Streaming options.
    #[serde(default)]
    pub stream_options: Option<StreamOptions>,
}

/// `POST /v1/chat/completions`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct ChatRequest {
    /// The model.
    pub model: String,
    /// The conversation.
    pub messages: Vec<Message>,
    /// Sampling, length, stop, streaming.
    #[serde(flatten)]
    pub sampling: Sampling,
}

/// `POST /v1/completions`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct CompletionRequest {
    /// The model.
    pub model: String,
    /// The prompt text (a list of one string is accepted).
    pub prompt: OneOrMany,
    /// Sampling, length, stop, streaming.
    #[serde(flatten)]
    pub sampling: Sampling,
}

/// `POST /v1/embeddings`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct EmbeddingRequest {
    /// The model.
    pub model: String,
    /// A text or a list of texts.
    pub input: OneOrMany,
    /// `float` only.
    #[serde(default)]
    pub encoding_format: Option<String>,
    /// The model's width (384) only.
    #[serde(default)]
    pub dimensions: Option<u32>,
}

/// Token counts of a response.
#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq)]
pub struct Usage {
    /// Tokens of the prompt as the model reads it (chat template and BOS included).
    pub prompt_tokens: u32,
    /// Tokens generated (the stop token included: it was generated and billed).
    pub completion_tokens: u32,
    /// The sum.
    pub total_tokens: u32,
}

impl Usage {
    /// `prompt` + `completion`.
    pub fn new(prompt: u32, completion: u32) -> Usage {
        Usage {
            prompt_tokens: prompt,
            completion_tokens: completion,
            total_tokens: prompt.saturating_add(completion),
        }
    }
}
