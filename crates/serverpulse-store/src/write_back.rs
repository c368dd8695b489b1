//! Server rows written back: what ingest has not yet written into the rows of servers
//! whose newest reports it took in, kept in the writer's memory instead.
//!
//! Why it exists: every report used to rewrite its server's row (newest figures and
//! counters, greatest `seq`, contact, the open 5-minute bucket's running summary). In a
//! real fleet's arrival order no two reports of a batch share a row's page, so each
//! report dirtied a page of its own, logged and checkpointed — about a third of the
//! writer's cost (docs/benchmarks.md, sixteenth session). A server's row is now written
//! when its open bucket moves on (once per 5-minute bucket), when anything but an
//! appended report touches it, and when the store closes; in between its newest state
//! is here, and every read of server rows lays it over what the row says.
//!
//! A pending row also holds the entries of its samples in `samples_by_server` (the table
//! a server's samples are found through), written with the row: a server's entries of a
//! bucket land together on one page instead of each report's on a page of its own.
//! Reads of a server's samples take the entries from here as well ([`WriteBack::entries_of`]).
//!
//! Only a store that is the one writer of its database keeps rows here (SQLite); hubs
//! sharing a PostgreSQL database write every row through. What a crash loses of this
//! is rebuilt on open from the samples, which are always written before a report is
//! answered: the entries of every sample after [`WriteBack::indexed_through`] (kept in
//! the database with each batch), then a row's pending reports, which are exactly its
//! samples later than its newest figures, all in its open bucket (see the SQLite
//! store's repair on open).
//!
//! A report opening a later bucket closes the open one, whose summary then goes into the
//! tiers (the 5-minute one, folded into the hourly and daily ones), and its row is
//! written. A whole fleet crosses each 5-minute boundary within one reporting interval,
//! and at a hundred thousand agents those closes held the writer for the 30 s after
//! every boundary (docs/benchmarks.md, twentieth session). So a row moves on *once*
//! while pending: the bucket it closed waits in it ([`MovedOn`]) until it is due, a
//! moment spread over the following minutes by server ([`WriteBack::due`]), and ingest
//! writes it out with a later batch; charts lay it over the tiers meanwhile. A row that
//! would move on a second time is written at once, both buckets closed in order.
//!
//! This module is the bookkeeping alone, with no database.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serverpulse_domain::AgentStatus;

use crate::history::{Filling, Neighbour, NewestFigures, OpenSummary};
use crate::{Server, ServerId};

/// A server's newest state not yet written into its row. Its open bucket is the row's
/// (`rollup_open`) unless it [`MovedOn`] since.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingRow {
    /// Agent time of its newest figures.
    pub at: i64,
    /// Its newest figures (rates included).
    pub figures: NewestFigures,
    /// Its agent's latest contact.
    pub contact: i64,
    /// Its agent's latest heartbeat not yet written, when any (a heartbeat of a server
    /// whose row is pending is kept here, written with the row).
    pub heartbeat: Option<i64>,
    /// The greatest `seq` stored for it, when any.
    pub max_seq: Option<i64>,
    /// Its open bucket summed up (`OpenSummary::to_bytes`), when known.
    pub summary: Option<Vec<u8>>,
    /// The digest of the watched units its newest report lists, when known.
    pub units: Option<i64>,
    /// Its samples' entries not yet in `samples_by_server`, in the order stored (never
    /// empty: a row stays behind only for samples appended).
    pub entries: Vec<SampleEntry>,
    /// Where its open bucket moved on since its row was written, when it did.
    pub moved: Option<MovedOn>,
}

/// A pending row's open bucket moved on: the one it closed is in no tier yet.
#[derive(Debug, Clone, PartialEq)]
pub struct MovedOn {
    /// The bucket closed: the row's `rollup_open`.
    pub closed: i64,
    /// That bucket summed up (`OpenSummary::to_bytes`), when known (else it is summed up
    /// from its raw samples when written).
    pub closed_summary: Option<Vec<u8>>,
    /// The bucket open since.
    pub open: i64,
}

