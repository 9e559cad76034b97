//! Properties shared by the server elements (whipserversrc, whepserversink).

use std::time::Duration;

use gst::glib;
use gst::prelude::*;

use crate::element::{ice_addresses_pspec, split_list};
use crate::peer::PeerSettings;
use crate::protocol::AuthToken;

pub const DEFAULT_ADDRESS: &str = "127.0.0.1:8190";
/// Enough to reorder a few packets on a LAN; webrtcbin's 200 ms default
/// would add 200 ms to every stream's first frame.
pub const DEFAULT_LATENCY_MS: u32 = 50;
/// A client that sent nothing for this long is gone (killed, unplugged):
/// well above the 0.5 to 1 s at which browsers and our clients report.
pub const DEFAULT_PEER_TIMEOUT_MS: u32 = 5000;
/// Sessions an element serves at once.
pub const DEFAULT_MAX_SESSIONS: u32 = 100;

#[derive(Clone)]
pub struct ServerSettings {
    pub address: String,
    pub path: String,
    pub auth_token: Option<AuthToken>,
    pub ice_addresses: Vec<String>,
    pub latency_ms: u32,
    pub max_session_duration_s: u32,
    /// 0: only a failed or closed connection ends a silent client.
    pub peer_timeout_ms: u32,
    /// 0: no limit.
    pub max_sessions: u32,
    /// whipserversrc only.
    pub allow_multiple_publishers: bool,
    /// whipserversrc only: the codecs publishers may send, in the server's
    /// preference order; None: any codec, in the publisher's order.
    pub video_caps: Option<gst::Caps>,
    pub audio_caps: Option<gst::Caps>,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            address: DEFAULT_ADDRESS.into(),
            path: "/".into(),
            auth_token: None,
            ice_addresses: Vec::new(),
            latency_ms: DEFAULT_LATENCY_MS,
            max_session_duration_s: 0,
            peer_timeout_ms: DEFAULT_PEER_TIMEOUT_MS,
            max_sessions: DEFAULT_MAX_SESSIONS,
            allow_multiple_publishers: false,
            video_caps: None,
            audio_caps: None,
        }
    }
}

impl ServerSettings {
    /// whipserversrc's properties: it receives, so it has a jitterbuffer
    /// `latency`; and `allow-multiple-publishers`.
    pub fn whip_properties() -> Vec<glib::ParamSpec> {
        let mut props = Self::common_properties(
            "The path publishers POST their WHIP offers to, or below it when no other \
             element on the same address serves that deeper path (\"/whip\" takes \
             /whip/cam1 too; the publisher-path signal tells which), and under which their \
             sessions live. Elements with the same address share one HTTP server, each on \
             its own path: a whipserversrc on /whip and whepserversinks on /whep/<name> make \
             a relay on one port. Set it in NULL state: it is read when the element goes to \
             READY.",
        );
        props.push(
            glib::ParamSpecUInt::builder("latency")
                .nick("Jitterbuffer latency")
                .blurb("Milliseconds of receive jitterbuffer for each publisher")
                .maximum(10_000)
                .default_value(DEFAULT_LATENCY_MS)
                .mutable_ready()
                .build(),
        );
        for media in ["video", "audio"] {
            let example = if media == "video" {
                "\"video/x-vp9\" or \"video/x-h264;video/x-vp8\""
            } else {
                "\"audio/x-opus\""
            };
            props.push(
                glib::ParamSpecBoxed::builder::<gst::Caps>(&format!("{media}-caps"))
                    .nick(if media == "video" {
                        "Video codecs"
                    } else {
                        "Audio codecs"
                    })
                    .blurb(&format!(
                        "The {media} codecs publishers may send, as encoded caps in this \
                         server's preference order, e.g. {example}: offers are answered \
                         with the first of these they carry, and an offer with none of them \
                         gets 400. Unset (the default): any codec the element handles, in the \
                         publisher's order. Applies to offers that come after it is set."
                    ))
                    .mutable_playing()
                    .build(),
            );
        }
        props.push(
            glib::ParamSpecBoolean::builder("allow-multiple-publishers")
                .nick("Allow multiple publishers")
                .blurb(
                    "Whether a path that has a publisher takes another one (each gets its own \
                     pads). Off: a second publisher on the same path gets 409 Conflict with \
                     Retry-After until the first one leaves (a relay name is published once).",
                )
                .default_value(false)
                .mutable_playing()
                .build(),
        );
        props
    }

