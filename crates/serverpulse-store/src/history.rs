//! How history is shaped, whatever database keeps it: the rollup tiers and chart
//! buckets, the span of a compacted chunk, rates against neighbouring samples, the
//! newest figures of a server, and which watched units a report changes.
//!
//! Everything here is a pure function of its inputs; each backend does the reading and
//! writing around it, so the two databases cannot drift apart in what they compute.

use std::collections::HashMap;

use serde_json::{Value, json};
use serverpulse_domain::rate::counter_rates;
use serverpulse_proto::alert::Severity;
use serverpulse_proto::report::{Report, ServiceReport};

use crate::{Band, ChartBucket, Sample};

/// Bucket widths of the rollup tiers in ms, finest first; each divides the next.
pub const TIERS: [i64; 3] = [300_000, 3_600_000, 86_400_000];

/// The span one compacted chunk covers: a day of agent time, aligned.
pub const CHUNK_SPAN: i64 = 86_400_000;

/// What moves into chunks at a time: whole hours.
pub const COMPACTION_STEP: i64 = 3_600_000;

/// Agent alerts of one type on one server arriving within this long of the previous one
/// join its episode instead of opening another.
pub const AGENT_ALERT_WINDOW_MS: i64 = 10 * 60 * 1000;

/// Sample columns a chart draws, in `ChartMetric::ALL` order.
pub const COLUMNS: [&str; 8] = [
    "cpu_usage",
    "ram_usage",
    "disk_usage",
    "load_average",
    "network_rx_rate",
    "network_tx_rate",
    "disk_io_read_rate",
    "disk_io_write_rate",
];

/// The start of the bucket of width `width` holding `at`.
pub fn bucket_of(at: i64, width: i64) -> i64 {
    at.saturating_sub(at.rem_euclid(width)) // i64::MIN stays the open lower bound
}

/// One metric's figures merged so far in a bucket.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Summary {
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub sum: f64,
    pub n: u64,
}

impl Summary {
    pub fn merge(&mut self, min: f64, max: f64, sum: f64, n: u64) {
        self.min = Some(self.min.map_or(min, |m| m.min(min)));
        self.max = Some(self.max.map_or(max, |m| m.max(max)));
        self.sum += sum;
        self.n += n;
    }
}

/// A chart bucket being filled: per metric a [`Summary`], and the values of the newest
/// sample (or summed-up bucket) seen, by agent time.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filling {
    pub samples: u64,
    pub metrics: [Summary; 8],
    pub newest: Option<(i64, [Option<f64>; 8])>,
}

impl Filling {
    pub fn take_newest(&mut self, at: i64, last: [Option<f64>; 8]) {
        // Fed in (time, arrival) order: among equal times the later arrival is newest.
        if self.newest.is_none_or(|(seen, _)| at >= seen) {
            self.newest = Some((at, last));
        }
    }

    pub fn add_sample(&mut self, at: i64, values: [Option<f64>; 8]) {
        self.samples += 1;
        for (summary, value) in self.metrics.iter_mut().zip(values) {
            if let Some(v) = value {
                summary.merge(v, v, v, 1);
            }
        }
        self.take_newest(at, values);
    }

    /// Takes in `other`, a bucket summed up from samples no older than this one's.
    pub fn merge(&mut self, other: &Filling) {
        self.samples += other.samples;
        for (summary, taken) in self.metrics.iter_mut().zip(&other.metrics) {
            if let (Some(min), Some(max), true) = (taken.min, taken.max, taken.n > 0) {
                summary.merge(min, max, taken.sum, taken.n);
            }
        }
        if let Some((at, last)) = other.newest {
            self.take_newest(at, last);
        }
    }

    pub fn finish(self, start: i64) -> ChartBucket {
        let mut bands = [Band::default(); 8];
        for (i, (band, summary)) in bands.iter_mut().zip(self.metrics).enumerate() {
            *band = Band {
                min: summary.min,
                max: summary.max,
                avg: (summary.n > 0).then(|| summary.sum / summary.n as f64),
                last: self.newest.and_then(|(_, last)| last[i]),
            };
        }
        ChartBucket { start, samples: u32::try_from(self.samples).unwrap_or(u32::MAX), bands }
    }
}

