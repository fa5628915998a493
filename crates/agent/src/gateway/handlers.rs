//! The routes: each request checked into a [`JobRequest`], submitted, followed and
//! answered in OpenAI's JSON (see the module docs of [`super`] for the rules).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use agentic_compute::activation::{Activation, DecodeLimits};
use agentic_compute::llm::generate::{LlmModel, TextStream};
use agentic_compute::llm::vocab::ChatTemplate;
use agentic_compute::llm::Sampler;
use agentic_compute::ComputeError;
use agentic_protocol::{Amount, JobId};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderName, HeaderValue, StatusCode, Uri};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

use super::types::{
    ApiError, ChatRequest, CompletionRequest, Content, EmbeddingRequest, Message, OneOrMany,
    Sampling, Usage,
};
use super::{Gateway, CHAT_MODEL, DEFAULT_MAX_TOKENS, EMBEDDING_ALIAS, EMBEDDING_MODEL};
use crate::requester::generate::load_llm;
use crate::requester::{
    prepare, GenerationInput, JobInput, JobRequest, PreparedJob, Requester, RequesterError,
    Submitted,
};

/// `GET /v1/models`.
pub(super) async fn models() -> Json<Value> {
    let model =
        |id: &str| json!({"id": id, "object": "model", "created": 0, "owned_by": "agentic"});
    Json(json!({
        "object": "list",
        "data": [model(CHAT_MODEL), model(EMBEDDING_MODEL)],
    }))
}

/// Any other route.
pub(super) async fn not_found(uri: Uri) -> ApiError {
    ApiError {
        status: StatusCode::NOT_FOUND,
        message: format!(
            "no route {uri}: this gateway serves /v1/chat/completions, /v1/completions, /v1/embeddings and /v1/models"
        ),
        kind: "invalid_request_error",
        param: None,
        code: Some("unknown_url"),
    }
}

/// `POST /v1/chat/completions`.
pub(super) async fn chat(State(g): State<Gateway>, body: Bytes) -> Result<Response, ApiError> {
    let req: ChatRequest = parse(&body)?;
    check_chat_model(&req.model)?;
    let m = g.llm().await?;
    let prompt = render_chat(&m, &req.messages)?;
    g.generate(m, Kind::Chat, req.model, prompt, &req.sampling)
        .await
}

/// `POST /v1/completions`.
pub(super) async fn completions(
    State(g): State<Gateway>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let req: CompletionRequest = parse(&body)?;
    check_chat_model(&req.model)?;
    let prompt = match req.prompt {
        OneOrMany::One(p) => p,
        OneOrMany::Many(mut v) if v.len() == 1 => v.remove(0),
        OneOrMany::Many(_) => {
            return Err(ApiError::invalid(
                Some("prompt"),
                "give one prompt (a string, or a list of one string)",
            ))
        }
    };
    let m = g.llm().await?;
    g.generate(m, Kind::Text, req.model, prompt, &req.sampling)
        .await
}

