//! Group commit: reports from every agent go through one bounded queue to one writer,
//! which stores whatever has queued up meanwhile in a single transaction — one commit,
//! one fsync — and only then answers each request. Under load, batches grow by
//! themselves while the previous commit is on disk, so fsyncs per second follow the
//! disk, not the number of agents. Commits also start at most once per
//! `ingest_commit_interval`: a report arriving within that time of the previous commit's
//! start waits for the rest of it, so that a steady trickle of reports (a large fleet at
//! its collection interval) shares commits instead of paying one each; at rest, a lone
//! report is committed at once.
//!
//! Agents' other contacts — heartbeats, command polls — go through the same queue
//! ([`Ingest::record_contact`]) and are recorded in the same transaction as the batch's
//! reports, so they too cost nothing in commits (a fleet of 100,000 agents sends ~2,000
//! of them a second).
//!
//! A request is [`Admitted`] on arrival, before anything else is done for it. It
//! is refused at once with 503 and `Retry-After` (agents come back later, their reports
//! safe in their spools) when the queue is full, or when requests in flight reach the
//! writer later than `ingest_max_wait` after they arrived — wherever they waited
//! (authentication, the queue) — instead of holding unbounded memory or answering after
//! the agent gave up: an overloaded hub sheds load while what it accepts still gets a
//! timely answer.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serverpulse_proto::report::Report;
use serverpulse_store::{Contact, ContactOutcome, IngestJob, IngestOutcome, Judge, ServerId, Store, StoreError};
use tokio::sync::{mpsc, oneshot};

use crate::error::ApiError;

/// Most jobs committed in one transaction.
pub const MAX_BATCH: usize = 512;

/// The reports go back with the outcome: the handler exports them.
type Reply = (Result<IngestOutcome, StoreError>, Vec<Report>);

/// What waits for the writer, with where its outcome goes.
enum Queued {
    Reports { job: IngestJob, reply: oneshot::Sender<Reply> },
    Contact { contact: Contact, reply: oneshot::Sender<Result<ContactOutcome, StoreError>> },
}

/// Counters of the writer's work: commits (each one fsync of the database's log) and the
/// requests they carried.
#[derive(Debug, Default)]
pub struct IngestStats {
    pub batches: AtomicU64,
    pub jobs: AtomicU64,
    /// The longest a report request took, arrival to answer, since requests were last
    /// all answered, in ms.
    pub waited_ms: AtomicU64,
    /// Report requests admitted and not yet answered.
    pub in_flight: AtomicU64,
}

/// A report request let in ([`Ingest::admit`]): in flight until dropped, aged from its
/// arrival.
#[derive(Debug)]
pub struct Admitted {
    arrived: std::time::Instant,
    stats: Arc<IngestStats>,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let took = u64::try_from(self.arrived.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.stats.waited_ms.fetch_max(took, Ordering::Relaxed);
        self.stats.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl axum::extract::FromRequestParts<crate::app::AppState> for Admitted {
    type Rejection = ApiError;

    async fn from_request_parts(
        _: &mut axum::http::request::Parts,
        state: &crate::app::AppState,
    ) -> Result<Self, ApiError> {
        state.ingest.admit()
    }
}

/// The handle request handlers submit to. Cheap to clone; the writer stops when the
/// last handle is dropped, after committing what was queued.
#[derive(Clone)]
pub struct Ingest {
    sender: mpsc::Sender<Queued>,
    stats: Arc<IngestStats>,
    /// Longer waits than this refuse new requests while any are in flight.
    max_wait_ms: u64,
}

impl std::fmt::Debug for Ingest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ingest").field("free", &self.sender.capacity()).finish()
    }
}

/// What the writer works with: the store, the alerting it judges reports with, the
/// clock it judges them by.
#[allow(missing_debug_implementations)]
pub struct WriterParts {
    pub store: Arc<dyn Store>,
    pub alerting: crate::alerting::Alerting,
    pub clock: Arc<dyn crate::clock::Clock>,
}

/// The writer's half: run it with [`Writer::run`].
#[allow(missing_debug_implementations)]
pub struct Writer {
    receiver: mpsc::Receiver<Queued>,
    parts: WriterParts,
    stats: Arc<IngestStats>,
    /// Shortest time from one commit's start to the next one's.
    commit_interval: std::time::Duration,
}

impl Ingest {
    /// A queue of `ingest_queue` requests, refusing more while its requests wait longer
    /// than `ingest_max_wait`, and its writer, committing at most once per
    /// `ingest_commit_interval`.
    pub fn new(parts: WriterParts, settings: &crate::config::Settings) -> (Self, Writer) {
        let (sender, receiver) = mpsc::channel(settings.ingest_queue.max(1));
        let stats = Arc::<IngestStats>::default();
        let max_wait_ms = u64::try_from(settings.ingest_max_wait.as_millis()).unwrap_or(u64::MAX);
        let writer = Writer { receiver, parts, stats: stats.clone(), commit_interval: settings.ingest_commit_interval };
        (Self { sender, stats, max_wait_ms }, writer)
    }

    /// (commits, requests committed) so far.
    pub fn stats(&self) -> (u64, u64) {
        (self.stats.batches.load(Ordering::Relaxed), self.stats.jobs.load(Ordering::Relaxed))
    }

    /// Requests waiting for the writer now.
    pub fn queued(&self) -> usize {
        self.sender.max_capacity() - self.sender.capacity()
    }

