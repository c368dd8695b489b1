//! How a batch of reports lands in history, decided in memory: which reports are new
//! (each `seq` once, against what is stored and what came earlier in the batch), the
//! rates of each against its neighbour in agent time (stored, or in the same batch),
//! which stored samples are re-rated because a report landed just before them, and each
//! server's newest figures afterwards.
//!
//! The group-commit writer hands a whole batch to the store, which reads what it needs
//! around every report in one statement, calls [`land`], and writes the result in a
//! few statements whatever the batch's size: the cost of a report is its share of
//! those, not a round trip to the database per step. The outcome is the one storing the
//! batch's jobs one after the other would give.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use serverpulse_proto::report::Report;

use crate::history::{Neighbour, NewestFigures, sample_of};
use crate::{IngestJob, IngestOutcome, Sample, ServerId, StoreError, StoreResult};

/// What is stored around one report of the batch, found before anything is written.
#[derive(Debug, Clone, Default)]
pub struct Around {
    /// A sample with the report's `seq` is stored already.
    pub seq_stored: bool,
    /// The stored sample just before the report in agent time (the latest of the
    /// latest time).
    pub earlier: Option<Neighbour>,
    /// The stored samples just after it: every one of the earliest later time (each is
    /// rated against the sample before that time).
    pub later: Vec<Neighbour>,
}

/// A server's row as the batch finds it.
#[derive(Debug, Clone)]
pub struct Before {
    /// Agent time of its newest figures.
    pub last_at: Option<i64>,
    /// Uptime in its newest figures.
    pub uptime: Option<u64>,
    /// Its agent's status (`active`, `disconnected`, …).
    pub status: String,
}

/// What the batch does to one server.
#[derive(Debug, Clone, Default)]
pub struct ServerLanding {
    /// Its newest figures, when a report of the batch is newer than those stored: agent
    /// time and the figures.
    pub newest: Option<(i64, NewestFigures)>,
    /// The latest arrival among its jobs: its agent's contact.
    pub contact: i64,
    /// The arrival of its first job: when its agent came back, if it was not active.
    pub first_arrival: i64,
    /// Its agent's status before the batch.
    pub status_before: String,
    /// The batch's latest report before its newest stored sample, when one landed just
    /// before it: the sample that newest one (and its figures) is now rated against.
    pub newest_follows: Option<Neighbour>,
}

/// The batch decided: what to write, and what to answer each job.
#[derive(Debug, Default)]
pub struct Landing<'j> {
    /// Per job, in order: its outcome (without the server row and pending commands,
    /// which come back from the write), or `NotFound` when its server is gone.
    pub outcomes: Vec<StoreResult<IngestOutcome>>,
    /// The reports to store, in the batch's order.
    pub stored: Vec<Stored<'j>>,
    /// Stored samples (row id) whose rates change, with their new rates.
    pub rerated: BTreeMap<i64, [Option<f64>; 4]>,
    /// (server, agent time) of every sample written before a stored one, or re-rated:
    /// their summaries are to be recomputed.
    pub touched: BTreeSet<(ServerId, i64)>,
    /// Every server of the batch that exists.
    pub servers: BTreeMap<ServerId, ServerLanding>,
}

/// A report of the batch to store.
#[derive(Debug)]
pub struct Stored<'j> {
    pub server: ServerId,
    /// The position of its job in the batch.
    pub job: usize,
    pub report: &'j Report,
    pub sample: Sample,
    /// Newer than every sample stored before (or as new as the newest): its summaries
    /// take it in as they are, instead of being recomputed.
    pub appended: bool,
}

/// A server's newest figures as the jobs so far leave them: agent time, uptime, and the
/// position of the batch's report holding them (none while the stored ones are newest).
#[derive(Debug, Clone, Copy)]
struct Newest {
    at: Option<i64>,
    uptime: Option<u64>,
    position: Option<usize>,
}

/// One report taken into the batch's history.
#[derive(Debug, Clone, Copy)]
struct Taken {
    /// Its position among the batch's reports (all jobs', in order).
    position: usize,
    job: usize,
    point: Neighbour,
}

