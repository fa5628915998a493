//! Following a job through the node's event feed (`GET /v1/events`) rather than
//! polling its record.
//!
//! ```text
//!   JobFeed::open ── subscribe to /v1/events ── (the caller reads the job: nothing
//!        │                                        can fall between the two)
//!   changed(until) returns when, first:
//!     ├─ a finalized block's ledger events named the job (or a dispute on it)
//!     │  and the block itself arrived (one re-read per block, after all of it)
//!     ├─ the feed reported `lagged` (items dropped) or an item it could not read
//!     ├─ the feed ended or failed ── dropped; reconnected on the next call (at most
//!     │                               once per `resync`), and that call returns
//!     ├─ `resync` passed with none of these (a change without an event, or a feed
//!     │  that stays down: the slow fallback)
//!     └─ `until`
//!   the caller then re-reads the job with `Client::job`.
//! ```
//!
//! The node publishes a block's events after applying it, so a record read once
//! `changed` returns reflects everything the events said. Disputes are followed by
//! id: `DisputeOpened` names the job and adds its dispute, whose later events
//! (`BisectionNarrowed`, `DisputeResolved`) name only the dispute.

use std::pin::Pin;
use std::time::{Duration, Instant};

use agentic_client::api::Event as FeedEvent;
use agentic_client::{Client, ClientError};
use agentic_protocol::{DisputeId, Event, JobId};
use futures::{Stream, StreamExt as _};

/// How long opening the feed may take (the feed's own client has no overall timeout).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

type Feed = Pin<Box<dyn Stream<Item = Result<FeedEvent, ClientError>> + Send>>;

/// The events of one job (and the disputes on it), as wake-ups.
pub struct JobFeed {
    client: Client,
    job: JobId,
    disputes: Vec<DisputeId>,
    feed: Option<Feed>,
    /// When the feed was last (re)opened, successfully or not.
    opened_at: Instant,
    resync: Duration,
}

impl JobFeed {
    /// Subscribes to the node's events for `job`; read the job after this returns.
    /// Without a feed (the node refused the subscription) every call to
    /// [`JobFeed::changed`] waits `resync`, then tries again.
    pub async fn open(client: &Client, job: JobId, resync: Duration) -> JobFeed {
        let mut f = JobFeed {
            client: client.clone(),
            job,
            disputes: Vec::new(),
            feed: None,
            opened_at: Instant::now(),
            resync,
        };
        f.connect().await;
        f
    }

    /// Follows `dispute` too (one opened before the feed was).
    pub fn watch_dispute(&mut self, dispute: DisputeId) {
        if !self.disputes.contains(&dispute) {
            self.disputes.push(dispute);
        }
    }

    async fn connect(&mut self) {
        self.opened_at = Instant::now();
        self.feed = match tokio::time::timeout(CONNECT_TIMEOUT, self.client.events()).await {
            Ok(Ok(s)) => Some(Box::pin(s)),
            Ok(Err(e)) => {
                tracing::debug!(job = %self.job, "event feed unavailable, re-reading every {:?}: {e}", self.resync);
                None
            }
            Err(_) => {
                tracing::debug!(job = %self.job, "event feed did not open in {CONNECT_TIMEOUT:?}, re-reading every {:?}", self.resync);
                None
            }
        };
    }