/// A server's open 5-minute bucket summed up as samples are appended to it, kept beside
/// its row (`servers.rollup_open_summary`): what its 5-minute summary is written from
/// when it closes, instead of reading its raw samples back.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OpenSummary {
    /// The bucket's start: the summary stands only while this bucket is the open one.
    pub start: i64,
    pub filling: Filling,
}

impl OpenSummary {
    /// The layout's version, first byte of every encoding.
    const LAYOUT: u8 = 1;

    /// Little-endian: layout, start, sample count; per metric its count, then (when
    /// not 0) minimum, maximum and sum; whether a newest sample is known, its time, and
    /// per metric whether it had a value, then the value.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(1 + 16 + 8 * 32 + 9 + 8 * 9);
        out.push(Self::LAYOUT);
        out.extend(self.start.to_le_bytes());
        out.extend(self.filling.samples.to_le_bytes());
        for summary in &self.filling.metrics {
            out.extend(summary.n.to_le_bytes());
            if let (Some(min), Some(max), true) = (summary.min, summary.max, summary.n > 0) {
                for value in [min, max, summary.sum] {
                    out.extend(value.to_le_bytes());
                }
            }
        }
        match self.filling.newest {
            None => out.push(0),
            Some((at, last)) => {
                out.push(1);
                out.extend(at.to_le_bytes());
                for value in last {
                    match value {
                        None => out.push(0),
                        Some(v) => {
                            out.push(1);
                            out.extend(v.to_le_bytes());
                        }
                    }
                }
            }
        }
        out
    }

    /// Reads [`Self::to_bytes`]; `None` for anything else (a summary that cannot be
    /// read is summed up again from the raw samples).
    /// The summary `bytes` encode, if they are one of the bucket starting at `start`
    /// (a summary stands for the bucket it was summed up for alone).
    pub fn of_bucket(bytes: Option<&[u8]>, start: Option<i64>) -> Option<Self> {
        Self::from_bytes(bytes?).filter(|summary| Some(summary.start) == start)
    }

    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let mut bytes = Bytes(bytes);
        if bytes.take(1)? != [Self::LAYOUT] {
            return None;
        }
        let start = i64::from_le_bytes(bytes.word()?);
        let mut filling = Filling { samples: u64::from_le_bytes(bytes.word()?), ..Filling::default() };
        for summary in &mut filling.metrics {
            summary.n = u64::from_le_bytes(bytes.word()?);
            if summary.n > 0 {
                summary.min = Some(f64::from_le_bytes(bytes.word()?));
                summary.max = Some(f64::from_le_bytes(bytes.word()?));
                summary.sum = f64::from_le_bytes(bytes.word()?);
            }
        }
        if bytes.flag()? {
            let at = i64::from_le_bytes(bytes.word()?);
            let mut last = [None; 8];
            for value in &mut last {
                if bytes.flag()? {
                    *value = Some(f64::from_le_bytes(bytes.word()?));
                }
            }
            filling.newest = Some((at, last));
        }
        bytes.0.is_empty().then_some(Self { start, filling })
    }
}

/// What is left to read of an encoding.
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        let (head, tail) = self.0.split_at_checked(n)?;
        self.0 = tail;
        Some(head)
    }

    fn word(&mut self) -> Option<[u8; 8]> {
        self.take(8)?.try_into().ok()
    }

    fn flag(&mut self) -> Option<bool> {
        match self.take(1)? {
            [0] => Some(false),
            [1] => Some(true),
            _ => None,
        }
    }
}

/// The charted figures of a sample, in [`COLUMNS`] order.
pub fn charted(s: &Sample) -> [Option<f64>; 8] {
    [
        s.cpu_usage,
        s.memory_usage,
        s.disk_usage,
        s.load_average,
        s.network_rx_rate,
        s.network_tx_rate,
        s.disk_io_read_rate,
        s.disk_io_write_rate,
    ]
}

