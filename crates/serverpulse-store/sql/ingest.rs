//! Storing a batch of reports — the group-commit writer's transaction — in a few
//! statements whatever the batch's size.
//!
//! One statement reads the batch's servers, with what is tracked beside each row of its
//! history's newest end ([`Ends`]: a report after all of it needs nothing else read);
//! one what is stored around every other report (a stored `seq`, the neighbours in
//! agent time, a compacted chunk to reopen), and [`land`] decides the rest in memory; then multi-row statements write the samples,
//! the dirty marks and every server's newest figures and contact (the server rows the
//! outcomes carry are completed in memory from what was read and written, not read
//! back); where the store writes rows back ([`WriteBack`]), a server whose reports all
//! came after its history and whose open bucket stays (or moves on once: the bucket
//! closed waits in the pending row) has its row left pending instead.
//! Watched units listed as the newest report listed them (same digest) are not
//! compared at all. Only what is rare goes row by row: re-rated samples (a report
//! landing before stored ones), watched units that changed, agents coming back. A
//! statement is a round trip to the database (a thread hand-off on SQLite, a network
//! one on PostgreSQL), so this is what keeps a report's cost near its share of the work.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use serverpulse_domain::AgentStatus;

use serverpulse_proto::report::{Report, ServiceReport};
use serverpulse_store::history::{
    CHUNK_SPAN, COUNTER_COLUMNS, Filling, Neighbour, NewestFigures, OpenSummary, TIERS, UnitChange, UnitStates,
    bucket_of, charted, close_buckets, unit_change_event, units_digest,
};
use serverpulse_store::landing::{Around, Before, Landing, ServerLanding, land};
use serverpulse_store::packed::{Packed, pack};
use serverpulse_store::write_back::{MovedOn, PendingRow, RowChanges, SampleEntry, WriteBack};
use serverpulse_store::{
    AlertId, EventKind, IngestJob, IngestOutcome, Judge, RuleState, Sample, Server, ServerId, StoreResult,
};
use sqlx::Row;

use crate::batched::{Shapes, chunks, values_cte};
use crate::dialect::{Conn, DbRow};
use crate::rollups::Closing;
use crate::rows::{self, Cols, Columns, db};
use crate::store::{SERVER_COLUMNS, contact_event, record_event};

fn to_i64(value: Option<u64>) -> Option<i64> {
    value.and_then(|v| i64::try_from(v).ok())
}

/// The rows `select` gives for the servers `ids`: it reads them joined to `ids(id)`, a
/// table of the ids in [`chunks`]. `texts` keeps the statement (one per `select`).
pub(crate) async fn rows_for_servers(
    conn: &mut Conn,
    ids: &[ServerId],
    texts: &'static Shapes,
    select: &str,
) -> StoreResult<Vec<DbRow>> {
    let mut found = Vec::new();
    for chunk in chunks(ids.len()) {
        let sql = texts.text(chunk.shape, |rows| format!("{}{select}", values_cte("ids", &[("id", "BIGINT")], rows)));
        let mut query = sqlx::query(sql);
        for i in 0..chunk.shape {
            query = query.bind(chunk.row(ids, i).copied());
        }
        found.extend(query.fetch_all(&mut *conn).await.map_err(db)?);
    }
    Ok(found)
}

/// Stores `jobs` on `tx` (the caller commits): their outcomes in order, a job failing
/// alone (`NotFound`) when its server is gone.
///
/// `write_back`, where the store keeps rows written back (see [`WriteBack`]): what the
/// batch leaves pending is returned, for the caller to record with its commit.
pub(crate) async fn store_batch(
    tx: &mut Conn,
    jobs: &[IngestJob],
    judge: Option<&dyn Judge>,
    write_back: Option<&Mutex<WriteBack>>,
) -> StoreResult<(Vec<StoreResult<IngestOutcome>>, RowChanges)> {
    if jobs.is_empty() {
        return Ok((Vec::new(), RowChanges::default()));
    }
    // Every server's lock up front, in one order on every replica: no deadlock.
    let servers: BTreeSet<ServerId> = jobs.iter().map(|job| job.server).collect();
    crate::dialect::lock_servers(&mut *tx, &servers).await?;
    // Taken while the batch holds the writer: nothing else changes it until the commit.
    let (pending, indexed_through): (HashMap<ServerId, Arc<PendingRow>>, Option<i64>) = match write_back {
        Some(write_back) => {
            let ids: Vec<ServerId> = servers.iter().copied().collect();
            let write_back = lock(write_back);
            (write_back.of(&ids), Some(write_back.indexed_through()))
        }
        None => (HashMap::new(), None),
    };
    let (before, server_rows, tracked) = servers_before(&mut *tx, &servers, &pending).await?;
    let (found, probed) = after_history(jobs, &tracked);
    // The writer reads a server's samples with all of their entries written.
    let mut probed_entries: Vec<(ServerId, SampleEntry)> = probed
        .iter()
        .filter_map(|server| Some(pending.get(server)?.entries.iter().map(|entry| (*server, *entry))))
        .flatten()
        .collect();
    crate::samples_by_server::index(&mut *tx, &mut probed_entries).await?;
    let around = around(&mut *tx, jobs, &before, found, &probed).await?;
    let mut landing = land(jobs, &before, &around);

    let samples: Vec<(ServerId, &Sample, Option<Packed>)> =
        landing.stored.iter().map(|s| (s.server, &s.sample, Some(pack(&s.report.document)))).collect();
    let stored_entries = insert_samples(&mut *tx, &samples).await?;
    rerate(&mut *tx, &landing.rerated).await?;
    let units = UnitDigests::of(&landing, &tracked);
    write_units(&mut *tx, &landing, &units.unchanged).await?;
    let appended: Vec<(ServerId, &Sample)> =
        landing.stored.iter().filter(|s| s.appended).map(|s| (s.server, &s.sample)).collect();
    let mut buckets = OpenBuckets::after(&appended, &tracked);
    landing.touched.extend(buckets.stray.iter().copied());
    let deferrable = match write_back {
        Some(_) => deferrable(&landing, &probed, &buckets, &tracked, &pending),
        None => BTreeSet::new(),
    };
    let moved = buckets.settle_moves(&deferrable, &pending, landing.servers.keys());
    buckets.forget_touched(&landing.touched);
    // Entries go with their rows: those of rows written now before anything reads the
    // samples (closing buckets, below); the others stay pending with theirs.
    let newest_id = stored_entries.iter().map(|(_, entry)| entry.id).max();
    let mut entries = route_entries(stored_entries, &landing, &deferrable, &probed, &pending);
    crate::samples_by_server::index(&mut *tx, &mut entries.now).await?;
    if let Some(through) = indexed_through {
        crate::samples_by_server::record_indexed_through(&mut *tx, through).await?;
    }
    crate::rollups::mark_dirty(&mut *tx, &landing.touched).await?;
    // The appended samples' own buckets stay open (summed up beside their servers' rows);
    // the buckets they close get their 5-minute summaries now.
    crate::rollups::close(&mut *tx, &buckets.closed).await?;
    let mut max_seq: BTreeMap<ServerId, i64> = BTreeMap::new();
    for stored in &landing.stored {
        if let Some(seq) = to_i64(stored.report.seq) {
            let max = max_seq.entry(stored.server).or_insert(seq);
            *max = (*max).max(seq);
        }
    }
    // Each server's open summary after the batch: as the batch left it, else as stored.
    let summaries: BTreeMap<ServerId, Option<Vec<u8>>> = landing
        .servers
        .keys()
        .map(|server| {
            let summary = match buckets.summaries.get(server) {
                Some(after) => after.as_ref(),
                None => tracked.get(server).and_then(|t| t.summary.as_ref()),
            };
            (*server, summary.map(OpenSummary::to_bytes))
        })
        .collect();
    // A server whose newest sample a report landed just before, with nothing newer:
    // its newest figures take that sample's new rates.
    let rerated_figures: BTreeMap<ServerId, [Option<f64>; 4]> = landing
        .servers
        .iter()
        .filter(|(_, landed)| landed.newest.is_none())
        .filter_map(|(server, landed)| {
            let newest = tracked.get(server)?.ends.newest?;
            Some((*server, newest.rates_after(Some(&landed.newest_follows?))))
        })
        .collect();
    let tracked_after = TrackedAfter {
        open: &buckets.open,
        summaries: &summaries,
        units: &units.stored,
        max_seq,
        rerated_figures,
        pending: &pending,
        deferrable: &deferrable,
        moved,
        entries: entries.pending,
    };
    let (mut rows, mut changes) = after_ingest(&mut *tx, &mut landing.servers, server_rows, &tracked_after).await?;
    for (server, landed) in &landing.servers {
        contact_event(&mut *tx, *server, landed.first_arrival, &landed.status_before).await?;
    }
    let judged = match judge {
        Some(judge) => judge_rules(&mut *tx, &landing, &rows, judge).await?,
        None => HashMap::new(),
    };
    // Each server's row goes to its last job's outcome, copies to any earlier ones.
    let mut last_job: HashMap<ServerId, usize> = HashMap::with_capacity(rows.len());
    for (index, job) in jobs.iter().enumerate() {
        last_job.insert(job.server, index);
    }
    for (index, (outcome, job)) in landing.outcomes.iter_mut().zip(jobs).enumerate() {
        if let Ok(outcome) = outcome {
            let (server, pending) = if last_job.get(&job.server) == Some(&index) {
                rows.remove(&job.server)
            } else {
                rows.get(&job.server).cloned()
            }
            .ok_or(serverpulse_store::StoreError::NotFound)?;
            outcome.server = Some(server);
            outcome.commands_pending = pending;
            if let Some((touched, notifies)) = judged.get(&job.server) {
                outcome.alerts_touched.clone_from(touched);
                outcome.notifies = *notifies;
            }
        }
    }
    changes.newest_id = newest_id;
    Ok((landing.outcomes, changes))
}

