//! The fleet overview: every server with its status and newest figures, filtered,
//! searched, sorted and paged on the hub (so 10,000 servers cost one page of HTML), and
//! kept live in the browser from the `server` events of the SSE feed.

use std::cmp::Ordering;
use std::collections::{BTreeSet, HashMap};

use askama::Template;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serverpulse_store::{FleetCounts, Server, ServerId};

use crate::app::AppState;
use crate::error::ApiError;
use crate::live::{ServerFigures, connection};
use crate::web::format;
use crate::web::session::encode_query;
use crate::web::{Chrome, PageError, Signed, render};

/// Rows per page.
pub const PAGE_SIZE: usize = 100;

#[derive(Debug, Default, Deserialize)]
pub struct FleetQuery {
    pub q: Option<String>,
    pub status: Option<String>,
    pub tag: Option<String>,
    pub sort: Option<String>,
    pub dir: Option<String>,
    pub page: Option<usize>,
}

const STATUSES: [&str; 5] = ["online", "disconnected", "never", "alerting", "failing"];
const SORTS: [&str; 9] = ["name", "status", "cpu", "memory", "disk", "load", "uptime", "alerts", "seen"];

/// A percentage with the bar drawn beside it.
#[derive(Debug)]
pub struct Gauge {
    pub text: String,
    /// 0–100, for the bar's width.
    pub width: f64,
    /// `ok`, `warn`, `crit` or `none`.
    pub level: &'static str,
}

impl Gauge {
    pub fn of(value: Option<f64>) -> Self {
        let level = match value {
            None => "none",
            Some(v) if v >= 90.0 => "crit",
            Some(v) if v >= 75.0 => "warn",
            Some(_) => "ok",
        };
        Self { text: format::percent(value), width: value.unwrap_or(0.0).clamp(0.0, 100.0), level }
    }
}

#[derive(Debug)]
pub struct FleetRow {
    pub id: ServerId,
    pub name: String,
    pub detail: String,
    pub status: &'static str,
    pub version: String,
    pub cpu: Gauge,
    pub memory: Gauge,
    pub disk: Gauge,
    pub load: String,
    pub uptime: String,
    pub open_alerts: u32,
    pub failed_services: u32,
    pub tags: Vec<String>,
    pub seen: String,
    pub seen_at: i64,
}

/// One server as the sort and the filters see it.
struct Entry<'a> {
    server: &'a Server,
    figures: ServerFigures<'a>,
    counts: FleetCounts,
}

impl Entry<'_> {
    fn matches(&self, query: &str, status: Option<&str>, tag: Option<&str>) -> bool {
        let status_ok = match status {
            None => true,
            Some("alerting") => self.counts.open_alerts > 0,
            Some("failing") => self.counts.failed_services > 0,
            Some(wanted) => self.figures.status == wanted,
        };
        let tag_ok = tag.is_none_or(|t| self.server.tags.iter().any(|own| own == t));
        let text_ok = query.is_empty() || {
            let haystack = [
                self.server.name.as_str(),
                self.server.hostname.as_deref().unwrap_or(""),
                &self.server.ip.to_string(),
                &self.server.tags.join(" "),
            ];
            haystack.iter().any(|h| h.to_lowercase().contains(query))
        };
        status_ok && tag_ok && text_ok
    }

    /// The sort key for numeric columns; unknown values sort last either way.
    fn number(&self, sort: &str) -> Option<f64> {
        match sort {
            "cpu" => self.figures.cpu,
            "memory" => self.figures.memory,
            "disk" => self.figures.disk,
            "load" => self.figures.load,
            "uptime" => self.figures.uptime.map(|u| u as f64),
            "alerts" => Some(f64::from(self.counts.open_alerts) * 1000.0 + f64::from(self.counts.failed_services)),
            "seen" => self.figures.last_contact.map(|at| at as f64),
            "status" => Some(match self.figures.status {
                "online" => 0.0,
                "disconnected" => 1.0,
                _ => 2.0,
            }),
            _ => None,
        }
    }

    fn row(&self, now: i64) -> FleetRow {
        let f = &self.figures;
        let hostname = self.server.hostname.as_deref().filter(|h| *h != self.server.name);
        FleetRow {
            id: self.server.id,
            name: self.server.name.clone(),
            detail: match hostname {
                Some(host) => format!("{host} · {}", self.server.ip),
                None => self.server.ip.to_string(),
            },
            status: f.status,
            version: f.agent_version.unwrap_or("–").to_owned(),
            cpu: Gauge::of(f.cpu),
            memory: Gauge::of(f.memory),
            disk: Gauge::of(f.disk),
            load: format::decimal(f.load),
            uptime: f.uptime.map_or_else(|| "–".to_owned(), format::duration),
            open_alerts: self.counts.open_alerts,
            failed_services: self.counts.failed_services,
            tags: self.server.tags.clone(),
            seen: format::ago(f.last_contact, now),
            seen_at: f.last_contact.unwrap_or(0),
        }
    }
}

#[derive(Debug, Default)]
pub struct Summary {
    pub total: usize,
    pub online: usize,
    pub disconnected: usize,
    pub never: usize,
    pub alerting: usize,
}