/// Which stored samples a chart counts, and where: by their own time, or (reading a
/// tier) by the start of their tier bucket.
#[derive(Debug, Clone, Copy)]
pub struct ChartPlan {
    pub from: i64,
    pub to: i64,
    pub step: i64,
    /// The coarsest tier whose buckets tile the chart's exactly, when `from` is aligned.
    pub tier: Option<i64>,
}

impl ChartPlan {
    pub fn new(from: i64, to: i64, step: i64) -> Self {
        let step = step.max(1);
        let tier = TIERS.iter().rev().find(|w| step % **w == 0 && from % **w == 0).copied();
        Self { from, to, step, tier }
    }

    pub fn counts(&self, at: i64) -> bool {
        let at = self.tier.map_or(at, |width| bucket_of(at, width));
        at >= self.from && at < self.to
    }

    /// Whether compacted samples are read: they have no summaries of their own, so a
    /// chart from raw rows or from the 5-minute tier takes them in.
    pub fn reads_chunks(&self) -> bool {
        self.tier.is_none_or(|width| width == TIERS[0])
    }

    /// Merges compacted samples into `buckets`, except those whose 5-minute bucket has a
    /// stored summary (`summed`, as retention leaves where it cut a chunk).
    pub fn add_chunk_samples(
        &self,
        buckets: &mut std::collections::BTreeMap<i64, Filling>,
        samples: &[Sample],
        summed: &std::collections::BTreeSet<i64>,
    ) {
        for sample in samples {
            let summarised = self.tier.is_some() && summed.contains(&bucket_of(sample.at, TIERS[0]));
            if self.counts(sample.at) && !summarised {
                buckets.entry(bucket_of(sample.at, self.step)).or_default().add_sample(sample.at, charted(sample));
            }
        }
    }
}

/// What samples newer than everything stored of a server (agent `times`, any order)
/// do to its 5-minute buckets, given the one `open` before them: the buckets they close
/// (in time order), the bucket left open, and buckets found closed already (none, while
/// `open` is the newest sample's bucket; they are to be recomputed).
///
/// With no bucket open, the buckets up to `closed_through` (the newest stored sample's)
/// are closed already: compaction or retention closed them and their samples are in the
/// coarser tiers, so a sample landing there is recomputed with them, never folded in a
/// second time.
pub fn close_buckets(
    open: Option<i64>,
    closed_through: Option<i64>,
    times: impl IntoIterator<Item = i64>,
) -> (Vec<i64>, Option<i64>, Vec<i64>) {
    let mut starts: Vec<i64> = times.into_iter().map(|t| bucket_of(t, TIERS[0])).collect();
    starts.sort_unstable();
    starts.dedup();
    let (mut closed, mut open, mut stray) = (Vec::new(), open, Vec::new());
    for start in starts {
        match open {
            Some(current) if start > current => {
                closed.push(current);
                open = Some(start);
            }
            Some(current) if start < current => stray.push(start),
            Some(_) => {}
            None if closed_through.is_some_and(|through| start <= through) => stray.push(start),
            None => open = Some(start),
        }
    }
    (closed, open, stray)
}

/// A stored sample next to a new one in agent time, with what its rates depend on.
#[derive(Debug, Clone, Copy)]
pub struct Neighbour {
    /// The backend's row id.
    pub id: i64,
    pub at: i64,
    pub uptime: Option<u64>,
    pub counters: [Option<u64>; 4],
}

/// Sample columns holding the monotonic counters, in [`Neighbour::counters`] order.
pub const COUNTER_COLUMNS: [&str; 4] = ["network_rx", "network_tx", "disk_io_read", "disk_io_write"];

impl Neighbour {
    /// The new report itself, as the neighbour of the stored ones around it.
    pub fn of_report(report: &Report) -> Self {
        let m = &report.metrics;
        Self {
            id: 0,
            at: report.timestamp,
            uptime: m.uptime,
            counters: [m.network_rx, m.network_tx, m.disk_io_read, m.disk_io_write],
        }
    }

    /// Rates of `self` relative to `previous`, one per counter.
    pub fn rates_after(&self, previous: Option<&Neighbour>) -> [Option<f64>; 4] {
        counter_rates(previous.map(|p| (p.at, p.counters)), (self.at, self.counters), self.uptime)
    }
}