/// Servers whose rows may stay behind (see [`WriteBack`]): every report of theirs in the
/// batch came after all of their history unprobed, their agent was active, their open
/// bucket stays or moves on once (the row pending, if it was, had not moved on yet).
fn deferrable(
    landing: &Landing<'_>,
    probed: &HashSet<ServerId>,
    buckets: &OpenBuckets,
    tracked: &HashMap<ServerId, Tracked>,
    pending: &HashMap<ServerId, Arc<PendingRow>>,
) -> BTreeSet<ServerId> {
    // Servers with a report stored among their history, or a sample touched.
    let among: HashSet<ServerId> = (landing.stored.iter().filter(|s| !s.appended).map(|s| s.server))
        .chain(landing.touched.iter().map(|(server, _)| *server))
        .collect();
    landing
        .servers
        .iter()
        .filter(|(server, landed)| {
            landed.newest.is_some()
                && landed.status_before == AgentStatus::Active.as_str()
                && !probed.contains(server)
                && !among.contains(server)
                && match (buckets.open.get(server), tracked.get(server).and_then(|t| t.open)) {
                    (None, _) => true,
                    (Some(open), was) if was == Some(*open) => true,
                    (Some(_), Some(was)) => {
                        pending.get(server).is_none_or(|p| p.moved.is_none()) && buckets.closed_of(**server).eq([was])
                    }
                    (Some(_), None) => false,
                }
        })
        .map(|(server, _)| *server)
        .collect()
}

/// The entries of a batch's samples, by where they go.
struct RoutedEntries {
    /// Written now: the batch's own of servers whose rows are written, and those their
    /// pending rows held (unless written before the probe).
    now: Vec<(ServerId, SampleEntry)>,
    /// The batch's own of the servers whose rows stay behind, pending with them.
    pending: HashMap<ServerId, Vec<SampleEntry>>,
}

fn route_entries(
    stored: Vec<(ServerId, SampleEntry)>,
    landing: &Landing<'_>,
    deferrable: &BTreeSet<ServerId>,
    probed: &HashSet<ServerId>,
    pending: &HashMap<ServerId, Arc<PendingRow>>,
) -> RoutedEntries {
    let mut routed = RoutedEntries { now: Vec::with_capacity(stored.len()), pending: HashMap::new() };
    for (server, entry) in stored {
        match deferrable.contains(&server) {
            true => routed.pending.entry(server).or_default().push(entry),
            false => routed.now.push((server, entry)),
        }
    }
    for server in landing.servers.keys().filter(|s| !deferrable.contains(s) && !probed.contains(s)) {
        if let Some(row) = pending.get(server) {
            routed.now.extend(row.entries.iter().map(|entry| (*server, *entry)));
        }
    }
    routed
}

/// The write-back's lock (a panic elsewhere leaves it as consistent as each change).
pub(crate) fn lock(write_back: &Mutex<WriteBack>) -> std::sync::MutexGuard<'_, WriteBack> {
    write_back.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// What the store tracks about a server beside its row, for ingest alone.
#[derive(Debug, Clone)]
struct Tracked {
    /// Its open 5-minute bucket: in no tier yet.
    open: Option<i64>,
    /// The open bucket summed up, when known.
    summary: Option<OpenSummary>,
    /// The [`units_digest`] of its watched units as stored, when known.
    units: Option<i64>,
    /// Its stored history's newest end.
    ends: Ends,
}

/// What a batch leaves tracked beside its servers' rows (see [`Tracked`]).
struct TrackedAfter<'a> {
    /// Each server's open bucket, where the batch moved it.
    open: &'a BTreeMap<ServerId, i64>,
    /// Each server's open bucket summed up ([`OpenSummary::to_bytes`]), when known.
    summaries: &'a BTreeMap<ServerId, Option<Vec<u8>>>,
    /// Each server's units digest after the batch (see [`UnitDigests::stored`]).
    units: &'a BTreeMap<ServerId, Option<i64>>,
    /// What was pending of each server's row before the batch (see [`WriteBack`]).
    pending: &'a HashMap<ServerId, Arc<PendingRow>>,
    /// Servers whose rows stay behind, their state left pending.
    deferrable: &'a BTreeSet<ServerId>,
    /// Those of them whose open bucket the batch moved on (see [`OpenBuckets::settle_moves`]).
    moved: HashMap<ServerId, MovedOn>,
    /// The entries of the samples the batch stored for those servers.
    entries: HashMap<ServerId, Vec<SampleEntry>>,
    /// The greatest `seq` the batch stored for each server.
    max_seq: BTreeMap<ServerId, i64>,
    /// New rates of the newest figures of servers the batch brought nothing newer for.
    rerated_figures: BTreeMap<ServerId, [Option<f64>; 4]>,
}

/// The columns of `servers` holding the counters in its newest figures, in
/// [`COUNTER_COLUMNS`] order.
const LAST_COUNTERS: [&str; 4] = ["last_network_rx", "last_network_tx", "last_disk_io_read", "last_disk_io_write"];

/// What a server's stored history holds at its newest end, tracked beside its row
/// (migration "history ends"): enough to tell that a report comes after all of it, and
/// then what is around that report without a probe of its own.
#[derive(Debug, Clone, Copy, Default)]
struct Ends {
    /// The sample holding its newest figures (its row id not kept: only a sample after
    /// a report is re-rated by id, and nothing is after this one).
    newest: Option<Neighbour>,
    /// The greatest `seq` ever stored for it (reopened chunks included).
    max_seq: Option<i64>,
    /// Where its latest compacted chunk ends (exclusive).
    chunked_until: Option<i64>,
    /// Raw samples before this agent time are being deleted by retention.
    raw_horizon: Option<i64>,
}

