//! Metrics reports: both dialects decoded into one [`Report`], singly or in batches.
//!
//! Dialect A puts flat numbers under `metrics` and services in a top-level array.
//! Dialect B nests psutil-shaped objects under `metrics` and keys services by unit name
//! inside it. Either way the hub gets the same flat figures; the whole document is kept
//! as [`Report::document`] so nothing the hub does not understand is lost.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::body_text::BodyText;
use crate::fields::{Errors, Object, Percent, ValidationError, join, kind};
use crate::service::ServiceStatus;
use crate::time::{MAX_FUTURE_SKEW_MS, UnixMillis, parse_timestamp};

/// Most reports one batch may carry; a spool replays in chunks well below this.
pub const MAX_BATCH_REPORTS: usize = 5_000;
/// Most services one report may carry.
pub const MAX_SERVICES: usize = 1_000;

/// Which agent family produced a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// Flat metrics, services beside them (documented / single-file agent, and serverpulse-agent).
    Flat,
    /// Nested psutil-shaped metrics (modular agent).
    Nested,
}

/// The flat figures every dialect maps onto.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FlatMetrics {
    pub cpu_usage: Option<Percent>,
    pub memory_usage: Option<Percent>,
    pub disk_usage: Option<Percent>,
    /// Seconds since boot.
    pub uptime: Option<u64>,
    /// One-minute load average (never negative).
    pub load_average: Option<f64>,
    /// Cumulative bytes received since boot, summed over non-loopback interfaces.
    pub network_rx: Option<u64>,
    pub network_tx: Option<u64>,
    /// Cumulative bytes read from / written to block devices since boot.
    pub disk_io_read: Option<u64>,
    pub disk_io_write: Option<u64>,
    /// Milliseconds (never negative).
    pub response_time: Option<f64>,
}

/// One service's state in a report.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceReport {
    pub name: String,
    pub status: ServiceStatus,
    pub sub_state: Option<String>,
    /// Everything else the agent said about the unit.
    pub details: Value,
}

/// A validated metrics report.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// Monotonic per agent; absent for old agents (then every report is stored).
    pub seq: Option<u64>,
    /// The agent's clock.
    pub timestamp: UnixMillis,
    pub dialect: Dialect,
    pub metrics: FlatMetrics,
    pub services: Vec<ServiceReport>,
    /// What the document holds beyond the flat metrics that alert rules watch.
    pub detail: DetailFigures,
    /// The document as received.
    pub document: Document,
}

/// A report's whole document, in the form the hub has it in: stored as the agent sent
/// it where the hub still has that, rather than serialised again.
#[derive(Debug, Clone, PartialEq)]
pub enum Document {
    /// Parsed: the hub has no text of it (a batch whose text did not split into its
    /// reports), or it was decoded from a document in memory.
    Parsed(Value),
    /// The JSON text the agent wrote.
    Text(String),
    /// The gzip-compressed request body that carried this report alone, as the agent
    /// sent it (and smaller than its text); inflated, [`report_of_body`] takes the
    /// report out of it.
    GzipBody(Vec<u8>),
}

impl Document {
    /// The parsed document, where it is held parsed.
    pub fn parsed(&self) -> Option<&Value> {
        match self {
            Self::Parsed(value) => Some(value),
            Self::Text(_) | Self::GzipBody(_) => None,
        }
    }
}

/// The figures of `metrics.detail` (serverpulse-agent) and of `metrics.custom` or
/// `metrics.detail.custom` a report carries, read leniently: what is not a finite number
/// where one is expected is left out, never refused.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DetailFigures {
    /// Each filesystem's mount point and percentage used.
    pub mounts: Vec<(String, f64)>,
    pub swap_percent: Option<f64>,
    pub cores: Option<u32>,
    /// Custom metrics by name.
    pub custom: BTreeMap<String, f64>,
}

impl DetailFigures {
    fn of(document: &Value) -> Self {
        let detail = &document["metrics"]["detail"];
        let number = |v: &Value| v.as_f64().filter(|n| n.is_finite());
        let mounts = detail["filesystems"]
            .as_array()
            .map(|list| {
                list.iter().filter_map(|fs| Some((fs["mount"].as_str()?.to_owned(), number(&fs["percent"])?))).collect()
            })
            .unwrap_or_default();
        let mut custom = BTreeMap::new();
        for source in [&document["metrics"]["custom"], &detail["custom"]] {
            if let Some(map) = source.as_object() {
                custom.extend(map.iter().filter_map(|(k, v)| Some((k.clone(), number(v)?))));
            }
        }
        Self {
            mounts,
            swap_percent: number(&detail["memory"]["swap_percent"]),
            cores: detail["cpu"]["cores"].as_u64().and_then(|c| u32::try_from(c).ok()),
            custom,
        }
    }
}

