//! History chunks: the compact form samples take once they are past the detail window.
//!
//! A chunk holds one server's samples of one time block, column by column, without the
//! report as received (`raw` decodes as `null`). Every backend stores chunks as opaque
//! bytes, so the format lives here, next to the records it encodes, and one property
//! test guards it for all of them: [`decode`] gives back exactly what [`encode`] was
//! given, bit for bit.
//!
//! Format (version 1): a version byte, a byte saying whether the body is deflated, then
//! the body: the row count and the columns in a fixed order. A column is a presence map
//! (all, none, or a bitmap) and the values of its present rows:
//!
//! * integers go through 0, 1 or 2 rounds of differencing (whichever packs smallest: raw
//!   for steps, deltas for counters, deltas of deltas for clocks), the first values as
//!   varints, the rest bit-packed at the width of their range above their minimum;
//! * floats that are short decimals (as agents report them: `37.5`, `0.42`) become
//!   integers times a power of ten and are packed as above; any other float is packed
//!   as its bits XOR the previous one's, so every value round-trips exactly;
//! * the counter rates are not stored where they equal the rate recomputed from the
//!   previous row of the chunk (nearly always): only the exceptions are.

use std::io::{Read, Write};

use serde_json::Value;
use serverpulse_domain::rate::counter_rates;

use crate::Sample;

const VERSION: u8 = 1;
/// No chunk holds more rows than this; a larger count is a corrupt chunk.
const MAX_ROWS: u64 = 1 << 22;
/// Exact powers of ten a decimal float may be scaled by.
const SCALES: [f64; 10] = [1.0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9];
/// Integers beyond this are not exact in an f64.
const EXACT: f64 = 9_007_199_254_740_992.0;

/// A chunk that cannot be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("history chunk: {0}")]
pub struct ChunkError(String);

fn corrupt(what: &str) -> ChunkError {
    ChunkError(what.to_owned())
}

/// Encodes samples in the order given (the caller's: agent time, then arrival).
pub fn encode(samples: &[Sample]) -> Vec<u8> {
    let mut body = Vec::new();
    put_varint(&mut body, samples.len() as u64);
    let ints: [fn(&Sample) -> Option<i64>; 8] = [
        |s| s.seq.map(|v| v as i64),
        |s| Some(s.at),
        |s| Some(s.received_at.wrapping_sub(s.at)),
        |s| s.uptime.map(|v| v as i64),
        |s| s.network_rx.map(|v| v as i64),
        |s| s.network_tx.map(|v| v as i64),
        |s| s.disk_io_read.map(|v| v as i64),
        |s| s.disk_io_write.map(|v| v as i64),
    ];
    for column in ints {
        put_int_column(&mut body, &samples.iter().map(column).collect::<Vec<_>>());
    }
    let floats: [fn(&Sample) -> Option<f64>; 5] =
        [|s| s.cpu_usage, |s| s.memory_usage, |s| s.disk_usage, |s| s.load_average, |s| s.response_time];
    for column in floats {
        put_float_column(&mut body, &samples.iter().map(column).collect::<Vec<_>>());
    }
    let derived = derived_rates(samples);
    for counter in 0..4 {
        let differs: Vec<bool> =
            samples.iter().zip(&derived).map(|(s, d)| !same(rates_of(s)[counter], d[counter])).collect();
        put_presence(&mut body, &differs);
        let stored: Vec<Option<f64>> =
            samples.iter().zip(&differs).filter(|(_, d)| **d).map(|(s, _)| rates_of(s)[counter]).collect();
        put_float_column(&mut body, &stored);
    }
    let mut deflated = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
    let deflated = deflated.write_all(&body).and_then(|()| deflated.finish()).ok();
    match deflated {
        Some(small) if small.len() < body.len() => [vec![VERSION, 1], small].concat(),
        _ => [vec![VERSION, 0], body].concat(),
    }
}

