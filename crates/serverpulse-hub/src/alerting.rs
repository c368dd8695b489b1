//! The hub side of alerting: what a server's newest report (or its silence) means for
//! every rule that applies to it. Builds a [`Snapshot`], runs each (rule, subject)
//! episode one step with `serverpulse-alerting`, and has the store write the outcome.
//!
//! On reports, this runs inside the ingest writer's transaction ([`ReportJudge`], a
//! [`Judge`]): the episodes are read, stepped and written with the reports, in the same
//! commit, once per server per batch. The sweeper evaluates the absence rules (agent
//! offline, no data) on its timer, reading episodes and then writing them; the writer
//! and the sweeper hold a server's [`ServerLocks`] slot meanwhile, so no evaluation of
//! the server comes in between. Rules, channels and silences are read from the store at
//! most every few seconds ([`Cached`]), not on every report.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::json;
use serverpulse_alerting::rule::Level;
use serverpulse_alerting::{EpisodeState, Metric, Snapshot, Transition, evaluate};
use serverpulse_domain::AgentStatus;
use serverpulse_proto::alert::Severity;
use serverpulse_proto::report::Report;
use serverpulse_store::{
    AlertAction, AlertId, AlertingChange, Judge, RuleState, Sample, Server, ServerId, Store, StoreError, StoredChannel,
    StoredRule, StoredSilence,
};

use crate::app::AppState;

/// Locks serialising the evaluations of one server (by id, over a fixed set of locks:
/// two servers may share one, which only makes one wait).
#[derive(Debug)]
pub struct ServerLocks([tokio::sync::Mutex<()>; 64]);

impl Default for ServerLocks {
    fn default() -> Self {
        Self(std::array::from_fn(|_| tokio::sync::Mutex::new(())))
    }
}

impl ServerLocks {
    fn slot(server: ServerId) -> usize {
        usize::try_from(server.rem_euclid(64)).unwrap_or(0)
    }

    pub async fn lock(&self, server: ServerId) -> tokio::sync::MutexGuard<'_, ()> {
        self.0[Self::slot(server)].lock().await
    }

    /// The locks of all `servers`, taken in one order (whoever holds one lock at a time
    /// cannot deadlock with this).
    pub async fn lock_all(&self, servers: impl IntoIterator<Item = ServerId>) -> Vec<tokio::sync::MutexGuard<'_, ()>> {
        let slots: std::collections::BTreeSet<usize> = servers.into_iter().map(Self::slot).collect();
        let mut guards = Vec::with_capacity(slots.len());
        for slot in slots {
            guards.push(self.0[slot].lock().await);
        }
        guards
    }
}

/// A value read from the store at most every [`Cached::FRESH_FOR`] and at once after
/// this hub changed it ([`Cached::forget`]). Another hub's change on a shared database
/// applies here within that time.
#[derive(Debug)]
pub struct Cached<T>(tokio::sync::RwLock<Option<(std::time::Instant, Arc<T>)>>);

impl<T> Default for Cached<T> {
    fn default() -> Self {
        Self(tokio::sync::RwLock::new(None))
    }
}

impl<T> Cached<T> {
    pub const FRESH_FOR: std::time::Duration = std::time::Duration::from_secs(5);

    /// The value, read with `load` when not fresh.
    pub async fn get<F: Future<Output = Result<T, StoreError>>>(
        &self,
        load: impl FnOnce() -> F,
    ) -> Result<Arc<T>, StoreError> {
        if let Some((read_at, value)) = self.0.read().await.as_ref()
            && read_at.elapsed() < Self::FRESH_FOR
        {
            return Ok(value.clone());
        }
        let value = Arc::new(load().await?);
        *self.0.write().await = Some((std::time::Instant::now(), value.clone()));
        Ok(value)
    }

    /// Makes the next [`Cached::get`] read the store.
    pub async fn forget(&self) {
        *self.0.write().await = None;
    }
}