/// A sample's entry in `samples_by_server` (its server aside), in 24 bytes: the fleet's
/// pending entries are ~10 a server at the end of each bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SampleEntry {
    /// Its agent time.
    pub at: i64,
    /// Its row id.
    pub id: i64,
    /// Its report's `seq`, negative for none (a `seq` is never negative).
    seq: i64,
}

impl SampleEntry {
    pub fn new(at: i64, id: i64, seq: Option<i64>) -> Self {
        Self { at, id, seq: seq.filter(|seq| *seq >= 0).unwrap_or(-1) }
    }

    /// Its report's `seq`, when any.
    pub fn seq(&self) -> Option<i64> {
        (self.seq >= 0).then_some(self.seq)
    }
}

impl PendingRow {
    /// Its newest sample as the neighbour of the next report (no row id: nothing after
    /// it is re-rated by id).
    pub fn newest(&self) -> Neighbour {
        let f = &self.figures;
        Neighbour {
            id: 0,
            at: self.at,
            uptime: f.uptime,
            counters: [f.network_rx, f.network_tx, f.disk_io_read, f.disk_io_write],
        }
    }

    /// Lays this over `row` as read from the database: its newest figures where they are
    /// newer than the row's, its agent active, its contact and heartbeat the later ones.
    pub fn lay_over(&self, row: &mut Server) {
        if row.last_metrics_at.is_none_or(|at| at <= self.at) {
            row.last_metrics_at = Some(self.at);
            row.last_metrics = Some(self.figures.clone());
        }
        row.agent_status = AgentStatus::Active;
        row.agent_last_contact = row.agent_last_contact.max(Some(self.contact));
        row.agent_last_heartbeat = row.agent_last_heartbeat.max(self.heartbeat);
    }

    /// Takes in a contact at `at` (a heartbeat when `heartbeat`): the later contact and
    /// heartbeat are kept.
    pub fn heard(&mut self, at: i64, heartbeat: bool) {
        self.contact = self.contact.max(at);
        if heartbeat {
            self.heartbeat = self.heartbeat.max(Some(at));
        }
    }
}

impl MovedOn {
    /// The closed bucket summed up, when known.
    pub fn closed_filling(&self) -> Option<Filling> {
        OpenSummary::of_bucket(self.closed_summary.as_deref(), Some(self.closed)).map(|summary| summary.filling)
    }
}

/// How long after its row moved on a closed bucket may wait, at most (see [`WriteBack::due`]):
/// well inside the next 5-minute bucket, so that a server reporting every minute or
/// more often has it written before its row would move on again.
pub const CLOSE_SPREAD: Duration = Duration::from_secs(200);

/// Every server whose row is behind its newest state.
#[derive(Debug)]
pub struct WriteBack {
    /// Shared with the batches and reads that take copies: a copy is a count.
    rows: HashMap<ServerId, Arc<PendingRow>>,
    /// Rows that moved on, by when their closed buckets are due (time since `epoch`).
    due: BTreeSet<(Duration, ServerId)>,
    /// And when each one moved on.
    moved_at: HashMap<ServerId, Duration>,
    /// What due times count from.
    epoch: Instant,
    /// How far apart closed buckets are spread (see [`CLOSE_SPREAD`]).
    spread: Duration,
    /// The first entry's id of every pending row, with its server.
    firsts: BTreeSet<(i64, ServerId)>,
    /// The greatest sample id a recorded transaction stored.
    newest_id: i64,
    /// The rows the latest transaction wrote: its commit may not have landed yet, and
    /// until it has, a read of their samples finds their entries only here.
    written_lately: HashMap<ServerId, Arc<PendingRow>>,
}

