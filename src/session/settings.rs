//! Properties shared by the client elements (whipsink, whepsrc), defined once.

use std::time::Duration;

use gst::glib;
use gst::prelude::*;
use gst_webrtc::WebRTCICETransportPolicy;

use crate::peer::PeerSettings;
use crate::protocol::{AuthToken, Client, ClientConfig, ProtocolError, RedirectAuth};

pub const DEFAULT_TIMEOUT_S: u32 = 15;
/// Enough for host and server-reflexive candidates on any sane network, short
/// enough not to dominate time to first frame when a STUN server is silent.
pub const DEFAULT_GATHER_TIMEOUT_MS: u32 = 1000;

/// How long an ICE restart may take to bring media back before a new
/// session replaces it: a restart over a working path takes tens of ms.
pub const DEFAULT_ICE_RESTART_TIMEOUT_MS: u32 = 3000;
/// How often a client sends RTCP reports once negotiated, as browsers do for
/// video: servers judge whether a viewer is still there by what it sends,
/// and a viewer sends nothing but RTCP, which RTP paces at 5 s. Each report
/// wakes the session's RTCP thread: at 1 s, 1.4 % of the CPU of a process
/// playing 50 whepsrc (perf); shorter intervals cost more.
pub const DEFAULT_RTCP_INTERVAL_MS: u32 = 1000;

/// The `redirect-auth` property: whether the token follows a redirect to
/// another origin (docs/protocol.md P6). Same-origin redirects always keep
/// it; an https→http redirect is always refused.
#[derive(Debug, Default, Eq, PartialEq, Hash, Clone, Copy, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstWhipWhepRedirectAuth")]
pub enum RedirectAuthMode {
    #[default]
    #[enum_value(
        name = "Kept if the new target is https, dropped if it is http",
        nick = "https"
    )]
    Https = 0,
    #[enum_value(name = "Never sent to another origin", nick = "drop")]
    Drop = 1,
    #[enum_value(
        name = "Kept on every redirect (RFC 9725 as written), except https to http",
        nick = "keep"
    )]
    Keep = 2,
    #[enum_value(name = "A redirect to another origin is an error", nick = "refuse")]
    Refuse = 3,
}

impl From<RedirectAuthMode> for RedirectAuth {
    fn from(mode: RedirectAuthMode) -> Self {
        match mode {
            RedirectAuthMode::Https => RedirectAuth::Https,
            RedirectAuthMode::Drop => RedirectAuth::Drop,
            RedirectAuthMode::Keep => RedirectAuth::Keep,
            RedirectAuthMode::Refuse => RedirectAuth::Refuse,
        }
    }
}

#[derive(Clone)]
pub struct ClientSettings {
    pub endpoint: Option<String>,
    pub auth_token: Option<AuthToken>,
    pub redirect_auth: RedirectAuthMode,
    pub use_link_headers: bool,
    pub stun_server: Option<String>,
    pub turn_server: Option<String>,
    pub ice_transport_policy: WebRTCICETransportPolicy,
    pub timeout_s: u32,
    pub ice_addresses: Vec<String>,
    pub gather_timeout_ms: u32,
    pub max_retries: u32,
    pub retry_initial_ms: u32,
    pub retry_max_ms: u32,
    pub reconnect: bool,
    pub max_session_duration_s: u32,
    pub renew_lead_ms: u32,
    pub media_timeout_ms: u32,
    pub ice_restart_timeout_ms: u32,
    /// Video asks for (whepsrc) or resends (whipsink) lost packets: NACK and
    /// RTX in the offer.
    pub do_retransmission: bool,
    /// RTCP reports at least this often; 0: RTP's own pace.
    pub rtcp_interval_ms: u32,
    /// WHEP: seconds to keep retrying "no publisher yet" (409); -1: forever.
    pub publisher_wait_s: i32,
}

/// Which client a settings set is for: defaults differ where the
/// direction does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Whip,
    Whep,
}

