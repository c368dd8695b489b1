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
//! Only a store that is the one writer of its database keeps rows here (SQLite); hubs
//! sharing a PostgreSQL database write every row through. What a crash loses of this
//! is rebuilt on open from the samples, which are always written before a report is
//! answered: a row's pending reports are exactly its samples later than its newest
//! figures, all in its open bucket (see the SQLite store's repair on open).
//!
//! This module is the bookkeeping alone, with no database.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serverpulse_domain::AgentStatus;

use crate::history::{Neighbour, NewestFigures};
use crate::{Server, ServerId};

/// A server's newest state not yet written into its row. Its open bucket is the row's
/// (`rollup_open`): a report moving it on writes the row.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingRow {
    /// Agent time of its newest figures.
    pub at: i64,
    /// Its newest figures (rates included).
    pub figures: NewestFigures,
    /// Its agent's latest contact.
    pub contact: i64,
    /// The greatest `seq` stored for it, when any.
    pub max_seq: Option<i64>,
    /// Its open bucket summed up (`OpenSummary::to_bytes`), when known.
    pub summary: Option<Vec<u8>>,
    /// The digest of the watched units its newest report lists, when known.
    pub units: Option<i64>,
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
    /// newer than the row's, its agent active, its contact the later one.
    pub fn lay_over(&self, row: &mut Server) {
        if row.last_metrics_at.is_none_or(|at| at <= self.at) {
            row.last_metrics_at = Some(self.at);
            row.last_metrics = Some(self.figures.clone());
        }
        row.agent_status = AgentStatus::Active;
        row.agent_last_contact = row.agent_last_contact.max(Some(self.contact));
    }
}

/// Every server whose row is behind its newest state.
#[derive(Debug, Default)]
pub struct WriteBack {
    /// Shared with the batches and reads that take copies: a copy is a count.
    rows: HashMap<ServerId, Arc<PendingRow>>,
}

/// What a transaction changes here, applied while it still holds the writer and put
/// back if its commit fails (see [`WriteBack::apply`]).
#[derive(Debug, Default)]
pub struct RowChanges {
    /// Servers whose rows the transaction wrote (or removed): nothing pending any more.
    pub written: Vec<ServerId>,
    /// Servers whose newest state the transaction left pending.
    pub pending: Vec<(ServerId, PendingRow)>,
}

/// What [`WriteBack::apply`] replaced, to put back.
#[derive(Debug, Default)]
pub struct Undo(Vec<(ServerId, Option<Arc<PendingRow>>)>);

impl WriteBack {
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

    /// Records `changes`, returning what they replaced.
    pub fn apply(&mut self, changes: RowChanges) -> Undo {
        let mut undo = Vec::with_capacity(changes.written.len() + changes.pending.len());
        for server in changes.written {
            undo.push((server, self.rows.remove(&server)));
        }
        for (server, row) in changes.pending {
            undo.push((server, self.rows.insert(server, Arc::new(row))));
        }
        Undo(undo)
    }

    /// Puts back what [`Self::apply`] replaced (its commit failed).
    pub fn restore(&mut self, undo: Undo) {
        for (server, row) in undo.0.into_iter().rev() {
            match row {
                Some(row) => self.rows.insert(server, row),
                None => self.rows.remove(&server),
            };
        }
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
            max_seq: Some(at),
            summary: None,
            units: None,
        }
    }

    #[test]
    fn a_failed_commit_puts_back_exactly_what_was_there() {
        let mut rows = WriteBack::default();
        rows.apply(RowChanges { written: vec![], pending: vec![(1, pending(10, 11)), (2, pending(20, 21))] });
        let before = rows.of(&[1, 2, 3, 4]);
        let undo =
            rows.apply(RowChanges { written: vec![1, 3], pending: vec![(2, pending(30, 31)), (4, pending(40, 41))] });
        assert_eq!((rows.get(1), rows.get(2).map(|r| r.at), rows.get(4).map(|r| r.at)), (None, Some(30), Some(40)));
        rows.restore(undo);
        assert_eq!(rows.of(&[1, 2, 3, 4]), before);
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

    #[test]
    fn servers_heard_from_since_a_cutoff_are_reporting() {
        let mut rows = WriteBack::default();
        rows.apply(RowChanges { written: vec![], pending: vec![(1, pending(10, 100)), (2, pending(20, 200))] });
        let (reporting, silent) = rows.split_by_contact(150);
        assert_eq!((reporting.into_iter().collect::<Vec<_>>(), silent), (vec![2], vec![1]));
    }
}