/// What evaluations need beside the store: the locks, and the cached rules and audience.
#[derive(Debug, Clone, Default)]
pub struct Alerting {
    pub locks: Arc<ServerLocks>,
    pub rules: Arc<Cached<Vec<StoredRule>>>,
    pub audience: Arc<Cached<Audience>>,
}

impl Alerting {
    pub async fn rules(&self, store: &dyn Store) -> Result<Arc<Vec<StoredRule>>, StoreError> {
        self.rules.get(|| store.list_rules()).await
    }

    pub async fn audience(&self, store: &dyn Store) -> Result<Arc<Audience>, StoreError> {
        self.audience.get(|| Audience::load(store)).await
    }

    /// A judge of reports arriving now, or `None` (logged) when the rules or audience
    /// cannot be read: reports are stored all the same.
    pub async fn judge(&self, store: &dyn Store, now: i64) -> Option<ReportJudge> {
        match tokio::try_join!(self.rules(store), self.audience(store)) {
            Ok((rules, audience)) => Some(ReportJudge { rules, audience, now }),
            Err(error) => {
                tracing::error!(error = %error, "alert rules unreadable; reports are stored unjudged");
                None
            }
        }
    }
}

/// Judges stored reports for the ingest writer (see the module documentation).
#[derive(Debug)]
pub struct ReportJudge {
    rules: Arc<Vec<StoredRule>>,
    audience: Arc<Audience>,
    now: i64,
}

impl Judge for ReportJudge {
    fn judge(
        &self,
        server: &Server,
        reports: &[&Report],
        previous_uptime: Option<u64>,
        states: &[RuleState],
    ) -> Vec<AlertingChange> {
        let Some(newest) = reports.iter().max_by_key(|r| r.timestamp) else { return Vec::new() };
        let mut snapshot = snapshot_of(newest, self.now);
        snapshot.rebooted = match (previous_uptime, newest.metrics.uptime) {
            (Some(before), Some(after)) => after < before,
            _ => false,
        };
        snapshot.agent_offline = server.agent_status == AgentStatus::Disconnected;
        snapshot.last_report_at = Some(newest.timestamp);
        // Rates are derived by the store from consecutive counters; it keeps the newest.
        if let Some(latest) = &server.last_metrics {
            snapshot.network_rx_rate = latest.network_rx_rate;
            snapshot.network_tx_rate = latest.network_tx_rate;
            snapshot.disk_read_rate = latest.disk_io_read_rate;
            snapshot.disk_write_rate = latest.disk_io_write_rate;
        }
        changes_for(&self.rules, server, &snapshot, states, false, &self.audience, self.now)
    }
}

/// Evaluates the absence rules (agent offline, no data) at `now`, on the servers they
/// could fire or end on: disconnected ones, those silent for longer than the shortest
/// no-data threshold, and those with an alert open. (A server that reports again has
/// every rule evaluated then.) A large fleet that reports costs the sweep nothing.
pub async fn sweep(state: &AppState, now: i64) -> Result<Vec<AlertId>, StoreError> {
    let rules = state.alerting.rules(&*state.store).await?;
    let absence: Vec<&StoredRule> = rules.iter().filter(|r| r.rule.enabled && r.rule.metric.is_absence()).collect();
    if absence.is_empty() {
        return Ok(Vec::new());
    }
    let since = quiet_since(&absence, now);
    let mut touched = Vec::new();
    for server in state.store.quiet_servers(since).await? {
        let _serial = state.alerting.locks.lock(server.id).await;
        let snapshot = Snapshot {
            at: now,
            agent_offline: server.agent_status == AgentStatus::Disconnected,
            last_report_at: server.last_metrics_at,
            ..Snapshot::default()
        };
        touched.extend(evaluate_absence(state, &rules, &server, &snapshot, now).await?);
    }
    Ok(touched)
}

