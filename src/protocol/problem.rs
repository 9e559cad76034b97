//! What an error response body says.
//!
//! Servers explain failures in several shapes (docs/protocol.md P8): RFC 9457
//! `application/problem+json` (`title`, `detail`), JSON:API as Ring sends it
//! (`{"errors":[{"status":"503","title":..,"detail":..}]}`, status as a
//! string), MediaMTX (`{"status":"error","error":".."}`), other JSON with
//! `message` or `error`, and plain text (Millicast). Content types are not
//! reliable, so JSON is sniffed from the body too. Garbage never fails: the
//! worst case is an empty [`Problem`].

use std::fmt;

use serde_json::{Map, Value};

/// The longest title or detail kept, in characters: enough for any real
/// message, short enough for a log line when a server answers with a page of
/// HTML.
const MAX_CHARS: usize = 300;

/// The human-readable part of an error response.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Problem {
    pub title: Option<String>,
    pub detail: Option<String>,
}

impl Problem {
    pub fn is_empty(&self) -> bool {
        self.title.is_none() && self.detail.is_none()
    }
}

/// "title: detail", "title", "detail" or "" depending on what is known.
impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.title, &self.detail) {
            (Some(title), Some(detail)) => write!(f, "{title}: {detail}"),
            (Some(text), None) | (None, Some(text)) => f.write_str(text),
            (None, None) => Ok(()),
        }
    }
}

/// Reads an error body. `content_type` is the raw header value, if any.
pub fn parse_error_body(content_type: Option<&str>, body: &[u8]) -> Problem {
    parse_error_body_redacted(content_type, body, None)
}

/// [`parse_error_body`], with every occurrence of `secret` (a server may
/// echo the token it rejected) replaced by `<redacted>` in each text before
/// it is cut to [`MAX_CHARS`]: cut first, an echo across the cut would leave
/// the token's first characters in the message.
pub(crate) fn parse_error_body_redacted(
    content_type: Option<&str>,
    body: &[u8],
    secret: Option<&str>,
) -> Problem {
    let texts = Texts {
        secret: secret.filter(|s| !s.is_empty()),
    };
    let text = String::from_utf8_lossy(body);
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Problem::default();
    }
    let says_json = content_type
        .map(|ct| ct.to_ascii_lowercase().contains("json"))
        .unwrap_or(false);
    if says_json || trimmed.starts_with('{') || trimmed.starts_with('[') {
        if let Ok(value) = serde_json::from_str::<Value>(trimmed) {
            let problem = texts.of_json(&value);
            if !problem.is_empty() {
                return problem;
            }
        }
    }
    Problem {
        title: None,
        detail: texts.clean(trimmed),
    }
}

/// Turns server texts into message texts: scrubbed, then cleaned.
struct Texts<'a> {
    secret: Option<&'a str>,
}

impl Texts<'_> {
    fn of_json(&self, value: &Value) -> Problem {
        match value {
            Value::Object(object) => self.of_object(object),
            Value::String(text) => Problem {
                title: None,
                detail: self.clean(text),
            },
            // A bare array: some APIs send the JSON:API `errors` list alone.
            Value::Array(items) => items.first().map(|v| self.of_json(v)).unwrap_or_default(),
            _ => Problem::default(),
        }
    }

    fn of_object(&self, object: &Map<String, Value>) -> Problem {
        // JSON:API (Ring): the first error carries the message.
        if let Some(first) = object
            .get("errors")
            .and_then(Value::as_array)
            .and_then(|errors| errors.first())
        {
            let problem = self.of_json(first);
            if !problem.is_empty() {
                return problem;
            }
        }
        let title = self.string_field(object, "title");
        // RFC 9457 `detail`; MediaMTX's `error`; generic `message`.
        let detail = self
            .string_field(object, "detail")
            .or_else(|| self.string_field(object, "error"))
            .or_else(|| self.string_field(object, "message"))
            .or_else(|| self.string_field(object, "error_description"));
        let mut problem = Problem { title, detail };
        // `{"error": {"message": ..}}` (Google-style) nests the explanation.
        if problem.detail.is_none() {
            if let Some(Value::Object(nested)) = object.get("error") {
                let inner = self.of_object(nested);
                problem.detail = inner.detail.or(inner.title);
            }
        }
        problem
    }

    fn string_field(&self, object: &Map<String, Value>, key: &str) -> Option<String> {
        object
            .get(key)
            .and_then(Value::as_str)
            .and_then(|t| self.clean(t))
    }

    /// The secret replaced on the whole text, then [`clean`]ed.
    fn clean(&self, text: &str) -> Option<String> {
        match self.secret {
            Some(secret) if text.contains(secret) => clean(&text.replace(secret, "<redacted>")),
            _ => clean(text),
        }
    }
}

/// One line, no control characters, at most [`MAX_CHARS`] characters, or
/// `None` if nothing is left.
fn clean(text: &str) -> Option<String> {
    let mut out = String::new();
    let mut count = 0;
    for word in text.split(|c: char| c.is_whitespace() || c.is_control()) {
        if word.is_empty() {
            continue;
        }
        if !out.is_empty() {
            out.push(' ');
            count += 1;
        }
        for c in word.chars() {
            if count >= MAX_CHARS {
                out.push('…');
                return Some(out);
            }
            out.push(c);
            count += 1;
        }
    }
    (!out.is_empty()).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_does_not_fail() {
        assert_eq!(parse_error_body(None, b""), Problem::default());
        assert_eq!(
            parse_error_body(Some("application/json"), b"  \n"),
            Problem::default()
        );
        let p = parse_error_body(Some("application/json"), b"{not json");
        assert_eq!(p.detail.as_deref(), Some("{not json"));
        let p = parse_error_body(None, &[0xff, 0xfe, b'x']);
        assert!(p.detail.is_some());
        assert_eq!(parse_error_body(None, b"{}").detail.as_deref(), Some("{}"));
        assert_eq!(parse_error_body(None, b"[]").detail.as_deref(), Some("[]"));
        assert_eq!(parse_error_body(None, b"42").detail.as_deref(), Some("42"));
    }

    #[test]
    fn long_text_is_truncated() {
        let body = "x".repeat(5000);
        let detail = parse_error_body(Some("text/plain"), body.as_bytes())
            .detail
            .unwrap();
        assert_eq!(detail.chars().count(), MAX_CHARS + 1);
    }

    #[test]
    fn an_echoed_token_is_redacted_before_the_text_is_cut() {
        const TOKEN: &str = "tok-SECRET-123";
        // The token straddles the cut at MAX_CHARS.
        let body = format!("{}{TOKEN} rejected", "x".repeat(MAX_CHARS - 6));
        for body in [
            body.clone(),
            format!(r#"{{"detail":"{body}","title":"{TOKEN}"}}"#),
        ] {
            let p = parse_error_body_redacted(None, body.as_bytes(), Some(TOKEN));
            let text = p.to_string();
            for end in 4..=TOKEN.len() {
                assert!(!text.contains(&TOKEN[..end]), "{} in {text}", &TOKEN[..end]);
            }
            assert!(text.contains("<redac"), "{text}");
        }
    }

    #[test]
    fn nested_error_object() {
        let p = parse_error_body(None, br#"{"error":{"code":7,"message":"nope"}}"#);
        assert_eq!(p.detail.as_deref(), Some("nope"));
    }

    #[test]
    fn display() {
        let p = Problem {
            title: Some("T".into()),
            detail: Some("D".into()),
        };
        assert_eq!(p.to_string(), "T: D");
        assert_eq!(Problem::default().to_string(), "");
    }
}