impl Kind {
    /// A player sees media stop at once; a publisher only hears the server
    /// through RTCP reports, seconds apart, so it doesn't time out by default.
    pub fn default_media_timeout_ms(self) -> u32 {
        match self {
            Kind::Whip => 0,
            Kind::Whep => 500,
        }
    }
}

impl ClientSettings {
    pub fn new(kind: Kind) -> Self {
        Self {
            endpoint: None,
            auth_token: None,
            redirect_auth: RedirectAuthMode::Https,
            use_link_headers: false,
            stun_server: None,
            turn_server: None,
            ice_transport_policy: WebRTCICETransportPolicy::All,
            timeout_s: DEFAULT_TIMEOUT_S,
            ice_addresses: Vec::new(),
            gather_timeout_ms: DEFAULT_GATHER_TIMEOUT_MS,
            max_retries: 5,
            retry_initial_ms: 500,
            retry_max_ms: 8000,
            reconnect: true,
            max_session_duration_s: 0,
            renew_lead_ms: 3000,
            media_timeout_ms: kind.default_media_timeout_ms(),
            ice_restart_timeout_ms: DEFAULT_ICE_RESTART_TIMEOUT_MS,
            do_retransmission: true,
            rtcp_interval_ms: DEFAULT_RTCP_INTERVAL_MS,
            // WHEP's 409 means "no publisher yet": a player waits. WHIP's
            // means the endpoint is taken: a publisher must be told.
            publisher_wait_s: if kind == Kind::Whep { -1 } else { 0 },
        }
    }
}

pub use crate::element::{ice_addresses_pspec, split_list};

