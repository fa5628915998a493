//! The stage the acts play on: the running market, the parties' keys and names,
//! the ledger's event feed, the progress display, and the checks.
//!
//! Buyers talk to validator 0 through its HTTP API, as any client would. The
//! checks read the finalized ledger state of the validators in this process
//! (`Running::chain`): exact typed values, the same ones the API serves.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agentic_agent::requester::{JobFeed, Requester};
use agentic_client::api::TxReceipt;
use agentic_client::keystore::KeyFile;
use agentic_client::Client;
use agentic_node::chain::ChainEvent;
use agentic_protocol::event::Event;
use agentic_protocol::state::{Account, Job, StagePhase};
use agentic_protocol::tx::MandateTerms;
use agentic_protocol::{Address, Amount, Height, JobId, MandateId, State, TxBody};
use agentic_provider::local::LocalMarket;
use agentic_provider::Provider;
use anyhow::{bail, Context};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;
use tokio::sync::broadcast::error::RecvError;

use super::cast::ProviderProfile;

/// How long a transaction may take to be finalized.
pub const TX_TIMEOUT: Duration = Duration::from_secs(60);
/// How long one job may take.
pub const JOB_TIMEOUT: Duration = Duration::from_secs(120);

/// One check of the demo: what was claimed, whether it held, and the numbers.
#[derive(Clone, Debug, Serialize)]
pub struct Check {
    /// What is checked.
    pub name: String,
    /// Whether it held.
    pub held: bool,
    /// The values compared.
    pub detail: String,
}

/// One act's narrative.
#[derive(Clone, Debug, Serialize)]
pub struct ActLog {
    /// Its title.
    pub title: String,
    /// What happened, line by line.
    pub log: Vec<String>,
}

/// A ledger event and the height of the block it happened in.
#[derive(Clone, Debug)]
pub struct Logged {
    /// The block.
    pub height: Height,
    /// The event.
    pub event: Event,
}

/// Every ledger event validator 0 applies from the start of the story.
pub struct EventLog {
    events: Arc<Mutex<Vec<Logged>>>,
    lagged: Arc<Mutex<u64>>,
    task: tokio::task::JoinHandle<()>,
}