/// `POST /v1/embeddings`.
pub(super) async fn embeddings(
    State(g): State<Gateway>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let req: EmbeddingRequest = parse(&body)?;
    if req.model != EMBEDDING_MODEL && req.model != EMBEDDING_ALIAS {
        if req.model == CHAT_MODEL {
            return Err(ApiError::invalid(
                Some("model"),
                format!("`{CHAT_MODEL}` generates text; embeddings come from `{EMBEDDING_MODEL}`"),
            ));
        }
        return Err(ApiError::model_not_found(
            &req.model,
            &[EMBEDDING_MODEL, EMBEDDING_ALIAS],
        ));
    }
    if let Some(f) = req.encoding_format.as_deref() {
        if f != "float" {
            return Err(ApiError::invalid(
                Some("encoding_format"),
                format!("encoding_format `{f}` is not served; use `float`"),
            ));
        }
    }
    if let Some(d) = req.dimensions {
        if d != 384 {
            return Err(ApiError::invalid(
                Some("dimensions"),
                format!("`{EMBEDDING_MODEL}` embeds into 384 dimensions, not {d}"),
            ));
        }
    }
    let texts = req.input.into_vec();
    if texts.is_empty() || texts.iter().any(String::is_empty) {
        return Err(ApiError::invalid(
            Some("input"),
            "input must be a non-empty string or a non-empty list of non-empty strings",
        ));
    }
    let n = texts.len();
    let jr = g.job_request(EMBEDDING_MODEL, JobInput::Texts(texts));
    let (prepared, sub) = g.submit(jr).await?;
    let prompt_tokens = Activation::from_canonical_bytes(&prepared.input, DecodeLimits::default())
        .map(|a| a.ids().len() as u32)
        .unwrap_or(0);
    let r = &g.inner.requester;
    let timeout = g.inner.config.job_timeout;
    r.wait(sub.job, timeout, |_| {})
        .await
        .map_err(market_error)?;
    let out = r.result(sub.job).await.map_err(market_error)?.output;
    let width = out.width().max(1);
    let data = out.tensor().data();
    if data.len() != n * width {
        return Err(ApiError::market(format!(
            "job {}: the output has {} values, not {n} rows",
            sub.job.0,
            data.len()
        )));
    }
    let data: Vec<Value> = data
        .chunks(width)
        .enumerate()
        .map(|(i, v)| json!({"object": "embedding", "index": i, "embedding": v}))
        .collect();
    let (cost, settled) = g.bill(sub.job, sub.escrow).await;
    let body = json!({
        "object": "list",
        "model": req.model,
        "data": data,
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
    });
    Ok(job_headers(
        Json(body).into_response(),
        sub.job,
        cost,
        settled,
    ))
}

/// Which OpenAI object a generation answers with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// `chat.completion` / `chat.completion.chunk`.
    Chat,
    /// `text_completion`.
    Text,
}

/// What a generation request asks the market for.
struct Planned {
    input: GenerationInput,
    prompt_tokens: u32,
    /// Tokens that end the generation (the model's and the request's).
    stops: Vec<u32>,
    include_usage: bool,
}

impl Gateway {
    /// The chat model (loaded once, off the async threads).
    async fn llm(&self) -> Result<Arc<LlmModel>, ApiError> {
        self.inner
            .llm
            .get_or_try_init(|| async {
                let loaded = tokio::task::spawn_blocking(|| load_llm(CHAT_MODEL))
                    .await
                    .map_err(|e| ApiError::market(format!("loading {CHAT_MODEL}: {e}")))?;
                let (m, _, _) = loaded.map_err(|e| ApiError::market(e.to_string()))?;
                Ok(m)
            })
            .await
            .cloned()
    }

    /// A job for `input` on `model` as the gateway buys.
    fn job_request(&self, model: &str, input: JobInput) -> JobRequest {
        let c = &self.inner.config;
        let mut r = JobRequest::new(model, input);
        r.stages = c.stages;
        r.max_price = c.max_price;
        r.deadline = c.deadline;
        r.verification = c.verification;
        r.mandate = c.mandate;
        r
    }

    /// Prepares (off the async threads) and submits (under the signing lock).
    async fn submit(&self, req: JobRequest) -> Result<(PreparedJob, Submitted), ApiError> {
        let prepared = tokio::task::spawn_blocking(move || prepare(&req, &[]))
            .await
            .map_err(|e| ApiError::market(format!("preparing the job: {e}")))?
            .map_err(requester_error)?;
        let sub = {
            let _signing = self.inner.signing.lock().await;
            self.inner
                .requester
                .submit_detailed(&prepared)
                .await
                .map_err(requester_error)?
        };
        tracing::info!(
            job = sub.job.0,
            escrow = sub.escrow.0,
            "gateway job submitted"
        );
        Ok((prepared, sub))
    }

