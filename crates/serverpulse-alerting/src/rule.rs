//! What an alert rule says, and how a rule sent by an administrator is checked.
//!
//! A rule names a metric (`cpu`, `disk:/var`, `service:nginx*`, `agent_offline`, …), an
//! operator and a warning and/or critical threshold, how long the condition must hold
//! (`for`), the threshold that ends an episode (`recovery`, for hysteresis), how long a
//! recovered condition keeps the alert firing (`keep_firing_for`), and which servers it
//! applies to. Among the enabled rules on the same metric that apply to a server, the
//! most specific ones win (named servers, then tags, then all; equally specific rules
//! all apply): that is how a default is overridden per server or per group.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use serverpulse_proto::ValidationError;
use serverpulse_proto::fields::{Errors, Object, kind};

/// How bad a firing rule is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Level {
    Warning,
    Critical,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Warning => "warning",
            Self::Critical => "critical",
        }
    }
}

/// Comparison of a value with a threshold: the condition holds when `value op threshold`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Op {
    #[serde(rename = ">")]
    Above,
    #[serde(rename = ">=")]
    AtLeast,
    #[serde(rename = "<")]
    Below,
    #[serde(rename = "<=")]
    AtMost,
}

impl Op {
    pub fn holds(self, value: f64, threshold: f64) -> bool {
        match self {
            Self::Above => value > threshold,
            Self::AtLeast => value >= threshold,
            Self::Below => value < threshold,
            Self::AtMost => value <= threshold,
        }
    }

    /// Whether `a` is a stricter threshold than `b` (critical must be at least as strict as warning).
    fn stricter_or_equal(self, a: f64, b: f64) -> bool {
        match self {
            Self::Above | Self::AtLeast => a >= b,
            Self::Below | Self::AtMost => a <= b,
        }
    }

    fn parse(text: &str) -> Option<Self> {
        Some(match text {
            ">" => Self::Above,
            ">=" => Self::AtLeast,
            "<" => Self::Below,
            "<=" => Self::AtMost,
            _ => return None,
        })
    }
}

/// What a rule watches. Written as a string in rules: `cpu`, `memory`, `swap`, `disk`
/// (the root filesystem), `disk:/var` (one mount), `disk:*` (every mount), `load`,
/// `load_per_core`, `network_rx_rate`, `network_tx_rate`, `disk_read_rate`,
/// `disk_write_rate` (bytes/s, over non-loopback interfaces / physical disks), `custom:<name>`,
/// `service:<unit glob>` (1 while failed), `agent_offline` (1 while disconnected),
/// `no_data` (seconds since the last report), `reboot` (1 on the report after a reboot).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Metric {
    Cpu,
    Memory,
    Swap,
    Disk(MountSelector),
    Load,
    LoadPerCore,
    NetworkRxRate,
    NetworkTxRate,
    DiskReadRate,
    DiskWriteRate,
    Custom(String),
    Service(String),
    AgentOffline,
    NoData,
    Reboot,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum MountSelector {
    Root,
    Mount(String),
    Every,
}

impl Metric {
    pub fn parse(text: &str) -> Result<Self, String> {
        let (head, arg) = match text.split_once(':') {
            Some((head, arg)) => (head, Some(arg)),
            None => (text, None),
        };
        let needs_arg = |what: &str| match arg {
            Some(a) if !a.is_empty() && a.len() <= 256 => Ok(a.to_owned()),
            _ => Err(format!("{head} needs {what} after a colon, e.g. {head}:{}", example(head))),
        };
        Ok(match (head, arg) {
            ("cpu", None) => Self::Cpu,
            ("memory", None) => Self::Memory,
            ("swap", None) => Self::Swap,
            ("disk", None) => Self::Disk(MountSelector::Root),
            ("disk", Some("*")) => Self::Disk(MountSelector::Every),
            ("disk", Some(m)) if m.starts_with('/') => Self::Disk(MountSelector::Mount(m.to_owned())),
            ("disk", Some(_)) => return Err("disk takes a mount point (disk:/var) or * (every mount)".to_owned()),
            ("load", None) => Self::Load,
            ("load_per_core", None) => Self::LoadPerCore,
            ("network_rx_rate", None) => Self::NetworkRxRate,
            ("network_tx_rate", None) => Self::NetworkTxRate,
            ("disk_read_rate", None) => Self::DiskReadRate,
            ("disk_write_rate", None) => Self::DiskWriteRate,
            ("custom", _) => Self::Custom(needs_arg("a metric name")?),
            ("service", _) => Self::Service(needs_arg("a unit name or glob")?),
            ("agent_offline", None) => Self::AgentOffline,
            ("no_data", None) => Self::NoData,
            ("reboot", None) => Self::Reboot,
            _ => {
                return Err(format!(
                    "unknown metric {text:?} (cpu, memory, swap, disk[:/mount|:*], load, load_per_core, \
                     network_rx_rate, network_tx_rate, disk_read_rate, disk_write_rate, custom:<name>, \
                     service:<unit glob>, agent_offline, no_data, reboot)"
                ));
            }
        })
    }

