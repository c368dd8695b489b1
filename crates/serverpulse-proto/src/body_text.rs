//! A request body's JSON text kept beside the document parsed from it, for documents
//! stored as their sender wrote them ([`crate::report::MetricsBody::into_reports_with_text`]).
//!
//! Parsing here is one pass, as `serde_json::from_str::<Value>` is, and also notes
//! whether the top-level object names a member twice (the document keeps the last). A
//! body that does not is what its text says it is, which is what lets a batch of one
//! be cut out of its text by the brackets around it instead of a second pass over it.

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, Visitor};
use serde_json::{Map, Value};

/// The text a body's document was parsed from ([`BodyText::parse`]), and the body as
/// it was sent where that was compressed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyText {
    text: String,
    repeated_member: bool,
    gzip: Option<Vec<u8>>,
}

impl BodyText {
    /// Parses `text` as one JSON document: the document, and the text with what the
    /// parse saw of it.
    pub fn parse(text: String) -> serde_json::Result<(Value, Self)> {
        let starts_an_object = text.trim_start().starts_with('{');
        let (document, repeated_member) = if starts_an_object {
            let mut deserializer = serde_json::Deserializer::from_str(&text);
            let parsed = TopLevelObject.deserialize(&mut deserializer)?;
            deserializer.end()?;
            parsed
        } else {
            (serde_json::from_str(&text)?, false)
        };
        Ok((document, Self { text, repeated_member, gzip: None }))
    }

    /// The same text, which came as the gzip stream `body` (`Content-Encoding: gzip`).
    pub fn sent_as_gzip(self, body: Vec<u8>) -> Self {
        Self { gzip: Some(body), ..self }
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the top-level object names some member more than once (the parsed
    /// document holds the last one given, while the text holds them all).
    pub fn repeated_member(&self) -> bool {
        self.repeated_member
    }

    /// The text, and the gzip stream it came as, if it did.
    pub fn into_parts(self) -> (String, Option<Vec<u8>>) {
        (self.text, self.gzip)
    }
}

/// The top-level object: built as `Value`'s own visitor builds one, noting a member
/// named again.
struct TopLevelObject;

impl<'de> DeserializeSeed<'de> for TopLevelObject {
    type Value = (Value, bool);

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for TopLevelObject {
    type Value = (Value, bool);

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut members: A) -> Result<Self::Value, A::Error> {
        let mut object = Map::new();
        let mut repeated = false;
        while let Some(name) = members.next_key::<String>()? {
            let value = members.next_value::<Value>()?;
            repeated |= object.insert(name, value).is_some();
        }
        Ok((Value::Object(object), repeated))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> (Value, BodyText) {
        BodyText::parse(text.to_owned()).unwrap()
    }

    #[test]
    fn the_document_is_what_serde_json_parses_and_the_text_is_kept() {
        for text in [
            r#" {"a": [1, 2.5, "x\u00e9"], "b": {"c": null, "d": true}, "e": -3} "#,
            "{}",
            "[1, {\"a\": 1}]",
            "\"just a string\"",
            "42",
            "null",
        ] {
            let (document, body) = parse(text);
            assert_eq!(document, serde_json::from_str::<Value>(text).unwrap(), "{text}");
            assert_eq!(body.as_str(), text);
            assert!(!body.repeated_member(), "{text}");
        }
    }

    #[test]
    fn a_member_named_twice_at_the_top_is_noticed_and_the_last_is_kept() {
        for text in [r#"{"reports":[1],"reports":[2]}"#, r#"{"reports":[1],"report\u0073":[2]}"#] {
            let (document, body) = parse(text);
            assert!(body.repeated_member(), "{text}");
            assert_eq!(document, serde_json::json!({"reports": [2]}), "{text}");
        }
        // Deeper down it is the document's business, as in any parse.
        let (_, body) = parse(r#"{"reports":[{"seq":1,"seq":2}],"note":{"a":1,"a":2}}"#);
        assert!(!body.repeated_member());
    }

    #[test]
    fn invalid_json_is_refused_as_serde_json_refuses_it() {
        for text in ["{", r#"{"a":1} x"#, r#"{"a":NaN}"#, "{\"a\":1,}", "[1,]", ""] {
            let ours = BodyText::parse(text.to_owned()).unwrap_err();
            let theirs = serde_json::from_str::<Value>(text).unwrap_err();
            assert_eq!(ours.classify(), theirs.classify(), "{text}");
            assert_eq!((ours.line(), ours.column()), (theirs.line(), theirs.column()), "{text}");
        }
    }
}