    /// whepserversink's properties: it only sends, so no `latency`.
    pub fn whep_properties() -> Vec<glib::ParamSpec> {
        Self::common_properties(
            "The path viewers POST their WHEP offers to, or below it when no other element on \
             the same address serves that deeper path, and under which their sessions live; \
             a GET of it shows a WHEP player page. Elements with the same address share one \
             HTTP server, each on its own path: a whipserversrc on /whip and whepserversinks \
             on /whep/<name> make a relay on one port. Set it in NULL state: it is read when \
             the element goes to READY.",
        )
    }

    // `address`, `path` and `auth-token` are read when the element goes to
    // READY, which is when it binds: set in READY they would only apply after
    // going back to NULL. GStreamer has no flag for "NULL state only" (the
    // absence of GST_PARAM_MUTABLE_* is its convention for it, as for
    // udpsrc's port), so their descriptions say it.
    fn common_properties(path_blurb: &'static str) -> Vec<glib::ParamSpec> {
        vec![
            glib::ParamSpecString::builder("address")
                .nick("Listen address")
                .blurb(
                    "host:port the HTTP server listens on, e.g. 127.0.0.1:8190 or [::]:8080. \
                     Port 0 picks a free port (see bound-address). Set it in NULL state: it is \
                     read when the element goes to READY.",
                )
                .default_value(Some(DEFAULT_ADDRESS))
                .build(),
            glib::ParamSpecString::builder("path")
                .nick("Path")
                .blurb(path_blurb)
                .default_value(Some("/"))
                .build(),
            glib::ParamSpecString::builder("bound-address")
                .nick("Bound address")
                .blurb("host:port the server actually listens on, from READY on (read-only)")
                .read_only()
                .build(),
            glib::ParamSpecString::builder("auth-token")
                .nick("Authorization token")
                .blurb(
                    "If set, POST, PATCH and DELETE must carry \"Authorization: Bearer <token>\"; \
                     others get 401 with a JSON problem body. Write-only, never logged. Set it in \
                     NULL state: it is read when the element goes to READY.",
                )
                .write_only()
                .build(),
            ice_addresses_pspec(),
            glib::ParamSpecUInt::builder("max-session-duration")
                .nick("Maximum session duration")
                .blurb(
                    "Seconds after which the server ends a session, as device endpoints do \
                     (Ring: 30 or 60 s): its media stops, its peer closes and its Location is \
                     forgotten (a later DELETE gets 404). 0: no limit.",
                )
                .maximum(86_400)
                .default_value(0)
                .mutable_playing()
                .build(),
            glib::ParamSpecUInt::builder("peer-timeout")
                .nick("Peer timeout")
                .blurb(
                    "Milliseconds without any packet from a connected client (media, RTCP \
                     reports, ICE checks) after which the server ends its session, as for a \
                     client that was killed or lost its network; posted with reason \
                     \"nothing received for ... (peer-timeout)\". A client that reports less \
                     often gets three times its own longest recent gap; none is ended in its first \
                     12.3 s (RTP's default pace allows 6.2 s between reports). whepsrc, whipsink and \
                     browsers report about every second. 0: only a failed or \
                     closed connection ends a session. Applies to sessions that start after \
                     it is set.",
                )
                .maximum(600_000)
                .default_value(DEFAULT_PEER_TIMEOUT_MS)
                .mutable_playing()
                .build(),
            glib::ParamSpecUInt::builder("max-sessions")
                .nick("Maximum sessions")
                .blurb(
                    "Sessions the element serves at once, counting offers being answered: \
                     an offer beyond it gets 503 Service Unavailable with Retry-After and a \
                     JSON problem body naming the limit. 0: no limit.",
                )
                .maximum(100_000)
                .default_value(DEFAULT_MAX_SESSIONS)
                .mutable_playing()
                .build(),
        ]
    }