    pub fn name(&self) -> String {
        match self {
            Self::Cpu => "cpu".into(),
            Self::Memory => "memory".into(),
            Self::Swap => "swap".into(),
            Self::Disk(MountSelector::Root) => "disk".into(),
            Self::Disk(MountSelector::Mount(m)) => format!("disk:{m}"),
            Self::Disk(MountSelector::Every) => "disk:*".into(),
            Self::Load => "load".into(),
            Self::LoadPerCore => "load_per_core".into(),
            Self::NetworkRxRate => "network_rx_rate".into(),
            Self::NetworkTxRate => "network_tx_rate".into(),
            Self::DiskReadRate => "disk_read_rate".into(),
            Self::DiskWriteRate => "disk_write_rate".into(),
            Self::Custom(name) => format!("custom:{name}"),
            Self::Service(glob) => format!("service:{glob}"),
            Self::AgentOffline => "agent_offline".into(),
            Self::NoData => "no_data".into(),
            Self::Reboot => "reboot".into(),
        }
    }

    /// Metrics whose value is 1 or 0 (a state, not a measure).
    pub fn is_state(&self) -> bool {
        matches!(self, Self::Service(_) | Self::AgentOffline | Self::Reboot)
    }

    /// Metrics evaluated on a timer (they change without a report arriving).
    pub fn is_absence(&self) -> bool {
        matches!(self, Self::AgentOffline | Self::NoData)
    }

    /// The unit values are in, for messages.
    pub fn unit(&self) -> &'static str {
        match self {
            Self::Cpu | Self::Memory | Self::Swap | Self::Disk(_) => "%",
            Self::NetworkRxRate | Self::NetworkTxRate | Self::DiskReadRate | Self::DiskWriteRate => " B/s",
            Self::NoData => " s",
            _ => "",
        }
    }
}

fn example(head: &str) -> &'static str {
    if head == "service" { "nginx" } else { "queue_depth" }
}

impl Serialize for Metric {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.name())
    }
}

impl<'de> Deserialize<'de> for Metric {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Metric::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// Which servers a rule applies to; both empty means every server.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Scope {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub servers: Vec<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
}

impl Scope {
    /// How specifically this scope names `server` (higher wins), or `None` if it does not apply.
    pub fn specificity(&self, server: i64, tags: &[String]) -> Option<u8> {
        if self.servers.contains(&server) {
            Some(3)
        } else if self.tags.iter().any(|t| tags.contains(t)) {
            Some(2)
        } else if self.servers.is_empty() && self.tags.is_empty() {
            Some(1)
        } else {
            None
        }
    }
}

/// An alert rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Rule {
    pub name: String,
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "cpu"))]
    pub metric: Metric,
    pub op: Op,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warning: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub critical: Option<f64>,
    /// Seconds the condition must hold before the alert fires.
    #[serde(rename = "for", default)]
    pub for_seconds: u32,
    /// The episode ends only once the value is back past this threshold (hysteresis);
    /// without it, when no threshold holds any more.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery: Option<f64>,
    /// Seconds a recovered condition keeps the alert firing (flapping protection).
    #[serde(default)]
    pub keep_firing_for: u32,
    #[serde(default)]
    pub scope: Scope,
    #[serde(default = "yes")]
    pub enabled: bool,
}

fn yes() -> bool {
    true
}

impl Rule {
    /// The level the thresholds give `value`, if any.
    pub fn level(&self, value: f64) -> Option<Level> {
        if self.critical.is_some_and(|t| self.op.holds(value, t)) {
            Some(Level::Critical)
        } else if self.warning.is_some_and(|t| self.op.holds(value, t)) {
            Some(Level::Warning)
        } else {
            None
        }
    }