/// The sample a report becomes, with its rates (`raw` is left null: backends keep the
/// document as text beside it).
pub fn sample_of(report: &Report, received_at: i64, rates: [Option<f64>; 4]) -> Sample {
    let m = &report.metrics;
    Sample {
        seq: report.seq,
        at: report.timestamp,
        received_at,
        cpu_usage: m.cpu_usage.map(|p| p.get()),
        memory_usage: m.memory_usage.map(|p| p.get()),
        disk_usage: m.disk_usage.map(|p| p.get()),
        load_average: m.load_average,
        uptime: m.uptime,
        response_time: m.response_time,
        network_rx: m.network_rx,
        network_tx: m.network_tx,
        disk_io_read: m.disk_io_read,
        disk_io_write: m.disk_io_write,
        network_rx_rate: rates[0],
        network_tx_rate: rates[1],
        disk_io_read_rate: rates[2],
        disk_io_write_rate: rates[3],
        raw: Value::Null,
    }
}

/// A server's newest figures as `servers.last_metrics` keeps them: the flat figures of
/// its newest report with the rates measured against the sample before it. Fields in
/// name order, as a JSON object's keys come out.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct NewestFigures {
    pub cpu_usage: Option<f64>,
    pub disk_io_read: Option<u64>,
    pub disk_io_read_rate: Option<f64>,
    pub disk_io_write: Option<u64>,
    pub disk_io_write_rate: Option<f64>,
    pub disk_usage: Option<f64>,
    pub load_average: Option<f64>,
    pub memory_usage: Option<f64>,
    pub network_rx: Option<u64>,
    pub network_rx_rate: Option<f64>,
    pub network_tx: Option<u64>,
    pub network_tx_rate: Option<f64>,
    pub response_time: Option<f64>,
    pub timestamp: String,
    pub uptime: Option<u64>,
}

impl NewestFigures {
    pub fn of(report: &Report, rates: &[Option<f64>; 4]) -> Self {
        let m = &report.metrics;
        Self {
            cpu_usage: m.cpu_usage.map(|p| p.get()),
            disk_io_read: m.disk_io_read,
            disk_io_read_rate: rates[2],
            disk_io_write: m.disk_io_write,
            disk_io_write_rate: rates[3],
            disk_usage: m.disk_usage.map(|p| p.get()),
            load_average: m.load_average,
            memory_usage: m.memory_usage.map(|p| p.get()),
            network_rx: m.network_rx,
            network_rx_rate: rates[0],
            network_tx: m.network_tx,
            network_tx_rate: rates[1],
            response_time: m.response_time,
            timestamp: serverpulse_proto::time::format_timestamp(report.timestamp),
            uptime: m.uptime,
        }
    }

    /// The figures of a stored sample (its rates as stored): what [`Self::of`] made of
    /// its report when it was stored, unless it was re-rated since.
    pub fn of_sample(sample: &Sample) -> Self {
        Self {
            cpu_usage: sample.cpu_usage,
            disk_io_read: sample.disk_io_read,
            disk_io_read_rate: sample.disk_io_read_rate,
            disk_io_write: sample.disk_io_write,
            disk_io_write_rate: sample.disk_io_write_rate,
            disk_usage: sample.disk_usage,
            load_average: sample.load_average,
            memory_usage: sample.memory_usage,
            network_rx: sample.network_rx,
            network_rx_rate: sample.network_rx_rate,
            network_tx: sample.network_tx,
            network_tx_rate: sample.network_tx_rate,
            response_time: sample.response_time,
            timestamp: serverpulse_proto::time::format_timestamp(sample.at),
            uptime: sample.uptime,
        }
    }

    /// As JSON text, written straight from the fields.
    pub fn text(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| "null".to_owned())
    }

    /// Reads [`Self::text`]; `None` for what no hub writes (the figures are only the
    /// newest report's, replaced by the next one).
    pub fn from_text(text: &str) -> Option<Self> {
        serde_json::from_str(text).ok()
    }
}

