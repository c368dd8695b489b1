//! Chart data: a server's history over any range, reduced on the hub to at most ~1,000
//! points per series (min, max and mean per bucket, so peaks survive), in the columnar
//! shape uPlot draws directly.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use serverpulse_store::{ChartBucket, ChartMetric, ServerId};

use crate::admin::not_found_as;
use crate::app::AppState;
use crate::auth::Viewer;
use crate::body::{ApiPath, ApiQuery};
use crate::error::{ApiError, ApiResult};
use crate::routes::servers::instant;

/// Bucket widths a chart may use, in seconds: the smallest that keeps the point count
/// under the limit is chosen, so points fall on round times.
const STEPS_S: [i64; 17] =
    [5, 10, 15, 30, 60, 120, 300, 600, 900, 1_800, 3_600, 7_200, 10_800, 21_600, 43_200, 86_400, 604_800];
pub const MAX_POINTS: i64 = 1_000;
/// Longest range a chart may ask for.
const MAX_RANGE_MS: i64 = 400 * 86_400_000;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ChartQuery {
    /// Start: Unix ms or RFC 3339 (default `to` − 1 h).
    pub from: Option<String>,
    /// End: Unix ms or RFC 3339 (default now).
    pub to: Option<String>,
    /// Most points per series wanted, 10–1000 (default 600).
    pub points: Option<i64>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Series {
    pub avg: Vec<Option<f64>>,
    pub min: Vec<Option<f64>>,
    pub max: Vec<Option<f64>>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Chart {
    pub success: bool,
    pub from: i64,
    pub to: i64,
    /// Bucket width in ms.
    pub step: i64,
    /// More than one sample can fall in a bucket: min/max differ from the mean.
    pub banded: bool,
    /// Bucket starts, Unix **seconds** (uPlot's unit); a bucket of nulls marks a gap.
    pub t: Vec<i64>,
    /// By metric: cpu, memory, disk, load, network_rx_rate, network_tx_rate,
    /// disk_read_rate, disk_write_rate.
    #[schema(value_type = Object)]
    pub series: std::collections::BTreeMap<&'static str, Series>,
}

/// The smallest listed step giving at most `points` buckets over `span` ms and no finer
/// than the agents' collection interval.
pub fn step_for(span: i64, points: i64, interval_ms: i64) -> i64 {
    let wanted = (span / points.max(1)).max(interval_ms);
    STEPS_S.iter().map(|s| s * 1000).find(|s| *s >= wanted).unwrap_or(STEPS_S[STEPS_S.len() - 1] * 1000)
}

/// Columns from buckets, with one all-null bucket wherever data stops for more than two steps.
pub fn columns(buckets: &[ChartBucket], step: i64) -> (Vec<i64>, std::collections::BTreeMap<&'static str, Series>) {
    let mut t = Vec::with_capacity(buckets.len());
    let mut series: Vec<Series> =
        ChartMetric::ALL.iter().map(|_| Series { avg: Vec::new(), min: Vec::new(), max: Vec::new() }).collect();
    let mut previous: Option<i64> = None;
    for bucket in buckets {
        if let Some(before) = previous
            && bucket.start - before > 2 * step
        {
            t.push((before + step) / 1000);
            for s in &mut series {
                s.avg.push(None);
                s.min.push(None);
                s.max.push(None);
            }
        }
        t.push(bucket.start / 1000);
        for (s, band) in series.iter_mut().zip(bucket.bands) {
            s.avg.push(band.avg);
            s.min.push(band.min);
            s.max.push(band.max);
        }
        previous = Some(bucket.start);
    }
    (t, ChartMetric::ALL.iter().map(|m| m.as_str()).zip(series).collect())
}

/// A server's history for charts.
#[utoipa::path(get, path = "/api/v1/servers/{id}/chart", tag = "servers",
    params(("id" = i64, Path), ChartQuery),
    responses((status = 200, body = Chart), (status = 400), (status = 401), (status = 404)),
    security(("api_token" = [])))]
pub async fn chart(
    State(state): State<AppState>,
    _: Viewer,
    ApiPath(id): ApiPath<ServerId>,
    ApiQuery(query): ApiQuery<ChartQuery>,
) -> ApiResult<Json<Chart>> {
    let to = query.to.as_deref().map(|t| instant("to", t)).transpose()?.unwrap_or_else(|| state.now());
    let from = query.from.as_deref().map(|t| instant("from", t)).transpose()?.unwrap_or(to - 3_600_000);
    if from >= to {
        return Err(ApiError::field("from", "must be before `to`"));
    }
    if to - from > MAX_RANGE_MS {
        return Err(ApiError::field("from", "the range may not exceed 400 days"));
    }
    let points = query.points.unwrap_or(600);
    if !(10..=MAX_POINTS).contains(&points) {
        return Err(ApiError::field("points", "must be between 10 and 1000"));
    }
    state.store.get_server(id).await.map_err(|e| not_found_as(e, "server"))?;
    // What was stored a moment ago is in the summaries too.
    state.store.refresh_rollups(Some(id)).await?;
    // Never finer than the agents' interval, nor than what retention left at `from`.
    let finest = state.store.chart_resolution(from).await?;
    let interval_ms = (i64::from(state.settings.collection_interval_secs) * 1000).max(finest);
    let step = step_for(to - from, points, interval_ms);
    // Whole buckets only: the first starts at or before `from`.
    let start = from - from.rem_euclid(step);
    let buckets = state.store.chart(id, start, to, step).await?;
    let banded = buckets.iter().any(|b| b.samples > 1);
    let (t, series) = columns(&buckets, step);
    Ok(Json(Chart { success: true, from, to, step, banded, t, series }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serverpulse_store::Band;

    #[test]
    fn steps_are_round_and_never_finer_than_collection() {
        assert_eq!(step_for(3_600_000, 600, 30_000), 30_000, "1 h at 30 s: every sample");
        assert_eq!(step_for(30 * 86_400_000, 600, 30_000), 2 * 3_600_000, "30 d: 360 points of 2 h");
        assert_eq!(step_for(86_400_000, 1000, 5_000), 120_000);
        assert!(30 * 86_400_000 / step_for(30 * 86_400_000, 1000, 1_000) <= 1000);
        // Where only summaries are left, steps are whole summary buckets.
        assert_eq!(step_for(3_600_000, 600, 300_000), 300_000);
        for finest in [300_000, 3_600_000, 86_400_000] {
            for span in [3_600_000, 86_400_000, 40 * 86_400_000] {
                assert_eq!(step_for(span, 600, finest) % finest, 0, "span {span} over buckets of {finest}");
            }
        }
    }

    #[test]
    fn gaps_become_null_points() {
        let bucket = |start: i64, v: f64| ChartBucket {
            start,
            samples: 1,
            bands: [Band { min: Some(v), max: Some(v), avg: Some(v), last: Some(v) }; 8],
        };
        let (t, series) = columns(&[bucket(0, 1.0), bucket(30_000, 2.0), bucket(300_000, 3.0)], 30_000);
        assert_eq!(t, [0, 30, 60, 300]);
        assert_eq!(series["cpu"].avg, [Some(1.0), Some(2.0), None, Some(3.0)]);
        assert_eq!(series.len(), 8);
    }
}