/// Reports older than this may trip a no-data rule: the shortest threshold back from
/// `now` (every server, when a no-data rule has no threshold above which it fires).
fn quiet_since(absence: &[&StoredRule], now: i64) -> i64 {
    let mut since = i64::MIN;
    for stored in absence.iter().filter(|r| r.rule.metric == Metric::NoData) {
        let rule = &stored.rule;
        let fires_above =
            matches!(rule.op, serverpulse_alerting::rule::Op::Above | serverpulse_alerting::rule::Op::AtLeast);
        let shortest = [rule.warning, rule.critical].into_iter().flatten().reduce(f64::min);
        match (fires_above, shortest) {
            (true, Some(seconds)) => since = since.max(now - (seconds.max(0.0) * 1000.0) as i64),
            _ => return i64::MAX,
        }
    }
    since
}

/// The rules that apply to `server`: for each metric, the enabled rules whose scope
/// names it most specifically (a rule for this server overrides one for its tag, which
/// overrides one for all servers; rules equally specific all apply).
pub fn applicable<'r>(rules: &'r [StoredRule], server: &Server) -> Vec<&'r StoredRule> {
    let ranked: Vec<(u8, &StoredRule)> = rules
        .iter()
        .filter(|r| r.rule.enabled)
        .filter_map(|r| Some((r.rule.scope.specificity(server.id, &server.tags)?, r)))
        .collect();
    let mut best: HashMap<&Metric, u8> = HashMap::new();
    for (rank, stored) in &ranked {
        let top = best.entry(&stored.rule.metric).or_insert(*rank);
        *top = (*top).max(*rank);
    }
    ranked.into_iter().filter(|(rank, r)| best.get(&r.rule.metric) == Some(rank)).map(|(_, r)| r).collect()
}

/// Evaluates the absence rules of `server` (its lock held) and writes the outcome.
async fn evaluate_absence(
    state: &AppState,
    rules: &[StoredRule],
    server: &Server,
    snapshot: &Snapshot,
    now: i64,
) -> Result<Vec<AlertId>, StoreError> {
    let states = state.store.rule_states(server.id).await?;
    let audience = state.alerting.audience(&*state.store).await?;
    let changes = changes_for(rules, server, snapshot, &states, true, &audience, now);
    if changes.is_empty() {
        return Ok(Vec::new());
    }
    let notifies = changes.iter().any(|c| !c.notify.is_empty());
    let touched = state.store.apply_alerting(server.id, changes, now).await?;
    announce(state, server.id, &touched, notifies).await;
    Ok(touched)
}

/// Tells whoever waits that evaluations of `server` queued notifications or touched
/// alerts.
pub async fn announce(state: &AppState, server: ServerId, touched: &[AlertId], notifies: bool) {
    if notifies {
        state.wake_notifier.notify_one();
    }
    if !touched.is_empty() {
        crate::live::publish_alerts(state, server).await;
    }
}

/// What `snapshot` does to every rule of `server` (or only the absence rules), given
/// its episodes `states` as stored: one change per (rule, subject) that moved.
fn changes_for(
    rules: &[StoredRule],
    server: &Server,
    snapshot: &Snapshot,
    states: &[RuleState],
    absence_only: bool,
    audience: &Audience,
    now: i64,
) -> Vec<AlertingChange> {
    let states: HashMap<(i64, &str), EpisodeState> =
        states.iter().map(|s| ((s.rule_id, s.subject.as_str()), s.state)).collect();
    let mut changes = Vec::new();
    for stored in applicable(rules, server) {
        let rule = &stored.rule;
        if absence_only && !rule.metric.is_absence() {
            continue;
        }
        for (subject, value) in rule.metric.values(snapshot) {
            let before = states.get(&(stored.id, subject.as_str())).copied().unwrap_or_default();
            let (after, transition) = evaluate(rule, before, value, now);
            // Only episodes in progress are kept: one that stays quiet writes nothing.
            let quiet = |phase| matches!(phase, serverpulse_alerting::Phase::Ok);
            if quiet(before.phase) && quiet(after.phase) && transition.is_none() {
                continue;
            }
            let action = transition.and_then(|t| action_for(stored, server, &subject, value, t));
            let level = match (&action, before.phase) {
                (Some(AlertAction::Open { severity, .. } | AlertAction::Escalate { severity, .. }), _) => *severity,
                (_, serverpulse_alerting::Phase::Firing { level, .. }) => severity(level),
                _ => Severity::Info,
            };
            let (notify, silenced) = match &action {
                Some(_) => audience.recipients(level, server, Some(stored.id), now),
                None => (Vec::new(), false),
            };
            changes.push(AlertingChange { rule_id: stored.id, subject, state: after, action, notify, silenced });
        }
    }
    changes
}

