//! Resolving `Location` headers.
//!
//! RFC 9725 §4.2, docs/protocol.md P5: resolve per RFC 3986 against the URL that
//! actually answered (after redirects), keeping the query. The field uses
//! absolute URLs (Ring), rooted paths (MediaMTX, LiveKit, Twitch, Broadcast
//! Box) and rooted paths with a query carrying a token (SRS). The same rule
//! applies to the `Location` of a redirect.

use reqwest::header::HeaderValue;
use url::Url;

/// The resolved URL, or a message saying why it cannot be used. The message
/// never quotes the header, which may carry a token.
pub(crate) fn resolve_location(base: &Url, value: &HeaderValue) -> Result<Url, String> {
    let text = std::str::from_utf8(value.as_bytes())
        .map_err(|_| "the Location header is not valid UTF-8".to_owned())?;
    let resolved = base
        .join(text.trim())
        .map_err(|e| format!("the Location header is not a valid URI reference ({e})"))?;
    match resolved.scheme() {
        "http" | "https" => Ok(resolved),
        other => Err(format!(
            "the Location header points to a {other}: URL, not http(s)"
        )),
    }
}

/// A blank `Location` is treated like a missing one (docs/protocol.md P4: no
/// PATCH/DELETE possible) rather than as an error.
pub(crate) fn is_blank(value: &HeaderValue) -> bool {
    value.as_bytes().iter().all(u8::is_ascii_whitespace)
}
