//! [`McpServer`]: the rmcp [`ServerHandler`] — the tool table, and the
//! dispatch that turns every failure into a tool error.

use std::future::Future;
use std::sync::Arc;

use agentic_protocol::JobId;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, Implementation, JsonObject,
    ListToolsResult, PaginatedRequestParams, ProgressNotificationParam, ServerCapabilities,
    ServerConfig, Tool, ToolAnnotations,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler};
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::args::{
    ChallengeArgs, GenerateArgs, JobArgs, JobIdArgs, ListOffersArgs, NoArgs, ResultArgs,
};
use super::tools::Market;
use super::{Config, ToolError};

/// The tools, in the order `tools/list` gives them.
pub const TOOL_NAMES: [&str; 8] = [
    "list_offers",
    "quote_job",
    "submit_job",
    "generate",
    "job_status",
    "get_result",
    "challenge_result",
    "get_balance_and_mandate",
];

const INSTRUCTIONS: &str = "Buy verified neural-network inference on the Agentic market. \
Typical flow: get_balance_and_mandate (what you may spend) → list_offers → quote_job (escrow and expected cost; signs nothing) → \
submit_job (locks the escrow; returns a job id) → job_status until status is Completed → get_result (hash-checked output and the bill). \
Amounts are base units as decimal strings (\"1500\") or integers, never floats; prices are per mega-op (10^6 metered operations). \
Under a mandate the principal pays, never beyond its caps; a stage that loses a dispute fails the job and refunds the payer everything unpaid. \
If you doubt a result inside its challenge window, challenge_result re-runs the stage on this server and disputes it only if it differs.";

/// The MCP server: cheap to clone (every session of the HTTP transport gets a
/// clone), all clones share one key, one node client and one signing lock.
#[derive(Clone)]
pub struct McpServer {
    market: Arc<Market>,
}

impl std::fmt::Debug for McpServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("McpServer")
            .field("config", &self.market.cfg)
            .finish()
    }
}

fn tool<T: JsonSchema + 'static>(name: &'static str, description: &'static str) -> Tool {
    Tool::new(name, description, JsonObject::new()).with_input_schema::<T>()
}

fn annotate(t: Tool, read_only: bool, title: &str) -> Tool {
    let a = ToolAnnotations::with_title(title)
        .read_only(read_only)
        .destructive(false)
        .open_world(true);
    t.annotate(a)
}

/// Parses a tool's arguments, naming the tool and serde's reason on failure.
fn parse<T: DeserializeOwned>(tool: &'static str, args: JsonObject) -> Result<T, ToolError> {
    serde_json::from_value(Value::Object(args)).map_err(|e| ToolError::InvalidArguments {
        tool,
        reason: e.to_string(),
    })
}

impl McpServer {
    /// A server acting as `cfg` says. Nothing is contacted until a tool is called.
    pub fn new(cfg: Config) -> McpServer {
        McpServer {
            market: Arc::new(Market::new(cfg)),
        }
    }

    /// The configuration it acts with.
    pub fn config(&self) -> &Config {
        &self.market.cfg
    }

    /// Every tool with its description and input schema.
    pub fn tools() -> Vec<Tool> {
        vec![
            annotate(
                tool::<ListOffersArgs>(
                    "list_offers",
                    "The market's standing provider offers, cheapest first: price per mega-op, capacity, measured speed, region, reputation (ppm) and bonded stake.",
                ),
                true,
                "List offers",
            ),
            annotate(
                tool::<JobArgs>(
                    "quote_job",
                    "Quote an inference job without submitting it: the layer split per stage, placement, the escrow it would lock, the expected and the maximum cost per stage, the fee, and whether the mandate allows it. Signs nothing.",
                ),
                true,
                "Quote a job",
            ),
            annotate(
                tool::<JobArgs>(
                    "submit_job",
                    "Submit an inference job (same input as quote_job): checks the mandate and balance first, uploads the model and input, signs SubmitJob and returns the job id and the escrow locked. Spends tokens.",
                ),
                false,
                "Submit a job",
            ),
            annotate(
                tool::<GenerateArgs>(
                    "generate",
                    "Generate text with an LLM (default smollm2-135m) split over `stages` providers: checks the mandate and balance, submits a generation job, streams the tokens (as progress notifications when the request carries a progress token), follows it until it settles and returns the text, the token count, the job id and the exact bill (the ops of the tokens generated × each provider's price). Spends tokens.",
                ),
                false,
                "Generate text",
            ),
            annotate(
                tool::<JobIdArgs>(
                    "job_status",
                    "A job's status, each stage's phase (matching, running, auditing, challengeable, disputed, finalized) and providers, and the bill so far.",
                ),
                true,
                "Job status",
            ),
            annotate(
                tool::<ResultArgs>(
                    "get_result",
                    "A job's output, checked against the hash its providers agreed on: shape, summary (min/max/mean, argmax per row, next-token ids for language-model logits), values, each stage's result, and the cost breakdown. Refuses a job that failed or was cancelled.",
                ),
                true,
                "Get a job's result",
            ),
            annotate(
                tool::<ChallengeArgs>(
                    "challenge_result",
                    "Dispute one stage's agreed result inside its challenge window: the server re-runs the stage itself; if its output differs it posts a Challenge (locking the challenge bond) with its own result and plays the bisection game; if it agrees nothing is posted. Says clearly when it cannot recompute.",
                ),
                false,
                "Challenge a result",
            ),
            annotate(
                tool::<NoArgs>(
                    "get_balance_and_mandate",
                    "This key's balance, bonded stake and nonce, and the mandate it spends under (principal, caps, spent, remaining, expiry), if any.",
                ),
                true,
                "Balance and mandate",
            ),
        ]
    }

