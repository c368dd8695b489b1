//! The storage contract of the ServerPulse hub.
//!
//! The hub talks to its database only through [`Store`]. Each method is one atomic unit
//! of work: it commits completely or leaves nothing behind, which is what lets the hub
//! promise that a report it acknowledged is kept and a refused one left no trace.
//! Backends live in their own crates (`serverpulse-store-sqlite`,
//! `serverpulse-store-postgres`) and prove themselves against the [`contract`] suite.
//!
//! Beside this crate's sources, `sql/` holds the store written once in SQL that both
//! backends compile (as modules, against their own `dialect` and `rows`): this crate
//! does not compile it, since it depends on no database library.

pub mod chunk;
#[cfg(feature = "contract")]
pub mod contract;
pub mod history;
pub mod landing;
pub mod model;
pub mod packed;
pub mod rows;
pub mod write_back;

use async_trait::async_trait;
use serverpulse_alerting::Rule;
use serverpulse_alerting::notify::{Channel, Silence};
use serverpulse_domain::TokenDigest;
use serverpulse_proto::alert::AgentAlert;
use serverpulse_proto::command::CommandAck;
use serverpulse_proto::report::Report;
use serverpulse_proto::settings::AgentSettings;

pub use model::*;

/// What can go wrong below the hub. Deliberately small: callers decide status codes
/// from these four cases only.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    /// A uniqueness rule was hit (e.g. an e-mail address already in use).
    #[error("conflict: {0}")]
    Conflict(String),
    /// Stored data that cannot be read back as the types say (a bug or manual editing).
    #[error("corrupt record: {0}")]
    Corrupt(String),
    /// The database itself failed (IO, locking, connection).
    #[error("database error: {0}")]
    Backend(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// What newly stored reports mean for a server's alert rules, decided inside the
/// transaction that stores them (so no other evaluation of the server comes between
/// reading its episodes and writing them back).
pub trait Judge: Send + Sync {
    /// The changes to `server`'s rule episodes (`states`, as stored) made by `reports`
    /// (just stored, in arrival order); `previous_uptime` is the uptime of the newest
    /// report before them (reboot detection). `server` is as the reports left it.
    fn judge(
        &self,
        server: &Server,
        reports: &[&Report],
        previous_uptime: Option<u64>,
        states: &[RuleState],
    ) -> Vec<AlertingChange>;
}

/// Everything the hub keeps. Times are Unix milliseconds, passed in by the caller so
/// tests drive them with an injected clock.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    // --- servers -------------------------------------------------------------

    /// Adds a server and its first enrollment token.
    async fn create_server(&self, new: NewServer, enrollment: EnrollmentGrant, now: i64) -> StoreResult<Server>;
    async fn list_servers(&self) -> StoreResult<Vec<Server>>;
    /// The servers an absence rule could fire on or end on: agent disconnected, newest
    /// report older than `since` (agent time), or an alert not yet resolved. A server
    /// that never reported has no data to miss.
    async fn quiet_servers(&self, since: i64) -> StoreResult<Vec<Server>>;
    async fn get_server(&self, id: ServerId) -> StoreResult<Server>;
    async fn update_server(&self, id: ServerId, patch: ServerPatch, now: i64) -> StoreResult<Server>;
    /// Removes a server and everything recorded about it; its agent's token stops working.
    async fn delete_server(&self, id: ServerId, now: i64) -> StoreResult<()>;
    /// Mints another enrollment token for an existing server.
    async fn add_enrollment(&self, id: ServerId, enrollment: EnrollmentGrant, now: i64) -> StoreResult<()>;
    /// The server an unused, unexpired enrollment token belongs to (without using it up).
    async fn enrollment_server(&self, token: &TokenDigest, now: i64) -> StoreResult<Option<Server>>;
    /// Sets (or rotates) a server's agent credentials by hand, for pre-provisioned agents.
    async fn set_agent_credentials(&self, id: ServerId, credentials: AgentCredentials, now: i64) -> StoreResult<()>;

    // --- agents --------------------------------------------------------------

    /// Registers an agent by one of the protocol's three ways, atomically.
    async fn register_agent(
        &self,
        way: RegistrationWay,
        profile: AgentProfile,
        now: i64,
    ) -> StoreResult<RegisterOutcome>;
    /// The identity behind an agent id, for the hub to verify the token against.
    async fn agent_identity(&self, agent_id: &str) -> StoreResult<Option<AgentIdentity>>;
    /// A number that moves whenever any agent's identity changes (credentials, enabled,
    /// its server removed), whoever changes it: identities read before it moved may be
    /// out of date.
    async fn agent_changes(&self) -> StoreResult<u64>;
    /// Stores reports of one agent. Reports whose `seq` is already stored are skipped.
    /// Marks the agent active (recording a reconnection if it was disconnected).
    async fn store_reports(&self, server: ServerId, reports: &[Report], received_at: i64)
    -> StoreResult<IngestOutcome>;
    /// Stores several agents' reports in one transaction — one commit, one fsync — each
    /// job succeeding or failing on its own; the outcomes come back in the jobs' order.
    /// `Err` only when nothing could be committed. With a `judge`, each server's alert
    /// rules are judged on its newly stored reports against its episodes as stored, and
    /// the changes written in the same transaction (reports are kept even if that part
    /// fails, which is logged).
    async fn store_report_batch(
        &self,
        jobs: &[IngestJob],
        judge: Option<&dyn Judge>,
    ) -> StoreResult<Vec<StoreResult<IngestOutcome>>> {
        Ok(self.commit_batch(jobs, &[], judge).await?.0)
    }
    /// Records agents' contacts other than reports (heartbeats, command polls) in one
    /// transaction — one commit, one fsync — each succeeding or failing on its own
    /// (`NotFound`: its server is gone), the outcomes in the contacts' order: the server
    /// marked active (its return logged if it was not), its last contact moved on (never
    /// back), and for a heartbeat its time and what it said kept. Each comes back with
    /// what its agent is answered, as of the commit. `Err` only when nothing could be
    /// committed.
    async fn record_contacts(&self, contacts: &[Contact]) -> StoreResult<Vec<StoreResult<ContactOutcome>>> {
        Ok(self.commit_batch(&[], contacts, None).await?.1)
    }
    /// The ingest writer's batch in one transaction — one commit, one fsync: `jobs` as
    /// [`Store::store_report_batch`] stores them, then `contacts` as
    /// [`Store::record_contacts`] records them. `Err` only when nothing could be
    /// committed.
    async fn commit_batch(
        &self,
        jobs: &[IngestJob],
        contacts: &[Contact],
        judge: Option<&dyn Judge>,
    ) -> StoreResult<BatchOutcomes>;
    /// The server's agent settings and their revision (0 and empty settings until first set).
    async fn agent_settings(&self, server: ServerId) -> StoreResult<Versioned<AgentSettings>>;
    /// Replaces the server's agent settings; returns them with the new revision (previous + 1).
    async fn set_agent_settings(
        &self,
        server: ServerId,
        settings: AgentSettings,
        now: i64,
    ) -> StoreResult<Versioned<AgentSettings>>;
    /// Stores agent alerts; an alert of a type already open within minutes joins that
    /// episode. `notify[i]` says whom to tell when alert `i` opens a new episode or the
    /// agent's recovery notice resolves one; a silenced new episode is recorded so.
    async fn store_agent_alerts(
        &self,
        server: ServerId,
        alerts: &[AgentAlert],
        notify: &[Recipients],
        now: i64,
    ) -> StoreResult<Vec<AlertId>>;
    /// Marks every active agent silent for longer than `offline_after_ms` as disconnected.
    async fn mark_silent_agents(&self, now: i64, offline_after_ms: i64) -> StoreResult<Vec<ServerId>>;

    // --- commands ------------------------------------------------------------

    async fn enqueue_command(&self, server: ServerId, command: NewCommand, now: i64) -> StoreResult<CommandRecord>;
    /// How many unexpired commands wait for the server's agent (not yet delivered).
    async fn pending_command_count(&self, server: ServerId, now: i64) -> StoreResult<u32>;
    /// Unexpired commands not yet acknowledged; marks them delivered.
    async fn pending_commands(&self, server: ServerId, now: i64) -> StoreResult<Vec<CommandRecord>>;
    async fn ack_command(
        &self,
        server: ServerId,
        command_id: &str,
        ack: &CommandAck,
        now: i64,
    ) -> StoreResult<AckOutcome>;
    async fn list_commands(&self, server: ServerId, limit: u32) -> StoreResult<Vec<CommandRecord>>;

    // --- history -------------------------------------------------------------

    /// Samples with agent time in `[from, to]`, oldest first, at most `limit`.
    async fn metrics_history(&self, server: ServerId, from: i64, to: i64, limit: u32) -> StoreResult<Vec<Sample>>;
    /// Samples reduced to buckets of `step` ms (aligned to multiples of `step`) starting
    /// in `[from, to)`, oldest first; empty buckets are absent. With `from` and `step`
    /// multiples of a summary tier's width a backend may answer from its summaries,
    /// whose buckets are whole (they may hold samples up to a tier bucket past `to`).
    async fn chart(&self, server: ServerId, from: i64, to: i64, step: i64) -> StoreResult<Vec<ChartBucket>>;
    /// Brings the summaries up to date with what was stored since the last call (ingest
    /// only marks what changed) — of one server, or of all; returns the buckets
    /// refreshed. The hub refreshes all once a minute, and one server's before
    /// drawing its chart.
    async fn refresh_rollups(&self, server: Option<ServerId>) -> StoreResult<u64>;
    /// The finest bucket width (ms; 0 for raw samples) whose history still reaches back
    /// to `from` after retention: a chart starting there cannot be finer.
    async fn chart_resolution(&self, from: i64) -> StoreResult<i64>;
    /// Deletes history past its age and, over the size cap, the oldest history first;
    /// summaries are never recomputed from data retention removed.
    async fn apply_retention(&self, policy: &RetentionPolicy, now: i64) -> StoreResult<RetentionOutcome>;
    /// Moves the samples of every whole hour (agent time) before `before` into compressed
    /// history chunks ([`chunk`]), keeping every figure and rate but not the report as
    /// received: [`Store::metrics_history`] gives `raw` as `null` from then on. Reports
    /// arriving later for a compacted hour are stored (and de-duplicated) as usual.
    async fn compact_history(&self, before: i64) -> StoreResult<CompactionOutcome>;
    /// Open alerts and failed units per server; servers with neither are absent.
    async fn fleet_counts(&self) -> StoreResult<std::collections::HashMap<ServerId, FleetCounts>>;
    async fn services(&self, server: ServerId) -> StoreResult<Vec<ServiceRecord>>;
    async fn service_history(&self, server: ServerId, limit: u32) -> StoreResult<Vec<ServiceChange>>;
    async fn alerts(&self, query: AlertQuery) -> StoreResult<Vec<AlertRecord>>;
    async fn alert(&self, id: AlertId) -> StoreResult<AlertRecord>;
    /// Marks an open alert acknowledged (by whom, with a comment). Acknowledging a
    /// resolved alert is a conflict.
    async fn acknowledge_alert(&self, id: AlertId, by: &str, comment: &str, now: i64) -> StoreResult<AlertRecord>;
    /// Resolves an open alert by hand; a rule's episode ends with it (if the condition
    /// still holds, a new episode begins).
    async fn resolve_alert(&self, id: AlertId, by: &str, now: i64) -> StoreResult<AlertRecord>;

    // --- notifications -------------------------------------------------------
    async fn list_channels(&self) -> StoreResult<Vec<StoredChannel>>;
    async fn get_channel(&self, id: i64) -> StoreResult<StoredChannel>;
    async fn create_channel(&self, channel: Channel, now: i64) -> StoreResult<StoredChannel>;
    async fn update_channel(&self, id: i64, channel: Channel, now: i64) -> StoreResult<StoredChannel>;
    async fn delete_channel(&self, id: i64, now: i64) -> StoreResult<()>;
    /// Silences, newest first; with `active_at`, only those not over by then.
    async fn list_silences(&self, active_at: Option<i64>) -> StoreResult<Vec<StoredSilence>>;
    async fn create_silence(&self, silence: Silence, by: &str, now: i64) -> StoreResult<StoredSilence>;
    async fn delete_silence(&self, id: i64, now: i64) -> StoreResult<()>;
    async fn enqueue_notifications(&self, notifications: Vec<NewNotification>, now: i64) -> StoreResult<Vec<i64>>;
    /// Pending notifications whose next attempt is due at `now`, oldest first.
    async fn due_notifications(&self, now: i64, limit: u32) -> StoreResult<Vec<DueNotification>>;
    async fn record_delivery(&self, id: i64, outcome: DeliveryOutcome, now: i64) -> StoreResult<()>;
    async fn notifications(&self, query: NotificationQuery) -> StoreResult<Vec<NotificationRecord>>;
    /// (alert, channel) pairs whose alert still fires unacknowledged and whose last
    /// notification on that channel is older than the channel's `repeat_every`.
    async fn repeats_due(&self, now: i64) -> StoreResult<Vec<(AlertId, i64)>>;

    // --- alert rules ---------------------------------------------------------
    async fn list_rules(&self) -> StoreResult<Vec<StoredRule>>;
    async fn get_rule(&self, id: i64) -> StoreResult<StoredRule>;
    /// A rule with the same name already existing is a conflict.
    async fn create_rule(&self, rule: Rule, now: i64) -> StoreResult<StoredRule>;
    async fn update_rule(&self, id: i64, rule: Rule, now: i64) -> StoreResult<StoredRule>;
    /// Removes the rule and its episode states; its alerts stay in the history.
    async fn delete_rule(&self, id: i64, now: i64) -> StoreResult<()>;
    /// Every episode state of `server`.
    async fn rule_states(&self, server: ServerId) -> StoreResult<Vec<RuleState>>;
    /// Writes what an evaluation decided, in one transaction: states, alerts opened,
    /// escalated or resolved, and their events. Returns the alerts touched.
    async fn apply_alerting(
        &self,
        server: ServerId,
        changes: Vec<AlertingChange>,
        now: i64,
    ) -> StoreResult<Vec<AlertId>>;
    /// Newest first.
    async fn events(&self, query: EventQuery) -> StoreResult<Vec<EventRecord>>;

    // --- users and API tokens ------------------------------------------------

    async fn create_user(&self, new: NewUser, now: i64) -> StoreResult<User>;
    /// Creates `new` only while no user exists at all (the first run's administrator);
    /// `None` when someone else got there first.
    async fn create_first_user(&self, new: NewUser, now: i64) -> StoreResult<Option<User>>;
    async fn user_count(&self) -> StoreResult<u64>;
    async fn user(&self, id: UserId) -> StoreResult<UserWithPassword>;
    /// Changes a user's role (logged). Taking the last administrator's role is a conflict.
    async fn set_user_role(&self, id: UserId, role: serverpulse_domain::Role, by: &str, now: i64) -> StoreResult<User>;
    /// Removes a user with their sessions and tokens (logged). Removing the last
    /// administrator is a conflict.
    async fn delete_user(&self, id: UserId, by: &str, now: i64) -> StoreResult<()>;
    /// API tokens not revoked, newest first, with their owners' addresses.
    async fn list_api_tokens(&self) -> StoreResult<Vec<(ApiToken, String)>>;
    /// Revokes a token (logged); unknown or revoked already is `NotFound`.
    async fn revoke_api_token(&self, token_id: &str, by: &str, now: i64) -> StoreResult<()>;
    /// Replaces the password and ends every session of the user but `keep` (logged).
    async fn set_password(
        &self,
        id: UserId,
        password_hash: &str,
        keep: Option<&TokenDigest>,
        now: i64,
    ) -> StoreResult<()>;
    async fn list_users(&self) -> StoreResult<Vec<User>>;
    async fn user_by_email(&self, email: &str) -> StoreResult<Option<UserWithPassword>>;
    async fn create_api_token(&self, new: NewApiToken, now: i64) -> StoreResult<ApiToken>;
    /// The token with this public id and its owner, if neither is revoked.
    async fn api_token(&self, token_id: &str) -> StoreResult<Option<(ApiTokenSecret, User)>>;

    // --- browser sessions ----------------------------------------------------

    /// Starts a session (logged as a sign-in) and forgets expired ones.
    async fn create_session(&self, session: NewSession, now: i64) -> StoreResult<()>;
    /// The user of a live session.
    async fn session_user(&self, id: &TokenDigest, now: i64) -> StoreResult<Option<User>>;
    /// Ends a session (logged as a sign-out); unknown ids are not an error.
    async fn delete_session(&self, id: &TokenDigest, now: i64) -> StoreResult<()>;
    /// Records a refused sign-in (the address tried, never the password).
    async fn record_failed_login(&self, email: &str, now: i64) -> StoreResult<()>;

    // --- several hubs on one database ----------------------------------------

    /// Whether this hub is the one that runs the background work (sweeps, notifications,
    /// summaries, retention, compaction) on this database: claims the role when it is
    /// free and keeps it while it holds it; `false` while another hub holds it, or once
    /// this hub lost its hold. A database only one hub can open always says `true`.
    async fn lead(&self) -> StoreResult<bool> {
        Ok(true)
    }

    /// Whether other hubs may share this database, so live updates must reach them
    /// through [`Store::broadcast`].
    fn is_shared(&self) -> bool {
        false
    }

    /// Hands `payload` to every hub following this database's broadcasts, this one
    /// included (at most 7,900 bytes). Nothing to do where no other hub can follow.
    async fn broadcast(&self, payload: &str) -> StoreResult<()> {
        let _ = payload;
        Ok(())
    }

    /// Calls `deliver` with each payload broadcast on this database, in order, until the
    /// connection fails (an error; the caller follows again). Returns at once where
    /// there is nothing to follow.
    async fn follow_broadcasts(&self, deliver: &(dyn Fn(String) + Send + Sync)) -> StoreResult<()> {
        let _ = deliver;
        Ok(())
    }
}

/// An agent's secret as stored: only its digest.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentCredentials {
    pub agent_id: String,
    pub token: TokenDigest,
}