/// What one POST to the metrics endpoint carried.
#[derive(Debug, Clone, PartialEq)]
pub enum MetricsBody {
    Single(Box<Report>),
    /// `{"reports":[…]}`; `bare`: the body holds nothing beside `reports`.
    Batch {
        reports: Vec<Report>,
        bare: bool,
    },
}

impl MetricsBody {
    pub fn into_reports(self) -> Vec<Report> {
        match self {
            Self::Single(report) => vec![*report],
            Self::Batch { reports, .. } => reports,
        }
    }

    /// The reports, each holding its document as the agent sent it ([`Document::Text`],
    /// or [`Document::GzipBody`] for a body that carries one report, was gzip-encoded and
    /// is smaller so), given `body`, the text this was decoded from: the agent's own
    /// words are stored, not a serialisation of the parsed tree. Where `body` does not
    /// split into as many reports (it is not this body's text), they keep their parsed
    /// documents.
    pub fn into_reports_with_text(self, body: BodyText) -> Vec<Report> {
        let (mut reports, bare) = match self {
            Self::Single(mut report) => {
                let whole = 0..body.as_str().len();
                report.document = lone_document(body, whole);
                return vec![*report];
            }
            Self::Batch { reports, bare } => (reports, bare),
        };
        // As the agent writes a batch of one, its report is all between the brackets:
        // the body holds nothing else and names no member twice, so they are the
        // array's.
        if bare
            && !body.repeated_member()
            && let [report] = reports.as_mut_slice()
            && let Some(span) = lone_report(body.as_str())
        {
            report.document = lone_document(body, span);
            return reports;
        }
        /// A batch body, each report's text borrowed from it as it stands.
        #[derive(serde::Deserialize)]
        struct Texts<'a> {
            #[serde(borrow)]
            reports: Vec<&'a serde_json::value::RawValue>,
        }
        // Any other batch is split by a second (non-allocating) pass over its text,
        // which refuses repeated keys.
        match serde_json::from_str::<Texts<'_>>(body.as_str()) {
            Ok(texts) if texts.reports.len() == reports.len() => reports
                .into_iter()
                .zip(texts.reports)
                .map(|(report, text)| Report { document: Document::Text(text.get().to_owned()), ..report })
                .collect(),
            _ => reports,
        }
    }
}

/// The text of the report a body carries alone, given the body's text (cut in place):
/// the whole of it, or, for a batch of one as the agent writes it (`{"reports":[…]}`),
/// what is between the array's brackets. This is how a [`Document::GzipBody`] is read
/// back.
pub fn report_of_body(body: String) -> String {
    let span = lone_report(&body).unwrap_or(0..body.len());
    cut(body, span)
}

/// `text` cut down to its `span`, in place.
fn cut(mut text: String, span: std::ops::Range<usize>) -> String {
    text.truncate(span.end);
    text.replace_range(..span.start, "");
    text
}

/// The document of the one report `body` carries, whose text is `span` of it: the gzip
/// body the agent sent where that is smaller than the text (a deflate stream of JSON
/// is, unless it was stored uncompressed), else the text, cut out of the body's in place.
fn lone_document(body: BodyText, span: std::ops::Range<usize>) -> Document {
    let (text, gzip) = body.into_parts();
    match gzip {
        Some(gzip) if gzip.len() < span.len() => Document::GzipBody(gzip),
        _ => Document::Text(cut(text, span)),
    }
}