impl ClientSettings {
    /// Property specs; `endpoint` is "whip-endpoint" or "whep-endpoint".
    pub fn properties(
        kind: Kind,
        endpoint: &'static str,
        endpoint_blurb: &'static str,
    ) -> Vec<glib::ParamSpec> {
        let mut props = vec![
            glib::ParamSpecString::builder(endpoint)
                .nick("Endpoint URL")
                .blurb(endpoint_blurb)
                .mutable_ready()
                .build(),
            glib::ParamSpecString::builder("auth-token")
                .nick("Authorization token")
                .blurb(
                    "Bearer token sent as \"Authorization: Bearer <token>\" on every request \
                     (POST, PATCH, DELETE, OPTIONS). Unset: no Authorization header at all. \
                     May be changed while PLAYING: the next request uses the new value. \
                     Write-only, and never logged.",
                )
                .write_only()
                .mutable_playing()
                .build(),
            glib::ParamSpecEnum::builder_with_default("redirect-auth", RedirectAuthMode::Https)
                .nick("Token on redirects")
                .blurb(
                    "Whether auth-token follows a redirect to another origin (scheme, host \
                     and port): \"https\" keeps it if the new target is https and drops it \
                     if it is http; \"drop\" never sends it to another origin; \"keep\" always \
                     does (RFC 9725 as written); \"refuse\" makes such a redirect an error. \
                     Same-origin redirects always keep it, and a redirect from https to http \
                     is always refused.",
                )
                .mutable_ready()
                .build(),
            glib::ParamSpecBoolean::builder("use-link-headers")
                .nick("Use Link headers")
                .blurb(
                    "Learn STUN/TURN servers from the endpoint's Link rel=\"ice-server\" headers, \
                     by an OPTIONS request before the offer (they must be known before ICE \
                     gathering starts).",
                )
                .default_value(false)
                .mutable_ready()
                .build(),
            glib::ParamSpecString::builder("stun-server")
                .nick("STUN server")
                .blurb("STUN server as stun://host:port. None by default: no public server is contacted unless asked.")
                .mutable_ready()
                .build(),
            glib::ParamSpecString::builder("turn-server")
                .nick("TURN server")
                .blurb("TURN server as turn(s)://user:password@host:port?transport=udp|tcp")
                .mutable_ready()
                .build(),
            glib::ParamSpecEnum::builder_with_default("ice-transport-policy", WebRTCICETransportPolicy::All)
                .nick("ICE transport policy")
                .blurb("\"all\" uses every candidate; \"relay\" only TURN relays.")
                .mutable_ready()
                .build(),
            glib::ParamSpecUInt::builder("timeout")
                .nick("HTTP timeout")
                .blurb(
                    "Seconds each HTTP exchange (POST with its redirects, PATCH, DELETE) may take \
                     before the element gives up with an error. Stopping never waits this long: \
                     a DELETE still pending after 1 s finishes in the background.",
                )
                .minimum(1)
                .maximum(3600)
                .default_value(DEFAULT_TIMEOUT_S)
                .mutable_ready()
                .build(),
            ice_addresses_pspec(),
            glib::ParamSpecUInt::builder("ice-gathering-timeout")
                .nick("ICE gathering timeout")
                .blurb(
                    "Milliseconds to wait for ICE gathering before sending the offer with the \
                     candidates found so far; later ones follow by trickle PATCH where the \
                     server supports it.",
                )
                .minimum(10)
                .maximum(30_000)
                .default_value(DEFAULT_GATHER_TIMEOUT_MS)
                .mutable_ready()
                .build(),
            glib::ParamSpecUInt::builder("max-retries")
                .nick("Maximum retries")
                .blurb(
                    "How many times a refused POST is retried when the refusal is transient \
                     (408, 409 no publisher yet, 429, 500, 502, 503, 504), with exponential \
                     backoff; then the element posts an ERROR. 0: never retry.",
                )
                .maximum(1000)
                .default_value(5)
                .mutable_ready()
                .build(),
            glib::ParamSpecUInt::builder("retry-initial-delay")
                .nick("Initial retry delay")
                .blurb("Milliseconds before the first retry; doubled for each further one. A server's Retry-After is honoured (up to retry-max-delay).")
                .minimum(1)
                .maximum(600_000)
                .default_value(500)
                .mutable_ready()
                .build(),
            glib::ParamSpecUInt::builder("retry-max-delay")
                .nick("Maximum retry delay")
                .blurb("Upper bound, in milliseconds, of the delay between two retries")
                .minimum(1)
                .maximum(600_000)
                .default_value(8000)
                .mutable_ready()
                .build(),
            glib::ParamSpecBoolean::builder("reconnect")
                .nick("Reconnect")
                .blurb(
                    "Keep one continuous stream: when the server ends the session (ICE/DTLS failure, \
                     RTCP BYE, no media for media-timeout) start a new one, with backoff between \
                     failed attempts (max-retries, retry-*-delay). Off: such an end is an ERROR.",
                )
                .default_value(true)
                .mutable_ready()
                .build(),
            glib::ParamSpecUInt::builder("max-session-duration")
                .nick("Maximum session duration")
                .blurb(
                    "The server's cap on one WebRTC session in seconds, if known (Ring: 30 for \
                     battery devices, 60 for mains-powered). A new session opens renew-lead before \
                     the cap and takes over the output without losing frames (make-before-break). \
                     0: no known cap.",
                )
                .maximum(86_400)
                .default_value(0)
                .mutable_ready()
                .build(),
            glib::ParamSpecUInt::builder("renew-lead")
                .nick("Renewal lead time")
                .blurb("Milliseconds before max-session-duration at which the next session opens")
                .minimum(100)
                .maximum(600_000)
                .default_value(3000)
                .mutable_ready()
                .build(),
            glib::ParamSpecUInt::builder("media-timeout")
                .nick("Media timeout")
                .blurb(
                    "Milliseconds after which a silent session counts as cut by the server, and a \
                     new one starts: without media for whepsrc, without RTCP reports from the \
                     server for whipsink, and in both cases without any packet from the server \
                     either (media late while packets still arrive is this process running \
                     behind, not a cut). 0: ICE/DTLS state, the server's DTLS close_notify and \
                     RTCP BYE tell, and for whipsink a silence of the server's RTCP of three times \
                     the interval it uses (at least 1.5 s).",
                )
                .maximum(600_000)
                .default_value(kind.default_media_timeout_ms())
                .mutable_ready()
                .build(),
            glib::ParamSpecUInt::builder("ice-restart-timeout")
                .nick("ICE restart timeout")
                .blurb(
                    "When a session's network path breaks (ICE/DTLS disconnected or failed, \
                     media-timeout, the server's RTCP silent) but the server may still hold the \
                     session, restart ICE on it first (a PATCH with new ICE credentials, RFC 9725 \
                     4.3.3): the same session, Location and DTLS go on. If the server refuses \
                     (405, 501, 404, 412, ...) or media is not back within this many \
                     milliseconds, a new session replaces it (reconnect). The bus message \
                     session-ice-restarted says which, and how long media was interrupted. 0: \
                     no ICE restart, a new session at once.",
                )
                .maximum(60_000)
                .default_value(DEFAULT_ICE_RESTART_TIMEOUT_MS)
                .mutable_ready()
                .build(),
            glib::ParamSpecBoolean::builder("do-retransmission")
                .nick("Do retransmission")
                .blurb(match kind {
                    Kind::Whep => {
                        "Ask the server again for lost video packets (RTCP NACK, resent as RTX, \
                         RFC 4588), as gst-plugins-rs webrtcsrc does. Off: the offer has neither, \
                         and each session costs a little less CPU on both ends (the server keeps \
                         no resend history); a loss then shows until the next key frame."
                    }
                    Kind::Whip => {
                        "Resend lost video packets the server asks for (RTCP NACK, as RTX, RFC \
                         4588), as gst-plugins-rs webrtcsink does. Off: the offer has neither, \
                         and no resend history is kept; a loss then shows until the next key \
                         frame."
                    }
                })
                .default_value(true)
                .mutable_ready()
                .build(),
            glib::ParamSpecUInt::builder("rtcp-interval")
                .nick("RTCP interval")
                .blurb(
                    "Send RTCP reports at least every this many milliseconds, as browsers do \
                     for video (1000): servers tell a client that vanished by its silence, and \
                     ours remove it about 5 s after its last report. Each report costs a \
                     wake-up of the session's RTCP thread (about 1 % of a core for 100 \
                     sessions at 1000). 0: RTP's own pace (RFC 3550: 5 s apart, randomised), as \
                     gst-plugins-rs' clients do; servers then notice a vanished client later.",
                )
                .maximum(5000)
                .default_value(DEFAULT_RTCP_INTERVAL_MS)
                .mutable_ready()
                .build(),
        ];
        if kind == Kind::Whep {
            props.push(
                glib::ParamSpecInt::builder("publisher-wait")
                    .nick("Publisher wait")
                    .blurb(
                        "Seconds to keep retrying while the endpoint has no publisher yet (409 \
                         Conflict), honouring its Retry-After, with a WARNING per retry: a player \
                         started before the stream plays once it starts. -1: as long as it takes. \
                         0: a 409 counts against max-retries like any other refusal.",
                    )
                    .minimum(-1)
                    .default_value(-1)
                    .mutable_ready()
                    .build(),
            );
        }
        props
    }