    pub fn set(&mut self, value: &glib::Value, pspec: &glib::ParamSpec) -> bool {
        match pspec.name() {
            "address" => {
                self.address = value
                    .get::<Option<String>>()
                    .unwrap()
                    .unwrap_or_else(|| DEFAULT_ADDRESS.into())
            }
            "auth-token" => {
                self.auth_token = value
                    .get::<Option<String>>()
                    .unwrap()
                    .filter(|t| !t.is_empty())
                    .map(AuthToken::new)
            }
            "path" => {
                self.path = value
                    .get::<Option<String>>()
                    .unwrap()
                    .unwrap_or_else(|| "/".into())
            }
            "ice-addresses" => {
                self.ice_addresses = split_list(value.get::<Option<&str>>().unwrap())
            }
            "latency" => self.latency_ms = value.get().unwrap(),
            "max-session-duration" => self.max_session_duration_s = value.get().unwrap(),
            "peer-timeout" => self.peer_timeout_ms = value.get().unwrap(),
            "max-sessions" => self.max_sessions = value.get().unwrap(),
            "allow-multiple-publishers" => self.allow_multiple_publishers = value.get().unwrap(),
            "video-caps" => self.video_caps = value.get().unwrap(),
            "audio-caps" => self.audio_caps = value.get().unwrap(),
            _ => return false,
        }
        true
    }

    pub fn get(&self, pspec: &glib::ParamSpec) -> glib::Value {
        match pspec.name() {
            "address" => self.address.to_value(),
            "path" => self.path.to_value(),
            "ice-addresses" => self.ice_addresses.join(",").to_value(),
            "latency" => self.latency_ms.to_value(),
            "max-session-duration" => self.max_session_duration_s.to_value(),
            "peer-timeout" => self.peer_timeout_ms.to_value(),
            "max-sessions" => self.max_sessions.to_value(),
            "allow-multiple-publishers" => self.allow_multiple_publishers.to_value(),
            "video-caps" => self.video_caps.to_value(),
            "audio-caps" => self.audio_caps.to_value(),
            _ => pspec.default_value().clone(),
        }
    }

    /// Starts serving `handler` on the address and path for `element`;
    /// a failure (busy port, path taken) is posted as its ERROR.
    pub fn serve(
        &self,
        element: &gst::Element,
        handler: std::sync::Arc<dyn crate::server::Handler>,
    ) -> Result<crate::server::HttpServer, gst::StateChangeError> {
        match crate::server::HttpServer::bind(
            &self.address,
            &self.path,
            self.auth_token.clone(),
            handler,
        ) {
            Ok(server) => {
                gst::info!(
                    super::CAT,
                    obj = element,
                    "serving http://{}{}",
                    server.local_addr(),
                    self.path
                );
                Ok(server)
            }
            Err(e) => {
                let msg = format!("cannot serve {} on {}: {e}", self.path, self.address);
                element.post_error_message(gst::error_msg!(
                    gst::ResourceError::OpenReadWrite,
                    ("{}", msg)
                ));
                Err(gst::StateChangeError)
            }
        }
    }

    pub fn max_session(&self) -> Option<Duration> {
        (self.max_session_duration_s > 0)
            .then(|| Duration::from_secs(self.max_session_duration_s.into()))
    }

    pub fn peer_timeout(&self) -> Option<Duration> {
        (self.peer_timeout_ms > 0).then(|| Duration::from_millis(self.peer_timeout_ms.into()))
    }

    pub fn peer_settings(&self) -> PeerSettings {
        PeerSettings {
            ice_addresses: self.ice_addresses.clone(),
            latency_ms: self.latency_ms,
            ..PeerSettings::default()
        }
    }

    /// A publisher's offer restricted to `video-caps`/`audio-caps` and
    /// ordered by them (see `sdp::keep_encodings`); Err says why none fits.
    pub fn restrict_offer(&self, offer: &str) -> Result<String, String> {
        let mut offer = offer.to_string();
        for (media, caps) in [("video", &self.video_caps), ("audio", &self.audio_caps)] {
            let Some(caps) = caps else { continue };
            let allowed: Vec<&str> = crate::codec::preferred(caps, media, |_| true)
                .into_iter()
                .map(|c| c.encoding_name)
                .collect();
            offer = crate::peer::sdp::keep_encodings(&offer, media, &allowed)?;
        }
        Ok(offer)
    }

    /// Host candidates on chosen addresses gather in milliseconds; keep the
    /// answer from waiting long on anything else.
    pub fn gather_timeout(&self) -> Duration {
        Duration::from_millis(500)
    }
}