    /// What the job cost once settled, and `true`; its escrow and `false` if it does
    /// not settle within the timeout.
    async fn bill(&self, job: JobId, escrow: Amount) -> (Amount, bool) {
        let r = &self.inner.requester;
        let settled = async {
            r.wait(job, self.inner.config.job_timeout, |_| {}).await?;
            r.bill(job).await
        };
        match settled.await {
            // A broken session's charge is burned, not paid to anyone, but it is
            // what the requester lost all the same.
            Ok(b) => (b.paid.saturating_add(b.charged), true),
            Err(e) => {
                tracing::warn!(job = job.0, error = %e, "gateway job not settled");
                (escrow, false)
            }
        }
    }

    /// Runs a generation request: one JSON response, or a stream of chunks.
    async fn generate(
        &self,
        m: Arc<LlmModel>,
        kind: Kind,
        model: String,
        prompt: String,
        s: &Sampling,
    ) -> Result<Response, ApiError> {
        let plan = plan(&m, prompt, s)?;
        let jr = self.job_request(CHAT_MODEL, JobInput::Generate(plan.input.clone()));
        let (_, sub) = self.submit(jr).await?;
        let id = match kind {
            Kind::Chat => format!("chatcmpl-{}", sub.job.0),
            Kind::Text => format!("cmpl-{}", sub.job.0),
        };
        let head = Head {
            kind,
            id,
            created: now(),
            model,
        };
        if s.stream {
            return Ok(self.stream(m, head, plan, sub));
        }
        let timeout = self.inner.config.job_timeout;
        // A client that hangs up makes hyper drop this future: the guard then stops
        // the generation, so nobody pays for tokens no one will read.
        let guard = StopOnDrop::new(self.inner.requester.clone(), sub.job);
        let streamed = self
            .inner
            .requester
            .stream(sub.job, timeout, |_, _| {})
            .await
            .map_err(market_error)?;
        guard.disarm();
        let tokens = streamed.tokens;
        let ended_by_stop = tokens.last().is_some_and(|t| plan.stops.contains(t));
        let shown = if ended_by_stop {
            &tokens[..tokens.len() - 1]
        } else {
            &tokens[..]
        };
        let text = m
            .tokenizer
            .decode(shown)
            .map_err(|e| ApiError::market(format!("decoding the tokens: {e}")))?;
        let finish = if ended_by_stop { "stop" } else { "length" };
        let usage = Usage::new(plan.prompt_tokens, tokens.len() as u32);
        let (cost, settled) = self.bill(sub.job, sub.escrow).await;
        let choice = match kind {
            Kind::Chat => json!({
                "index": 0,
                "message": {"role": "assistant", "content": text, "refusal": null},
                "logprobs": null,
                "finish_reason": finish,
            }),
            Kind::Text => json!({
                "index": 0, "text": text, "logprobs": null, "finish_reason": finish,
            }),
        };
        let body = json!({
            "id": head.id,
            "object": match kind { Kind::Chat => "chat.completion", Kind::Text => "text_completion" },
            "created": head.created,
            "model": head.model,
            "choices": [choice],
            "usage": usage,
        });
        Ok(job_headers(
            Json(body).into_response(),
            sub.job,
            cost,
            settled,
        ))
    }