impl EventLog {
    /// Follows `market`'s validator 0 from now on.
    fn follow(market: &LocalMarket) -> EventLog {
        let mut rx = market.validators[0]
            .chain
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .subscribe();
        let events: Arc<Mutex<Vec<Logged>>> = Arc::default();
        let lagged: Arc<Mutex<u64>> = Arc::default();
        let (sink, missed) = (events.clone(), lagged.clone());
        let task = tokio::spawn(async move {
            loop {
                match rx.recv().await {
                    Ok(ChainEvent::Ledger { height, record }) => {
                        sink.lock().unwrap_or_else(|e| e.into_inner()).push(Logged {
                            height,
                            event: record.event,
                        });
                    }
                    Ok(ChainEvent::Block(_)) => {}
                    Err(RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "the demo's event log fell behind");
                        *missed.lock().unwrap_or_else(|e| e.into_inner()) += n;
                    }
                    Err(RecvError::Closed) => break,
                }
            }
        });
        EventLog {
            events,
            lagged,
            task,
        }
    }

    /// What `f` picks out of every event so far, in order.
    pub fn select<T>(&self, mut f: impl FnMut(Height, &Event) -> Option<T>) -> Vec<T> {
        self.events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter_map(|l| f(l.height, &l.event))
            .collect()
    }

    /// Waits up to `timeout` for the first event `f` picks.
    pub async fn wait_for<T>(
        &self,
        timeout: Duration,
        what: &str,
        mut f: impl FnMut(Height, &Event) -> Option<T>,
    ) -> anyhow::Result<T> {
        let start = Instant::now();
        loop {
            if let Some(t) = self.select(&mut f).into_iter().next() {
                return Ok(t);
            }
            if start.elapsed() > timeout {
                bail!("waited {timeout:?} for {what}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Events the log missed because it fell behind (0 for a complete log).
    pub fn lagged(&self) -> u64 {
        *self.lagged.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for EventLog {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Progress on stderr: one line for the act, one bar per stage of a job being
/// followed (hidden when stderr is not a terminal).
pub struct Progress {
    multi: MultiProgress,
    act: ProgressBar,
    stage_style: ProgressStyle,
}

impl Progress {
    fn new(acts: u64) -> anyhow::Result<Progress> {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
        let act = multi.add(
            ProgressBar::new(acts).with_style(
                ProgressStyle::with_template(
                    "{spinner} act {pos}/{len} {prefix}: {msg} [{elapsed}]",
                )
                .context("progress template")?,
            ),
        );
        act.enable_steady_tick(Duration::from_millis(120));
        let stage_style = ProgressStyle::with_template("    {prefix} [{bar:10}] {msg}")
            .context("progress template")?
            .progress_chars("=> ");
        Ok(Progress {
            multi,
            act,
            stage_style,
        })
    }

    /// A new act begins.
    pub fn begin(&self, title: &str) {
        self.act.inc(1);
        self.act.set_prefix(title.to_string());
        self.act.set_message("");
    }

    /// What the act is doing now.
    pub fn step(&self, msg: impl Into<String>) {
        let msg = msg.into();
        tracing::info!("{msg}");
        self.act.set_message(msg);
    }

    /// Clears the display.
    pub fn finish(&self) {
        self.act.finish_and_clear();
        let _ = self.multi.clear();
    }
}

/// The demo's world: the market and everything the acts share.
pub struct World {
    /// The running market.
    pub market: LocalMarket,
    /// A client of validator 0's API.
    pub client: Client,
    /// Ledger events since the story began.
    pub events: EventLog,
    /// The progress display.
    pub progress: Progress,
    /// The minimum fee: what each provider transaction here pays (commit, reveal, audit
    /// commit and report, bisection moves, offer updates: none matches slots or reaches
    /// a KiB). A `SubmitJob` pays more, by the slots it asks the ledger to match (its
    /// `Submitted::fee`).
    pub fee: Amount,
    /// Running provider daemons by name.
    pub providers: BTreeMap<String, Provider>,
    /// Each provider's profile by name.
    pub profiles: BTreeMap<String, ProviderProfile>,
    names: BTreeMap<Address, String>,
    checks: Vec<Check>,
    acts: Vec<ActLog>,
}

impl World {
    /// The world around a freshly started market, for a story of `acts` acts.
    pub async fn new(market: LocalMarket, acts: u64) -> anyhow::Result<World> {
        let events = EventLog::follow(&market);
        let client = market.client();
        let fee = client
            .params()
            .await
            .context("reading the parameters")?
            .min_fee;
        let mut names = BTreeMap::new();
        for (_, k) in market.files.validators.iter().chain(&market.files.accounts) {
            names.insert(k.address(), k.name.clone());
        }
        Ok(World {
            market,
            client,
            events,
            progress: Progress::new(acts)?,
            fee,
            providers: BTreeMap::new(),
            profiles: BTreeMap::new(),
            names,
            checks: Vec::new(),
            acts: Vec::new(),
        })
    }

    /// The key of party `name` (a user or `validator-i`).
    pub fn key(&self, name: &str) -> anyhow::Result<KeyFile> {
        self.market
            .files
            .validators
            .iter()
            .chain(&self.market.files.accounts)
            .map(|(_, k)| k)
            .find(|k| k.name == name)
            .cloned()
            .with_context(|| format!("no party named {name}"))
    }

    /// The address of party `name`.
    pub fn address(&self, name: &str) -> anyhow::Result<Address> {
        Ok(self.key(name)?.address())
    }

    /// The name of the party at `a` (its short hex if unknown).
    pub fn name(&self, a: &Address) -> String {
        self.names.get(a).cloned().unwrap_or_else(|| {
            let s = a.to_string();
            format!("{}…", &s[..10])
        })
    }

    /// Every party's name, validators first.
    pub fn parties(&self) -> Vec<String> {
        self.market
            .files
            .validators
            .iter()
            .chain(&self.market.files.accounts)
            .map(|(_, k)| k.name.clone())
            .collect()
    }

    /// Reads validator `i`'s finalized state.
    pub fn state_of<T>(&self, i: usize, f: impl FnOnce(&State) -> T) -> T {
        let chain = self.market.validators[i]
            .chain
            .read()
            .unwrap_or_else(|e| e.into_inner());
        f(chain.state())
    }

    /// Reads validator 0's finalized state.
    pub fn state<T>(&self, f: impl FnOnce(&State) -> T) -> T {
        self.state_of(0, f)
    }

    /// An account as validator 0 sees it.
    pub fn account(&self, a: &Address) -> Account {
        self.state(|s| s.account(a))
    }

    /// A requester SDK handle signing as `name`.
    pub fn requester(&self, name: &str) -> anyhow::Result<Requester> {
        let mut r = Requester::new(self.client.clone(), self.key(name)?.key);
        r.poll_interval = Duration::from_millis(100);
        r.tx_timeout = TX_TIMEOUT;
        Ok(r)
    }

    /// `name` signs `body`; the receipt once finalized, or the ledger's refusal.
    pub async fn send(&self, name: &str, body: TxBody) -> anyhow::Result<TxReceipt> {
        let key = self.key(name)?;
        let kind = body.kind();
        self.client
            .send(&key.key, body, TX_TIMEOUT)
            .await
            .with_context(|| format!("{name}'s {kind} transaction"))
    }

    /// `principal` grants a mandate on `terms`; its id (from the `MandateGranted` event).
    pub async fn grant_mandate(
        &self,
        principal: &str,
        terms: MandateTerms,
    ) -> anyhow::Result<MandateId> {
        let receipt = self.send(principal, TxBody::GrantMandate { terms }).await?;
        receipt
            .events
            .iter()
            .find_map(|r| match r.event {
                Event::MandateGranted { mandate, .. } => Some(mandate),
                _ => None,
            })
            .context("no MandateGranted event")
    }

    /// Several parties each send one transaction at once; the receipts in order.
    pub async fn send_all(&self, txs: Vec<(String, TxBody)>) -> anyhow::Result<Vec<TxReceipt>> {
        let mut set = tokio::task::JoinSet::new();
        for (i, (name, body)) in txs.into_iter().enumerate() {
            let key = self.key(&name)?;
            let client = self.client.clone();
            set.spawn(async move {
                let kind = body.kind();
                let r = client
                    .send(&key.key, body, TX_TIMEOUT)
                    .await
                    .with_context(|| format!("{name}'s {kind} transaction"));
                (i, r)
            });
        }
        let mut out = Vec::new();
        while let Some(joined) = set.join_next().await {
            let (i, r) = joined.context("a sender task failed")?;
            out.push((i, r?));
        }
        out.sort_by_key(|(i, _)| *i);
        Ok(out.into_iter().map(|(_, v)| v).collect())
    }

    /// Starts the provider daemon of `profile` and waits until it is registered.
    pub async fn start_provider(&mut self, profile: &ProviderProfile) -> anyhow::Result<()> {
        let p = *profile;
        let provider = self
            .market
            .provider(p.name, p.price, |c| {
                c.region = agentic_protocol::types::Region(p.region);
                c.slowdown = p.slowdown;
                c.extra_rtt = p.extra_rtt;
                c.stake = Amount(p.stake);
                c.capacity = 4;
                c.poll = Duration::from_millis(50);
                c.misbehave = p.misbehave;
            })
            .await
            .with_context(|| format!("starting provider {}", p.name))?;
        self.providers.insert(p.name.to_string(), provider);
        self.profiles.insert(p.name.to_string(), p);
        Ok(())
    }

    /// Follows job `id` until it ends, one progress bar per stage.
    pub async fn follow(&self, req: &Requester, id: JobId) -> anyhow::Result<Job> {
        let mut bars: Vec<ProgressBar> = Vec::new();
        let job = req
            .wait(id, JOB_TIMEOUT, |job| {
                if bars.is_empty() {
                    for (s, spec) in job.spec.stages.iter().enumerate() {
                        let bar = self
                            .progress
                            .multi
                            .add(ProgressBar::new(5).with_style(self.progress.stage_style.clone()));
                        bar.set_prefix(format!(
                            "job {id} stage {s} (layers {}..{})",
                            spec.first_layer,
                            spec.first_layer + spec.layers
                        ));
                        bars.push(bar);
                    }
                }
                for (s, bar) in bars.iter().enumerate() {
                    let (pos, msg) = self.stage_progress(job, s);
                    bar.set_position(pos);
                    bar.set_message(msg);
                }
            })
            .await;
        for bar in &bars {
            bar.finish_and_clear();
        }
        job.with_context(|| format!("following job {id}"))
    }

    /// Reads job `id` now and again after each block of validator 0's whose events name
    /// it (the requester SDK's [`JobFeed`] over `/v1/events`, not polling) until
    /// `ready` says yes, or it errs; the job then. Gives up after [`JOB_TIMEOUT`].
    pub async fn job_when(
        &self,
        id: JobId,
        what: &str,
        mut ready: impl FnMut(&Job) -> anyhow::Result<bool>,
    ) -> anyhow::Result<Job> {
        // Subscribed before the first read: no block between them goes unseen.
        let mut feed = JobFeed::open(&self.client, id, Duration::from_secs(2)).await;
        let deadline = Instant::now() + JOB_TIMEOUT;
        loop {
            let job = self
                .client
                .job(id)
                .await
                .with_context(|| format!("reading job {id}"))?;
            if ready(&job)? {
                return Ok(job);
            }
            if Instant::now() >= deadline {
                bail!("waited {JOB_TIMEOUT:?} for {what}");
            }
            // Wakes once a finalized block's events named the job (its record then
            // holds everything the block did), or at the fallback re-read.
            feed.changed(deadline).await;
        }
    }

    /// How far stage `s` has come (0..=5) and where it is, with provider names.
    fn stage_progress(&self, job: &Job, s: usize) -> (u64, String) {
        let st = &job.stages[s];
        let who: Vec<String> = st
            .slots
            .iter()
            .filter_map(|x| x.assignment.as_ref())
            .map(|a| self.name(&a.provider))
            .collect();
        let who = who.join(",");
        match st.phase {
            StagePhase::Matching { since } => (0, format!("matching since height {since}")),
            StagePhase::Running {
                reveal_deadline: None,
            } => match &st.audit {
                Some(a)
                    if st.slots.iter().all(|x| {
                        x.assignment
                            .as_ref()
                            .is_some_and(|a| a.commitment.is_some())
                    }) =>
                {
                    (
                        2,
                        format!(
                            "{who} committed; auditor {} commits first",
                            self.name(&a.auditor)
                        ),
                    )
                }
                _ => (1, format!("running on {who}")),
            },
            StagePhase::Running {
                reveal_deadline: Some(d),
            } => (2, format!("{who} reveals by height {d}")),
            StagePhase::Auditing { .. } => (3, format!("{who}: under audit")),
            StagePhase::Disputed { dispute } => (3, format!("{who}: dispute {dispute}")),
            StagePhase::Challengeable { until } => {
                (4, format!("{who}: challenge window until {until}"))
            }
            StagePhase::Finalized => (5, format!("finalized, {who} paid")),
            StagePhase::Cancelled => (5, "cancelled".to_string()),
        }
    }

    /// Records a check (and logs it); returns whether it held.
    pub fn check(
        &mut self,
        name: impl Into<String>,
        held: bool,
        detail: impl Into<String>,
    ) -> bool {
        let (name, detail) = (name.into(), detail.into());
        if held {
            tracing::info!(check = %name, %detail, "check held");
        } else {
            tracing::warn!(check = %name, %detail, "check FAILED");
        }
        self.checks.push(Check { name, held, detail });
        held
    }

    /// Records an act's narrative.
    pub fn act(&mut self, title: &str, log: Vec<String>) {
        self.acts.push(ActLog {
            title: title.to_string(),
            log,
        });
    }

    /// The checks so far.
    pub fn checks(&self) -> &[Check] {
        &self.checks
    }

    /// The acts so far.
    pub fn acts(&self) -> &[ActLog] {
        &self.acts
    }

    /// The finalized height of validator 0.
    pub fn height(&self) -> u64 {
        self.market.height()
    }
}