    /// Lets a report request in, unless requests have been taking longer than
    /// `max_wait` and some are still in flight. Once all are answered the hub starts
    /// afresh, so an overload sheds in bursts and never refuses an idle hub.
    pub fn admit(&self) -> Result<Admitted, ApiError> {
        if self.stats.in_flight.load(Ordering::Relaxed) == 0 {
            self.stats.waited_ms.store(0, Ordering::Relaxed);
        } else if self.stats.waited_ms.load(Ordering::Relaxed) > self.max_wait_ms {
            return Err(ApiError::Busy);
        }
        self.stats.in_flight.fetch_add(1, Ordering::Relaxed);
        Ok(Admitted { arrived: std::time::Instant::now(), stats: self.stats.clone() })
    }

    /// Queues one agent's reports and waits until they are durable; gives the reports
    /// back. Only an admitted request submits (it stays in flight until answered).
    pub async fn submit(
        &self,
        _admitted: &Admitted,
        server: ServerId,
        reports: Vec<Report>,
        now: i64,
    ) -> Result<(IngestOutcome, Vec<Report>), ApiError> {
        let (reply, answer) = oneshot::channel();
        self.enqueue(Queued::Reports { job: IngestJob { server, reports, received_at: now }, reply })?;
        let (outcome, reports) = answer.await.map_err(|_| writer_gone())?;
        Ok((outcome?, reports))
    }

    /// Queues an agent's heartbeat or command poll and waits until it is durable: what
    /// the agent is answered, as of the commit. Only an admitted request submits.
    pub async fn record_contact(&self, _admitted: &Admitted, contact: Contact) -> Result<ContactOutcome, ApiError> {
        let (reply, answer) = oneshot::channel();
        self.enqueue(Queued::Contact { contact, reply })?;
        Ok(answer.await.map_err(|_| writer_gone())??)
    }

    fn enqueue(&self, queued: Queued) -> Result<(), ApiError> {
        match self.sender.try_send(queued) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(_)) => Err(ApiError::Busy),
            Err(mpsc::error::TrySendError::Closed(_)) => {
                Err(ApiError::Unavailable("the ingest writer has stopped".to_owned()))
            }
        }
    }
}

fn writer_gone() -> ApiError {
    ApiError::Unavailable("the ingest writer stopped before committing".to_owned())
}

impl Writer {
    /// Commits batches until every [`Ingest`] handle is gone (what is queued then is
    /// committed first).
    pub async fn run(mut self) {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        let mut previous_start: Option<tokio::time::Instant> = None;
        while self.receiver.recv_many(&mut batch, MAX_BATCH).await > 0 {
            // Within the interval of the previous commit's start, what arrives until it
            // ends joins this batch.
            if let Some(until) = previous_start.map(|start| start + self.commit_interval) {
                while batch.len() < MAX_BATCH {
                    let room = MAX_BATCH - batch.len();
                    match tokio::time::timeout_at(until, self.receiver.recv_many(&mut batch, room)).await {
                        Ok(taken) if taken > 0 => {}
                        _ => break,
                    }
                }
            }
            previous_start = Some(tokio::time::Instant::now());
            self.commit(&mut batch).await;
        }
    }

    /// Takes what is queued now (at most [`MAX_BATCH`]) and commits it; for tests.
    pub async fn step(&mut self) -> usize {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        while batch.len() < MAX_BATCH {
            match self.receiver.try_recv() {
                Ok(queued) => batch.push(queued),
                Err(_) => break,
            }
        }
        let taken = batch.len();
        self.commit(&mut batch).await;
        taken
    }

    async fn commit(&self, batch: &mut Vec<Queued>) {
        if batch.is_empty() {
            return;
        }
        let started = std::time::Instant::now();
        let mut jobs = Vec::with_capacity(batch.len());
        let mut replies = Vec::with_capacity(batch.len());
        let mut contacts = Vec::new();
        let mut contact_replies = Vec::new();
        for queued in batch.drain(..) {
            match queued {
                Queued::Reports { job, reply } => {
                    jobs.push(job);
                    replies.push(reply);
                }
                Queued::Contact { contact, reply } => {
                    contacts.push(contact);
                    contact_replies.push(reply);
                }
            }
        }
        let (count, heard) = (jobs.len(), contacts.len());
        self.stats.batches.fetch_add(1, Ordering::Relaxed);
        self.stats.jobs.fetch_add((count + heard) as u64, Ordering::Relaxed);
        // Alert rules are judged in the same commit, with the batch's servers' evaluation
        // locks held (the sweeper's evaluations of them wait, and see the outcome).
        let WriterParts { store, alerting, clock } = &self.parts;
        let judge = if count > 0 { alerting.judge(&**store, clock.now_ms()).await } else { None };
        let locks = alerting.locks.lock_all(jobs.iter().map(|job| job.server)).await;
        let (outcomes, answered) = match store
            .commit_batch(&jobs, &contacts, judge.as_ref().map(|j| j as &dyn Judge))
            .await
        {
            Ok(outcomes) => outcomes,
            Err(error) => {
                tracing::warn!(jobs = count, contacts = heard, error = %error, "ingest batch failed; nothing of it was stored");
                (vec![Err(error.clone()); count], vec![Err(error); heard])
            }
        };
        drop(locks);
        for ((reply, outcome), job) in replies.into_iter().zip(outcomes).zip(jobs) {
            // The request may have gone (client hung up): its reports are kept anyway.
            let _ = reply.send((outcome, job.reports));
        }
        for (reply, outcome) in contact_replies.into_iter().zip(answered) {
            let _ = reply.send(outcome);
        }
        tracing::debug!(
            jobs = count,
            contacts = heard,
            elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
            "ingest batch committed"
        );
    }
}