/// Interleaves a server's recent samples (rows, oldest first) with its compacted chunks
/// (`(day start, samples)`, in order) into `[from, to]`, at most `limit`. A chunk's
/// samples all precede the rows of its day, so whole chunks slot in.
pub fn interleave(
    recent: Vec<Sample>,
    chunks: Vec<(i64, Vec<Sample>)>,
    from: i64,
    to: i64,
    limit: usize,
) -> Vec<Sample> {
    let mut out = Vec::new();
    let mut recent = recent.into_iter().peekable();
    for (start, samples) in chunks {
        while out.len() < limit {
            match recent.next_if(|s| s.at < start) {
                Some(s) => out.push(s),
                None => break,
            }
        }
        if out.len() >= limit {
            break;
        }
        out.extend(samples.into_iter().filter(|s| s.at >= from && s.at <= to));
    }
    out.extend(recent);
    out.truncate(limit);
    out
}

/// A watched unit as stored: status, sub-state, details (JSON text), and the agent
/// time of its last change.
pub type UnitRecord = (String, Option<String>, String, i64);

/// What one report does to one watched unit.
#[derive(Debug, Clone, PartialEq)]
pub enum UnitChange {
    /// First seen: insert it (and log it).
    Added { name: String, record: UnitRecord },
    /// Something about it changed; `from` is the old status when the status itself did.
    Updated { name: String, record: UnitRecord, from: Option<String> },
}

/// The watched units of one server as stored, read once per ingest so that reports
/// which change nothing write nothing.
#[derive(Debug, Default)]
pub struct UnitStates {
    pub known: HashMap<String, UnitRecord>,
    /// Agent time of the newest report applied: an older one changes no unit.
    pub newest: i64,
}

impl UnitStates {
    pub fn new(known: HashMap<String, UnitRecord>) -> Self {
        let newest = known.values().map(|(.., at)| *at).max().unwrap_or(i64::MIN);
        Self { known, newest }
    }

    /// The changes `report` makes, remembered for the next report. A report older than
    /// the newest one applied rolls nothing back.
    pub fn apply(&mut self, report: &Report) -> Vec<UnitChange> {
        if report.timestamp < self.newest {
            return Vec::new();
        }
        self.newest = report.timestamp;
        let mut changes = Vec::new();
        for service in &report.services {
            let status = service.status.as_str();
            let record = (status.to_owned(), service.sub_state.clone(), service.details.to_string(), report.timestamp);
            let name = service.name.clone();
            match self.known.get(&service.name) {
                Some((old, sub_state, old_details, _))
                    if old == status && *sub_state == record.1 && *old_details == record.2 => {}
                Some((old, ..)) => {
                    let from = (old != status).then(|| old.clone());
                    changes.push(UnitChange::Updated { name: name.clone(), record: record.clone(), from });
                    self.known.insert(name, record);
                }
                None => {
                    changes.push(UnitChange::Added { name: name.clone(), record: record.clone() });
                    self.known.insert(name, record);
                }
            }
        }
        changes
    }
}

/// A digest of the watched units a report lists, in its order (64 bits over each unit's
/// name, status, sub-state and details, walked without serialising): a report with the
/// digest of the last one applied lists its units exactly as they are stored, so it
/// need not be compared unit by unit. Not a security boundary: an agent could at most
/// hide changes to its own units, which it reports anyway. (A digest stored by an
/// earlier version that computed it otherwise only costs one full comparison.)
pub fn units_digest(services: &[ServiceReport]) -> i64 {
    let mut digest = Digest::default();
    for unit in services {
        digest.text(&unit.name);
        digest.text(unit.status.as_str());
        match &unit.sub_state {
            Some(sub_state) => digest.text(sub_state),
            None => digest.word(0xfe),
        }
        digest.value(&unit.details);
    }
    i64::from_ne_bytes(digest.0.to_ne_bytes())
}

/// A 64-bit digest taking eight bytes a step, each step a full-width multiply folded
/// back (every input bit reaches every state bit), fed with tagged, length-prefixed
/// fields so that no two inputs run together. A byte at a time (FNV-1a, as before) was
/// a dependent multiply per byte: 1.9 % of a saturated hub's CPU.
struct Digest(u64);

impl Default for Digest {
    fn default() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
}