    /// Streams the job's tokens as server-sent chunks, as they arrive from the market.
    /// The job is followed by a task of its own: a client that disconnects stops the
    /// generation (`Requester::stop`, at the first token it no longer reads), and the
    /// job still settles — every stage paid for the tokens generated, the rest of the
    /// escrow refunded.
    fn stream(&self, m: Arc<LlmModel>, head: Head, plan: Planned, sub: Submitted) -> Response {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Event>();
        if head.kind == Kind::Chat {
            let _ = tx.send(head.chunk(Some(json!({"role": "assistant", "content": ""})), None));
        }
        let requester = self.inner.requester.clone();
        let timeout = self.inner.config.job_timeout;
        let job = sub.job;
        tokio::spawn(async move {
            let mut text = TextStream::default();
            let piece = |s: String| match head.kind {
                Kind::Chat => head.chunk(Some(json!({"content": s})), None),
                Kind::Text => head.text_chunk(&s, None),
            };
            let mut guard = Some(StopOnDrop::new(requester.clone(), job));
            let result = requester
                .stream(job, timeout, |_, tok| {
                    // The client hung up: dropping the guard stops paying for tokens
                    // nobody reads.
                    if tx.is_closed() {
                        guard.take();
                    }
                    if plan.stops.contains(&tok) {
                        return; // the stop token's text is not part of the reply
                    }
                    let s = text.push(&m.tokenizer, tok);
                    if !s.is_empty() {
                        let _ = tx.send(piece(s));
                    }
                })
                .await;
            if let Some(g) = guard {
                g.disarm();
            }
            match result {
                Ok(streamed) => {
                    let stopped = streamed
                        .tokens
                        .last()
                        .is_some_and(|t| plan.stops.contains(t));
                    let finish = if stopped { "stop" } else { "length" };
                    let last = match head.kind {
                        Kind::Chat => head.chunk(Some(json!({})), Some(finish)),
                        Kind::Text => head.text_chunk("", Some(finish)),
                    };
                    let _ = tx.send(last);
                    if plan.include_usage {
                        let usage = Usage::new(plan.prompt_tokens, streamed.tokens.len() as u32);
                        let _ = tx.send(head.usage_chunk(usage));
                    }
                    let _ = tx.send(Event::default().data("[DONE]"));
                }
                Err(e) => {
                    tracing::warn!(job = job.0, error = %e, "gateway stream failed");
                    let _ = tx.send(Event::default().data(market_error(e).body().to_string()));
                }
            }
        });
        let events = futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|e| (Ok::<_, Infallible>(e), rx))
        });
        let sse = Sse::new(events).keep_alive(KeepAlive::default());
        job_headers(sse.into_response(), job, sub.escrow, false)
    }
}

/// Stops job `job`'s generation when dropped before [`StopOnDrop::disarm`]: the
/// handler of a non-streaming request is dropped when its client hangs up; a stream's
/// task drops it when its client's chunks have no reader.
struct StopOnDrop {
    requester: Option<Requester>,
    job: JobId,
}

impl StopOnDrop {
    fn new(requester: Requester, job: JobId) -> StopOnDrop {
        StopOnDrop {
            requester: Some(requester),
            job,
        }
    }

    /// The request ran to its end: nothing to stop.
    fn disarm(mut self) {
        self.requester = None;
    }
}

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        let (Some(r), Ok(rt)) = (self.requester.take(), tokio::runtime::Handle::try_current())
        else {
            return;
        };
        let job = self.job;
        rt.spawn(async move {
            match r.stop(job).await {
                Ok(at) => tracing::info!(job = job.0, tokens = at, "the client left: generation stopped"),
                Err(e) => tracing::warn!(job = job.0, error = %e, "the client left; stopping the generation failed"),
            }
        });
    }
}

/// What every chunk of one response repeats.
struct Head {
    kind: Kind,
    id: String,
    created: u64,
    model: String,
}

impl Head {
    /// A `chat.completion.chunk` with `delta` (none: no choices) and `finish`.
    fn chunk(&self, delta: Option<Value>, finish: Option<&str>) -> Event {
        let choices = match delta {
            Some(d) => json!([{"index": 0, "delta": d, "logprobs": null, "finish_reason": finish}]),
            None => json!([]),
        };
        Event::default().data(
            json!({
                "id": self.id,
                "object": "chat.completion.chunk",
                "created": self.created,
                "model": self.model,
                "choices": choices,
            })
            .to_string(),
        )
    }

    /// A streamed `text_completion` piece.
    fn text_chunk(&self, text: &str, finish: Option<&str>) -> Event {
        Event::default().data(
            json!({
                "id": self.id,
                "object": "text_completion",
                "created": self.created,
                "model": self.model,
                "choices": [{"index": 0, "text": text, "logprobs": null, "finish_reason": finish}],
            })
            .to_string(),
        )
    }

