//! STUN/TURN server descriptions.
//!
//! They come from `Link: <turn:host:3478?transport=udp>; rel="ice-server"`
//! headers (RFC 7064/7065 URIs, RFC 9725 §4.6) or from a user property, and
//! go to webrtcbin, which wants `stun://host:port` and
//! `turn://user:pass@host:port?transport=...` with the user and password
//! percent-encoded (docs/protocol.md P10).

use std::fmt;
use std::net::Ipv6Addr;

use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// Everything but RFC 3986 unreserved characters is encoded, so that a
/// password with `:`, `@`, `/` or `%` survives inside the userinfo.
const USERINFO: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// One STUN or TURN server.
#[derive(Clone, PartialEq, Eq)]
pub struct IceServer {
    /// The URI as given, e.g. `turn:host:3478?transport=udp`.
    pub url: String,
    pub username: Option<String>,
    pub credential: Option<String>,
}

impl fmt::Debug for IceServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IceServer")
            .field("url", &self.url)
            .field("username", &self.username)
            .field(
                "credential",
                &self.credential.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

impl IceServer {
    /// `turn:` or `turns:`.
    pub fn is_turn(&self) -> bool {
        self.url
            .split_once(':')
            .and_then(|(scheme, _)| Scheme::parse(scheme))
            .is_some_and(Scheme::is_turn)
    }

    /// The URI webrtcbin's `stun-server` / `turn-server` properties take.
    /// `username`/`credential` win over userinfo inside `url`. STUN has no
    /// credentials and no transport parameter, so both are dropped for it.
    pub fn to_webrtcbin_uri(&self) -> Option<String> {
        let uri = IceUri::parse(&self.url)?;
        let mut out = format!("{}://", uri.scheme.as_str());
        if uri.scheme.is_turn() {
            let user = self.username.as_deref().or(uri.user.as_deref());
            let pass = self.credential.as_deref().or(uri.pass.as_deref());
            if user.is_some() || pass.is_some() {
                out.push_str(&utf8_percent_encode(user.unwrap_or(""), USERINFO).to_string());
                out.push(':');
                out.push_str(&utf8_percent_encode(pass.unwrap_or(""), USERINFO).to_string());
                out.push('@');
            }
        }
        out.push_str(&uri.host);
        out.push(':');
        out.push_str(&uri.port.unwrap_or(uri.scheme.default_port()).to_string());
        if let (true, Some(query)) = (uri.scheme.is_turn(), &uri.query) {
            out.push('?');
            out.push_str(query);
        }
        Some(out)
    }

    /// Parses a URI from a user property: webrtcbin style (`stun://h:p`,
    /// `turn://u:p@h:p?transport=tcp`) or RFC 7064/7065 style (`stun:h:p`,
    /// `turn:h:p?transport=udp`). Credentials move out of the URI into
    /// `username`/`credential` (percent-decoded), so that `url` is safe to log.
    pub fn parse_user_uri(s: &str) -> Option<IceServer> {
        let uri = IceUri::parse(s)?;
        let mut url = format!("{}:{}", uri.scheme.as_str(), uri.host);
        if let Some(port) = uri.port {
            url.push_str(&format!(":{port}"));
        }
        if let Some(query) = &uri.query {
            url.push('?');
            url.push_str(query);
        }
        Some(IceServer {
            url,
            username: uri.user.filter(|u| !u.is_empty()),
            credential: uri.pass.filter(|p| !p.is_empty()),
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scheme {
    Stun,
    Stuns,
    Turn,
    Turns,
}

impl Scheme {
    fn parse(s: &str) -> Option<Scheme> {
        match s.to_ascii_lowercase().as_str() {
            "stun" => Some(Scheme::Stun),
            "stuns" => Some(Scheme::Stuns),
            "turn" => Some(Scheme::Turn),
            "turns" => Some(Scheme::Turns),
            _ => None,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Scheme::Stun => "stun",
            Scheme::Stuns => "stuns",
            Scheme::Turn => "turn",
            Scheme::Turns => "turns",
        }
    }

    fn is_turn(self) -> bool {
        matches!(self, Scheme::Turn | Scheme::Turns)
    }

    /// RFC 7064 §3.2 / RFC 7065 §3.2.
    fn default_port(self) -> u16 {
        match self {
            Scheme::Stun | Scheme::Turn => 3478,
            Scheme::Stuns | Scheme::Turns => 5349,
        }
    }
}

/// The pieces of a STUN/TURN URI in either form.
struct IceUri {
    scheme: Scheme,
    user: Option<String>,
    pass: Option<String>,
    /// A name, an IPv4 address, or an IPv6 address in brackets.
    host: String,
    port: Option<u16>,
    query: Option<String>,
}

impl IceUri {
    fn parse(s: &str) -> Option<IceUri> {
        let (scheme, rest) = s.trim().split_once(':')?;
        let scheme = Scheme::parse(scheme)?;
        let rest = rest.strip_prefix("//").unwrap_or(rest);
        let (authority, query) = match rest.split_once('?') {
            Some((authority, query)) => (authority, Some(query)),
            None => (rest, None),
        };
        let query = query.filter(|q| !q.is_empty());
        if query.is_some_and(|q| !q.bytes().all(|b| b.is_ascii_graphic())) {
            return None;
        }
        let authority = authority.strip_suffix('/').unwrap_or(authority);
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((userinfo, hostport)) => (Some(userinfo), hostport),
            None => (None, authority),
        };
        let (user, pass) = match userinfo {
            Some(userinfo) => {
                let (user, pass) = userinfo.split_once(':').unwrap_or((userinfo, ""));
                (Some(decode(user)), Some(decode(pass)))
            }
            None => (None, None),
        };
        let (host, port) = split_host_port(hostport)?;
        Some(IceUri {
            scheme,
            user,
            pass,
            host,
            port,
            query: query.map(str::to_owned),
        })
    }
}

fn decode(s: &str) -> String {
    percent_decode_str(s).decode_utf8_lossy().into_owned()
}

fn split_host_port(hostport: &str) -> Option<(String, Option<u16>)> {
    let (host, port) = if let Some(rest) = hostport.strip_prefix('[') {
        let (address, after) = rest.split_once(']')?;
        address.parse::<Ipv6Addr>().ok()?;
        let port = match after {
            "" => None,
            _ => Some(after.strip_prefix(':')?),
        };
        (format!("[{address}]"), port)
    } else {
        let (host, port) = match hostport.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (hostport, None),
        };
        let valid = !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
        if !valid {
            return None;
        }
        (host.to_owned(), port)
    };
    // "host:" is read as "no port" rather than rejected.
    let port = match port.filter(|p| !p.is_empty()) {
        Some(port) => Some(port.parse::<u16>().ok().filter(|p| *p != 0)?),
        None => None,
    };
    Some((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(url: &str) -> IceServer {
        IceServer {
            url: url.into(),
            username: None,
            credential: None,
        }
    }

    #[test]
    fn stun_forms() {
        assert_eq!(
            server("stun:stun.l.google.com:19302")
                .to_webrtcbin_uri()
                .as_deref(),
            Some("stun://stun.l.google.com:19302")
        );
        assert_eq!(
            server("STUN:host").to_webrtcbin_uri().as_deref(),
            Some("stun://host:3478")
        );
        assert_eq!(
            server("stuns:[2001:db8::1]").to_webrtcbin_uri().as_deref(),
            Some("stuns://[2001:db8::1]:5349")
        );
        assert!(!server("stun:h").is_turn());
        assert!(server("TURNS:h").is_turn());
    }

    #[test]
    fn unparseable() {
        for bad in [
            "",
            "http://h",
            "turn:",
            "turn:h:99999",
            "turn:h:0",
            "turn:h:x",
            "turn:[zz]:1",
            "turn:h h",
            "turn:h/path",
            "stun:h?a b",
            "turn:[::1",
        ] {
            assert_eq!(server(bad).to_webrtcbin_uri(), None, "{bad}");
            assert_eq!(IceServer::parse_user_uri(bad), None, "{bad}");
        }
        assert!(!server("").is_turn());
    }

    #[test]
    fn user_uris() {
        let s = IceServer::parse_user_uri("turn://us%40er:p%3Ass@h.example:3479?transport=tcp")
            .unwrap();
        assert_eq!(s.url, "turn:h.example:3479?transport=tcp");
        assert_eq!(s.username.as_deref(), Some("us@er"));
        assert_eq!(s.credential.as_deref(), Some("p:ss"));
        assert_eq!(
            s.to_webrtcbin_uri().as_deref(),
            Some("turn://us%40er:p%3Ass@h.example:3479?transport=tcp")
        );
        let s = IceServer::parse_user_uri("stun:h:1").unwrap();
        assert_eq!(s.url, "stun:h:1");
        assert_eq!(s.to_webrtcbin_uri().as_deref(), Some("stun://h:1"));
        let s = IceServer::parse_user_uri("stun://h/").unwrap();
        assert_eq!(s.to_webrtcbin_uri().as_deref(), Some("stun://h:3478"));
    }

    #[test]
    fn debug_redacts_credential() {
        let s = IceServer {
            url: "turn:h".into(),
            username: Some("u".into()),
            credential: Some("hunter2".into()),
        };
        let text = format!("{s:?}");
        assert!(!text.contains("hunter2"));
        assert!(text.contains("<redacted>"));
    }
}