impl Ends {
    /// What is stored around `report` when it comes after everything stored of its
    /// server: later than the newest sample (which is then just before it, compacted or
    /// not, unless retention removed it), with a `seq` above every stored one, past every
    /// compacted chunk (one reaching past it is reopened). `None`: it needs a probe.
    fn around(&self, report: &Report) -> Option<Around> {
        let newest = self.newest.filter(|newest| self.raw_horizon.is_none_or(|horizon| newest.at >= horizon))?;
        let seq_is_new = match (to_i64(report.seq), self.max_seq) {
            (Some(seq), Some(max)) => seq > max,
            _ => true,
        };
        let past_chunks = self.chunked_until.is_none_or(|until| until <= report.timestamp);
        (report.timestamp > newest.at && seq_is_new && past_chunks).then_some(Around {
            seq_stored: false,
            earlier: Some(newest),
            later: Vec::new(),
        })
    }
}

/// The batch's watched units, by digest.
struct UnitDigests {
    /// Servers whose every stored report lists its units exactly as stored.
    unchanged: BTreeSet<ServerId>,
    /// What each server's units digest is after the batch: its newest report's when one
    /// is newer than everything stored (the units it lists are then stored as it lists
    /// them), unknown when only older reports were stored, as before when none was.
    stored: BTreeMap<ServerId, Option<i64>>,
}

impl UnitDigests {
    fn of(landing: &Landing<'_>, tracked: &HashMap<ServerId, Tracked>) -> Self {
        let was = |server: &ServerId| tracked.get(server).and_then(|t| t.units);
        let mut stored: BTreeMap<ServerId, Option<i64>> = landing.servers.keys().map(|s| (*s, was(s))).collect();
        let mut newest: HashMap<ServerId, i64> = HashMap::new();
        let mut differ = BTreeSet::new();
        for report in &landing.stored {
            let digest = units_digest(&report.report.services);
            if was(&report.server) != Some(digest) {
                differ.insert(report.server);
            }
            // Among equal times the later report is applied last.
            if report.appended && newest.get(&report.server).is_none_or(|at| report.report.timestamp >= *at) {
                newest.insert(report.server, report.report.timestamp);
                stored.insert(report.server, Some(digest));
            } else if !newest.contains_key(&report.server) {
                stored.insert(report.server, None);
            }
        }
        let unchanged = landing.stored.iter().map(|s| s.server).filter(|s| !differ.contains(s)).collect();
        Self { unchanged, stored }
    }
}

/// What the batch's appended samples do to their servers' open 5-minute buckets.
struct OpenBuckets {
    /// Buckets closed, each server's in time order, with their summaries where known:
    /// written to the 5-minute tier and folded into the coarser ones.
    closed: Vec<Closing>,
    /// Each such server's bucket left open.
    open: BTreeMap<ServerId, i64>,
    /// And that bucket summed up, where known.
    summaries: BTreeMap<ServerId, Option<OpenSummary>>,
    /// Buckets found closed already (see [`close_buckets`]): recomputed instead.
    stray: Vec<(ServerId, i64)>,
}

impl OpenBuckets {
    fn after(appended: &[(ServerId, &Sample)], tracked: &HashMap<ServerId, Tracked>) -> Self {
        let mut samples: BTreeMap<ServerId, Vec<&Sample>> = BTreeMap::new();
        for (server, sample) in appended {
            samples.entry(*server).or_default().push(sample);
        }
        let mut buckets =
            Self { closed: Vec::new(), open: BTreeMap::new(), summaries: BTreeMap::new(), stray: Vec::new() };
        for (server, mut samples) in samples {
            // In agent time; among equal times the later arrival is newest (stable sort).
            samples.sort_by_key(|s| s.at);
            let tracked = tracked.get(&server);
            let was_open = tracked.and_then(|t| t.open);
            // With none open, compaction or retention closed the newest sample's bucket: a
            // sample landing there is recomputed with it (past the raw horizon, where its
            // summary stands for samples gone, left out of it like any late sample there).
            let closed_through = tracked.and_then(|t| Some(bucket_of(t.ends.newest?.at, TIERS[0])));
            let (closed, open, stray) = close_buckets(was_open, closed_through, samples.iter().map(|s| s.at));
            // Each bucket summed up: the one open before from its stored summary (none
            // known, none known after), then the batch's samples in it.
            let mut fillings: BTreeMap<i64, Option<Filling>> = BTreeMap::new();
            if let Some(start) = was_open {
                fillings.insert(start, tracked.and_then(|t| t.summary.as_ref()).map(|s| s.filling.clone()));
            }
            for sample in &samples {
                let start = bucket_of(sample.at, TIERS[0]);
                if !stray.contains(&start)
                    && let Some(filling) = fillings.entry(start).or_insert_with(|| Some(Filling::default()))
                {
                    filling.add_sample(sample.at, charted(sample));
                }
            }
            for start in closed {
                buckets.closed.push(Closing { server, start, summary: fillings.remove(&start).flatten() });
            }
            buckets.stray.extend(stray.into_iter().map(|start| (server, start)));
            if let Some(open) = open {
                buckets.open.insert(server, open);
                let filling = fillings.remove(&open).flatten();
                buckets.summaries.insert(server, filling.map(|filling| OpenSummary { start: open, filling }));
            }
        }
        buckets
    }

    /// The buckets the batch closes for `server`, in order (found by halving: until
    /// [`Self::settle_moves`], `closed` is in server order, as [`Self::after`] makes it).
    fn closed_of(&self, server: ServerId) -> impl Iterator<Item = i64> + '_ {
        let from = self.closed.partition_point(|c| c.server < server);
        self.closed[from..].iter().take_while(move |c| c.server == server).map(|c| c.start)
    }

    /// Settles the moves of pending rows (see [`WriteBack`]): the bucket a `deferrable`
    /// server's batch closes waits in its row instead (returned); a bucket waiting in
    /// the pending row of a server of the batch (`servers`) that is written now closes
    /// first, before any the batch closes.
    fn settle_moves<'a>(
        &mut self,
        deferrable: &BTreeSet<ServerId>,
        pending: &HashMap<ServerId, Arc<PendingRow>>,
        servers: impl Iterator<Item = &'a ServerId>,
    ) -> HashMap<ServerId, MovedOn> {
        let mut moved = HashMap::new();
        self.closed.retain(|closing| {
            let Some(open) = self.open.get(&closing.server).filter(|_| deferrable.contains(&closing.server)) else {
                return true;
            };
            let closed_summary =
                closing.summary.clone().map(|filling| OpenSummary { start: closing.start, filling }.to_bytes());
            moved.insert(closing.server, MovedOn { closed: closing.start, closed_summary, open: *open });
            false
        });
        let waiting: Vec<Closing> = servers
            .filter(|server| !deferrable.contains(server))
            .filter_map(|server| Some((*server, pending.get(server)?.moved.as_ref()?)))
            .map(|(server, moved)| Closing { server, start: moved.closed, summary: moved.closed_filling() })
            .collect();
        self.closed.splice(0..0, waiting);
        moved
    }

    /// Summaries of servers with samples landing among stored ones (`touched`, which
    /// may be in or re-rate their buckets) are not known: those buckets are summed up
    /// from their raw samples when they close.
    fn forget_touched(&mut self, touched: &BTreeSet<(ServerId, i64)>) {
        let servers: BTreeSet<ServerId> = touched.iter().map(|(server, _)| *server).collect();
        for closing in &mut self.closed {
            if servers.contains(&closing.server) {
                closing.summary = None;
            }
        }
        for server in servers {
            self.summaries.insert(server, None);
        }
    }
}