/// Decodes a chunk; `raw` is `null` in every sample.
pub fn decode(bytes: &[u8]) -> Result<Vec<Sample>, ChunkError> {
    let [version, deflated, body @ ..] = bytes else { return Err(corrupt("too short")) };
    if *version != VERSION {
        return Err(ChunkError(format!("unknown version {version}")));
    }
    let inflated;
    let body = match deflated {
        0 => body,
        1 => {
            let mut out = Vec::new();
            flate2::read::DeflateDecoder::new(body)
                .take(MAX_ROWS * 256)
                .read_to_end(&mut out)
                .map_err(|e| ChunkError(format!("inflate: {e}")))?;
            inflated = out;
            &inflated
        }
        _ => return Err(corrupt("unknown body form")),
    };
    let mut reader = Reader { bytes: body, at: 0 };
    let rows = reader.varint()?;
    if rows > MAX_ROWS {
        return Err(corrupt("row count out of range"));
    }
    let n = rows as usize;
    let mut ints = Vec::with_capacity(8);
    for _ in 0..8 {
        ints.push(reader.int_column(n)?);
    }
    let mut floats = Vec::with_capacity(5);
    for _ in 0..5 {
        floats.push(reader.float_column(n)?);
    }
    let int = |c: usize, i: usize| ints[c][i];
    let unsigned = |c: usize, i: usize| ints[c][i].map(|v| v as u64);
    let mut samples: Vec<Sample> = (0..n)
        .map(|i| -> Result<Sample, ChunkError> {
            let at = int(1, i).ok_or_else(|| corrupt("a row without its time"))?;
            let offset = int(2, i).ok_or_else(|| corrupt("a row without its arrival"))?;
            Ok(Sample {
                seq: unsigned(0, i),
                at,
                received_at: at.wrapping_add(offset),
                cpu_usage: floats[0][i],
                memory_usage: floats[1][i],
                disk_usage: floats[2][i],
                load_average: floats[3][i],
                uptime: unsigned(3, i),
                response_time: floats[4][i],
                network_rx: unsigned(4, i),
                network_tx: unsigned(5, i),
                disk_io_read: unsigned(6, i),
                disk_io_write: unsigned(7, i),
                network_rx_rate: None,
                network_tx_rate: None,
                disk_io_read_rate: None,
                disk_io_write_rate: None,
                raw: Value::Null,
            })
        })
        .collect::<Result<_, _>>()?;
    let derived = derived_rates(&samples);
    for counter in 0..4 {
        let differs = reader.presence(n)?;
        let exceptions = reader.float_column(differs.iter().filter(|d| **d).count())?;
        let mut exceptions = exceptions.into_iter();
        for ((sample, derived), differs) in samples.iter_mut().zip(&derived).zip(differs) {
            let rate = if differs { exceptions.next().flatten() } else { derived[counter] };
            *rate_slot(sample, counter) = rate;
        }
    }
    if reader.at != reader.bytes.len() {
        return Err(corrupt("trailing bytes"));
    }
    Ok(samples)
}

fn rates_of(s: &Sample) -> [Option<f64>; 4] {
    [s.network_rx_rate, s.network_tx_rate, s.disk_io_read_rate, s.disk_io_write_rate]
}

fn rate_slot(s: &mut Sample, counter: usize) -> &mut Option<f64> {
    match counter {
        0 => &mut s.network_rx_rate,
        1 => &mut s.network_tx_rate,
        2 => &mut s.disk_io_read_rate,
        _ => &mut s.disk_io_write_rate,
    }
}

fn counters_of(s: &Sample) -> [Option<u64>; 4] {
    [s.network_rx, s.network_tx, s.disk_io_read, s.disk_io_write]
}

/// Each row's rates recomputed against the row before it in the chunk.
fn derived_rates(samples: &[Sample]) -> Vec<[Option<f64>; 4]> {
    let mut previous: Option<&Sample> = None;
    samples
        .iter()
        .map(|current| {
            let rates = counter_rates(
                previous.map(|p| (p.at, counters_of(p))),
                (current.at, counters_of(current)),
                current.uptime,
            );
            previous = Some(current);
            rates
        })
        .collect()
}

/// Equal to the bit (so `-0.0` and NaN payloads survive).
fn same(a: Option<f64>, b: Option<f64>) -> bool {
    a.map(f64::to_bits) == b.map(f64::to_bits)
}

// --- writing ---------------------------------------------------------------------

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// Presence: 0 = every row, 1 = no row, 2 = a bitmap follows.
fn put_presence(out: &mut Vec<u8>, present: &[bool]) {
    if present.iter().all(|p| *p) {
        out.push(0);
    } else if !present.iter().any(|p| *p) {
        out.push(1);
    } else {
        out.push(2);
        let mut bits = BitWriter::default();
        for p in present {
            bits.put(u64::from(*p), 1);
        }
        out.extend(bits.finish());
    }
}

fn put_int_column(out: &mut Vec<u8>, values: &[Option<i64>]) {
    put_presence(out, &values.iter().map(Option::is_some).collect::<Vec<_>>());
    put_ints(out, &values.iter().flatten().copied().collect::<Vec<_>>());
}