    /// Applies a property; returns false if it isn't one of ours.
    pub fn set(&mut self, value: &glib::Value, pspec: &glib::ParamSpec) -> bool {
        match pspec.name() {
            "whip-endpoint" | "whep-endpoint" => self.endpoint = value.get().unwrap(),
            "auth-token" => {
                self.auth_token = value
                    .get::<Option<String>>()
                    .unwrap()
                    .filter(|t| !t.is_empty())
                    .map(AuthToken::new)
            }
            "redirect-auth" => self.redirect_auth = value.get().unwrap(),
            "use-link-headers" => self.use_link_headers = value.get().unwrap(),
            "stun-server" => self.stun_server = value.get().unwrap(),
            "turn-server" => self.turn_server = value.get().unwrap(),
            "ice-transport-policy" => self.ice_transport_policy = value.get().unwrap(),
            "timeout" => self.timeout_s = value.get().unwrap(),
            "ice-addresses" => {
                self.ice_addresses = split_list(value.get::<Option<&str>>().unwrap())
            }
            "ice-gathering-timeout" => self.gather_timeout_ms = value.get().unwrap(),
            "max-retries" => self.max_retries = value.get().unwrap(),
            "retry-initial-delay" => self.retry_initial_ms = value.get().unwrap(),
            "retry-max-delay" => self.retry_max_ms = value.get().unwrap(),
            "reconnect" => self.reconnect = value.get().unwrap(),
            "max-session-duration" => self.max_session_duration_s = value.get().unwrap(),
            "renew-lead" => self.renew_lead_ms = value.get().unwrap(),
            "media-timeout" => self.media_timeout_ms = value.get().unwrap(),
            "ice-restart-timeout" => self.ice_restart_timeout_ms = value.get().unwrap(),
            "do-retransmission" => self.do_retransmission = value.get().unwrap(),
            "rtcp-interval" => self.rtcp_interval_ms = value.get().unwrap(),
            "publisher-wait" => self.publisher_wait_s = value.get().unwrap(),
            _ => return false,
        }
        true
    }