/// What a transaction changes here, applied while it still holds the writer and put
/// back if its commit fails (see [`WriteBack::apply`]).
#[derive(Debug, Default)]
pub struct RowChanges {
    /// Servers whose rows the transaction wrote (or removed): nothing pending any more.
    pub written: Vec<ServerId>,
    /// Servers whose newest state the transaction left pending.
    pub pending: Vec<(ServerId, PendingRow)>,
    /// The greatest sample id the transaction stored, when it stored any.
    pub newest_id: Option<i64>,
}

/// What [`WriteBack::apply`] replaced, to put back.
#[derive(Debug, Default)]
pub struct Undo {
    rows: Vec<(ServerId, Option<Arc<PendingRow>>)>,
    newest_id: i64,
}

impl Default for WriteBack {
    fn default() -> Self {
        Self {
            rows: HashMap::new(),
            due: BTreeSet::new(),
            moved_at: HashMap::new(),
            epoch: Instant::now(),
            spread: CLOSE_SPREAD,
            firsts: BTreeSet::new(),
            newest_id: 0,
            written_lately: HashMap::new(),
        }
    }
}

impl WriteBack {
    /// Nothing pending, every sample up to id `newest` indexed (as on open).
    pub fn after(newest: i64) -> Self {
        Self { newest_id: newest, ..Self::default() }
    }

    /// Spreads closed buckets over `spread` (zero: each is due at once), those waiting
    /// already included.
    pub fn spread_closes_over(&mut self, spread: Duration) {
        self.spread = spread;
        self.due = self.moved_at.iter().map(|(server, at)| (self.due_after(*server, *at), *server)).collect();
    }

    /// Rows whose closed buckets are due now, at most `limit`, earliest first, leaving
    /// out those `skip` names (rows a transaction in progress rewrites) — once `together`
    /// are due, or the earliest has waited a twentieth of the spread (10 s): rows written
    /// out together share their statements, which cost as much as the rows they write
    /// when there are only a few.
    pub fn due(&self, limit: usize, together: usize, skip: impl Fn(ServerId) -> bool) -> Vec<ServerId> {
        self.due_at(self.epoch.elapsed(), limit, together, skip)
    }

    fn due_at(&self, now: Duration, limit: usize, together: usize, skip: impl Fn(ServerId) -> bool) -> Vec<ServerId> {
        let waited = self.due.first().is_some_and(|(due, _)| *due + self.spread / 20 <= now);
        let due: Vec<ServerId> = self
            .due
            .iter()
            .take_while(|(due, _)| *due <= now)
            .map(|(_, server)| *server)
            .filter(|server| !skip(*server))
            .take(limit)
            .collect();
        match waited || due.len() >= together.min(limit) {
            true => due,
            false => Vec::new(),
        }
    }

    /// How many rows hold a closed bucket.
    pub fn moved_on(&self) -> usize {
        self.moved_at.len()
    }