#[derive(Debug, Template)]
#[template(path = "fleet.html")]
pub struct FleetPage {
    pub chrome: Chrome,
    pub rows: Vec<FleetRow>,
    pub summary: Summary,
    pub matching: usize,
    pub q: String,
    pub status: String,
    pub tag: String,
    pub sort: String,
    pub descending: bool,
    pub page: usize,
    pub pages: usize,
    pub tags: Vec<String>,
    pub statuses: [&'static str; 5],
}

impl FleetPage {
    fn link(&self, sort: &str, descending: bool, page: usize) -> String {
        let mut parts = Vec::new();
        for (key, value) in [("q", &self.q), ("status", &self.status), ("tag", &self.tag)] {
            if !value.is_empty() {
                parts.push(format!("{key}={}", encode_query(value)));
            }
        }
        if sort != "name" || descending {
            parts.push(format!("sort={sort}&dir={}", if descending { "desc" } else { "asc" }));
        }
        if page > 1 {
            parts.push(format!("page={page}"));
        }
        if parts.is_empty() { "/fleet".to_owned() } else { format!("/fleet?{}", parts.join("&")) }
    }

    /// The link a column header carries: sort by it, or flip the direction if it is the sort.
    pub fn sort_link(&self, column: &str) -> String {
        let descending = if self.sort == column { !self.descending } else { column != "name" && column != "status" };
        self.link(column, descending, 1)
    }

    /// `ascending`/`descending` on the current sort column (for `aria-sort`), else `none`.
    pub fn aria_sort(&self, column: &str) -> &'static str {
        match (self.sort == column, self.descending) {
            (false, _) => "none",
            (true, false) => "ascending",
            (true, true) => "descending",
        }
    }

    pub fn page_link(&self, page: usize) -> String {
        self.link(&self.sort, self.descending, page)
    }

    pub fn filtered(&self) -> bool {
        !(self.q.is_empty() && self.status.is_empty() && self.tag.is_empty())
    }
}

fn choice(value: Option<String>, allowed: &[&str], name: &str) -> Result<Option<String>, PageError> {
    match value.filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) if allowed.contains(&v.as_str()) => Ok(Some(v)),
        Some(v) => {
            Err(PageError::new(StatusCode::BAD_REQUEST, &format!("{name} {v:?} is not one of: {}", allowed.join(", "))))
        }
    }
}

/// Builds the page from the whole inventory (also what the benchmark measures).
pub fn build(
    chrome_for: impl FnOnce(u32) -> Chrome,
    servers: &[Server],
    counts: &HashMap<ServerId, FleetCounts>,
    query: FleetQuery,
    now: i64,
) -> Result<FleetPage, PageError> {
    let status = choice(query.status, &STATUSES, "status")?;
    let sort = choice(query.sort, &SORTS, "sort")?.unwrap_or_else(|| "name".to_owned());
    let descending = match query.dir.as_deref() {
        None | Some("" | "asc") => false,
        Some("desc") => true,
        Some(other) => {
            return Err(PageError::new(StatusCode::BAD_REQUEST, &format!("dir {other:?} is not asc or desc")));
        }
    };
    let q = query.q.unwrap_or_default().trim().to_owned();
    let needle = q.to_lowercase();
    let tag = query.tag.unwrap_or_default();

    let entries: Vec<Entry<'_>> = servers
        .iter()
        .map(|server| Entry {
            server,
            figures: ServerFigures::of(server),
            counts: counts.get(&server.id).copied().unwrap_or_default(),
        })
        .collect();
    let mut summary = Summary { total: entries.len(), ..Summary::default() };
    let mut tags = BTreeSet::new();
    for entry in &entries {
        match connection(entry.server) {
            "online" => summary.online += 1,
            "disconnected" => summary.disconnected += 1,
            _ => summary.never += 1,
        }
        summary.alerting += usize::from(entry.counts.open_alerts > 0);
        tags.extend(entry.server.tags.iter().cloned());
    }
    let open_alerts = entries.iter().map(|e| e.counts.open_alerts).sum();

    let mut shown: Vec<&Entry<'_>> =
        entries.iter().filter(|e| e.matches(&needle, status.as_deref(), (!tag.is_empty()).then_some(&tag))).collect();
    let by_name = |a: &&Entry<'_>, b: &&Entry<'_>| a.server.name.to_lowercase().cmp(&b.server.name.to_lowercase());
    if sort == "name" {
        shown.sort_by(by_name);
        if descending {
            shown.reverse();
        }
    } else {
        shown.sort_by(|a, b| {
            let order = match (a.number(&sort), b.number(&sort)) {
                (Some(x), Some(y)) if descending => y.total_cmp(&x),
                (Some(x), Some(y)) => x.total_cmp(&y),
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (None, None) => Ordering::Equal,
            };
            order.then_with(|| by_name(a, b))
        });
    }
    let matching = shown.len();
    let pages = matching.div_ceil(PAGE_SIZE).max(1);
    let page = query.page.unwrap_or(1).clamp(1, pages);
    let rows = shown.iter().skip((page - 1) * PAGE_SIZE).take(PAGE_SIZE).map(|e| e.row(now)).collect();
    Ok(FleetPage {
        chrome: chrome_for(open_alerts),
        rows,
        summary,
        matching,
        q,
        status: status.unwrap_or_default(),
        tag,
        sort,
        descending,
        page,
        pages,
        tags: tags.into_iter().collect(),
        statuses: STATUSES,
    })
}

/// `GET /fleet`
pub async fn page(
    State(state): State<AppState>,
    signed: Signed,
    Query(query): Query<FleetQuery>,
) -> Result<Response, PageError> {
    let servers = state.store.list_servers().await.map_err(ApiError::from)?;
    let counts = state.store.fleet_counts().await.map_err(ApiError::from)?;
    let page =
        build(|open| Chrome::with_counts(&signed, "fleet", "Fleet", open), &servers, &counts, query, state.now())?;
    Ok(render(&page)?.into_response())
}