impl Digest {
    fn word(&mut self, word: u64) {
        let product = u128::from(self.0 ^ word) * 0x9e37_79b9_7f4a_7c15_u128;
        self.0 = (product as u64) ^ ((product >> 64) as u64);
    }

    /// `bytes` eight at a time, the last ones zero-padded (their count was fed before).
    fn bytes(&mut self, bytes: &[u8]) {
        let mut words = bytes.chunks_exact(8);
        for word in &mut words {
            let mut eight = [0; 8];
            eight.copy_from_slice(word);
            self.word(u64::from_le_bytes(eight));
        }
        let rest = words.remainder();
        if !rest.is_empty() {
            let mut eight = [0; 8];
            eight[..rest.len()].copy_from_slice(rest);
            self.word(u64::from_le_bytes(eight));
        }
    }

    fn text(&mut self, text: &str) {
        self.word(text.len() as u64);
        self.bytes(text.as_bytes());
    }

    fn value(&mut self, value: &Value) {
        match value {
            Value::Null => self.word(0),
            Value::Bool(b) => self.word(0x100 | u64::from(*b)),
            Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
                (Some(i), ..) => {
                    self.word(2);
                    self.word(i as u64);
                }
                (None, Some(u), _) => {
                    self.word(6);
                    self.word(u);
                }
                (.., f) => {
                    self.word(7);
                    self.word(f.unwrap_or(f64::NAN).to_bits());
                }
            },
            Value::String(text) => {
                self.word(3);
                self.text(text);
            }
            Value::Array(items) => {
                self.word(4);
                self.word(items.len() as u64);
                items.iter().for_each(|item| self.value(item));
            }
            Value::Object(members) => {
                self.word(5);
                self.word(members.len() as u64);
                for (key, item) in members {
                    self.text(key);
                    self.value(item);
                }
            }
        }
    }
}

/// The event log entry for a unit's status change, if it is news: first sightings of
/// healthy units are history only.
pub fn unit_change_event(name: &str, from: Option<&str>, to: &str) -> Option<(Severity, String, Value)> {
    if from.is_none() && to != "failed" {
        return None;
    }
    let severity = if to == "failed" { Severity::Error } else { Severity::Info };
    let message = match from {
        Some(from) => format!("service {name} changed from {from} to {to}"),
        None => format!("service {name} is {to}"),
    };
    Some((severity, message, json!({"service": name, "from": from, "to": to})))
}

#[cfg(test)]
mod tests {
    #[test]
    fn buckets_floor_towards_the_past() {
        assert_eq!(super::bucket_of(299_999, 300_000), 0);
        assert_eq!(super::bucket_of(300_000, 300_000), 300_000);
        assert_eq!(super::bucket_of(-1, 300_000), -300_000);
    }

    #[test]
    fn a_units_digest_changes_with_any_field_of_any_unit() {
        use serde_json::json;
        use serverpulse_proto::report::ServiceReport;
        use serverpulse_proto::service::ServiceStatus;
        let unit = |name: &str, status, sub_state: Option<&str>, details| ServiceReport {
            name: name.into(),
            status,
            sub_state: sub_state.map(str::to_owned),
            details,
        };
        let nginx = unit("nginx", ServiceStatus::Active, Some("running"), json!({"pid": 10}));
        let sshd = unit("sshd", ServiceStatus::Active, None, json!(null));
        let both = super::units_digest(&[nginx.clone(), sshd.clone()]);
        assert_eq!(both, super::units_digest(&[nginx.clone(), sshd.clone()]), "stable");
        let changed = [
            vec![nginx.clone()],
            vec![sshd.clone(), nginx.clone()],
            vec![unit("nginx", ServiceStatus::Failed, Some("running"), json!({"pid": 10})), sshd.clone()],
            vec![unit("nginx", ServiceStatus::Active, Some("dead"), json!({"pid": 10})), sshd.clone()],
            vec![unit("nginx", ServiceStatus::Active, None, json!({"pid": 10})), sshd.clone()],
            vec![unit("nginx", ServiceStatus::Active, Some("running"), json!({"pid": 11})), sshd.clone()],
            vec![unit("nginx", ServiceStatus::Active, Some("running"), json!({"pid": "10"})), sshd.clone()],
            vec![unit("nginxs", ServiceStatus::Active, Some("running"), json!({"pid": 10})), sshd.clone()],
            vec![unit("nginx\0", ServiceStatus::Active, Some("running"), json!({"pid": 10})), sshd.clone()],
            vec![unit("nginx", ServiceStatus::Active, Some("running"), json!({"pid": 10.0})), sshd.clone()],
            vec![unit("nginx", ServiceStatus::Active, Some("running"), json!({"pid": [10]})), sshd.clone()],
            vec![nginx.clone(), unit("sshd", ServiceStatus::Active, None, json!(false))],
        ];
        for units in changed {
            assert_ne!(super::units_digest(&units), both, "{units:?}");
        }
    }