/// Judges each server's rules on the reports the batch stored for it (all its jobs'
/// together), against its episodes as stored, and writes the changes: per server, the
/// alerts touched and whether notifications were queued. A failure here is logged and
/// undone alone (a savepoint): the reports are kept whatever the rules make of them.
async fn judge_rules(
    conn: &mut Conn,
    landing: &Landing<'_>,
    rows: &HashMap<ServerId, (Server, u32)>,
    judge: &dyn Judge,
) -> StoreResult<HashMap<ServerId, (Vec<AlertId>, bool)>> {
    // Per server: the job of its first stored report, and its stored reports.
    let mut reports: BTreeMap<ServerId, (usize, Vec<&Report>)> = BTreeMap::new();
    for stored in &landing.stored {
        reports.entry(stored.server).or_insert_with(|| (stored.job, Vec::new())).1.push(stored.report);
    }
    if reports.is_empty() {
        return Ok(HashMap::new());
    }
    sqlx::query("SAVEPOINT judging").execute(&mut *conn).await.map_err(db)?;
    let judged = async {
        let mut states = states_of(&mut *conn, reports.keys()).await?;
        let mut changes = Vec::new();
        let mut notifies = HashMap::new();
        for (server, (first_job, reports)) in &reports {
            let Some((row, _)) = rows.get(server) else { continue };
            let previous_uptime = landing.outcomes[*first_job].as_ref().ok().and_then(|o| o.previous_uptime);
            let judged = judge.judge(row, reports, previous_uptime, &states.remove(server).unwrap_or_default());
            notifies.insert(*server, judged.iter().any(|change| !change.notify.is_empty()));
            changes.extend(judged.into_iter().map(|change| (*server, change)));
        }
        let touched = crate::alerting::apply_in(&mut *conn, changes, landing_now(landing)).await?;
        let mut out: HashMap<ServerId, (Vec<AlertId>, bool)> =
            notifies.into_iter().map(|(server, notifies)| (server, (Vec::new(), notifies))).collect();
        for (server, id) in touched {
            out.entry(server).or_default().0.push(id);
        }
        StoreResult::Ok(out)
    }
    .await;
    let end = if judged.is_ok() { "RELEASE judging" } else { "ROLLBACK TO judging; RELEASE judging" };
    sqlx::raw_sql(end).execute(&mut *conn).await.map_err(db)?;
    judged.or_else(|error| {
        tracing::error!(error = %error, "alert evaluation failed; the reports are stored");
        Ok(HashMap::new())
    })
}

/// The time alerting changes are recorded at: the batch's latest arrival.
fn landing_now(landing: &Landing<'_>) -> i64 {
    landing.servers.values().map(|s| s.contact).max().unwrap_or_default()
}

/// The rule episodes of `servers`, as stored.
async fn states_of(
    conn: &mut Conn,
    servers: impl Iterator<Item = &ServerId>,
) -> StoreResult<HashMap<ServerId, Vec<RuleState>>> {
    let ids: Vec<ServerId> = servers.copied().collect();
    let select = "SELECT a.server_id, a.rule_id, a.subject, a.state, a.alert_id FROM alert_states a \
                  JOIN ids ON a.server_id = ids.id";
    let mut states: HashMap<ServerId, Vec<RuleState>> = HashMap::new();
    static TEXTS: Shapes = Shapes::new();
    for row in rows_for_servers(&mut *conn, &ids, &TEXTS, select).await? {
        let server = Cols(&row).int("server_id")?;
        states.entry(server).or_default().push(rows::rule_state(&row)?);
    }
    Ok(states)
}

/// The batch's servers that exist, as they are before it: what [`land`] needs, each
/// one's row but for its newest figures (`last_metrics` left out, `None`), which the
/// batch mostly replaces ([`after_ingest`] completes the rows), and what is tracked.
///
/// A server's `pending` row (see [`WriteBack`]) is laid over what its row says: newest
/// figures, counters and uptime, greatest `seq`, contact, open summary, units digest.
async fn servers_before(
    conn: &mut Conn,
    servers: &BTreeSet<ServerId>,
    pending: &HashMap<ServerId, Arc<PendingRow>>,
) -> StoreResult<(HashMap<ServerId, Before>, HashMap<ServerId, Server>, HashMap<ServerId, Tracked>)> {
    let ids: Vec<ServerId> = servers.iter().copied().collect();
    static SELECT: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        format!(
            "SELECT {}, last_uptime AS uptime, {}, max_seq, chunked_until, rollup_open, rollup_open_summary, units_digest, \
             (SELECT horizon FROM retention_horizons WHERE width = 0) AS raw_horizon \
             FROM servers WHERE id IN (SELECT id FROM ids)",
            SERVER_COLUMNS.replacen("last_metrics,", "CAST(NULL AS TEXT) AS last_metrics,", 1),
            LAST_COUNTERS.join(", "),
        )
    });
    let mut before = HashMap::with_capacity(ids.len());
    let mut server_rows = HashMap::with_capacity(ids.len());
    let mut tracked = HashMap::with_capacity(ids.len());
    static TEXTS: Shapes = Shapes::new();
    for db_row in rows_for_servers(&mut *conn, &ids, &TEXTS, &SELECT).await? {
        let mut server = rows::server(&db_row)?;
        let row = Cols(&db_row);
        let mut state = Before {
            last_at: server.last_metrics_at,
            uptime: row.opt_u64("uptime")?,
            status: row.text("agent_status")?,
        };
        let mut counters = [None; 4];
        for (slot, column) in counters.iter_mut().zip(LAST_COUNTERS) {
            *slot = row.opt_u64(column)?;
        }
        let mut ends = Ends {
            newest: state.last_at.map(|at| Neighbour { id: 0, at, uptime: state.uptime, counters }),
            max_seq: row.opt_int("max_seq")?,
            chunked_until: row.opt_int("chunked_until")?,
            raw_horizon: row.opt_int("raw_horizon")?,
        };
        let mut open = row.opt_int("rollup_open")?;
        let mut summary: Option<Vec<u8>> = db_row.try_get("rollup_open_summary").map_err(db)?;
        let mut units = row.opt_int("units_digest")?;
        if let Some(p) = pending.get(&server.id) {
            let newest = p.newest();
            state.last_at = Some(newest.at);
            state.uptime = newest.uptime;
            state.status = AgentStatus::Active.as_str().to_owned();
            ends.newest = Some(newest);
            ends.max_seq = ends.max_seq.max(p.max_seq);
            summary.clone_from(&p.summary);
            if let Some(moved) = &p.moved {
                open = Some(moved.open);
            }
            units = p.units;
            // Its newest figures come from the batch (see `after_ingest`).
            server.last_metrics_at = Some(p.at);
            server.agent_status = AgentStatus::Active;
            server.agent_last_contact = server.agent_last_contact.max(Some(p.contact));
        }
        let summary = OpenSummary::of_bucket(summary.as_deref(), open);
        tracked.insert(server.id, Tracked { open, summary, units, ends });
        before.insert(server.id, state);
        server_rows.insert(server.id, server);
    }
    Ok((before, server_rows, tracked))
}

fn neighbour(row: &DbRow) -> StoreResult<Neighbour> {
    let row = Cols(row);
    let mut counters = [None; 4];
    for (slot, column) in counters.iter_mut().zip(COUNTER_COLUMNS) {
        *slot = row.opt_u64(column)?;
    }
    Ok(Neighbour { id: row.int("id")?, at: row.int("agent_time")?, uptime: row.opt_u64("uptime")?, counters })
}