    /// Whether `value` ends an episode: past the recovery threshold when there is one,
    /// otherwise no threshold holding.
    pub fn recovered(&self, value: f64) -> bool {
        match self.recovery {
            Some(recovery) => !self.op.holds(value, recovery) && value != recovery,
            None => self.level(value).is_none(),
        }
    }

    /// The threshold of `level`.
    pub fn threshold(&self, level: Level) -> Option<f64> {
        match level {
            Level::Warning => self.warning,
            Level::Critical => self.critical,
        }
    }
}

const MAX_SECONDS: f64 = 30.0 * 86_400.0;
const FIELDS: &[&str] =
    &["name", "metric", "op", "warning", "critical", "for", "recovery", "keep_firing_for", "scope", "enabled"];

/// Checks a rule sent by an administrator; every problem is named by its field. State
/// metrics (`service:…`, `agent_offline`, `reboot`) need no thresholds: they fire as
/// critical while the state holds unless a `warning` of 1 says otherwise.
pub fn decode_rule(value: &Value) -> Result<Rule, ValidationError> {
    let mut errors = Errors::default();
    let Some(doc) = Object::root(value, &mut errors) else { return Err(errors.into_error()) };
    for key in doc.map().keys().filter(|k| !FIELDS.contains(&k.as_str())) {
        errors.add(key.clone(), format!("is not a rule field (known: {})", FIELDS.join(", ")));
    }
    let name = doc.required_string("name", 100, &mut errors);
    let metric = doc.required_string("metric", 300, &mut errors).and_then(|m| match Metric::parse(&m) {
        Ok(metric) => Some(metric),
        Err(why) => {
            errors.add("metric", why);
            None
        }
    });
    let state = metric.as_ref().is_some_and(Metric::is_state);
    let op = match doc.string("op", 2, &mut errors) {
        Some(text) => Op::parse(&text).or_else(|| {
            errors.add("op", "must be one of >, >=, <, <=");
            None
        }),
        None if state => Some(Op::AtLeast),
        None => {
            if !doc.has("op") {
                errors.add("op", "is required (>, >=, <, <=)");
            }
            None
        }
    };
    let mut warning = doc.number("warning", &mut errors);
    let mut critical = doc.number("critical", &mut errors);
    if state && warning.is_none() && critical.is_none() {
        critical = Some(1.0);
    }
    if !state && warning.is_none() && critical.is_none() && metric.is_some() {
        errors.add("critical", "a rule needs a warning or a critical threshold (or both)");
    }
    if let (Some(op), Some(w), Some(c)) = (op, warning, critical)
        && !op.stricter_or_equal(c, w)
    {
        errors.add("critical", format!("must be at least as strict as warning ({w}) for {op:?}"));
        warning = None;
    }
    let recovery = doc.number("recovery", &mut errors);
    if let (Some(op), Some(r)) = (op, recovery) {
        let least = match (warning, critical) {
            (Some(w), _) => Some(w),
            (None, c) => c,
        };
        if let Some(t) = least
            && op.stricter_or_equal(r, t)
            && r != t
        {
            errors.add("recovery", format!("must not be past the threshold it recovers from ({t})"));
        }
    }
    let seconds = |key: &str, errors: &mut Errors| -> u32 {
        match doc.number(key, errors) {
            Some(n) if n.fract() == 0.0 && (0.0..=MAX_SECONDS).contains(&n) => n as u32,
            Some(_) => {
                errors.add(key, "must be a whole number of seconds from 0 to 30 days");
                0
            }
            None => 0,
        }
    };
    let for_seconds = seconds("for", &mut errors);
    let keep_firing_for = seconds("keep_firing_for", &mut errors);
    let scope = match doc.get("scope") {
        None => Scope::default(),
        Some(v) => decode_scope(v, &mut errors),
    };
    let enabled = match doc.get("enabled") {
        None => true,
        Some(Value::Bool(b)) => *b,
        Some(other) => {
            errors.add("enabled", format!("must be true or false, got {}", kind(other)));
            true
        }
    };
    match (name, metric, op) {
        (Some(name), Some(metric), Some(op)) if errors.is_empty() => {
            Ok(Rule { name, metric, op, warning, critical, for_seconds, recovery, keep_firing_for, scope, enabled })
        }
        _ => Err(errors.into_error()),
    }
}

fn decode_scope(value: &Value, errors: &mut Errors) -> Scope {
    let Some(scope) = Object::at("scope".to_owned(), value, errors) else { return Scope::default() };
    for key in scope.map().keys().filter(|k| !["servers", "tags"].contains(&k.as_str())) {
        errors.add(scope.child(key), "is not a scope field (servers, tags)");
    }
    let (servers, tags) = servers_and_tags(&scope, errors);
    Scope { servers, tags }
}

