//! Agents' contacts other than reports — heartbeats and command polls — recorded a
//! whole batch at a time, in the ingest writer's commits.
//!
//! Why it exists: an agent heartbeats every minute and polls for commands every five,
//! so a fleet of 100,000 sends ~2,000 of them a second beside its reports. Each was a
//! transaction of its own, an fsync each on the one connection ingest commits on: the
//! hub fell behind its reports (docs/benchmarks.md, twentieth session). Here a batch
//! costs one read of its servers' statuses and one multi-row update, whatever its size.
//!
//! A server whose row is written back (a reporting agent's, nearly always) has its
//! contact and heartbeat time kept in that pending row instead, written with it: its
//! row is not rewritten per contact. Only what a heartbeat says (status, the settings
//! version it runs) is written at once, and only when it changed. A crash loses those
//! times for at most a bucket (the next heartbeat brings them back), never a report.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde_json::json;
use serverpulse_proto::settings::AgentSettings;
use serverpulse_store::write_back::PendingRow;
use serverpulse_store::{Contact, ContactOutcome, ServerId, StoreError, StoreResult, Versioned};

use crate::batched::{Shapes, chunks, values_cte};
use crate::dialect::Conn;
use crate::rows::{Cols, Columns, db};
use crate::store::contact_event;

/// One server's contacts of a batch, merged: the earliest and latest time heard from,
/// and its latest heartbeat (its time, and what it said when it said anything).
#[derive(Debug, Default)]
struct Heard {
    first: i64,
    last: i64,
    beat_at: Option<i64>,
    beat: Option<String>,
}

/// Servers with what was heard from them.
type ServersHeard<'h> = Vec<(ServerId, &'h Heard)>;

/// Records `contacts` on `conn`, the writer's transaction (the caller commits). The
/// servers in `pending` have their rows written back (their agents are active whatever
/// the database says): their contacts are taken into those rows, which the caller
/// records with the commit.
pub(crate) async fn record(
    conn: &mut Conn,
    contacts: &[Contact],
    pending: &mut HashMap<ServerId, PendingRow>,
) -> StoreResult<Vec<StoreResult<ContactOutcome>>> {
    let mut heard: BTreeMap<ServerId, Heard> = BTreeMap::new();
    for contact in contacts {
        let merged =
            heard.entry(contact.server).or_insert(Heard { first: contact.at, last: contact.at, ..Heard::default() });
        merged.first = merged.first.min(contact.at);
        merged.last = merged.last.max(contact.at);
        if let Some(beat) = &contact.heartbeat
            && merged.beat_at.is_none_or(|at| at <= contact.at)
        {
            merged.beat_at = Some(contact.at);
            merged.beat = (beat.status.is_some() || beat.config_version.is_some())
                .then(|| json!({"status": beat.status, "config_version": beat.config_version}).to_string());
        }
    }
    let servers: BTreeSet<ServerId> = heard.keys().copied().collect();
    crate::dialect::lock_servers(&mut *conn, &servers).await?;
    let ids: Vec<ServerId> = servers.iter().copied().collect();
    static STATUSES: Shapes = Shapes::new();
    let rows = crate::ingest::rows_for_servers(
        &mut *conn,
        &ids,
        &STATUSES,
        "SELECT id, agent_status, agent_settings, agent_settings_version FROM servers WHERE id IN (SELECT id FROM ids)",
    )
    .await?;
    // Each server's status before, and its settings (what a heartbeat is answered with).
    let mut before: BTreeMap<ServerId, (String, Versioned<AgentSettings>)> = BTreeMap::new();
    for row in &rows {
        let row = Cols(row);
        let id = row.int("id")?;
        let settings = serverpulse_store::rows::agent_settings(&row, id)?;
        before.insert(id, (row.text("agent_status")?, settings));
    }
    let found: ServersHeard<'_> =
        heard.iter().filter(|(server, _)| before.contains_key(server)).map(|(server, h)| (*server, h)).collect();
    let (held, through): (ServersHeard<'_>, ServersHeard<'_>) =
        found.iter().partition(|(server, _)| pending.contains_key(server));
    for (server, h) in &held {
        if let Some(row) = pending.get_mut(server) {
            row.heard(h.last, h.beat_at.is_some());
        }
    }
    write(&mut *conn, &through).await?;
    write_said(&mut *conn, &held).await?;
    for (server, h) in &through {
        contact_event(&mut *conn, *server, h.first, &before[server].0).await?;
    }
    let found: Vec<ServerId> = found.iter().map(|(server, _)| *server).collect();
    let waiting = crate::ingest::commands_waiting(&mut *conn, &found).await?;
    Ok(contacts
        .iter()
        .map(|contact| {
            let (_, settings) = before.get(&contact.server).ok_or(StoreError::NotFound)?;
            let expiring = waiting.get(&contact.server).map_or(&[][..], Vec::as_slice);
            let commands_pending = expiring.iter().filter(|expires_at| **expires_at > contact.at).count();
            Ok(ContactOutcome {
                commands_pending: u32::try_from(commands_pending).unwrap_or(u32::MAX),
                settings: settings.clone(),
            })
        })
        .collect())
}