/// Decides the batch `jobs`: `before` holds the servers that exist, `around[i]` what is
/// stored around the batch's `i`-th report (counting every job's reports, in order).
pub fn land<'j>(jobs: &'j [IngestJob], before: &HashMap<ServerId, Before>, around: &[Around]) -> Landing<'j> {
    let mut landing = Landing::default();
    let mut taken: BTreeMap<ServerId, Vec<Taken>> = BTreeMap::new();
    // Per server: seqs seen in the batch, and its newest figures.
    let mut seen: HashMap<ServerId, HashSet<u64>> = HashMap::new();
    let mut newest: HashMap<ServerId, Newest> = HashMap::new();
    let reports: Vec<&Report> = jobs.iter().flat_map(|job| &job.reports).collect();
    let mut position = 0;
    for (index, job) in jobs.iter().enumerate() {
        let first = position;
        position += job.reports.len();
        let Some(state) = before.get(&job.server) else {
            landing.outcomes.push(Err(StoreError::NotFound));
            continue;
        };
        let server = landing.servers.entry(job.server).or_insert_with(|| ServerLanding {
            contact: job.received_at,
            first_arrival: job.received_at,
            status_before: state.status.clone(),
            ..ServerLanding::default()
        });
        server.contact = server.contact.max(job.received_at);
        let newest =
            newest.entry(job.server).or_insert(Newest { at: state.last_at, uptime: state.uptime, position: None });
        let mut outcome = IngestOutcome { previous_uptime: newest.uptime, ..IngestOutcome::default() };
        let seqs = seen.entry(job.server).or_default();
        for (offset, report) in job.reports.iter().enumerate() {
            let at = first + offset;
            if let Some(seq) = report.seq
                && (around[at].seq_stored || !seqs.insert(seq))
            {
                outcome.duplicate_seqs.push(seq);
                continue;
            }
            outcome.stored += 1;
            outcome.stored_seqs.extend(report.seq);
            taken.entry(job.server).or_default().push(Taken {
                position: at,
                job: index,
                point: Neighbour::of_report(report),
            });
            if newest.at.is_none_or(|t| report.timestamp >= t) {
                *newest = Newest { at: Some(report.timestamp), uptime: report.metrics.uptime, position: Some(at) };
            }
        }
        landing.outcomes.push(Ok(outcome));
    }

    let appended = |server: ServerId, at: i64| {
        before.get(&server).is_some_and(|state| state.last_at.is_none_or(|last| at >= last))
    };
    let mut rates: HashMap<usize, [Option<f64>; 4]> = HashMap::new();
    let mut order: Vec<(usize, ServerId, usize)> = Vec::new();
    for (server, mut new) in taken {
        // In agent time; among equal times, the later in the batch counts as newer (it
        // gets the higher row id), as stored samples of one time go by id.
        new.sort_by_key(|t| (t.point.at, t.position));
        let latest_before = |at: i64| new[..new.partition_point(|t| t.point.at < at)].last();
        for t in &new {
            let stored = around[t.position].earlier;
            let previous = match (latest_before(t.point.at), stored) {
                (Some(n), Some(s)) if s.at > n.point.at => Some(s),
                (Some(n), _) => Some(n.point),
                (None, s) => s,
            };
            rates.insert(t.position, t.point.rates_after(previous.as_ref()));
            if !appended(server, t.point.at) {
                landing.touched.insert((server, t.point.at));
            }
            // A stored sample just after this report now follows the batch's latest
            // report before it: its rates are measured against that one instead.
            for later in &around[t.position].later {
                let Some(previous) = latest_before(later.at) else { continue };
                landing.rerated.insert(later.id, later.rates_after(Some(&previous.point)));
                landing.touched.insert((server, later.at));
                if before.get(&server).and_then(|state| state.last_at) == Some(later.at)
                    && let Some(landed) = landing.servers.get_mut(&server)
                {
                    landed.newest_follows = Some(previous.point);
                }
            }
        }
        order.extend(new.iter().map(|t| (t.position, server, t.job)));
    }
    // Written in the batch's order.
    order.sort_unstable();
    for (position, server, job) in order {
        let report = reports[position];
        let sample = sample_of(report, jobs[job].received_at, rates[&position]);
        landing.stored.push(Stored { server, job, report, sample, appended: appended(server, report.timestamp) });
    }

    for (server, Newest { position, .. }) in newest {
        if let (Some(position), Some(landed)) = (position, landing.servers.get_mut(&server)) {
            let report = reports[position];
            landed.newest = Some((report.timestamp, NewestFigures::of(report, &rates[&position])));
        }
    }
    landing
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn report(seq: u64, at: i64, rx: u64, uptime: u64) -> Report {
        let doc = json!({"timestamp": serverpulse_proto::time::format_timestamp(at), "seq": seq,
            "metrics": {"cpu_usage": 1.0, "memory_usage": 2.0, "disk_usage": 3.0, "uptime": uptime, "network_rx": rx}});
        serverpulse_proto::report::decode_report(&doc, "", at).expect("valid report")
    }

    fn stored(id: i64, at: i64, rx: u64) -> Neighbour {
        Neighbour { id, at, uptime: Some(1_000), counters: [Some(rx), None, None, None] }
    }

    const T0: i64 = 1_700_000_000_000;

    #[test]
    fn a_stored_sample_after_the_batch_is_rated_against_its_latest_report_before_it() {
        let jobs = [IngestJob {
            server: 7,
            reports: vec![report(2, T0 + 20_000, 2_000, 1_000), report(3, T0 + 10_000, 500, 1_000)],
            received_at: T0,
        }];
        let before = HashMap::from([(7, Before { last_at: Some(T0 + 30_000), uptime: None, status: "active".into() })]);
        let later = stored(41, T0 + 30_000, 4_000);
        let around = [
            Around { seq_stored: false, earlier: Some(stored(40, T0, 0)), later: vec![later] },
            Around { seq_stored: false, earlier: Some(stored(40, T0, 0)), later: vec![later] },
        ];
        let landing = land(&jobs, &before, &around);
        assert_eq!(landing.rerated.len(), 1);
        assert_eq!(landing.rerated[&41][0], Some(200.0), "against the report at +20 s, not +10 s");
        let rates: Vec<Option<f64>> = landing.stored.iter().map(|s| s.sample.network_rx_rate).collect();
        assert_eq!(rates, [Some(150.0), Some(50.0)], "in the batch's order, each against its predecessor");
        assert_eq!(landing.servers[&7].newest, None, "older than the stored newest figures");
        let touched: Vec<i64> = landing.touched.iter().map(|(_, at)| at - T0).collect();
        assert_eq!(touched, [10_000, 20_000, 30_000]);
    }

    #[test]
    fn later_jobs_see_what_earlier_jobs_of_the_batch_left() {
        let job = |server, reports| IngestJob { server, reports, received_at: T0 };
        let jobs = [
            job(1, vec![report(1, T0, 0, 500)]),
            job(2, vec![report(1, T0, 0, 9)]),
            job(1, vec![report(1, T0, 0, 500), report(2, T0 + 1_000, 10, 20)]),
        ];
        let before = HashMap::from([(1, Before { last_at: None, uptime: Some(400), status: "disconnected".into() })]);
        let landing = land(&jobs, &before, &vec![Around::default(); 4]);
        let first = landing.outcomes[0].as_ref().expect("first job");
        assert_eq!((first.previous_uptime, first.stored_seqs.as_slice()), (Some(400), &[1][..]));
        assert_eq!(landing.outcomes[1], Err(StoreError::NotFound), "server 2 is gone");
        let third = landing.outcomes[2].as_ref().expect("third job");
        assert_eq!(third.previous_uptime, Some(500), "the uptime the first job left");
        assert_eq!((third.stored_seqs.as_slice(), third.duplicate_seqs.as_slice()), (&[2][..], &[1][..]));
        let server = &landing.servers[&1];
        assert_eq!(server.newest.as_ref().map(|(at, _)| *at), Some(T0 + 1_000));
        assert_eq!(server.status_before, "disconnected");
        assert_eq!(landing.stored.len(), 2);
    }
}