/// Where the one report of `{"reports":[…]}`, as the agent writes it, lies in `text`:
/// between the array's brackets, when the body starts and ends with them.
fn lone_report(text: &str) -> Option<std::ops::Range<usize>> {
    let inner = text.trim().strip_prefix(r#"{"reports":["#)?.strip_suffix("]}")?.trim();
    let start = inner.as_ptr() as usize - text.as_ptr() as usize;
    Some(start..start + inner.len())
}

/// Decodes the body of `POST /agents/{id}/metrics`; `now` bounds future timestamps.
/// Each report keeps its part of `body` as its [`Document::Parsed`] (moved, not copied).
pub fn decode_metrics_body(body: Value, now: UnixMillis) -> Result<MetricsBody, ValidationError> {
    let mut errors = Errors::default();
    let Some(root) = Object::root(&body, &mut errors) else {
        return errors.finish(MetricsBody::Batch { reports: Vec::new(), bare: false });
    };
    let Some(reports) = root.get("reports") else {
        let report = decode_fields(&body, "", now)?;
        return Ok(MetricsBody::Single(Box::new(Report { document: Document::Parsed(body), ..report })));
    };
    let Value::Array(items) = reports else {
        errors.add("reports", format!("must be an array, got {}", kind(reports)));
        return errors.finish(MetricsBody::Batch { reports: Vec::new(), bare: false });
    };
    if items.is_empty() {
        errors.add("reports", "must hold at least one report");
    } else if items.len() > MAX_BATCH_REPORTS {
        errors.add("reports", format!("must hold at most {MAX_BATCH_REPORTS} reports"));
    }
    let mut decoded = Vec::with_capacity(items.len().min(MAX_BATCH_REPORTS));
    if errors.is_empty() {
        for (index, item) in items.iter().enumerate() {
            match decode_fields(item, &format!("reports[{index}]"), now) {
                Ok(report) => decoded.push(report),
                Err(problem) => errors.absorb(problem),
            }
        }
    }
    let mut decoded = errors.finish(decoded)?;
    let mut bare = false;
    if let Value::Object(mut root) = body
        && let Some(Value::Array(items)) = root.remove("reports")
    {
        bare = root.is_empty();
        for (report, item) in decoded.iter_mut().zip(items) {
            report.document = Document::Parsed(item);
        }
    }
    Ok(MetricsBody::Batch { reports: decoded, bare })
}

/// Decodes one report found at `path` (empty for the document root), keeping a copy of
/// it as its [`Document::Parsed`].
pub fn decode_report(value: &Value, path: &str, now: UnixMillis) -> Result<Report, ValidationError> {
    decode_fields(value, path, now).map(|report| Report { document: Document::Parsed(value.clone()), ..report })
}

/// Decodes one report's fields, without its document (parsed as `null`).
fn decode_fields(value: &Value, path: &str, now: UnixMillis) -> Result<Report, ValidationError> {
    let mut errors = Errors::default();
    let Some(doc) = Object::at(path.to_owned(), value, &mut errors) else {
        return Err(errors.into_error());
    };

    let seq = seq_of(&doc, &mut errors);
    let timestamp = timestamp_of(&doc, now, &mut errors);

    let mut dialect = Dialect::Flat;
    let mut metrics = FlatMetrics::default();
    let mut services = Vec::new();
    match doc.object("metrics", &mut errors) {
        None if !doc.has("metrics") => errors.add(doc.child("metrics"), "is required"),
        None => {}
        Some(m) => {
            if !m.has("cpu_usage") && m.get("cpu").is_some_and(Value::is_object) {
                dialect = Dialect::Nested;
                metrics = nested_metrics(&m, &mut errors);
                if let Some(units) = m.get("services") {
                    services = nested_services(units, &m.child("services"), &mut errors);
                }
            } else {
                metrics = flat_metrics(&m, &mut errors);
            }
        }
    }
    if let Some(list) = doc.get("services") {
        services.extend(flat_services(list, &doc.child("services"), &mut errors));
    }
    if services.len() > MAX_SERVICES {
        errors.add(doc.child("services"), format!("must hold at most {MAX_SERVICES} services"));
    }

    let timestamp = timestamp.unwrap_or(now);
    let detail = DetailFigures::of(value);
    errors.finish(Report {
        seq,
        timestamp,
        dialect,
        metrics,
        services,
        detail,
        document: Document::Parsed(Value::Null),
    })
}

fn seq_of(doc: &Object<'_>, errors: &mut Errors) -> Option<u64> {
    let value = doc.get("seq")?;
    match value.as_u64() {
        Some(seq) if seq <= i64::MAX as u64 => Some(seq),
        _ => {
            errors.add(doc.child("seq"), "must be a non-negative integer");
            None
        }
    }
}

fn timestamp_of(doc: &Object<'_>, now: UnixMillis, errors: &mut Errors) -> Option<UnixMillis> {
    let path = doc.child("timestamp");
    let Some(value) = doc.get("timestamp") else {
        errors.add(path, "is required");
        return None;
    };
    let Some(text) = value.as_str() else {
        errors.add(path, format!("must be a string, got {}", kind(value)));
        return None;
    };
    match parse_timestamp(text) {
        Ok(t) if t > now + MAX_FUTURE_SKEW_MS => {
            errors.add(path, "is more than 10 minutes in the future");
            None
        }
        Ok(t) => Some(t),
        Err(why) => {
            errors.add(path, why);
            None
        }
    }
}

fn flat_metrics(m: &Object<'_>, errors: &mut Errors) -> FlatMetrics {
    for required in ["cpu_usage", "memory_usage", "disk_usage"] {
        if !m.has(required) {
            errors.add(m.child(required), "is required");
        }
    }
    FlatMetrics {
        cpu_usage: m.percent("cpu_usage", errors),
        memory_usage: m.percent("memory_usage", errors),
        disk_usage: m.percent("disk_usage", errors),
        uptime: m.counter("uptime", errors),
        load_average: m.non_negative("load_average", errors),
        network_rx: m.counter("network_rx", errors),
        network_tx: m.counter("network_tx", errors),
        disk_io_read: m.counter("disk_io_read", errors),
        disk_io_write: m.counter("disk_io_write", errors),
        response_time: m.non_negative("response_time", errors),
    }
}

fn nested_metrics(m: &Object<'_>, errors: &mut Errors) -> FlatMetrics {
    let mut flat = FlatMetrics::default();
    if let Some(cpu) = m.object("cpu", errors) {
        if !cpu.has("usage_percent") {
            errors.add(cpu.child("usage_percent"), "is required");
        }
        flat.cpu_usage = cpu.percent("usage_percent", errors);
    }
    match m.object("memory", errors) {
        Some(memory) => match memory.object("virtual", errors) {
            Some(virt) => {
                if !virt.has("percent") {
                    errors.add(virt.child("percent"), "is required");
                }
                flat.memory_usage = virt.percent("percent", errors);
            }
            None if !memory.has("virtual") => errors.add(memory.child("virtual"), "is required"),
            None => {}
        },
        None if !m.has("memory") => errors.add(m.child("memory"), "is required"),
        None => {}
    }
    if let Some(disk) = m.object("disk", errors) {
        if let Some(usage) = disk.object("usage", errors)
            && let Some(root) = usage.object("/", errors)
        {
            flat.disk_usage = used_over_total(&root, errors);
        }
        if let Some(io) = disk.object("io", errors) {
            flat.disk_io_read = io.counter("read_bytes", errors);
            flat.disk_io_write = io.counter("write_bytes", errors);
        }
    }
    if let Some(network) = m.object("network", errors)
        && let Some(interfaces) = network.object("interfaces", errors)
    {
        let (rx, tx) = sum_non_loopback(&interfaces, errors);
        flat.network_rx = rx;
        flat.network_tx = tx;
    }
    if let Some(uptime) = m.object("uptime", errors) {
        flat.uptime = uptime.counter("seconds", errors);
    }
    if let Some(load) = m.object("load_average", errors) {
        flat.load_average = load.non_negative("1min", errors);
    }
    flat.response_time = m.non_negative("response_time", errors);
    flat
}

/// The modular agent's `percent` on a mount is percent *free*, so usage comes from
/// `used / total`.
fn used_over_total(mount: &Object<'_>, errors: &mut Errors) -> Option<Percent> {
    let used = mount.non_negative("used", errors);
    let total = mount.non_negative("total", errors);
    match (used, total) {
        (Some(used), Some(total)) if total > 0.0 => {
            let percent = Percent::new(used / total * 100.0);
            if percent.is_none() {
                errors.add(mount.child("used"), "must not exceed total");
            }
            percent
        }
        (Some(_), Some(_)) => None,
        _ => {
            for key in ["used", "total"] {
                if !mount.has(key) {
                    errors.add(mount.child(key), "is required");
                }
            }
            None
        }
    }
}

/// `lo`, `lo0`, `lo1`… are loopback; their traffic never left the host.
pub fn is_loopback_interface(name: &str) -> bool {
    name.strip_prefix("lo").is_some_and(|rest| rest.chars().all(|c| c.is_ascii_digit()))
}

fn sum_non_loopback(interfaces: &Object<'_>, errors: &mut Errors) -> (Option<u64>, Option<u64>) {
    let (mut rx, mut tx) = (None::<u64>, None::<u64>);
    for (name, value) in interfaces.map() {
        if is_loopback_interface(name) || value.is_null() {
            continue;
        }
        let Some(iface) = Object::at(interfaces.child(name), value, errors) else {
            continue;
        };
        if let Some(recv) = iface.counter("bytes_recv", errors) {
            rx = Some(rx.unwrap_or(0).saturating_add(recv));
        }
        if let Some(sent) = iface.counter("bytes_sent", errors) {
            tx = Some(tx.unwrap_or(0).saturating_add(sent));
        }
    }
    (rx, tx)
}

fn flat_services(list: &Value, path: &str, errors: &mut Errors) -> Vec<ServiceReport> {
    let Value::Array(items) = list else {
        errors.add(path, format!("must be an array, got {}", kind(list)));
        return Vec::new();
    };
    let mut services = Vec::with_capacity(items.len().min(MAX_SERVICES));
    for (index, item) in items.iter().enumerate() {
        let Some(entry) = Object::at(format!("{path}[{index}]"), item, errors) else {
            continue;
        };
        let name = entry.required_string("name", 256, errors);
        let status = entry.required_string("status", 64, errors);
        if let (Some(name), Some(status)) = (name, status) {
            services.push(ServiceReport {
                name,
                status: ServiceStatus::from_wire(&status),
                sub_state: entry.string("sub_state", 64, errors),
                details: item.clone(),
            });
        }
    }
    services
}

fn nested_services(units: &Value, path: &str, errors: &mut Errors) -> Vec<ServiceReport> {
    let Some(units) = Object::at(path.to_owned(), units, errors) else {
        return Vec::new();
    };
    let mut services = Vec::with_capacity(units.map().len().min(MAX_SERVICES));
    for (name, value) in units.map() {
        let unit_path = join(path, name);
        let Some(unit) = Object::at(unit_path.clone(), value, errors) else {
            continue;
        };
        if name.trim().is_empty() || name.chars().count() > 256 {
            errors.add(unit_path, "unit name must be 1 to 256 characters");
            continue;
        }
        let word = unit.string("status", 64, errors).or_else(|| unit.string("active_state", 64, errors));
        let Some(word) = word else {
            errors.add(unit.child("status"), "is required");
            continue;
        };
        services.push(ServiceReport {
            name: name.clone(),
            status: ServiceStatus::from_wire(&word),
            sub_state: unit.string("sub_state", 64, errors),
            details: value.clone(),
        });
    }
    services
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: UnixMillis = 1_750_537_800_000; // 2025-06-21T20:30:00Z

    #[test]
    fn documented_report_decodes() {
        let body = json!({"timestamp":"2025-06-21T20:30:00Z",
            "metrics":{"cpu_usage":45.2,"memory_usage":67.8,"disk_usage":23.4,"uptime":123456,
                "load_average":1.5,"network_rx":1024000,"network_tx":512000,
                "disk_io_read":2048000,"disk_io_write":1024000},
            "services":[{"name":"ssh","status":"active"},{"name":"mysql","status":"failed"}]});
        let MetricsBody::Single(report) = decode_metrics_body(body.clone(), NOW).unwrap() else {
            panic!("expected a single report");
        };
        assert_eq!(report.dialect, Dialect::Flat);
        assert_eq!(report.timestamp, NOW);
        assert_eq!(report.metrics.cpu_usage.map(Percent::get), Some(45.2));
        assert_eq!(report.metrics.network_tx, Some(512_000));
        assert_eq!(report.services.len(), 2);
        assert_eq!(report.services[1].status, ServiceStatus::Failed);
        assert_eq!(report.document, Document::Parsed(body), "the document is kept whole");
    }

    #[test]
    fn each_report_of_a_batch_keeps_its_own_document() {
        let items = [
            json!({"seq": 1, "timestamp":"2025-06-21T20:30:00Z","metrics":{"cpu_usage":1,"memory_usage":1,"disk_usage":1},"extra":"a"}),
            json!({"seq": 2, "timestamp":"2025-06-21T20:30:30Z","metrics":{"cpu_usage":2,"memory_usage":2,"disk_usage":2},"extra":"b"}),
        ];
        let reports = decode_metrics_body(json!({"reports": items}), NOW).unwrap().into_reports();
        assert_eq!(
            reports.iter().map(|r| r.document.parsed()).collect::<Vec<_>>(),
            items.iter().map(Some).collect::<Vec<_>>()
        );
    }

    #[test]
    fn each_report_keeps_the_text_it_came_in() {
        let with_text = |text: &str| {
            let (body, text) = BodyText::parse(text.to_owned()).unwrap();
            decode_metrics_body(body, NOW).unwrap().into_reports_with_text(text)
        };
        let text_of = |report: &Report| match &report.document {
            Document::Text(text) => Some(text.clone()),
            _ => None,
        };
        let text = r#"{ "reports": [ {"seq": 1, "timestamp":"2025-06-21T20:30:00Z", "metrics":{"cpu_usage":1.50,"memory_usage":1,"disk_usage":1},"extra":"a\u00e9"},
            {"seq": 2,"timestamp":"2025-06-21T20:30:30Z","metrics":{"cpu_usage":2,"memory_usage":2,"disk_usage":2}} ] }"#;
        let body: Value = serde_json::from_str(text).unwrap();
        let reports = with_text(text);
        let texts: Vec<String> = reports.iter().filter_map(text_of).collect();
        assert_eq!(texts.len(), 2);
        assert!(texts[0].starts_with(r#"{"seq": 1, "#) && texts[0].ends_with(r#""extra":"a\u00e9"}"#), "{}", texts[0]);
        assert!(texts[1].starts_with(r#"{"seq": 2,"#) && texts[1].ends_with("}}"), "{}", texts[1]);
        for (text, document) in texts.iter().zip(body["reports"].as_array().unwrap()) {
            assert_eq!(&serde_json::from_str::<Value>(text).unwrap(), document);
        }
        assert!(reports.iter().all(|r| r.document.parsed().is_none()), "the parsed documents are dropped");
        assert_eq!(reports[0].metrics.cpu_usage.map(Percent::get), Some(1.5));

        // One report: the whole text is its document.
        let single =
            r#"{"timestamp":"2025-06-21T20:30:00Z","metrics":{"cpu_usage":1,"memory_usage":1,"disk_usage":1}}"#;
        assert_eq!(text_of(&with_text(single)[0]).as_deref(), Some(single));

        // A batch of one, as the agent writes it, and the same with more around it.
        let report = r#"{"seq":3,"timestamp":"2025-06-21T20:30:00Z","metrics":{"cpu_usage":1,"memory_usage":1,"disk_usage":1},"tags":["]}","\"]}{\\"]}"#;
        for text in [
            format!(r#"{{"reports":[{report}]}}"#),
            format!(" {{\"reports\":[ {report}\n]}}\n"),
            format!(r#"{{"reports": [{report}] }}"#),
            format!(r#"{{"reports":[{report}],"note":[1]}}"#),
            format!(r#"{{"note":[1],"reports":[{report}]}}"#),
        ] {
            assert_eq!(text_of(&with_text(&text)[0]).as_deref(), Some(report), "{text}");
        }

        // A repeated key: the parsed body holds the last report, and so does what is
        // stored, though the agent's form of the body begins as it does.
        let other = report.replace(r#""seq":3"#, r#""seq":4"#);
        for text in [
            format!(r#"{{"reports":[{report}],"reports":[{other}]}}"#),
            format!(r#"{{"reports":[{report}],"report\u0073":[{other}]}}"#),
        ] {
            let reports = with_text(&text);
            assert_eq!(reports[0].seq, Some(4), "{text}");
            let stored = match &reports[0].document {
                Document::Text(text) => serde_json::from_str::<Value>(text).unwrap(),
                Document::Parsed(document) => document.clone(),
                Document::GzipBody(_) => panic!("the body was not compressed"),
            };
            assert_eq!(stored["seq"], json!(4), "{text}");
        }

        // A text that is not the body: the parsed documents stay.
        let (_, not_the_body) = BodyText::parse("{}".to_owned()).unwrap();
        let reports = decode_metrics_body(body.clone(), NOW).unwrap().into_reports_with_text(not_the_body);
        assert!(reports.iter().all(|r| r.document.parsed().is_some_and(Value::is_object)));
    }

    #[test]
    fn a_compressed_body_carrying_one_report_is_kept_as_sent_when_smaller() {
        use std::io::{Read, Write};
        let gzip = |text: &str, level: u32| {
            let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(level));
            encoder.write_all(text.as_bytes()).unwrap();
            encoder.finish().unwrap()
        };
        let read_back = |body: &[u8]| {
            let mut text = String::new();
            flate2::read::GzDecoder::new(body).read_to_string(&mut text).unwrap();
            report_of_body(text)
        };
        let sent = |text: &str, compressed: Vec<u8>| {
            let (body, parsed) = BodyText::parse(text.to_owned()).unwrap();
            decode_metrics_body(body, NOW).unwrap().into_reports_with_text(parsed.sent_as_gzip(compressed))
        };
        let report = format!(
            r#"{{"seq":3,"timestamp":"2025-06-21T20:30:00Z","metrics":{{"cpu_usage":1,"memory_usage":1,"disk_usage":1}},"pad":"{}"}}"#,
            "ab".repeat(200)
        );
        for text in
            [format!(r#"{{"reports":[{report}]}}"#), format!(" {{\"reports\":[ {report}\n]}}\n"), report.clone()]
        {
            let compressed = gzip(&text, 6);
            let reports = sent(&text, compressed.clone());
            assert_eq!(reports[0].document, Document::GzipBody(compressed.clone()), "{text}");
            assert_eq!(read_back(&compressed), report, "{text}");
            // Stored uncompressed, the stream is larger than the text: the text is kept.
            let reports = sent(&text, gzip(&text, 0));
            assert_eq!(reports[0].document, Document::Text(report.clone()), "{text}");
        }
        // A batch of two, or of one with more beside it, is split as text.
        let text = format!(r#"{{"reports":[{report}],"note":1}}"#);
        assert_eq!(sent(&text, gzip(&text, 6))[0].document, Document::Text(report.clone()));
        let text = format!(r#"{{"reports":[{report},{report}]}}"#);
        assert!(sent(&text, gzip(&text, 6)).iter().all(|r| r.document == Document::Text(report.clone())));
    }

    #[test]
    fn nested_report_maps_onto_flat_fields() {
        let body = json!({"timestamp":"2025-06-21T20:30:00.123456","metrics":{
            "cpu":{"usage_percent":12.5,"usage_per_core":[10.0,15.0]},
            "memory":{"virtual":{"total":1000,"available":400,"used":600,"free":400,"percent":60.0}},
            "disk":{"usage":{"/":{"device":"/dev/sda1","fstype":"ext4","total":200,"used":50,"free":150,"percent":75.0}},
                    "io":{"read_bytes":10,"write_bytes":20}},
            "network":{"interfaces":{"lo":{"bytes_sent":999,"bytes_recv":999},
                                      "eth0":{"bytes_sent":100,"bytes_recv":200},
                                      "eth1":{"bytes_sent":1,"bytes_recv":2}}},
            "uptime":{"seconds":3600,"boot_time":0,"uptime_string":"1:00:00"},
            "load_average":{"1min":0.5,"5min":0.4,"15min":0.3},
            "services":{"nginx":{"status":"active","active_state":"active","sub_state":"running"}}}});
        let report = decode_report(&body, "", NOW).unwrap();
        assert_eq!(report.dialect, Dialect::Nested);
        assert_eq!(report.metrics.disk_usage.map(Percent::get), Some(25.0));
        assert_eq!(report.metrics.memory_usage.map(Percent::get), Some(60.0));
        assert_eq!(report.metrics.network_rx, Some(202));
        assert_eq!(report.metrics.network_tx, Some(101));
        assert_eq!(report.metrics.load_average, Some(0.5));
        assert_eq!(report.services[0].sub_state.as_deref(), Some("running"));
    }

    #[test]
    fn every_problem_is_named_by_path() {
        let body = json!({"reports":[
            {"timestamp":"2025-06-21T20:30:00Z","metrics":{"cpu_usage":45,"memory_usage":50,"disk_usage":1}},
            {"timestamp":"2025-06-21T20:30:00Z","metrics":{"cpu_usage":145,"memory_usage":-1}}]});
        let err = decode_metrics_body(body.clone(), NOW).unwrap_err();
        let paths: Vec<_> = err.details().keys().cloned().collect();
        assert_eq!(
            paths,
            ["reports[1].metrics.cpu_usage", "reports[1].metrics.disk_usage", "reports[1].metrics.memory_usage"]
        );
    }

    #[test]
    fn loopback_names() {
        assert!(is_loopback_interface("lo"));
        assert!(is_loopback_interface("lo0"));
        assert!(!is_loopback_interface("lowpan0"));
        assert!(!is_loopback_interface("eth0"));
    }
}