    /// The last chunk before `[DONE]` when usage was asked for: no choices.
    fn usage_chunk(&self, usage: Usage) -> Event {
        Event::default().data(
            json!({
                "id": self.id,
                "object": match self.kind { Kind::Chat => "chat.completion.chunk", Kind::Text => "text_completion" },
                "created": self.created,
                "model": self.model,
                "choices": [],
                "usage": usage,
            })
            .to_string(),
        )
    }
}

/// Checks a generation request against the model: length, sampling, stop strings,
/// the prompt's tokens.
fn plan(m: &LlmModel, prompt: String, s: &Sampling) -> Result<Planned, ApiError> {
    if let Some(n) = s.n {
        if n != 1 {
            return Err(ApiError::invalid(
                Some("n"),
                format!("n = {n}: this gateway generates one choice per request"),
            ));
        }
    }
    let (max_param, max_tokens) = match (s.max_completion_tokens, s.max_tokens) {
        (Some(v), _) => ("max_completion_tokens", v),
        (None, Some(v)) => ("max_tokens", v),
        (None, None) => ("max_tokens", DEFAULT_MAX_TOKENS),
    };
    if max_tokens == 0 {
        return Err(ApiError::invalid(
            Some(max_param),
            format!("{max_param} must be at least 1"),
        ));
    }
    let temperature = s.temperature.unwrap_or(1.0);
    if !(temperature.is_finite() && (0.0..=2.0).contains(&temperature)) {
        return Err(ApiError::invalid(
            Some("temperature"),
            format!("temperature must be between 0 and 2, got {temperature}"),
        ));
    }
    let top_p = s.top_p.unwrap_or(1.0);
    if !(top_p > 0.0 && top_p <= 1.0) {
        return Err(ApiError::invalid(
            Some("top_p"),
            format!("top_p must be in (0, 1], got {top_p}"),
        ));
    }
    let sampler = if temperature == 0.0 {
        Sampler::Greedy
    } else {
        Sampler::Sample {
            seed: s.seed.unwrap_or(0) as u64,
            temperature,
            top_k: s.top_k.unwrap_or(0),
            top_p,
        }
    };
    let mut stops = m.stop_tokens.clone();
    let extra = s.stop.clone().map(OneOrMany::into_vec).unwrap_or_default();
    if extra.len() > 4 {
        return Err(ApiError::invalid(Some("stop"), "at most 4 stop sequences"));
    }
    for text in &extra {
        let ids = m
            .tokenizer
            .encode(text)
            .map_err(|e| ApiError::invalid(Some("stop"), e.to_string()))?;
        match ids[..] {
            [id] => {
                if !stops.contains(&id) {
                    stops.push(id);
                }
            }
            _ => {
                return Err(ApiError::invalid(
                    Some("stop"),
                    format!(
                        "stop sequence {text:?} is {} tokens of {CHAT_MODEL}; the market stops a generation on single tokens only",
                        ids.len()
                    ),
                ))
            }
        }
    }
    let prompt_ids = m.encode_prompt(&prompt, false).map_err(|e| match e {
        ComputeError::EmptyInput(_) => ApiError::invalid(None, format!("the prompt is empty: {e}")),
        e => ApiError::invalid(None, format!("the prompt does not fit {CHAT_MODEL}: {e}")),
    })?;
    let context = m.model.config().context;
    if prompt_ids.len() + max_tokens as usize > context {
        return Err(ApiError {
            code: Some("context_length_exceeded"),
            ..ApiError::invalid(
                Some(max_param),
                format!(
                    "the prompt's {} tokens plus {max_param} {max_tokens} exceed the model's context of {context} tokens",
                    prompt_ids.len()
                ),
            )
        });
    }
    Ok(Planned {
        input: GenerationInput {
            prompt,
            chat: false, // a chat request is rendered already
            max_tokens,
            sampler,
            stop: (!extra.is_empty()).then(|| stops.clone()),
        },
        prompt_tokens: prompt_ids.len() as u32,
        stops,
        include_usage: s.stream_options.as_ref().is_some_and(|o| o.include_usage),
    })
}