    #[test]
    fn appended_samples_close_the_buckets_they_leave() {
        use super::close_buckets;
        let m = 60_000;
        // Within the open bucket: nothing closes.
        assert_eq!(close_buckets(Some(0), None, [m, 2 * m]), (vec![], Some(0), vec![]));
        // Across two later buckets, out of order: each bucket left closes, in time order.
        assert_eq!(close_buckets(Some(0), None, [11 * m, 6 * m, 7 * m]), (vec![0, 300_000], Some(600_000), vec![]));
        // Nothing open (never, or closed by retention): the first bucket opens.
        assert_eq!(close_buckets(None, None, [6 * m, 5 * m]), (vec![], Some(300_000), vec![]));
        // A bucket before the open one is already closed: recomputed, not merged again.
        assert_eq!(close_buckets(Some(600_000), None, [m, 10 * m]), (vec![], Some(600_000), vec![0]));
        // Nothing open, the newest stored sample's bucket closed by compaction: samples
        // there and before are recomputed, the first later bucket opens.
        assert_eq!(
            close_buckets(None, Some(300_000), [6 * m, 2 * m, 11 * m]),
            (vec![], Some(600_000), vec![0, 300_000])
        );
        assert_eq!(close_buckets(None, Some(300_000), [7 * m]), (vec![], None, vec![300_000]));
    }

    #[test]
    fn open_summaries_read_back_exactly_and_refuse_anything_else() {
        use super::{Filling, OpenSummary};
        let mut filling = Filling::default();
        filling.add_sample(1_000, [Some(1.5), None, Some(-0.0), None, None, None, None, Some(f64::MAX)]);
        filling.add_sample(2_000, [Some(0.25), None, None, Some(3.0), None, None, None, None]);
        for summary in [
            OpenSummary::default(),
            OpenSummary { start: -300_000, filling: Filling { samples: 3, ..Filling::default() } },
            OpenSummary { start: 1_800_000_000_000, filling },
        ] {
            let bytes = summary.to_bytes();
            assert_eq!(OpenSummary::from_bytes(&bytes), Some(summary.clone()));
            assert_eq!(OpenSummary::from_bytes(&bytes[..bytes.len() - 1]), None, "truncated");
            assert_eq!(OpenSummary::from_bytes(&[bytes.as_slice(), &[0]].concat()), None, "trailing bytes");
        }
        assert_eq!(OpenSummary::from_bytes(&[2]), None, "another layout");
        assert_eq!(OpenSummary::from_bytes(&[]), None);
    }

    #[test]
    fn newest_figures_read_back_from_their_text() {
        use super::NewestFigures;
        let figures = NewestFigures {
            cpu_usage: Some(12.5),
            network_rx: Some(u64::MAX),
            network_rx_rate: Some(0.25),
            timestamp: "2026-12-06T10:00:00Z".into(),
            uptime: Some(7),
            ..NewestFigures::default()
        };
        assert_eq!(NewestFigures::from_text(&figures.text()), Some(figures));
        let partial = NewestFigures::from_text(r#"{"cpu_usage": 3.0, "other": true}"#).expect("lenient");
        assert_eq!((partial.cpu_usage, partial.uptime), (Some(3.0), None));
        assert_eq!(NewestFigures::from_text(r#"{"network_rx": -1}"#), None, "not a counter");
        assert_eq!(NewestFigures::from_text("not json"), None);
    }
}