/// What one statement finds around each report `r` (`k`: its position in the batch): a
/// stored sample with its `seq` (which 0), the sample just before it (1) and those of
/// the earliest time after it (2) in agent time, the compacted chunk to reopen first (3:
/// the one it falls into, or the next one holding the sample after it), and the chunk
/// holding the sample just before it (4: the latest one, with no row between its end and
/// the report).
///
/// A server's samples are found through `samples_by_server` (its pending entries written
/// first: see [`crate::samples_by_server`]). Every part is driven by the reports: `r
/// CROSS JOIN` a table, its conditions in `WHERE`, which SQLite's planner takes as the
/// loop order (PostgreSQL plans it as any join). With a plain `JOIN`, SQLite 3.51 drove
/// part 2 from `performance_logs`, reading the whole table for every probe.
pub(crate) fn around_sql(rows: usize) -> String {
    let reports = values_cte(
        "r",
        &[
            ("k", "BIGINT"),
            ("server_id", "BIGINT"),
            ("at", "BIGINT"),
            ("seq", "BIGINT"),
            ("day", "BIGINT"),
            ("older", "BIGINT"),
        ],
        rows,
    );
    let columns = "p.id, p.agent_time, p.uptime, p.network_rx, p.network_tx, p.disk_io_read, p.disk_io_write";
    let chunk = "c.start, c.server_id, NULL, NULL, NULL, NULL, NULL";
    let nearest = |op: &str, at: &str, order: &str| {
        format!(
            "(SELECT q.id FROM samples_by_server q WHERE q.server_id = r.server_id AND q.agent_time {op} r.{at} \
             ORDER BY q.agent_time {order}, q.id {order} LIMIT 1)"
        )
    };
    format!(
        "{reports}SELECT r.k, CAST(0 AS BIGINT) AS which, {columns} FROM r CROSS JOIN samples_by_server i \
           CROSS JOIN performance_logs p WHERE i.server_id = r.server_id AND i.seq = r.seq AND p.id = i.id \
         UNION ALL SELECT r.k, CAST(1 AS BIGINT), {columns} FROM r CROSS JOIN performance_logs p WHERE p.id = {earlier} \
         UNION ALL SELECT r.k, CAST(2 AS BIGINT), {columns} FROM r CROSS JOIN samples_by_server i \
           CROSS JOIN performance_logs p WHERE i.server_id = r.server_id AND i.agent_time = {later} AND p.id = i.id \
         UNION ALL SELECT r.k, CAST(3 AS BIGINT), {chunk} FROM r CROSS JOIN history_chunks c \
           WHERE c.server_id = r.server_id AND c.start = r.day AND r.at < c.until \
         UNION ALL SELECT r.k, CAST(3 AS BIGINT), {chunk} FROM r CROSS JOIN history_chunks c \
           WHERE c.server_id = r.server_id AND c.start = (SELECT MIN(n.start) \
             FROM history_chunks n WHERE n.server_id = r.server_id AND n.start > r.older) \
           AND NOT EXISTS (SELECT 1 FROM samples_by_server q WHERE q.server_id = r.server_id \
             AND q.agent_time > r.older AND q.agent_time < c.start) \
         UNION ALL SELECT r.k, CAST(4 AS BIGINT), {chunk} FROM r CROSS JOIN history_chunks c \
           WHERE c.server_id = r.server_id AND c.start = (SELECT MAX(p.start) \
             FROM history_chunks p WHERE p.server_id = r.server_id AND p.start < r.at) \
           AND c.until <= r.at AND NOT EXISTS (SELECT 1 FROM samples_by_server q WHERE q.server_id = r.server_id \
             AND q.agent_time >= c.until AND q.agent_time < r.at)",
        earlier = nearest("<", "at", "DESC"),
        // Only a report older than its server's newest sample can have later ones: every
        // sample of the earliest later time.
        later = "(SELECT MIN(q.agent_time) FROM samples_by_server q WHERE q.server_id = r.server_id \
                 AND q.agent_time > r.older)",
    )
}

/// Takes the sample just before each report listed from the compacted chunk holding it
/// (read, not reopened: only a sample after a report is re-rated), where it is later
/// than the row found before the report.
async fn earlier_from_chunks(
    conn: &mut Conn,
    found: &mut [Around],
    listed: &[(usize, (ServerId, i64))],
    jobs: &[IngestJob],
) -> StoreResult<()> {
    if listed.is_empty() {
        return Ok(());
    }
    let times: Vec<i64> = jobs.iter().flat_map(|job| job.reports.iter().map(|r| r.timestamp)).collect();
    let mut decoded: HashMap<(ServerId, i64), Vec<Sample>> = HashMap::new();
    for (server, start) in listed.iter().map(|(_, chunk)| *chunk).collect::<BTreeSet<_>>() {
        let samples = crate::compaction::stored_chunk(&mut *conn, server, start).await?;
        decoded.insert((server, start), samples.unwrap_or_default());
    }
    for (position, chunk) in listed {
        let (Some(slot), Some(at)) = (found.get_mut(*position), times.get(*position)) else { continue };
        let samples = &decoded[chunk];
        // In agent time, among equal times in arrival order: the last one before counts.
        let Some(sample) = samples[..samples.partition_point(|s| s.at < *at)].last() else { continue };
        if slot.earlier.is_none_or(|row| row.at < sample.at) {
            slot.earlier = Some(Neighbour {
                id: 0,
                at: sample.at,
                uptime: sample.uptime,
                counters: [sample.network_rx, sample.network_tx, sample.disk_io_read, sample.disk_io_write],
            });
        }
    }
    Ok(())
}

/// What is around each report that comes after all of its server's stored history (see
/// [`Ends::around`]), in batch order, and the servers with any other report, whose
/// reports are all probed ([`around`]): reopening a chunk for one report can put back
/// samples (and seqs) that bear on the server's others.
fn after_history(jobs: &[IngestJob], tracked: &HashMap<ServerId, Tracked>) -> (Vec<Around>, HashSet<ServerId>) {
    let total: usize = jobs.iter().map(|job| job.reports.len()).sum();
    let mut found = vec![Around::default(); total];
    let mut probed: HashSet<ServerId> = HashSet::new();
    let mut position = 0;
    for job in jobs {
        let ends = tracked.get(&job.server).map(|t| t.ends).unwrap_or_default();
        for report in &job.reports {
            match ends.around(report) {
                Some(around) => found[position] = around,
                None => {
                    probed.insert(job.server);
                }
            }
            position += 1;
        }
    }
    (found, probed)
}

/// What is stored around every report of the batch whose server exists (in batch
/// order). A server whose every report comes after its stored history takes what is
/// around them from its [`Ends`] (`found`, from [`after_history`]); the other servers'
/// (`probed`) reports are probed in one statement, compacted chunks they fall into
/// reopened first, so that each is judged against every stored sample.
async fn around(
    conn: &mut Conn,
    jobs: &[IngestJob],
    before: &HashMap<ServerId, Before>,
    mut found: Vec<Around>,
    probed: &HashSet<ServerId>,
) -> StoreResult<Vec<Around>> {
    // (position, server, agent time, seq, day, agent time again if older than the
    // server's newest sample) of each report probed.
    let mut reports: Vec<[Option<i64>; 6]> = Vec::new();
    let mut position = 0;
    for job in jobs {
        for report in &job.reports {
            if let Some(before) = before.get(&job.server)
                && probed.contains(&job.server)
            {
                found[position] = Around::default();
                let at = report.timestamp;
                let older = before.last_at.is_some_and(|last| at < last).then_some(at);
                let day = Some(bucket_of(at, CHUNK_SPAN));
                let k = i64::try_from(position).ok();
                reports.push([k, Some(job.server), Some(at), to_i64(report.seq), day, older]);
            }
            position += 1;
        }
    }
    // (position, (server, chunk start)) of reports whose sample just before is compacted.
    let mut earlier_in_chunks: Vec<(usize, (ServerId, i64))> = Vec::new();
    loop {
        let mut compacted = BTreeSet::new();
        for chunk in chunks(reports.len()) {
            static TEXTS: Shapes = Shapes::new();
            let mut query = sqlx::query(TEXTS.text(chunk.shape, around_sql));
            for i in 0..chunk.shape {
                for column in 0..6 {
                    query = query.bind(chunk.row(&reports, i).and_then(|r| r[column]));
                }
            }
            for row in query.fetch_all(&mut *conn).await.map_err(db)? {
                let position = usize::try_from(row.try_get::<i64, _>("k").map_err(db)?).unwrap_or(usize::MAX);
                let Some(slot) = found.get_mut(position) else { continue };
                // Rows 3 and 4 carry the chunk's start in `id` and its server in `agent_time`.
                let chunk = || -> StoreResult<(ServerId, i64)> {
                    Ok((row.try_get("agent_time").map_err(db)?, row.try_get("id").map_err(db)?))
                };
                match row.try_get::<i64, _>("which").map_err(db)? {
                    0 => slot.seq_stored = true,
                    1 => slot.earlier = Some(neighbour(&row)?),
                    2 => slot.later.push(neighbour(&row)?),
                    3 => {
                        compacted.insert(chunk()?);
                    }
                    _ => earlier_in_chunks.push((position, chunk()?)),
                }
            }
        }
        if compacted.is_empty() {
            earlier_from_chunks(&mut *conn, &mut found, &earlier_in_chunks, jobs).await?;
            return Ok(found);
        }
        earlier_in_chunks.clear();
        for (server, day) in compacted {
            crate::compaction::reopen(&mut *conn, server, day).await?;
        }
        for report in &reports {
            if let Some(slot) = report[0].and_then(|k| usize::try_from(k).ok()).and_then(|k| found.get_mut(k)) {
                *slot = Around::default();
            }
        }
    }
}

