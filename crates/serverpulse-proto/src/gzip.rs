//! Inflating a body an agent sent with `Content-Encoding: gzip` (PROTOCOL.md: agents may
//! compress what they post), bounded so that a small bomb cannot expand without limit.
//!
//! The hub and the load benchmark's parse-only floor both inflate through here, so the
//! floor pays exactly what the hub pays for this step.

use std::io::Read;

/// Why a gzip body could not be inflated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InflateError {
    /// Not a valid gzip member (bad header, corrupt data, wrong checksum or length).
    #[error("is not valid gzip: {0}")]
    Invalid(String),
    /// Inflated, it would be longer than the limit.
    #[error("inflates to more than {limit} bytes")]
    TooLarge { limit: usize },
}

/// The first gzip member of `compressed`, inflated, if it is at most `limit` bytes.
///
/// Reads the slice in place (no intermediate read buffer: the decoder takes its input
/// straight from `compressed`), and stops one byte past `limit`.
pub fn inflate(compressed: &[u8], limit: usize) -> Result<Vec<u8>, InflateError> {
    let mut out = Vec::with_capacity(compressed.len().saturating_mul(4).min(limit));
    let mut decoder = flate2::bufread::GzDecoder::new(compressed).take(limit as u64 + 1);
    decoder.read_to_end(&mut out).map_err(|e| InflateError::Invalid(e.to_string()))?;
    if out.len() > limit {
        return Err(InflateError::TooLarge { limit });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        encoder.write_all(bytes).unwrap();
        encoder.finish().unwrap()
    }

    #[test]
    fn a_body_inflates_to_what_was_compressed() {
        let text = br#"{"reports":[{"seq":1,"metrics":{"cpu_usage":12.5}}]}"#.repeat(50);
        assert_eq!(inflate(&gzip(&text), text.len()).unwrap(), text);
    }

    #[test]
    fn a_bomb_is_refused_by_its_inflated_size() {
        let compressed = gzip(&vec![b' '; 1_000_000]);
        assert!(compressed.len() < 10_000);
        assert_eq!(inflate(&compressed, 999_999), Err(InflateError::TooLarge { limit: 999_999 }));
        assert_eq!(inflate(&compressed, 1_000_000).unwrap().len(), 1_000_000);
    }

    #[test]
    fn corrupt_or_truncated_gzip_is_invalid() {
        let mut compressed = gzip(b"{\"seq\": 1}");
        assert!(matches!(inflate(b"{\"seq\": 1}", 1_000), Err(InflateError::Invalid(_))));
        assert!(matches!(inflate(&compressed[..compressed.len() - 6], 1_000), Err(InflateError::Invalid(_))));
        // A wrong CRC-32 in the trailer.
        let crc_at = compressed.len() - 8;
        compressed[crc_at] ^= 0xff;
        assert!(matches!(inflate(&compressed, 1_000), Err(InflateError::Invalid(_))));
    }
}