fn differences(values: &[i64]) -> Vec<i64> {
    let mut previous = 0i64;
    values
        .iter()
        .map(|v| {
            let d = v.wrapping_sub(previous);
            previous = *v;
            d
        })
        .collect()
}

/// The integers of a column: the differencing order, its seeds, then the rest packed.
fn put_ints(out: &mut Vec<u8>, values: &[i64]) {
    if values.is_empty() {
        return;
    }
    let once = differences(values);
    let twice = differences(&once);
    let candidates = [values.to_vec(), once, twice];
    let best = candidates
        .iter()
        .enumerate()
        .map(|(order, transformed)| {
            let mut encoded = vec![order as u8];
            let seeds = order.min(transformed.len());
            for seed in &transformed[..seeds] {
                put_varint(&mut encoded, zigzag(*seed));
            }
            put_packed(&mut encoded, &transformed[seeds..]);
            encoded
        })
        .min_by_key(Vec::len);
    out.extend(best.unwrap_or_default());
}

/// Frame of reference: the minimum, the bit width of the range, the offsets packed.
fn put_packed(out: &mut Vec<u8>, values: &[i64]) {
    let Some(min) = values.iter().min().copied() else { return };
    let range = values.iter().map(|v| v.wrapping_sub(min) as u64).max().unwrap_or(0);
    let width = 64 - range.leading_zeros();
    put_varint(out, zigzag(min));
    out.push(width as u8);
    let mut bits = BitWriter::default();
    for v in values {
        bits.put(v.wrapping_sub(min) as u64, width);
    }
    out.extend(bits.finish());
}

/// The scale (index into [`SCALES`]) turning every value into an exact integer.
fn decimal_scale(values: &[f64]) -> Option<usize> {
    (0..SCALES.len()).find(|k| {
        values.iter().all(|v| {
            // Checked the way it is decoded: through the integer, which has no -0.
            let scaled = (v * SCALES[*k]).round();
            scaled.abs() < EXACT && ((scaled as i64) as f64 / SCALES[*k]).to_bits() == v.to_bits()
        })
    })
}

/// Floats: 0–9 = decimals at that scale, 255 = bit patterns XOR the previous.
fn put_float_column(out: &mut Vec<u8>, values: &[Option<f64>]) {
    put_presence(out, &values.iter().map(Option::is_some).collect::<Vec<_>>());
    let present: Vec<f64> = values.iter().flatten().copied().collect();
    if present.is_empty() {
        return;
    }
    match decimal_scale(&present) {
        Some(k) => {
            out.push(k as u8);
            put_ints(out, &present.iter().map(|v| (v * SCALES[k]).round() as i64).collect::<Vec<_>>());
        }
        None => {
            out.push(255);
            let mut previous = 0u64;
            let xored: Vec<i64> = present
                .iter()
                .map(|v| {
                    let x = v.to_bits() ^ previous;
                    previous = v.to_bits();
                    x as i64
                })
                .collect();
            put_ints(out, &xored);
        }
    }
}

#[derive(Default)]
struct BitWriter {
    bytes: Vec<u8>,
    buffer: u128,
    filled: u32,
}

impl BitWriter {
    fn put(&mut self, value: u64, width: u32) {
        if width == 0 {
            return;
        }
        let value = if width == 64 { value } else { value & ((1u64 << width) - 1) };
        self.buffer |= u128::from(value) << self.filled;
        self.filled += width;
        while self.filled >= 8 {
            self.bytes.push(self.buffer as u8);
            self.buffer >>= 8;
            self.filled -= 8;
        }
    }

    fn finish(mut self) -> Vec<u8> {
        if self.filled > 0 {
            self.bytes.push(self.buffer as u8);
        }
        self.bytes
    }
}