/// The columns of a sample row, with their types.
const SAMPLE_COLUMNS: [(&str, &str); 21] = [
    ("server_id", "BIGINT"),
    ("seq", "BIGINT"),
    ("agent_time", "BIGINT"),
    ("received_at", "BIGINT"),
    ("cpu_usage", "DOUBLE PRECISION"),
    ("ram_usage", "DOUBLE PRECISION"),
    ("disk_usage", "DOUBLE PRECISION"),
    ("load_average", "DOUBLE PRECISION"),
    ("uptime", "BIGINT"),
    ("response_time", "DOUBLE PRECISION"),
    ("network_rx", "BIGINT"),
    ("network_tx", "BIGINT"),
    ("disk_io_read", "BIGINT"),
    ("disk_io_write", "BIGINT"),
    ("network_rx_rate", "DOUBLE PRECISION"),
    ("network_tx_rate", "DOUBLE PRECISION"),
    ("disk_io_read_rate", "DOUBLE PRECISION"),
    ("disk_io_write_rate", "DOUBLE PRECISION"),
    ("raw", "TEXT"),
    ("raw_packed", crate::dialect::BYTES),
    ("raw_packing", "BIGINT"),
];

/// Inserts samples of any servers, each with its report's document packed
/// ([`serverpulse_store::packed`]; the `raw` text column left empty) or none (`raw`
/// `null`: a compacted sample put back), up to [`crate::batched::MAX_ROWS`] a statement.
/// Returns their entries for `samples_by_server`, where those are written apart
/// ([`crate::samples_by_server`]; none otherwise): the caller writes them.
pub(crate) async fn insert_samples(
    conn: &mut Conn,
    samples: &[(ServerId, &Sample, Option<Packed<'_>>)],
) -> StoreResult<Vec<(ServerId, SampleEntry)>> {
    static TEXTS: Shapes = Shapes::new();
    let mut entries = Vec::new();
    for chunk in chunks(samples.len()) {
        let sql = TEXTS.text(chunk.shape, |rows| {
            let names: Vec<&str> = SAMPLE_COLUMNS.iter().map(|(name, _)| *name).collect();
            let names = names.join(", ");
            let returning =
                if crate::dialect::SAMPLE_ENTRIES_APART { " RETURNING server_id, agent_time, id, seq" } else { "" };
            format!(
                "{}INSERT INTO performance_logs ({names}) SELECT {names} FROM v WHERE server_id IS NOT NULL{returning}",
                values_cte("v", &SAMPLE_COLUMNS, rows)
            )
        });
        let mut query = sqlx::query(sql);
        for i in 0..chunk.shape {
            let row = chunk.row(samples, i);
            let sample = row.map(|(_, s, _)| *s);
            query = query
                .bind(row.map(|(server, ..)| *server))
                .bind(sample.and_then(|s| to_i64(s.seq)))
                .bind(sample.map(|s| s.at))
                .bind(sample.map(|s| s.received_at))
                .bind(sample.and_then(|s| s.cpu_usage))
                .bind(sample.and_then(|s| s.memory_usage))
                .bind(sample.and_then(|s| s.disk_usage))
                .bind(sample.and_then(|s| s.load_average))
                .bind(sample.and_then(|s| to_i64(s.uptime)))
                .bind(sample.and_then(|s| s.response_time))
                .bind(sample.and_then(|s| to_i64(s.network_rx)))
                .bind(sample.and_then(|s| to_i64(s.network_tx)))
                .bind(sample.and_then(|s| to_i64(s.disk_io_read)))
                .bind(sample.and_then(|s| to_i64(s.disk_io_write)))
                .bind(sample.and_then(|s| s.network_rx_rate))
                .bind(sample.and_then(|s| s.network_tx_rate))
                .bind(sample.and_then(|s| s.disk_io_read_rate))
                .bind(sample.and_then(|s| s.disk_io_write_rate))
                .bind(row.map(|(.., packed)| if packed.is_some() { "" } else { "null" }))
                .bind(row.and_then(|(.., packed)| packed.as_ref().map(|p| &*p.bytes)))
                .bind(row.and_then(|(.., packed)| packed.as_ref().and_then(|p| p.packing)));
        }
        if !crate::dialect::SAMPLE_ENTRIES_APART {
            query.execute(&mut *conn).await.map_err(db)?;
            continue;
        }
        for row in query.fetch_all(&mut *conn).await.map_err(db)? {
            let row = Cols(&row);
            let entry = SampleEntry::new(row.int("agent_time")?, row.int("id")?, row.opt_int("seq")?);
            entries.push((row.int("server_id")?, entry));
        }
    }
    Ok(entries)
}

/// Stores new rates of samples a report landed just before (rare: replays).
async fn rerate(conn: &mut Conn, rerated: &BTreeMap<i64, [Option<f64>; 4]>) -> StoreResult<()> {
    for (id, rates) in rerated {
        sqlx::query(
            "UPDATE performance_logs SET network_rx_rate = $1, network_tx_rate = $2, \
             disk_io_read_rate = $3, disk_io_write_rate = $4 WHERE id = $5",
        )
        .bind(rates[0])
        .bind(rates[1])
        .bind(rates[2])
        .bind(rates[3])
        .bind(id)
        .execute(&mut *conn)
        .await
        .map_err(db)?;
    }
    Ok(())
}

/// The servers among the stored reports' whose watched units differ in any way from
/// what is stored (a unit new, or its status, sub-state or details not as stored): the
/// database compares, so units as they were cost no reading.
async fn units_changed(
    conn: &mut Conn,
    landing: &Landing<'_>,
    unchanged: &BTreeSet<ServerId>,
) -> StoreResult<BTreeSet<ServerId>> {
    let reported: Vec<(ServerId, &ServiceReport, String)> = landing
        .stored
        .iter()
        .filter(|s| !unchanged.contains(&s.server))
        .flat_map(|s| s.report.services.iter().map(move |unit| (s.server, unit, unit.details.to_string())))
        .collect();
    let mut changed = BTreeSet::new();
    static TEXTS: Shapes = Shapes::new();
    for chunk in chunks(reported.len()) {
        let sql = TEXTS.text(chunk.shape, |rows| {
            let columns = [
                ("server_id", "BIGINT"),
                ("name", "TEXT"),
                ("status", "TEXT"),
                ("sub_state", "TEXT"),
                ("details", "TEXT"),
            ];
            format!(
                "{}SELECT DISTINCT r.server_id FROM r LEFT JOIN service_states u \
                 ON u.server_id = r.server_id AND u.name = r.name WHERE r.server_id IS NOT NULL \
                 AND (u.server_id IS NULL OR u.status <> r.status OR u.sub_state IS DISTINCT FROM r.sub_state \
                 OR u.details <> r.details)",
                values_cte("r", &columns, rows)
            )
        });
        let mut query = sqlx::query_scalar::<_, ServerId>(sql);
        for i in 0..chunk.shape {
            let row = chunk.row(&reported, i);
            query = query
                .bind(row.map(|(server, ..)| *server))
                .bind(row.map(|(_, unit, _)| unit.name.as_str()))
                .bind(row.map(|(_, unit, _)| unit.status.as_str()))
                .bind(row.and_then(|(_, unit, _)| unit.sub_state.as_deref()))
                .bind(row.map(|(.., details)| details.as_str()));
        }
        changed.extend(query.fetch_all(&mut *conn).await.map_err(db)?);
    }
    Ok(changed)
}

/// Writes what the stored reports changed about their servers' watched units: servers
/// whose reports all carry the digest of their units as stored (`unchanged`), or whose
/// units are all as stored ([`units_changed`]), are left alone; the others' are read in
/// one statement, and written only where something changed.
async fn write_units(conn: &mut Conn, landing: &Landing<'_>, unchanged: &BTreeSet<ServerId>) -> StoreResult<()> {
    let reporting = units_changed(&mut *conn, landing, unchanged).await?;
    if reporting.is_empty() {
        return Ok(());
    }
    let ids: Vec<ServerId> = reporting.iter().copied().collect();
    let select = "SELECT u.server_id, u.name, u.status, u.sub_state, u.details, u.updated_at FROM service_states u \
                  JOIN ids ON u.server_id = ids.id";
    let mut known: HashMap<ServerId, HashMap<String, serverpulse_store::history::UnitRecord>> = HashMap::new();
    static TEXTS: Shapes = Shapes::new();
    for row in rows_for_servers(&mut *conn, &ids, &TEXTS, select).await? {
        let row = Cols(&row);
        let record = (row.text("status")?, row.opt_text("sub_state")?, row.text("details")?, row.int("updated_at")?);
        known.entry(row.int("server_id")?).or_default().insert(row.text("name")?, record);
    }
    let mut units: HashMap<ServerId, UnitStates> =
        reporting.iter().map(|server| (*server, UnitStates::new(known.remove(server).unwrap_or_default()))).collect();
    for stored in &landing.stored {
        if let Some(states) = units.get_mut(&stored.server) {
            apply_units(&mut *conn, stored.server, states.apply(stored.report)).await?;
        }
    }
    Ok(())
}

/// Writes what a report changed about the watched units; a change of status goes to
/// the history and the event log.
async fn apply_units(conn: &mut Conn, server: ServerId, changes: Vec<UnitChange>) -> StoreResult<()> {
    for change in changes {
        match change {
            UnitChange::Updated { name, record: (status, sub_state, details, at), from } => {
                sqlx::query(
                    "UPDATE service_states SET status = $1, sub_state = $2, details = $3, updated_at = $4, \
                     since = CASE WHEN $5 THEN $6 ELSE since END WHERE server_id = $7 AND name = $8",
                )
                .bind(&status)
                .bind(&sub_state)
                .bind(&details)
                .bind(at)
                .bind(from.is_some())
                .bind(at)
                .bind(server)
                .bind(&name)
                .execute(&mut *conn)
                .await
                .map_err(db)?;
                if let Some(from) = from {
                    record_service_change(conn, server, &name, Some(&from), &status, at).await?;
                }
            }
            UnitChange::Added { name, record: (status, sub_state, details, at) } => {
                sqlx::query(
                    "INSERT INTO service_states (server_id, name, status, sub_state, since, updated_at, details) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(server)
                .bind(&name)
                .bind(&status)
                .bind(&sub_state)
                .bind(at)
                .bind(at)
                .bind(&details)
                .execute(&mut *conn)
                .await
                .map_err(db)?;
                record_service_change(conn, server, &name, None, &status, at).await?;
            }
        }
    }
    Ok(())
}

async fn record_service_change(
    conn: &mut Conn,
    server: ServerId,
    name: &str,
    from: Option<&str>,
    to: &str,
    at: i64,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO service_history (server_id, name, from_status, to_status, at) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(server)
    .bind(name)
    .bind(from)
    .bind(to)
    .bind(at)
    .execute(&mut *conn)
    .await
    .map_err(db)?;
    match unit_change_event(name, from, to) {
        Some((severity, message, details)) => {
            record_event(conn, Some(server), EventKind::ServiceStatus, severity, &message, details, at).await
        }
        None => Ok(()),
    }
}

/// Stores every server's newest figures (kept when the batch has none newer) and its
/// agent's contact — or, for the servers `tracked.deferrable` names, leaves them pending
/// in the returned changes instead (see [`WriteBack`]) — and completes the rows
/// [`servers_before`] read into the rows as this leaves them, each with the commands
/// waiting for its agent as of that contact.
/// The rows are made here, not read back: reading back would parse again every
/// server's newest figures, just written. The figures move from `landed` to the rows.
/// Every server read is still there: removing one waits for its lock, which the batch
/// holds.
async fn after_ingest(
    conn: &mut Conn,
    landed: &mut BTreeMap<ServerId, ServerLanding>,
    mut server_rows: HashMap<ServerId, Server>,
    tracked: &TrackedAfter<'_>,
) -> StoreResult<(HashMap<ServerId, (Server, u32)>, RowChanges)> {
    let mut changes = RowChanges::default();
    let mut updates: Vec<RowUpdate<'_>> = Vec::with_capacity(landed.len());
    for (server, landed) in landed.iter() {
        let pending = tracked.pending.get(server);
        let max_seq = tracked.max_seq.get(server).copied().max(pending.and_then(|p| p.max_seq));
        let contact = pending.map_or(landed.contact, |p| p.contact.max(landed.contact));
        let summary = tracked.summaries.get(server).and_then(|summary| summary.as_deref());
        let units = tracked.units.get(server).copied().flatten();
        if let (true, Some((at, figures))) = (tracked.deferrable.contains(server), &landed.newest) {
            let figures = figures.clone();
            let summary = summary.map(<[u8]>::to_vec);
            // Exactly as long as needed: the fleet's entries are in memory till written.
            let (was, new) = (pending.map_or(&[][..], |p| &p.entries), tracked.entries.get(server));
            let mut entries = Vec::with_capacity(was.len() + new.map_or(0, Vec::len));
            entries.extend(was.iter().chain(new.into_iter().flatten()).copied());
            let heartbeat = pending.and_then(|p| p.heartbeat);
            let moved = tracked.moved.get(server).cloned().or_else(|| pending.and_then(|p| p.moved.clone()));
            let row = PendingRow { at: *at, figures, contact, heartbeat, max_seq, summary, units, entries, moved };
            changes.pending.push((*server, row));
            continue;
        }
        if pending.is_some() {
            changes.written.push(*server);
        }
        let newest = match (&landed.newest, pending) {
            (Some((at, figures)), _) => Some(RowFigures::of(*at, figures)),
            (None, Some(p)) => Some(RowFigures::of(p.at, &p.figures)),
            (None, None) => None,
        };
        let open = tracked.open.get(server).copied().or_else(|| pending.and_then(|p| Some(p.moved.as_ref()?.open)));
        let heartbeat = pending.and_then(|p| p.heartbeat);
        updates.push(RowUpdate { server: *server, newest, contact, heartbeat, open, summary, units, max_seq });
    }
    write_rows(&mut *conn, &updates).await?;
    // Servers the batch brought nothing newer for keep their stored figures: read.
    let kept: Vec<ServerId> = landed
        .iter()
        .filter(|(server, l)| l.newest.is_none() && server_rows.contains_key(server))
        .map(|(server, _)| *server)
        .collect();
    let mut stored_metrics = HashMap::new();
    if !kept.is_empty() {
        static KEPT: Shapes = Shapes::new();
        let select = "SELECT s.id, s.last_metrics FROM servers s JOIN ids ON s.id = ids.id";
        for row in rows_for_servers(&mut *conn, &kept, &KEPT, select).await? {
            let row = Cols(&row);
            stored_metrics
                .insert(row.int("id")?, row.opt_text("last_metrics")?.as_deref().and_then(NewestFigures::from_text));
        }
    }
    let ids: Vec<ServerId> = server_rows.keys().copied().collect();
    let waiting = commands_waiting(&mut *conn, &ids).await?;
    let mut out = HashMap::with_capacity(server_rows.len());
    let mut refigured: Vec<(ServerId, String)> = Vec::new();
    for (id, landed) in landed.iter_mut() {
        let Some(mut server) = server_rows.remove(id) else { continue };
        match landed.newest.take() {
            Some((at, figures)) => {
                server.last_metrics = Some(figures);
                server.last_metrics_at = Some(at);
            }
            None => {
                server.last_metrics = stored_metrics.remove(id).flatten();
                if let (Some(figures), Some(rates)) = (&mut server.last_metrics, tracked.rerated_figures.get(id)) {
                    [
                        figures.network_rx_rate,
                        figures.network_tx_rate,
                        figures.disk_io_read_rate,
                        figures.disk_io_write_rate,
                    ] = *rates;
                    refigured.push((*id, figures.text()));
                }
            }
        }
        server.agent_status = AgentStatus::Active;
        if server.agent_last_contact.unwrap_or(0) < landed.contact {
            server.agent_last_contact = Some(landed.contact);
        }
        let pending = match (waiting.get(id), server.agent_last_contact) {
            (Some(expiries), Some(contact)) => expiries.iter().filter(|expires| **expires > contact).count(),
            _ => 0,
        };
        out.insert(*id, (server, u32::try_from(pending).unwrap_or(u32::MAX)));
    }
    for (id, text) in refigured {
        sqlx::query("UPDATE servers SET last_metrics = $1 WHERE id = $2")
            .bind(text)
            .bind(id)
            .execute(&mut *conn)
            .await
            .map_err(db)?;
    }
    Ok((out, changes))
}

/// A server's newest figures as its row keeps them.
pub(crate) struct RowFigures {
    at: i64,
    text: String,
    uptime: Option<i64>,
    counters: [Option<i64>; 4],
}

impl RowFigures {
    pub(crate) fn of(at: i64, figures: &NewestFigures) -> Self {
        Self {
            at,
            text: figures.text(),
            uptime: to_i64(figures.uptime),
            counters: [figures.network_rx, figures.network_tx, figures.disk_io_read, figures.disk_io_write].map(to_i64),
        }
    }
}

/// What ingest writes into one server's row: its newest figures (kept when `None`),
/// its agent active and contacted, its open bucket (kept when `None`) summed up, its
/// units digest, and its greatest `seq` (kept where greater).
pub(crate) struct RowUpdate<'a> {
    pub(crate) server: ServerId,
    pub(crate) newest: Option<RowFigures>,
    pub(crate) contact: i64,
    /// A heartbeat held with the row (kept where later than the row's).
    pub(crate) heartbeat: Option<i64>,
    pub(crate) open: Option<i64>,
    pub(crate) summary: Option<&'a [u8]>,
    pub(crate) units: Option<i64>,
    pub(crate) max_seq: Option<i64>,
}

/// When each command waiting for the agents of `servers` (not yet delivered) expires.
pub(crate) async fn commands_waiting(
    conn: &mut Conn,
    servers: &[ServerId],
) -> StoreResult<HashMap<ServerId, Vec<i64>>> {
    let mut waiting: HashMap<ServerId, Vec<i64>> = HashMap::new();
    static PENDING: Shapes = Shapes::new();
    let select = "SELECT c.server_id, c.expires_at FROM commands c JOIN ids ON c.server_id = ids.id \
                  WHERE c.state = 'pending'";
    for row in rows_for_servers(&mut *conn, servers, &PENDING, select).await? {
        let row = Cols(&row);
        waiting.entry(row.int("server_id")?).or_default().push(row.int("expires_at")?);
    }
    Ok(waiting)
}

/// Writes `updates` into their servers' rows, a chunk of servers per statement.
pub(crate) async fn write_rows(conn: &mut Conn, updates: &[RowUpdate<'_>]) -> StoreResult<()> {
    static TEXTS: Shapes = Shapes::new();
    for chunk in chunks(updates.len()) {
        let sql = TEXTS.text(chunk.shape, |rows| {
            let mut columns = vec![
                ("v_server", "BIGINT"),
                ("v_metrics", "TEXT"),
                ("v_at", "BIGINT"),
                ("v_uptime", "BIGINT"),
                ("v_contact", "BIGINT"),
                ("v_beat", "BIGINT"),
                ("v_open", "BIGINT"),
                ("v_summary", crate::dialect::BYTES),
                ("v_units", "BIGINT"),
                ("v_seq", "BIGINT"),
            ];
            columns.extend(LAST_COUNTERS.map(|column| (column, "BIGINT")));
            let counters: String = LAST_COUNTERS
                .iter()
                .map(|c| format!(", {c} = CASE WHEN v.v_at IS NULL THEN servers.{c} ELSE v.{c} END"))
                .collect();
            format!(
                "{}UPDATE servers SET last_metrics = COALESCE(v.v_metrics, servers.last_metrics), \
                 last_metrics_at = COALESCE(v.v_at, servers.last_metrics_at), agent_status = 'active', \
                 last_uptime = CASE WHEN v.v_at IS NULL THEN servers.last_uptime ELSE v.v_uptime END{counters}, \
                 max_seq = CASE WHEN servers.max_seq IS NULL OR v.v_seq > servers.max_seq \
                 THEN COALESCE(v.v_seq, servers.max_seq) ELSE servers.max_seq END, \
                 rollup_open = COALESCE(v.v_open, servers.rollup_open), rollup_open_summary = v.v_summary, \
                 units_digest = v.v_units, \
                 agent_last_contact = CASE WHEN COALESCE(servers.agent_last_contact, 0) < v.v_contact \
                 THEN v.v_contact ELSE servers.agent_last_contact END, \
                 agent_last_heartbeat = CASE WHEN COALESCE(servers.agent_last_heartbeat, 0) < v.v_beat \
                 THEN v.v_beat ELSE servers.agent_last_heartbeat END \
                 FROM v WHERE servers.id = v.v_server",
                values_cte("v", &columns, rows)
            )
        });
        let mut query = sqlx::query(sql);
        for i in 0..chunk.shape {
            let row = chunk.row(updates, i);
            let newest = row.and_then(|u| u.newest.as_ref());
            query = query
                .bind(row.map(|u| u.server))
                .bind(newest.map(|f| f.text.as_str()))
                .bind(newest.map(|f| f.at))
                .bind(newest.and_then(|f| f.uptime))
                .bind(row.map(|u| u.contact))
                .bind(row.and_then(|u| u.heartbeat))
                .bind(row.and_then(|u| u.open))
                .bind(row.and_then(|u| u.summary))
                .bind(row.and_then(|u| u.units))
                .bind(row.and_then(|u| u.max_seq));
            for k in 0..4 {
                query = query.bind(newest.and_then(|f| f.counters[k]));
            }
        }
        query.execute(&mut *conn).await.map_err(db)?;
    }
    Ok(())
}
