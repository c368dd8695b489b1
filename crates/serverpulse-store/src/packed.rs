//! A report's document as stored beside its sample: its JSON text, LZ4-compressed.
//!
//! Every report's document is kept for the detail window (hours), so the rows written
//! per report are mostly this text: ~2.5 KB for this workspace's agent, which SQLite
//! writes to its log and then to the database file, a page or so per report. LZ4 takes
//! it to ~1.5 KB for a few microseconds per report, about what SQLite then saves
//! (docs/benchmarks.md), and reading a document back (the server page's detail, a rule
//! replayed) is rare.

use crate::{StoreError, StoreResult};

/// `text` packed for the `raw_packed` column.
pub fn pack(text: &str) -> Vec<u8> {
    lz4_flex::block::compress_prepend_size(text.as_bytes())
}

/// The text [`pack`] packed; anything else is [`StoreError::Corrupt`].
pub fn unpack(packed: &[u8]) -> StoreResult<String> {
    let bytes = lz4_flex::block::decompress_size_prepended(packed)
        .map_err(|e| StoreError::Corrupt(format!("packed report document: {e}")))?;
    String::from_utf8(bytes).map_err(|e| StoreError::Corrupt(format!("packed report document: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_document_unpacks_to_the_text_packed() {
        let text = r#"{"seq":7,"metrics":{"cpu_usage":12.5,"detail":{"processes":{"top_cpu":[{"name":"nginx"},{"name":"nginx"}]}}},"note":"é"}"#;
        let packed = pack(text);
        assert!(packed.len() < text.len(), "{} bytes from {}", packed.len(), text.len());
        assert_eq!(unpack(&packed).expect("unpacks"), text);
        assert_eq!(unpack(&pack("")).expect("unpacks"), "");
    }

    #[test]
    fn damaged_bytes_are_refused_not_misread() {
        let packed = pack(r#"{"seq":7,"metrics":{"cpu_usage":12.5}}"#);
        assert!(matches!(unpack(&packed[..packed.len() - 3]), Err(StoreError::Corrupt(_))));
        assert!(matches!(unpack(&[200, 0, 0, 0, 0x10]), Err(StoreError::Corrupt(_))));
        let invalid_utf8 = lz4_flex::block::compress_prepend_size(&[0xff, 0xfe]);
        assert!(matches!(unpack(&invalid_utf8), Err(StoreError::Corrupt(_))));
    }
}