/// Who is told about an alert: the enabled channels whose route takes it, unless an
/// active silence covers it.
pub struct Audience {
    channels: Vec<StoredChannel>,
    silences: Vec<StoredSilence>,
}

/// Counts only: channel settings hold secrets.
impl std::fmt::Debug for Audience {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Audience")
            .field("channels", &self.channels.len())
            .field("silences", &self.silences.len())
            .finish()
    }
}

impl Audience {
    /// Every channel and silence (a silence covers only while it is active).
    pub async fn load(store: &dyn Store) -> Result<Self, StoreError> {
        Ok(Self { channels: store.list_channels().await?, silences: store.list_silences(None).await? })
    }

    /// (channels to notify, silenced) for an alert of `severity` on `server` from `rule`.
    pub fn recipients(&self, severity: Severity, server: &Server, rule: Option<i64>, now: i64) -> (Vec<i64>, bool) {
        if self.silences.iter().any(|s| s.silence.covers(now, server.id, &server.tags, rule)) {
            return (Vec::new(), true);
        }
        let channels = self
            .channels
            .iter()
            .filter(|c| c.channel.enabled && c.channel.route.matches(severity, server.id, &server.tags))
            .map(|c| c.id)
            .collect();
        (channels, false)
    }
}

fn severity(level: Level) -> Severity {
    match level {
        Level::Warning => Severity::Warning,
        Level::Critical => Severity::Critical,
    }
}

/// What a rule's episode looks like to a person: what, where, how bad, the value
/// against the threshold.
fn describe(stored: &StoredRule, server: &Server, subject: &str, value: f64, level: Option<Level>) -> String {
    let rule = &stored.rule;
    let what = if subject.is_empty() { rule.metric.name() } else { format!("{} {subject}", rule.metric.name()) };
    let unit = rule.metric.unit();
    match (rule.metric.is_state(), level.and_then(|l| rule.threshold(l))) {
        (true, _) => format!("{}: {what} on {}", rule.name, server.name),
        (false, Some(threshold)) => format!(
            "{}: {what} on {} at {}{unit} ({:?} {}{unit})",
            rule.name,
            server.name,
            round(value),
            rule.op,
            round(threshold)
        ),
        (false, None) => format!("{}: {what} on {} at {}{unit}", rule.name, server.name, round(value)),
    }
}

