//! What a successful exchange yields, per request type.

use std::fmt;

use url::Url;

use super::auth::redact_url;
use super::ice_server::IceServer;
use super::link::Extension;

/// Result of a DELETE (RFC 9725 §4.2, docs/protocol.md P13: 404 means the
/// session is gone already, which is what the caller wanted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteOutcome {
    Deleted,
    AlreadyGone,
}

/// Result of a trickle PATCH. Any non-2xx status means the server does not
/// trickle (docs/protocol.md P11: 405, 422, 501 and others) and the session goes on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrickleOutcome {
    Accepted { etag: Option<String> },
    NotSupported { status: u16 },
}

/// The server's half of an ICE restart (RFC 9725 §4.3.3, docs/protocol.md P12).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IceRestartAnswer {
    pub sdpfrag: String,
    pub etag: Option<String>,
}

/// What an OPTIONS on the endpoint told (docs/protocol.md P10: MediaMTX and Janus
/// announce ICE servers there, before any offer is sent).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OptionsResponse {
    pub ice_servers: Vec<IceServer>,
    pub extensions: Vec<Extension>,
    pub accept_patch: Option<String>,
    pub allow: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnswerKind {
    /// A 2xx with an SDP answer.
    Answer,
    /// WHEP: `406` with `Content-Type: application/sdp` carries a server
    /// offer that the client answers with a PATCH (docs/protocol.md P17).
    CounterOffer,
}

/// The server's reply to the offer.
#[derive(Clone, PartialEq, Eq)]
pub struct OfferResponse {
    pub kind: AnswerKind,
    pub status: u16,
    pub sdp: String,
    /// The URL that actually answered, after redirects.
    pub answered_url: Url,
    /// `Location` resolved against `answered_url`; `None` if the server sent
    /// none (docs/protocol.md P4: no PATCH/DELETE possible then, warn).
    pub session_url: Option<Url>,
    /// The `ETag` exactly as received, quotes and all.
    pub etag: Option<String>,
    pub ice_servers: Vec<IceServer>,
    /// Other `Link` relations, targets resolved against `answered_url`.
    pub extensions: Vec<Extension>,
    pub protocol_version: Option<String>,
    pub accept_patch: Option<String>,
}

/// URLs are redacted (SRS puts a token in the session URL's query) and the
/// SDP is summarised (it holds the ICE password).
impl fmt::Debug for OfferResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OfferResponse")
            .field("kind", &self.kind)
            .field("status", &self.status)
            .field("sdp", &format_args!("<{} bytes>", self.sdp.len()))
            .field("answered_url", &redact_url(&self.answered_url))
            .field("session_url", &self.session_url.as_ref().map(redact_url))
            .field("etag", &self.etag)
            .field("ice_servers", &self.ice_servers)
            .field("extensions", &self.extensions)
            .field("protocol_version", &self.protocol_version)
            .field("accept_patch", &self.accept_patch)
            .finish()
    }
}
