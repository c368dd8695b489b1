//! A report's document as stored beside its sample: compressed, in one of two forms.
//!
//! Every report's document is kept for the detail window (hours), so the rows written
//! per report are mostly this text: ~2.5 KB for this workspace's agent, which SQLite
//! writes to its log and then to the database file, a page or so per report.
//!
//! - A report that came alone in a gzip-encoded request (as the agent sends them) keeps
//!   that request body as it arrived: ~1 KB, and nothing to compress again
//!   ([`Document::GzipBody`], `raw_packing` 1).
//! - Any other document is LZ4-compressed: ~60 % of its text for a few microseconds
//!   (`raw_packing` NULL, which is also what rows from before the gzip form hold).
//!
//! Reading a document back (the server page's detail, a rule replayed) is rare.

use std::borrow::Cow;
use std::io::Read;

use serverpulse_proto::report::{Document, report_of_body};

use crate::{StoreError, StoreResult};

/// `raw_packing` of a document kept as the gzip request body that carried it.
const GZIP_BODY: i64 = 1;

/// A document packed for its row: `raw_packed`, and how (`raw_packing`). A gzip body
/// is borrowed from the document as it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packed<'a> {
    pub bytes: Cow<'a, [u8]>,
    pub packing: Option<i64>,
}

/// `document` packed for the `raw_packed` and `raw_packing` columns.
pub fn pack(document: &Document) -> Packed<'_> {
    match document {
        Document::GzipBody(body) => Packed { bytes: Cow::Borrowed(body), packing: Some(GZIP_BODY) },
        Document::Text(text) => lz4(text),
        Document::Parsed(value) => lz4(&value.to_string()),
    }
}

fn lz4(text: &str) -> Packed<'static> {
    Packed { bytes: Cow::Owned(lz4_flex::block::compress_prepend_size(text.as_bytes())), packing: None }
}

/// The text [`pack`] packed as `packing`; anything else is [`StoreError::Corrupt`].
pub fn unpack(packed: &[u8], packing: Option<i64>) -> StoreResult<String> {
    let corrupt = |problem: String| StoreError::Corrupt(format!("packed report document: {problem}"));
    match packing {
        None => {
            let bytes = lz4_flex::block::decompress_size_prepended(packed).map_err(|e| corrupt(e.to_string()))?;
            String::from_utf8(bytes).map_err(|e| corrupt(e.to_string()))
        }
        Some(GZIP_BODY) => {
            let mut body = String::new();
            flate2::read::GzDecoder::new(packed).read_to_string(&mut body).map_err(|e| corrupt(e.to_string()))?;
            Ok(report_of_body(body))
        }
        Some(other) => Err(corrupt(format!("unknown packing {other}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    const TEXT: &str = r#"{"seq":7,"metrics":{"cpu_usage":12.5,"detail":{"processes":{"top_cpu":[{"name":"nginx"},{"name":"nginx"}]}}},"note":"é"}"#;

    fn gzip(text: impl AsRef<[u8]>) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(text.as_ref()).unwrap();
        encoder.finish().unwrap()
    }

    #[test]
    fn a_document_unpacks_to_the_text_packed() {
        let document = Document::Text(TEXT.to_owned());
        let packed = pack(&document);
        assert!(packed.bytes.len() < TEXT.len(), "{} bytes from {}", packed.bytes.len(), TEXT.len());
        assert_eq!(unpack(&packed.bytes, packed.packing).expect("unpacks"), TEXT);
        let document = Document::Text(String::new());
        let empty = pack(&document);
        assert_eq!(unpack(&empty.bytes, empty.packing).expect("unpacks"), "");
        let parsed: serde_json::Value = serde_json::from_str(TEXT).unwrap();
        let document = Document::Parsed(parsed.clone());
        let packed = pack(&document);
        let back: serde_json::Value = serde_json::from_str(&unpack(&packed.bytes, packed.packing).unwrap()).unwrap();
        assert_eq!(back, parsed);
    }

    #[test]
    fn a_gzip_body_is_kept_as_sent_and_reads_back_as_its_report() {
        for body in [format!(r#"{{"reports":[{TEXT}]}}"#), format!(" {{\"reports\":[\n{TEXT} ]}}\n"), TEXT.to_owned()] {
            let sent = gzip(&body);
            let document = Document::GzipBody(sent.clone());
            let packed = pack(&document);
            assert_eq!(packed, Packed { bytes: Cow::Borrowed(&sent[..]), packing: Some(GZIP_BODY) });
            assert_eq!(unpack(&packed.bytes, packed.packing).expect("unpacks"), TEXT, "{body}");
        }
    }

    #[test]
    fn damaged_bytes_are_refused_not_misread() {
        let document = Document::Text(r#"{"seq":7,"metrics":{"cpu_usage":12.5}}"#.to_owned());
        let packed = pack(&document);
        let corrupt = |result: StoreResult<String>| matches!(result, Err(StoreError::Corrupt(_)));
        assert!(corrupt(unpack(&packed.bytes[..packed.bytes.len() - 3], None)));
        assert!(corrupt(unpack(&[200, 0, 0, 0, 0x10], None)));
        assert!(corrupt(unpack(&lz4_flex::block::compress_prepend_size(&[0xff, 0xfe]), None)));
        let sent = gzip(TEXT);
        assert!(corrupt(unpack(&sent[..sent.len() - 6], Some(GZIP_BODY))), "a cut stream fails its length check");
        assert!(corrupt(unpack(&gzip([0xff, 0xfe]), Some(GZIP_BODY))), "not UTF-8");
        assert!(corrupt(unpack(&packed.bytes, Some(GZIP_BODY))), "not gzip");
        assert!(corrupt(unpack(&packed.bytes, Some(7))), "an unknown packing");
    }
}