/// Marks the servers of `heard` active, moves their last contact on (never back) and
/// keeps their latest heartbeat, a chunk of servers per statement.
async fn write(conn: &mut Conn, heard: &[(ServerId, &Heard)]) -> StoreResult<()> {
    static TEXTS: Shapes = Shapes::new();
    for chunk in chunks(heard.len()) {
        let sql = TEXTS.text(chunk.shape, |rows| {
            let columns =
                [("v_server", "BIGINT"), ("v_contact", "BIGINT"), ("v_beat_at", "BIGINT"), ("v_beat", "TEXT")];
            format!(
                "{}UPDATE servers SET agent_status = 'active', \
                 agent_last_contact = CASE WHEN COALESCE(servers.agent_last_contact, 0) < v.v_contact \
                 THEN v.v_contact ELSE servers.agent_last_contact END, \
                 agent_last_heartbeat = COALESCE(v.v_beat_at, servers.agent_last_heartbeat), \
                 agent_config = CASE WHEN v.v_beat IS NULL THEN servers.agent_config ELSE {} END \
                 FROM v WHERE servers.id = v.v_server",
                values_cte("v", &columns, rows),
                crate::dialect::with_heartbeat("servers.agent_config", "v.v_beat"),
            )
        });
        let mut query = sqlx::query(sql);
        for i in 0..chunk.shape {
            let row = chunk.row(heard, i);
            query = query
                .bind(row.map(|(server, _)| *server))
                .bind(row.map(|(_, h)| h.last))
                .bind(row.and_then(|(_, h)| h.beat_at))
                .bind(row.and_then(|(_, h)| h.beat.as_deref()));
        }
        query.execute(&mut *conn).await.map_err(db)?;
    }
    Ok(())
}

/// Writes what the heartbeats of `heard` said where it differs from what their rows
/// hold (their times stay in their pending rows).
async fn write_said(conn: &mut Conn, heard: &[(ServerId, &Heard)]) -> StoreResult<()> {
    let said: Vec<(ServerId, &str)> =
        heard.iter().filter_map(|(server, h)| Some((*server, h.beat.as_deref()?))).collect();
    static TEXTS: Shapes = Shapes::new();
    for chunk in chunks(said.len()) {
        let sql = TEXTS.text(chunk.shape, |rows| {
            format!(
                "{}UPDATE servers SET agent_config = {} FROM v WHERE servers.id = v.v_server AND {}",
                values_cte("v", &[("v_server", "BIGINT"), ("v_beat", "TEXT")], rows),
                crate::dialect::with_heartbeat("servers.agent_config", "v.v_beat"),
                crate::dialect::heartbeat_differs("servers.agent_config", "v.v_beat"),
            )
        });
        let mut query = sqlx::query(sql);
        for i in 0..chunk.shape {
            let row = chunk.row(&said, i);
            query = query.bind(row.map(|(server, _)| *server)).bind(row.map(|(_, beat)| *beat));
        }
        query.execute(&mut *conn).await.map_err(db)?;
    }
    Ok(())
}