fn round(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

fn action_for(
    stored: &StoredRule,
    server: &Server,
    subject: &str,
    value: f64,
    transition: Transition,
) -> Option<AlertAction> {
    let rule = &stored.rule;
    match transition {
        Transition::Pending { .. } => None,
        Transition::Fired { level, since } => Some(AlertAction::Open {
            kind: rule.metric.name(),
            severity: severity(level),
            message: describe(stored, server, subject, value, Some(level)),
            value,
            threshold: rule.threshold(level),
            since,
            details: json!({"rule": rule.name, "metric": rule.metric.name(), "level": level.as_str(),
                            "op": rule.op, "for": rule.for_seconds}),
        }),
        Transition::Escalated { to, .. } => Some(AlertAction::Escalate {
            severity: severity(to),
            message: describe(stored, server, subject, value, Some(to)),
            value,
            threshold: rule.threshold(to),
        }),
        Transition::Resolved { .. } => Some(AlertAction::Resolve {
            message: format!("{} (recovered at {})", describe(stored, server, subject, value, None), round(value)),
            value,
        }),
    }
}

/// A stored sample as rules see it (for backtests): the report it was, with the rates
/// the store derived and whether the uptime went down since `previous_uptime`.
pub fn snapshot_of_sample(sample: &Sample, previous_uptime: Option<u64>) -> Option<Snapshot> {
    let report = serverpulse_proto::report::decode_report(&sample.raw, "", sample.at).ok()?;
    let mut snapshot = snapshot_of(&report, sample.at);
    snapshot.network_rx_rate = sample.network_rx_rate;
    snapshot.network_tx_rate = sample.network_tx_rate;
    snapshot.disk_read_rate = sample.disk_io_read_rate;
    snapshot.disk_write_rate = sample.disk_io_write_rate;
    snapshot.rebooted = matches!((previous_uptime, sample.uptime), (Some(before), Some(after)) if after < before);
    Some(snapshot)
}

/// The figures of one report that rules can watch: the flat metrics, and from
/// `metrics.detail` (serverpulse-agent) the mounts, swap, core count and custom metrics.
pub fn snapshot_of(report: &Report, now: i64) -> Snapshot {
    let metrics = &report.metrics;
    let detail = &report.detail;
    Snapshot {
        at: now,
        cpu: metrics.cpu_usage.map(|p| p.get()),
        memory: metrics.memory_usage.map(|p| p.get()),
        swap: detail.swap_percent,
        disk: metrics.disk_usage.map(|p| p.get()),
        mounts: detail.mounts.clone(),
        load: metrics.load_average,
        cores: detail.cores,
        network_rx_rate: None,
        network_tx_rate: None,
        disk_read_rate: None,
        disk_write_rate: None,
        custom: detail.custom.clone(),
        services: report.services.iter().map(|s| (s.name.clone(), s.status.as_str().to_owned())).collect(),
        rebooted: false,
        agent_offline: false,
        last_report_at: Some(report.timestamp),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;
    use serde_json::json;
    use serverpulse_alerting::decode_rule;

    fn stored(id: i64, rule: Value) -> StoredRule {
        StoredRule { id, rule: decode_rule(&rule).unwrap(), builtin: false, created_at: 0, updated_at: 0 }
    }

    #[test]
    fn specific_rules_override_broader_ones_and_equals_all_apply() {
        let server = serverpulse_store::contract::example_server(1, "web");
        let rules = [
            stored(1, json!({"name": "cpu all", "metric": "cpu", "op": ">", "warning": 80})),
            stored(2, json!({"name": "cpu all too", "metric": "cpu", "op": ">", "critical": 99})),
            stored(3, json!({"name": "mem all", "metric": "memory", "op": ">", "warning": 80})),
            stored(
                4,
                json!({"name": "mem db", "metric": "memory", "op": ">", "warning": 95, "scope": {"tags": ["db"]}}),
            ),
            stored(
                5,
                json!({"name": "mem 7", "metric": "memory", "op": ">", "warning": 99, "scope": {"servers": [7]}}),
            ),
            stored(6, json!({"name": "off", "metric": "swap", "op": ">", "warning": 1, "enabled": false})),
        ];
        let names =
            |server: &Server| applicable(&rules, server).iter().map(|r| r.rule.name.clone()).collect::<Vec<_>>();
        assert_eq!(names(&server), ["cpu all", "cpu all too", "mem all"]);
        let db = Server { tags: vec!["db".into()], ..server.clone() };
        assert_eq!(names(&db), ["cpu all", "cpu all too", "mem db"]);
        let seven = Server { id: 7, ..db };
        assert_eq!(names(&seven), ["cpu all", "cpu all too", "mem 7"]);
    }
}