// --- reading ---------------------------------------------------------------------

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn byte(&mut self) -> Result<u8, ChunkError> {
        let b = *self.bytes.get(self.at).ok_or_else(|| corrupt("truncated"))?;
        self.at += 1;
        Ok(b)
    }

    fn varint(&mut self) -> Result<u64, ChunkError> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            value |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(corrupt("varint too long"))
    }

    /// `n` values of `width` bits, least significant first.
    fn bits(&mut self, n: usize, width: u32) -> Result<Vec<u64>, ChunkError> {
        let total = (n as u64 * u64::from(width)).div_ceil(8) as usize;
        let end = self.at.checked_add(total).filter(|e| *e <= self.bytes.len()).ok_or_else(|| corrupt("truncated"))?;
        let slice = &self.bytes[self.at..end];
        self.at = end;
        let mut out = Vec::with_capacity(n);
        let (mut buffer, mut filled, mut next) = (0u128, 0u32, 0usize);
        for _ in 0..n {
            while filled < width {
                buffer |= u128::from(slice[next]) << filled;
                next += 1;
                filled += 8;
            }
            let mask = if width == 64 { u64::MAX } else { (1u64 << width) - 1 };
            out.push(buffer as u64 & mask);
            buffer >>= width;
            filled -= width;
        }
        Ok(out)
    }

    fn presence(&mut self, n: usize) -> Result<Vec<bool>, ChunkError> {
        match self.byte()? {
            0 => Ok(vec![true; n]),
            1 => Ok(vec![false; n]),
            2 => Ok(self.bits(n, 1)?.into_iter().map(|b| b == 1).collect()),
            _ => Err(corrupt("unknown presence map")),
        }
    }

    fn ints(&mut self, n: usize) -> Result<Vec<i64>, ChunkError> {
        if n == 0 {
            return Ok(Vec::new());
        }
        let order = usize::from(self.byte()?);
        if order > 2 {
            return Err(corrupt("unknown differencing order"));
        }
        let seeds = order.min(n);
        let mut values = Vec::with_capacity(n);
        for _ in 0..seeds {
            values.push(unzigzag(self.varint()?));
        }
        if n > seeds {
            let min = unzigzag(self.varint()?);
            let width = u32::from(self.byte()?);
            if width > 64 {
                return Err(corrupt("bit width out of range"));
            }
            values.extend(self.bits(n - seeds, width)?.into_iter().map(|offset| min.wrapping_add(offset as i64)));
        }
        for _ in 0..order {
            let mut sum = 0i64;
            for v in &mut values {
                sum = sum.wrapping_add(*v);
                *v = sum;
            }
        }
        Ok(values)
    }

    fn spread<T: Copy>(present: &[bool], values: Vec<T>) -> Vec<Option<T>> {
        let mut values = values.into_iter();
        present.iter().map(|p| if *p { values.next() } else { None }).collect()
    }

    fn int_column(&mut self, n: usize) -> Result<Vec<Option<i64>>, ChunkError> {
        let present = self.presence(n)?;
        let values = self.ints(present.iter().filter(|p| **p).count())?;
        Ok(Self::spread(&present, values))
    }

    fn float_column(&mut self, n: usize) -> Result<Vec<Option<f64>>, ChunkError> {
        let present = self.presence(n)?;
        let count = present.iter().filter(|p| **p).count();
        if count == 0 {
            return Ok(vec![None; n]);
        }
        let values: Vec<f64> = match self.byte()? {
            k @ 0..=9 => {
                let scale = SCALES[usize::from(k)];
                self.ints(count)?.into_iter().map(|v| v as f64 / scale).collect()
            }
            255 => {
                let mut previous = 0u64;
                self.ints(count)?
                    .into_iter()
                    .map(|x| {
                        previous ^= x as u64;
                        f64::from_bits(previous)
                    })
                    .collect()
            }
            _ => return Err(corrupt("unknown float form")),
        };
        Ok(Self::spread(&present, values))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(i: i64) -> Sample {
        Sample {
            seq: Some(100 + i as u64),
            at: 1_700_000_000_000 + i * 30_000,
            received_at: 1_700_000_000_000 + i * 30_000 + 120,
            cpu_usage: Some(12.5 + (i % 7) as f64 / 10.0),
            memory_usage: Some(41.0),
            disk_usage: Some(63.2),
            load_average: Some(0.42),
            uptime: Some(86_400 + i as u64 * 30),
            response_time: None,
            network_rx: Some(1_000_000 + i as u64 * 123_456),
            network_tx: Some(2_000 + i as u64 * 77),
            disk_io_read: None,
            disk_io_write: Some(5 * i as u64),
            network_rx_rate: None,
            network_tx_rate: None,
            disk_io_read_rate: None,
            disk_io_write_rate: None,
            raw: Value::Null,
        }
    }

    #[test]
    fn a_steady_series_round_trips_in_a_few_bytes_per_row() {
        let mut samples: Vec<Sample> = (0..120).map(sample).collect();
        let rates = derived_rates(&samples);
        for (s, r) in samples.iter_mut().zip(rates) {
            [s.network_rx_rate, s.network_tx_rate, s.disk_io_read_rate, s.disk_io_write_rate] = r;
        }
        samples[0].network_rx_rate = Some(4_115.2); // measured against the previous chunk
        let bytes = encode(&samples);
        assert_eq!(decode(&bytes).unwrap(), samples);
        assert!(bytes.len() < 120 * 4, "{} bytes for 120 rows", bytes.len());
    }

    #[test]
    fn damaged_chunks_are_refused_not_misread() {
        let bytes = encode(&(0..50).map(sample).collect::<Vec<_>>());
        assert!(decode(&bytes[..bytes.len() - 3]).is_err());
        assert!(decode(&[]).is_err());
        let mut wrong_version = bytes.clone();
        wrong_version[0] = 9;
        assert!(decode(&wrong_version).is_err());
        assert_eq!(decode(&encode(&[])).unwrap(), Vec::<Sample>::new());
    }

    mod properties {
        use proptest::prelude::*;

        use super::*;

        /// Every field of a sample as bits, so NaN payloads and `-0.0` count.
        fn bits(s: &Sample) -> Vec<Option<u64>> {
            let floats = [
                s.cpu_usage,
                s.memory_usage,
                s.disk_usage,
                s.load_average,
                s.response_time,
                s.network_rx_rate,
                s.network_tx_rate,
                s.disk_io_read_rate,
                s.disk_io_write_rate,
            ];
            [s.seq, Some(s.at as u64), Some(s.received_at as u64), s.uptime, s.network_rx, s.network_tx]
                .into_iter()
                .chain([s.disk_io_read, s.disk_io_write])
                .chain(floats.into_iter().map(|f| f.map(f64::to_bits)))
                .collect()
        }

        /// Floats as agents send them (short decimals, steps, zeros) and as they must
        /// never be mangled (any bit pattern).
        fn float() -> impl Strategy<Value = Option<f64>> {
            prop_oneof![
                3 => (0i64..100_000, 0usize..4).prop_map(|(v, k)| Some(v as f64 / SCALES[k])),
                1 => any::<u64>().prop_map(|b| Some(f64::from_bits(b))),
                1 => prop_oneof![Just(0.0), Just(-0.0), Just(f64::MAX), Just(f64::MIN_POSITIVE), Just(1e-320)].prop_map(Some),
                1 => Just(None),
            ]
        }

        fn integer() -> impl Strategy<Value = Option<u64>> {
            prop_oneof![3 => (0u64..1 << 40).prop_map(Some), 1 => any::<u64>().prop_map(Some), 1 => Just(None)]
        }

        fn series() -> impl Strategy<Value = Vec<Sample>> {
            let row = (
                (integer(), -5_000i64..120_000, any::<i64>(), 0usize..4),
                (float(), float(), float(), float(), float()),
                (integer(), integer(), integer(), integer(), integer()),
                (float(), float(), float(), float()),
            );
            (any::<i64>(), prop::collection::vec(row, 0..300)).prop_map(|(start, rows)| {
                let mut at = start / 2;
                let mut samples: Vec<Sample> = rows
                    .into_iter()
                    .map(|((seq, step, received, keep_rates), f, c, r)| {
                        at = at.wrapping_add(step);
                        let mut s = Sample {
                            seq,
                            at,
                            received_at: if received % 3 == 0 { received } else { at + received % 5_000 },
                            cpu_usage: f.0,
                            memory_usage: f.1,
                            disk_usage: f.2,
                            load_average: f.3,
                            uptime: c.0,
                            response_time: f.4,
                            network_rx: c.1,
                            network_tx: c.2,
                            disk_io_read: c.3,
                            disk_io_write: c.4,
                            network_rx_rate: r.0,
                            network_tx_rate: r.1,
                            disk_io_read_rate: r.2,
                            disk_io_write_rate: r.3,
                            raw: Value::Null,
                        };
                        // Mostly the rates ingest computed; now and then whatever it was.
                        if keep_rates > 0 {
                            s.network_rx_rate = Some(f64::NAN); // replaced below
                        }
                        s
                    })
                    .collect();
                let derived = derived_rates(&samples);
                for (s, d) in samples.iter_mut().zip(derived) {
                    if s.network_rx_rate.is_some_and(f64::is_nan) {
                        [s.network_rx_rate, s.network_tx_rate, s.disk_io_read_rate, s.disk_io_write_rate] = d;
                    }
                }
                samples
            })
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

            #[test]
            fn chunks_decode_to_exactly_what_was_written(samples in series()) {
                let decoded = decode(&encode(&samples)).expect("decodes");
                prop_assert_eq!(decoded.len(), samples.len());
                for (d, s) in decoded.iter().zip(&samples) {
                    prop_assert_eq!(bits(d), bits(s));
                    prop_assert_eq!(&d.raw, &Value::Null);
                }
            }
        }
    }
}