    /// Runs tool `name` with `args`: `None` when there is no such tool, else
    /// its result (a failure is a result with `is_error`). The tool runs in its
    /// own task, so even a bug that panics comes back as a tool error.
    pub async fn call(&self, name: &str, args: JsonObject) -> Option<CallToolResult> {
        self.call_with_progress(name, args, None, None).await
    }

    /// [`McpServer::call`], with a sink for the progress of a long tool (`generate`:
    /// one report per token) and the caller's cancellation (`generate` stops its
    /// generation).
    pub(crate) async fn call_with_progress(
        &self,
        name: &str,
        args: JsonObject,
        progress: Option<super::tools::Progress>,
        cancelled: Option<super::tools::Cancelled>,
    ) -> Option<CallToolResult> {
        let m = self.market.clone();
        let outcome = match name {
            "list_offers" => {
                run(parse("list_offers", args), |a| async move {
                    m.list_offers(a).await
                })
                .await
            }
            "quote_job" => {
                run(
                    parse("quote_job", args),
                    |a| async move { m.quote(a).await },
                )
                .await
            }
            "submit_job" => {
                run(
                    parse("submit_job", args),
                    |a| async move { m.submit(a).await },
                )
                .await
            }
            "generate" => {
                run(parse("generate", args), |a: GenerateArgs| async move {
                    m.generate(a, progress, cancelled).await
                })
                .await
            }
            "job_status" => {
                run(parse("job_status", args), |a: JobIdArgs| async move {
                    m.status(JobId(a.job)).await
                })
                .await
            }
            "get_result" => {
                run(
                    parse("get_result", args),
                    |a| async move { m.result(a).await },
                )
                .await
            }
            "challenge_result" => {
                run(parse("challenge_result", args), |a| async move {
                    m.challenge(a).await
                })
                .await
            }
            "get_balance_and_mandate" => {
                run(
                    parse::<NoArgs>("get_balance_and_mandate", args),
                    |_| async move { m.balance_and_mandate().await },
                )
                .await
            }
            _ => return None,
        };
        Some(match outcome {
            Ok(v) => CallToolResult::structured(v),
            Err(e) => {
                tracing::info!(tool = name, "tool error: {e}");
                e.into_result()
            }
        })
    }
}

/// Runs `body` on parsed arguments in a task of its own (a panic becomes a
/// tool error instead of a lost request).
async fn run<A, F, Fut>(args: Result<A, ToolError>, body: F) -> Result<Value, ToolError>
where
    F: FnOnce(A) -> Fut,
    Fut: Future<Output = Result<Value, ToolError>> + Send + 'static,
{
    let fut = body(args?);
    match tokio::spawn(fut).await {
        Ok(r) => r,
        Err(e) => Err(ToolError::Stopped(e.to_string())),
    }
}

impl ServerHandler for McpServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(
                Implementation::new("agentic", env!("CARGO_PKG_VERSION"))
                    .with_title("Agentic compute market"),
            )
            .with_instructions(INSTRUCTIONS)
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(Self::tools()))
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        Self::tools().into_iter().find(|t| t.name == name)
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let name = request.name.to_string();
        // Progress notifications, in order, when the caller asked for them.
        let progress = context.meta.get_progress_token().map(|token| {
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(u32, u32, String)>();
            let peer = context.peer.clone();
            tokio::spawn(async move {
                while let Some((done, total, message)) = rx.recv().await {
                    let p = ProgressNotificationParam::new(token.clone(), f64::from(done))
                        .with_total(f64::from(total))
                        .with_message(message);
                    if peer.notify_progress(p).await.is_err() {
                        return;
                    }
                }
            });
            tx
        });
        match self
            .call_with_progress(
                &name,
                request.arguments.unwrap_or_default(),
                progress,
                Some(Box::pin(context.ct.clone().cancelled_owned())),
            )
            .await
        {
            Some(r) => Ok(r.into()),
            None => Err(ErrorData::invalid_params(
                format!(
                    "unknown tool `{name}`; the tools are {}",
                    TOOL_NAMES.join(", ")
                ),
                None,
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use serde_json::json;

    #[test]
    fn every_tool_has_an_object_schema_with_its_required_fields() {
        let tools = McpServer::tools();
        let names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
        assert_eq!(names, TOOL_NAMES);
        for t in &tools {
            assert_eq!(t.input_schema["type"], "object", "{}", t.name);
            assert!(t.description.as_deref().is_some_and(|d| d.len() > 20));
        }
        let required = |name: &str| -> Vec<String> {
            let t = tools.iter().find(|t| t.name == name).unwrap();
            let mut r: Vec<String> = t
                .input_schema
                .get("required")
                .and_then(Value::as_array)
                .map(|a| a.iter().map(|v| v.as_str().unwrap().to_string()).collect())
                .unwrap_or_default();
            r.sort();
            r
        };
        assert_eq!(required("quote_job"), ["model", "texts"]);
        assert_eq!(required("submit_job"), ["model", "texts"]);
        assert_eq!(required("job_status"), ["job"]);
        assert_eq!(required("challenge_result"), ["job", "stage"]);
        assert!(required("list_offers").is_empty());
        let submit = tools.iter().find(|t| t.name == "submit_job").unwrap();
        assert_eq!(
            submit.input_schema.get("additionalProperties"),
            Some(&json!(false))
        );
        // Amounts: strings of digits or non-negative integers.
        let price = serde_json::to_string(&submit.input_schema["properties"]["max_price"]).unwrap();
        assert!(
            price.contains("^[0-9]{1,39}$") && price.contains("\"minimum\":0"),
            "{price}"
        );
    }
}