    /// Waits until the job may have changed (see the module docs), or `until`.
    pub async fn changed(&mut self, until: Instant) {
        let Some(feed) = self.feed.as_mut() else {
            // Reconnect at most once per `resync`: a node that keeps closing the feed
            // is then re-read at the fallback pace, not in a loop.
            let at = (self.opened_at + self.resync).min(until);
            tokio::time::sleep_until(at.into()).await;
            if Instant::now() < until {
                self.connect().await;
            }
            return;
        };
        let tick = (Instant::now() + self.resync).min(until);
        let mut touched = false;
        loop {
            let item = match tokio::time::timeout_at(tick.into(), feed.next()).await {
                Ok(item) => item,
                Err(_) => return, // the fallback re-read, or the caller's deadline
            };
            match item {
                Some(Ok(FeedEvent::Ledger(e))) => {
                    touched |= concerns(self.job, &mut self.disputes, &e.event)
                }
                // The block's events are all in: its state is readable.
                Some(Ok(FeedEvent::Block(_))) if touched => return,
                Some(Ok(FeedEvent::Block(_))) => {}
                Some(Ok(FeedEvent::Lagged { missed })) => {
                    tracing::debug!(job = %self.job, missed, "event feed lagged; re-reading");
                    return;
                }
                Some(Err(ClientError::Decode { detail, .. })) => {
                    tracing::debug!(job = %self.job, "unreadable event ({detail}); re-reading");
                    return;
                }
                Some(Err(e)) => {
                    tracing::debug!(job = %self.job, "event feed failed: {e}");
                    self.feed = None;
                    return;
                }
                None => {
                    tracing::debug!(job = %self.job, "event feed closed by the node");
                    self.feed = None;
                    return;
                }
            }
        }
    }
}

/// Whether `e` is about `job` or one of its `disputes` (a new dispute on the job is
/// added to them).
fn concerns(job: JobId, disputes: &mut Vec<DisputeId>, e: &Event) -> bool {
    match e.job() {
        Some(j) if j == job => {
            if let Event::DisputeOpened { dispute, .. } = e {
                if !disputes.contains(dispute) {
                    disputes.push(*dispute);
                }
            }
            true
        }
        Some(_) => false,
        None => match e {
            Event::BisectionNarrowed { dispute, .. } | Event::DisputeResolved { dispute, .. } => {
                disputes.contains(dispute)
            }
            _ => false,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agentic_protocol::{Address, Amount};

    fn feed(job: u64) -> JobFeed {
        JobFeed {
            client: Client::new("127.0.0.1:1"),
            job: JobId(job),
            disputes: Vec::new(),
            feed: None,
            opened_at: Instant::now(),
            resync: Duration::from_secs(2),
        }
    }

    #[test]
    fn events_about_the_job_and_its_disputes_concern_it() {
        let mut d = Vec::new();
        let a = Address([1; 32]);
        assert!(concerns(
            JobId(7),
            &mut d,
            &Event::StageFinalized {
                job: JobId(7),
                stage: 0
            }
        ));
        assert!(!concerns(
            JobId(7),
            &mut d,
            &Event::StageFinalized {
                job: JobId(8),
                stage: 0
            }
        ));
        assert!(!concerns(
            JobId(7),
            &mut d,
            &Event::Transferred {
                from: a,
                to: a,
                amount: Amount(1)
            }
        ));
        // A dispute is followed once it opens on the job.
        let narrowed = Event::BisectionNarrowed {
            dispute: DisputeId(3),
            lo: 0,
            hi: 4,
        };
        assert!(!concerns(JobId(7), &mut d, &narrowed));
        assert!(concerns(
            JobId(7),
            &mut d,
            &Event::DisputeOpened {
                dispute: DisputeId(3),
                job: JobId(7),
                stage: 0,
                defendant: a,
                challenger: a,
            }
        ));
        assert!(concerns(JobId(7), &mut d, &narrowed));
        assert!(!concerns(
            JobId(7),
            &mut d,
            &Event::BisectionNarrowed {
                dispute: DisputeId(4),
                lo: 0,
                hi: 4,
            }
        ));
    }

    #[tokio::test]
    async fn without_a_feed_it_waits_the_fallback_interval() {
        let mut f = feed(1);
        f.resync = Duration::from_millis(50);
        let t = Instant::now();
        f.changed(Instant::now() + Duration::from_secs(5)).await;
        assert!(t.elapsed() >= Duration::from_millis(40));
        assert!(f.feed.is_none(), "nothing listens on port 1");
        // The deadline comes first.
        f.opened_at = Instant::now();
        f.resync = Duration::from_secs(5);
        let t = Instant::now();
        f.changed(Instant::now() + Duration::from_millis(30)).await;
        assert!(t.elapsed() < Duration::from_secs(2));
    }
}