    pub fn get(&self, pspec: &glib::ParamSpec) -> Option<glib::Value> {
        Some(match pspec.name() {
            "whip-endpoint" | "whep-endpoint" => self.endpoint.to_value(),
            "redirect-auth" => self.redirect_auth.to_value(),
            "use-link-headers" => self.use_link_headers.to_value(),
            "stun-server" => self.stun_server.to_value(),
            "turn-server" => self.turn_server.to_value(),
            "ice-transport-policy" => self.ice_transport_policy.to_value(),
            "timeout" => self.timeout_s.to_value(),
            "ice-addresses" => self.ice_addresses.join(",").to_value(),
            "ice-gathering-timeout" => self.gather_timeout_ms.to_value(),
            "max-retries" => self.max_retries.to_value(),
            "retry-initial-delay" => self.retry_initial_ms.to_value(),
            "retry-max-delay" => self.retry_max_ms.to_value(),
            "reconnect" => self.reconnect.to_value(),
            "max-session-duration" => self.max_session_duration_s.to_value(),
            "renew-lead" => self.renew_lead_ms.to_value(),
            "media-timeout" => self.media_timeout_ms.to_value(),
            "ice-restart-timeout" => self.ice_restart_timeout_ms.to_value(),
            "do-retransmission" => self.do_retransmission.to_value(),
            "rtcp-interval" => self.rtcp_interval_ms.to_value(),
            "publisher-wait" => self.publisher_wait_s.to_value(),
            _ => return None,
        })
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_s.into())
    }

    pub fn gather_timeout(&self) -> Duration {
        Duration::from_millis(self.gather_timeout_ms.into())
    }

    pub fn backoff(&self) -> super::backoff::Backoff {
        super::backoff::Backoff {
            max_retries: self.max_retries,
            initial: Duration::from_millis(self.retry_initial_ms.into()),
            max: Duration::from_millis(self.retry_max_ms.into()),
        }
    }

    pub fn policy(&self) -> super::supervisor::Policy {
        let ms = |v: u32| Duration::from_millis(v.into());
        super::supervisor::Policy {
            reconnect: self.reconnect,
            backoff: self.backoff(),
            max_session: (self.max_session_duration_s > 0)
                .then(|| Duration::from_secs(self.max_session_duration_s.into())),
            renew_lead: ms(self.renew_lead_ms),
            media_timeout: (self.media_timeout_ms > 0).then(|| ms(self.media_timeout_ms)),
            ice_restart: (self.ice_restart_timeout_ms > 0).then(|| ms(self.ice_restart_timeout_ms)),
            rtcp_interval: (self.rtcp_interval_ms > 0).then(|| ms(self.rtcp_interval_ms)),
            use_link_headers: self.use_link_headers,
            gather_timeout: self.gather_timeout(),
            connect_timeout: self.timeout(),
            publisher_wait: match self.publisher_wait_s {
                0 => None,
                s if s < 0 => Some(Duration::MAX),
                s => Some(Duration::from_secs(s as u64)),
            },
        }
    }

    pub fn endpoint_url(&self, property: &str) -> Result<url::Url, String> {
        let raw = self
            .endpoint
            .as_deref()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| format!("the {property} property is not set"))?;
        let url =
            url::Url::parse(raw).map_err(|e| format!("{property} is not a valid URL: {e}"))?;
        if url.scheme() != "http" && url.scheme() != "https" {
            return Err(format!("{property} must be an http:// or https:// URL"));
        }
        Ok(url)
    }

    /// Checks every user-given value that NULL→READY can judge, and returns
    /// the first problem, naming the property and the value: the endpoint URL
    /// (`endpoint` is "whip-endpoint" or "whep-endpoint"), `ice-addresses`,
    /// `stun-server` and `turn-server`. Without this, a bad ICE address fails
    /// only when gathering times out, and a bad STUN URI is ignored silently.
    pub fn validate(&self, endpoint: &str) -> Result<(), String> {
        self.endpoint_url(endpoint)?;
        for address in &self.ice_addresses {
            validate_ice_address(address)?;
        }
        if let Some(stun) = self.stun_server.as_deref().filter(|s| !s.is_empty()) {
            validate_stun_server(stun)?;
        }
        if let Some(turn) = self.turn_server.as_deref().filter(|s| !s.is_empty()) {
            validate_turn_server(turn)?;
        }
        Ok(())
    }

    pub fn client(&self) -> Result<Client, ProtocolError> {
        Client::new(ClientConfig {
            auth_token: self.auth_token.clone(),
            timeout: self.timeout(),
            redirect_auth: self.redirect_auth.into(),
            ..ClientConfig::default()
        })
    }

    pub fn peer_settings(&self, latency_ms: u32) -> PeerSettings {
        PeerSettings {
            ice_addresses: self.ice_addresses.clone(),
            stun_server: self.stun_server.clone(),
            turn_servers: self.turn_server.iter().cloned().collect(),
            ice_transport_policy: self.ice_transport_policy,
            latency_ms,
            fast_start: true,
        }
    }
}

