//! The WHIP (RFC 9725) and WHEP HTTP exchanges, as plain async Rust.
//!
//! No GStreamer in here: the elements hand SDP strings in and get SDP strings,
//! session URLs and ICE servers out. Comments cite the specifications by
//! section (RFC 9725 for WHIP, draft-ietf-wish-whep for WHEP) and the rules
//! of `docs/protocol.md` by number ("P9"); that page says, for each rule,
//! which servers need it and where the code applies it.

mod auth;
mod client;
pub use client::prewarm as prewarm_http;
mod error;
mod exchange;
mod ice_server;
mod link;
mod location;
mod problem;
mod proxy;
mod redirect;
mod responses;
mod retry_after;
mod sdpfrag;

pub use auth::{redact_url, AuthToken};
pub use client::{Client, ClientConfig};
pub use error::ProtocolError;
pub use ice_server::IceServer;
pub use link::{parse_link_headers, Extension};
pub use problem::{parse_error_body, Problem};
pub use redirect::RedirectAuth;
pub use responses::{
    AnswerKind, DeleteOutcome, IceRestartAnswer, OfferResponse, OptionsResponse, TrickleOutcome,
};
pub use retry_after::parse_retry_after;
pub use sdpfrag::{parse_sdpfrag, trickle_sdpfrag, FragMedia, SdpFrag};