/// The `servers` (ids) and `tags` members of an object, as scopes, routes and silences
/// name what they apply to.
pub(crate) fn servers_and_tags(object: &Object<'_>, errors: &mut Errors) -> (Vec<i64>, Vec<String>) {
    let list = |key: &str, errors: &mut Errors| match object.get(key) {
        None => Vec::new(),
        Some(Value::Array(items)) => items.clone(),
        Some(other) => {
            errors.add(object.child(key), format!("must be an array, got {}", kind(other)));
            Vec::new()
        }
    };
    let servers = list("servers", errors)
        .iter()
        .enumerate()
        .filter_map(|(i, v)| {
            let id = v.as_i64().filter(|id| *id > 0);
            if id.is_none() {
                errors.add(format!("{}[{i}]", object.child("servers")), "must be a server id");
            }
            id
        })
        .collect();
    let tags = list("tags", errors)
        .iter()
        .enumerate()
        .filter_map(|(i, v)| {
            let tag = v.as_str().map(str::trim).filter(|t| !t.is_empty() && t.len() <= 64).map(str::to_owned);
            if tag.is_none() {
                errors.add(format!("{}[{i}]", object.child("tags")), "must be a tag (1 to 64 characters)");
            }
            tag
        })
        .collect();
    (servers, tags)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn metrics_round_trip_through_their_names() {
        for name in [
            "cpu",
            "memory",
            "swap",
            "disk",
            "disk:/var",
            "disk:*",
            "load",
            "load_per_core",
            "network_rx_rate",
            "disk_write_rate",
            "custom:queue_depth",
            "service:php*-fpm",
            "agent_offline",
            "no_data",
            "reboot",
        ] {
            assert_eq!(Metric::parse(name).unwrap().name(), name);
        }
        assert!(Metric::parse("disk:var").is_err());
        assert!(Metric::parse("service:").is_err());
        assert!(Metric::parse("cpu:1").is_err());
    }

    #[test]
    fn rules_are_checked_field_by_field() {
        let rule = decode_rule(&json!({"name": "CPU", "metric": "cpu", "op": ">", "warning": 80, "critical": 95,
                                       "for": 300, "recovery": 75}))
        .unwrap();
        assert_eq!(
            (rule.level(85.0), rule.level(96.0), rule.level(50.0)),
            (Some(Level::Warning), Some(Level::Critical), None)
        );
        assert!(!rule.recovered(78.0) && rule.recovered(74.0));
        let service = decode_rule(&json!({"name": "units", "metric": "service:*"})).unwrap();
        assert_eq!((service.op, service.critical), (Op::AtLeast, Some(1.0)));

        let error = decode_rule(&json!({"name": "", "metric": "cpux", "op": "!=", "for": -1, "colour": 1,
                                        "scope": {"servers": ["a"]}}))
        .unwrap_err();
        let paths: Vec<&str> = error.details().keys().map(String::as_str).collect();
        assert_eq!(paths, ["colour", "for", "metric", "name", "op", "scope.servers[0]"]);
        let inverted = decode_rule(&json!({"name": "x", "metric": "cpu", "op": ">", "warning": 90, "critical": 80}));
        assert!(inverted.unwrap_err().details().contains_key("critical"));
        let wrong_side = decode_rule(&json!({"name": "x", "metric": "cpu", "op": ">", "warning": 80, "recovery": 85}));
        assert!(wrong_side.unwrap_err().details().contains_key("recovery"));
        let no_threshold = decode_rule(&json!({"name": "x", "metric": "memory", "op": ">"}));
        assert!(no_threshold.unwrap_err().details().contains_key("critical"));
    }

    #[test]
    fn the_most_specific_scope_wins() {
        let all = Scope::default();
        let tagged = Scope { servers: vec![], tags: vec!["db".into()] };
        let named = Scope { servers: vec![7], tags: vec![] };
        let tags = vec!["db".to_owned()];
        assert_eq!(all.specificity(7, &tags), Some(1));
        assert_eq!(tagged.specificity(7, &tags), Some(2));
        assert_eq!(named.specificity(7, &tags), Some(3));
        assert_eq!(named.specificity(8, &tags), None);
        assert_eq!(tagged.specificity(8, &[]), None);
    }
}