/// An `ice-addresses` entry: an IP address literal (libnice gathers on it).
pub fn validate_ice_address(address: &str) -> Result<(), String> {
    address
        .parse::<std::net::IpAddr>()
        .map(|_| ())
        .map_err(|_| format!("ice-addresses: {address:?} is not an IP address"))
}

/// `stun-server` as webrtcbin takes it: `stun://host[:port]`.
pub fn validate_stun_server(value: &str) -> Result<(), String> {
    let expected = "expected stun://host[:port]";
    let url = url::Url::parse(value)
        .map_err(|_| format!("stun-server: {value:?} is not a URI ({expected})"))?;
    if url.scheme() != "stun" {
        return Err(format!(
            "stun-server: {value:?} has scheme {:?} ({expected})",
            url.scheme()
        ));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!(
            "stun-server: {value:?} carries credentials, which STUN does not use ({expected})"
        ));
    }
    check_host_port("stun-server", value, &url, expected)
}

/// `turn-server` as webrtcbin takes it:
/// `turn(s)://user:password@host[:port][?transport=udp|tcp]`.
pub fn validate_turn_server(value: &str) -> Result<(), String> {
    let expected = "expected turn(s)://user:password@host[:port][?transport=udp|tcp]";
    // The password is a secret: never repeat the value in an error.
    let shown = redact_userinfo(value);
    let url = url::Url::parse(value)
        .map_err(|_| format!("turn-server: {shown:?} is not a URI ({expected})"))?;
    if url.scheme() != "turn" && url.scheme() != "turns" {
        return Err(format!(
            "turn-server: {shown:?} has scheme {:?} ({expected})",
            url.scheme()
        ));
    }
    if url.username().is_empty() || url.password().is_none_or(str::is_empty) {
        return Err(format!(
            "turn-server: {shown:?} lacks a user name and password ({expected})"
        ));
    }
    for (key, val) in url.query_pairs() {
        if key != "transport" || (val != "udp" && val != "tcp") {
            return Err(format!(
                "turn-server: {shown:?} has query {key}={val}: only transport=udp or \
                 transport=tcp is understood"
            ));
        }
    }
    check_host_port("turn-server", &shown, &url, expected)
}