    /// When a closed bucket of `server`'s, its row moving on at `now`, is due: a fixed
    /// fraction of the spread by server, so that a fleet's closes, which come together
    /// at each boundary, are written evenly over the minutes after it.
    fn due_after(&self, server: ServerId, now: Duration) -> Duration {
        let fraction = ((server as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 11) as f64 / (1u64 << 53) as f64;
        now + self.spread.mul_f64(fraction)
    }

    pub fn get(&self, server: ServerId) -> Option<&PendingRow> {
        self.rows.get(&server).map(|row| &**row)
    }

    /// Whether no row is pending (reads then lay nothing over).
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Every server with a pending row.
    pub fn servers(&self) -> Vec<ServerId> {
        self.rows.keys().copied().collect()
    }

    /// The pending rows of `servers`, to use without holding the lock.
    pub fn of(&self, servers: &[ServerId]) -> HashMap<ServerId, Arc<PendingRow>> {
        servers.iter().filter_map(|s| Some((*s, Arc::clone(self.rows.get(s)?)))).collect()
    }

    /// Servers with pending rows, split by their pending contact: those heard from at or
    /// after `cutoff` (reporting, whatever their rows say), and the others. One pass,
    /// nothing cloned: the sweeper asks every few seconds, with the whole fleet pending.
    pub fn split_by_contact(&self, cutoff: i64) -> (HashSet<ServerId>, Vec<ServerId>) {
        let mut reporting = HashSet::with_capacity(self.rows.len());
        let mut silent = Vec::new();
        for (server, row) in &self.rows {
            if row.contact >= cutoff {
                reporting.insert(*server);
            } else {
                silent.push(*server);
            }
        }
        (reporting, silent)
    }

    /// Every sample up to this id has its entry in `samples_by_server`: those of pending
    /// rows come after it (what a crash would lose is rebuilt from there on).
    pub fn indexed_through(&self) -> i64 {
        self.firsts.first().map_or(self.newest_id, |(id, _)| id - 1)
    }

    /// The entries of `server`'s samples that `samples_by_server` may not hold for a
    /// read that starts now: pending ones, and those whose commit may not have landed.
    /// (Read before the read's snapshot starts: an entry leaving here has landed.)
    pub fn entries_of(&self, server: ServerId) -> Vec<SampleEntry> {
        let lately = self.written_lately.get(&server);
        self.rows.get(&server).into_iter().chain(lately).flat_map(|row| row.entries.iter().copied()).collect()
    }

    /// Records `changes`, returning what they replaced.
    pub fn apply(&mut self, changes: RowChanges) -> Undo {
        let now = self.epoch.elapsed();
        self.apply_at(changes, now)
    }

    fn apply_at(&mut self, changes: RowChanges, now: Duration) -> Undo {
        let mut rows = Vec::with_capacity(changes.written.len() + changes.pending.len());
        self.written_lately.clear();
        for server in changes.written {
            let was = self.put(server, None, now);
            if let Some(row) = &was {
                self.written_lately.insert(server, Arc::clone(row));
            }
            rows.push((server, was));
        }
        for (server, row) in changes.pending {
            rows.push((server, self.put(server, Some(Arc::new(row)), now)));
        }
        let undo = Undo { rows, newest_id: self.newest_id };
        self.newest_id = self.newest_id.max(changes.newest_id.unwrap_or(i64::MIN));
        undo
    }

    /// Puts back what [`Self::apply`] replaced (its commit failed).
    pub fn restore(&mut self, undo: Undo) {
        self.written_lately.clear();
        let now = self.epoch.elapsed();
        for (server, row) in undo.rows.into_iter().rev() {
            self.put(server, row, now);
        }
        self.newest_id = undo.newest_id;
    }

    /// Sets `server`'s pending row, returning the one it replaced. A row that moved on
    /// keeps the time it did, or takes `now`.
    fn put(&mut self, server: ServerId, row: Option<Arc<PendingRow>>, now: Duration) -> Option<Arc<PendingRow>> {
        let first = |row: &PendingRow| row.entries.first().map(|entry| (entry.id, server));
        let new_first = row.as_deref().and_then(first);
        let moved = row.as_deref().is_some_and(|row| row.moved.is_some());
        match (moved, self.moved_at.get(&server).copied()) {
            (true, None) => {
                self.moved_at.insert(server, now);
                self.due.insert((self.due_after(server, now), server));
            }
            (false, Some(at)) => {
                self.moved_at.remove(&server);
                self.due.remove(&(self.due_after(server, at), server));
            }
            _ => {}
        }
        let was = match row {
            Some(row) => self.rows.insert(server, row),
            None => self.rows.remove(&server),
        };
        if let Some(first) = was.as_deref().and_then(first) {
            self.firsts.remove(&first);
        }
        if let Some(first) = new_first {
            self.firsts.insert(first);
        }
        was
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(at: i64, contact: i64) -> PendingRow {
        PendingRow {
            at,
            figures: NewestFigures { cpu_usage: Some(at as f64), uptime: Some(7), ..NewestFigures::default() },
            contact,
            heartbeat: None,
            max_seq: Some(at),
            summary: None,
            units: None,
            entries: vec![SampleEntry::new(at, at, None)],
            moved: None,
        }
    }

    #[test]
    fn a_failed_commit_puts_back_exactly_what_was_there() {
        let mut rows = WriteBack::default();
        rows.apply(RowChanges {
            written: vec![],
            pending: vec![(1, pending(10, 11)), (2, pending(20, 21))],
            newest_id: Some(20),
        });
        let before = (rows.of(&[1, 2, 3, 4]), rows.indexed_through());
        let undo = rows.apply(RowChanges {
            written: vec![1, 3],
            pending: vec![(2, pending(30, 31)), (4, pending(40, 41))],
            newest_id: Some(40),
        });
        assert_eq!((rows.get(1), rows.get(2).map(|r| r.at), rows.get(4).map(|r| r.at)), (None, Some(30), Some(40)));
        assert_eq!(rows.indexed_through(), 29);
        rows.restore(undo);
        assert_eq!((rows.of(&[1, 2, 3, 4]), rows.indexed_through()), before);
        assert_eq!(rows.indexed_through(), 9);
    }

    #[test]
    fn samples_are_indexed_up_to_the_first_pending_entry() {
        let mut rows = WriteBack::default();
        assert_eq!(rows.indexed_through(), 0);
        rows.apply(RowChanges { written: vec![], pending: vec![], newest_id: Some(7) });
        assert_eq!(rows.indexed_through(), 7);
        // A row carrying its entries on keeps its first one.
        let mut carried = pending(12, 1);
        carried.entries.push(SampleEntry::new(13, 15, Some(3)));
        rows.apply(RowChanges { written: vec![], pending: vec![(1, pending(12, 1))], newest_id: Some(12) });
        rows.apply(RowChanges { written: vec![], pending: vec![(1, carried)], newest_id: Some(15) });
        assert_eq!(rows.indexed_through(), 11);
        // Written, its entries are still found until the next transaction's changes.
        rows.apply(RowChanges { written: vec![1], pending: vec![], newest_id: None });
        assert_eq!(rows.indexed_through(), 15);
        assert_eq!(rows.entries_of(1).iter().map(|e| (e.id, e.seq())).collect::<Vec<_>>(), [(12, None), (15, Some(3))]);
        rows.apply(RowChanges::default());
        assert_eq!(rows.entries_of(1), vec![]);
    }

    #[test]
    fn a_row_takes_only_newer_figures_and_the_later_contact() {
        let mut row = Server {
            id: 1,
            name: "a".to_owned(),
            ip: std::net::IpAddr::from([10, 0, 0, 1]),
            created_at: 0,
            hostname: None,
            agent_enabled: true,
            agent_id: None,
            agent_status: AgentStatus::Disconnected,
            agent_version: None,
            agent_last_heartbeat: None,
            agent_last_contact: Some(100),
            agent_config: (&serde_json::json!({})).into(),
            last_metrics: None,
            last_metrics_at: Some(50),
            tags: Vec::new(),
        };
        pending(40, 90).lay_over(&mut row);
        assert_eq!(
            (row.last_metrics_at, row.last_metrics.is_none(), row.agent_last_contact),
            (Some(50), true, Some(100))
        );
        pending(60, 120).lay_over(&mut row);
        assert_eq!((row.last_metrics_at, row.agent_last_contact), (Some(60), Some(120)));
        assert_eq!(row.last_metrics.and_then(|f| f.cpu_usage), Some(60.0));
        assert_eq!(row.agent_status, AgentStatus::Active);
    }

    fn moved(at: i64) -> PendingRow {
        PendingRow { moved: Some(MovedOn { closed: 0, closed_summary: None, open: 300_000 }), ..pending(at, at) }
    }

    #[test]
    fn closed_buckets_fall_due_spread_over_the_minutes_after_their_move() {
        let secs = Duration::from_secs;
        let mut rows = WriteBack::default();
        let fleet: Vec<ServerId> = (1..=1_000).collect();
        let changes = RowChanges { pending: fleet.iter().map(|s| (*s, moved(*s))).collect(), ..RowChanges::default() };
        rows.apply_at(changes, secs(10));
        assert_eq!(rows.moved_on(), 1_000);
        let due = |rows: &WriteBack, at: u64| rows.due_at(secs(at), usize::MAX, 1, |_| false).len();
        // Spread evenly over CLOSE_SPREAD (200 s) after the move, whatever the ids.
        assert_eq!(due(&rows, 9), 0);
        assert!((400..=600).contains(&due(&rows, 110)), "half way: {}", due(&rows, 110));
        assert_eq!(due(&rows, 210), 1_000);
        // Earliest first, at most the limit, leaving out the skipped ones.
        let first = rows.due_at(secs(210), 3, 1, |s| s == 1);
        assert_eq!(first.len(), 3);
        assert!(!first.contains(&1));
        fn at(rows: &WriteBack, s: ServerId) -> Option<Duration> {
            rows.due.iter().find(|(_, server)| *server == s).map(|(at, _)| *at)
        }
        assert!(first.windows(2).all(|w| at(&rows, w[0]) <= at(&rows, w[1])));
        // A row carried on keeps its time; one written leaves; one moving again starts anew.
        let before = at(&rows, 7);
        rows.apply_at(RowChanges { pending: vec![(7, moved(70))], ..RowChanges::default() }, secs(150));
        assert_eq!(at(&rows, 7), before);
        rows.apply_at(RowChanges { written: vec![7, 8], ..RowChanges::default() }, secs(150));
        assert_eq!((at(&rows, 7), at(&rows, 8), rows.moved_on()), (None, None, 998));
        rows.apply_at(RowChanges { pending: vec![(8, moved(80))], ..RowChanges::default() }, secs(150));
        assert!(at(&rows, 8) >= Some(secs(150)));
        rows.apply_at(RowChanges { pending: vec![(9, pending(90, 90))], ..RowChanges::default() }, secs(150));
        assert_eq!((at(&rows, 9), rows.moved_on()), (None, 998), "a row that no longer holds a closed bucket");
        // Written out together: none until as many as asked are due, or the earliest has
        // waited 10 s.
        let together = |rows: &WriteBack, at: f64| rows.due_at(Duration::from_secs_f64(at), 64, 64, |_| false).len();
        let earliest = rows.due.first().map(|(due, _)| due.as_secs_f64()).unwrap();
        assert_eq!(together(&rows, earliest), 0);
        let waited = Duration::from_secs_f64(earliest + 10.0);
        let due_then = rows.due_at(waited, usize::MAX, 1, |_| false).len();
        assert!(due_then > 0);
        assert_eq!(together(&rows, earliest + 10.0), due_then.min(64));
        let sixty_fourth = rows.due.iter().nth(63).map(|(due, _)| due.as_secs_f64()).unwrap();
        if sixty_fourth < earliest + 10.0 {
            assert_eq!(together(&rows, sixty_fourth), 64);
        }
        // Spread over nothing, everything waiting is due at once.
        rows.spread_closes_over(Duration::ZERO);
        assert_eq!(due(&rows, 150), 998);
    }

    #[test]
    fn servers_heard_from_since_a_cutoff_are_reporting() {
        let mut rows = WriteBack::default();
        rows.apply(RowChanges {
            written: vec![],
            pending: vec![(1, pending(10, 100)), (2, pending(20, 200))],
            newest_id: None,
        });
        let (reporting, silent) = rows.split_by_contact(150);
        assert_eq!((reporting.into_iter().collect::<Vec<_>>(), silent), (vec![2], vec![1]));
    }
}