/// The conversation rendered with the model's chat template (the assistant's turn
/// opened).
fn render_chat(m: &LlmModel, messages: &[Message]) -> Result<String, ApiError> {
    if messages.is_empty() {
        return Err(ApiError::invalid(
            Some("messages"),
            "messages must hold at least one message",
        ));
    }
    let mut turns: Vec<(&str, String)> = Vec::with_capacity(messages.len());
    for (i, msg) in messages.iter().enumerate() {
        let param = format!("messages[{i}]");
        let role = match msg.role.as_str() {
            "system" | "developer" => "system",
            "user" => "user",
            "assistant" => "assistant",
            other => {
                return Err(ApiError::invalid(
                    Some(&format!("{param}.role")),
                    format!("role `{other}` is not served (system, developer, user, assistant)"),
                ))
            }
        };
        let text = match &msg.content {
            Some(Content::Text(t)) => t.clone(),
            Some(Content::Parts(parts)) => {
                let mut t = String::new();
                for p in parts {
                    match (p.kind.as_str(), &p.text) {
                        ("text", Some(s)) => t.push_str(s),
                        (kind, _) => {
                            return Err(ApiError::invalid(
                                Some(&format!("{param}.content")),
                                format!("content part `{kind}` is not served: text only"),
                            ))
                        }
                    }
                }
                t
            }
            None => {
                return Err(ApiError::invalid(
                    Some(&format!("{param}.content")),
                    "a message needs text content (tool calls are not served)",
                ))
            }
        };
        turns.push((role, text));
    }
    let template = ChatTemplate::detect(m.chat_template.as_deref())
        .map_err(|e| ApiError::market(format!("{CHAT_MODEL}'s chat template: {e}")))?;
    let refs: Vec<(&str, &str)> = turns.iter().map(|(r, t)| (*r, t.as_str())).collect();
    Ok(template.render(&refs))
}

/// The chat model, or 404 / 400.
fn check_chat_model(model: &str) -> Result<(), ApiError> {
    if model == CHAT_MODEL {
        return Ok(());
    }
    if model == EMBEDDING_MODEL || model == EMBEDDING_ALIAS {
        return Err(ApiError::invalid(
            Some("model"),
            format!("`{model}` is an embedding model; generate with `{CHAT_MODEL}`"),
        ));
    }
    Err(ApiError::model_not_found(model, &[CHAT_MODEL]))
}

/// The body as `T`, or 400 with serde's reason.
fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid(None, format!("the request body is not valid: {e}")))
}

/// A requester error in OpenAI's terms: the input's fault (400), the payer's (402),
/// else the market's (502).
fn requester_error(e: RequesterError) -> ApiError {
    match e {
        RequesterError::Input { .. }
        | RequesterError::EmptyInput(_)
        | RequesterError::MoreStagesThanLayers { .. } => ApiError::invalid(None, e.to_string()),
        RequesterError::InsufficientBalance { .. } => ApiError {
            status: StatusCode::PAYMENT_REQUIRED,
            message: e.to_string(),
            kind: "insufficient_quota",
            param: None,
            code: Some("insufficient_quota"),
        },
        e => market_error(e),
    }
}

/// 502 with the requester's reason.
fn market_error(e: RequesterError) -> ApiError {
    ApiError::market(e.to_string())
}

/// `x-agentic-job`, `x-agentic-cost`, `x-agentic-settled`.
fn job_headers(mut r: Response, job: JobId, cost: Amount, settled: bool) -> Response {
    let h = r.headers_mut();
    h.insert(
        HeaderName::from_static("x-agentic-job"),
        HeaderValue::from(job.0),
    );
    if let Ok(v) = HeaderValue::from_str(&cost.0.to_string()) {
        h.insert(HeaderName::from_static("x-agentic-cost"), v);
    }
    h.insert(
        HeaderName::from_static("x-agentic-settled"),
        HeaderValue::from_static(if settled { "true" } else { "false" }),
    );
    r
}

/// Seconds since the epoch.
fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