/// A host, an optional port, and nothing after them but an empty path.
fn check_host_port(
    property: &str,
    shown: &str,
    url: &url::Url,
    expected: &str,
) -> Result<(), String> {
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("{property}: {shown:?} has no host ({expected})"));
    }
    if url.port() == Some(0) {
        return Err(format!("{property}: {shown:?} has port 0 ({expected})"));
    }
    if !matches!(url.path(), "" | "/") || url.fragment().is_some() {
        return Err(format!(
            "{property}: {shown:?} has a path after host:port ({expected})"
        ));
    }
    Ok(())
}

/// `value` with whatever precedes the last `@` of its authority replaced by
/// `***`.
fn redact_userinfo(value: &str) -> String {
    let (scheme, rest) = match value.split_once("://") {
        Some((scheme, rest)) => (format!("{scheme}://"), rest),
        None => (String::new(), value),
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..end].rfind('@') {
        Some(at) => format!("{scheme}***{}", &rest[at..]),
        None => value.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ice_addresses() {
        assert!(validate_ice_address("127.0.0.1").is_ok());
        assert!(validate_ice_address("::1").is_ok());
        assert_eq!(
            validate_ice_address("banana").unwrap_err(),
            "ice-addresses: \"banana\" is not an IP address"
        );
    }

    #[test]
    fn stun_servers() {
        for ok in [
            "stun://stun.example:3478",
            "stun://192.0.2.1",
            "stun://[::1]:3478",
        ] {
            assert_eq!(validate_stun_server(ok), Ok(()), "{ok}");
        }
        for bad in [
            "foo",
            "stun:foo",
            "turn://u:p@h",
            "stun://",
            "stun://u:p@h",
            "stun://h:0",
            "stun://h/x",
        ] {
            let err = validate_stun_server(bad).unwrap_err();
            assert!(err.starts_with("stun-server: "), "{bad}: {err}");
            assert!(err.contains(&format!("{bad:?}")), "{bad}: {err}");
        }
    }

    #[test]
    fn turn_servers() {
        for ok in [
            "turn://user:pass@turn.example:3478",
            "turns://user:pass@turn.example?transport=tcp",
            "turn://u:p@[::1]:3478?transport=udp",
        ] {
            assert_eq!(validate_turn_server(ok), Ok(()), "{ok}");
        }
        for bad in [
            "foo",
            "turn://turn.example:3478",
            "turn://user@turn.example",
            "stun://user:pass@h",
            "turn://user:pass@h?transport=sctp",
            "turn://user:pass@",
        ] {
            let err = validate_turn_server(bad).unwrap_err();
            assert!(err.starts_with("turn-server: "), "{bad}: {err}");
        }
        let err = validate_turn_server("turn://user:secret@h?transport=sctp").unwrap_err();
        assert!(!err.contains("secret"), "{err}");
        assert!(err.contains("turn://***@h"), "{err}");
    }
}
