//! Where the bearer token may follow a redirect (docs/protocol.md P6, P7).
//!
//! RFC 9725 §4.5 says a redirected request is re-sent as it was, token
//! included. Taken literally that hands the token to whoever the first
//! server points at: another host, or the same host over plain http. A
//! browser's fetch drops `Authorization` on a cross-origin redirect; this
//! plugin is a little more lenient, since WHIP services do move clients
//! between hosts (load balancers, regional ingest), and the token must go
//! along for the session to be accepted there. So:
//!
//! - same origin (scheme, host and port): the token is kept, as the RFC says;
//!   the server that got the first request is the one that gets the next.
//! - another origin: what [`RedirectAuth`] says; by default the token is kept
//!   only if the new target is https, so that it never crosses the network
//!   in clear text to a party the user did not name.
//! - https to http: always refused, token or not. The request would go out
//!   unencrypted: the token, and the offer's DTLS fingerprint and ICE
//!   credentials, which an eavesdropper could use to intercept the media.
//!   No WHIP/WHEP service needs that, so it is an error naming the redirect.

use url::Url;

/// What a cross-origin redirect does with the bearer token: the
/// `redirect-auth` property of whipsink and whepsrc.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RedirectAuth {
    /// Kept if the new target is https, dropped (the redirect still
    /// followed, without `Authorization`) if it is http.
    #[default]
    Https,
    /// Never sent to another origin (what a browser does).
    Drop,
    /// Kept on every redirect, as RFC 9725 §4.5 reads; still never over an
    /// https→http downgrade.
    Keep,
    /// A redirect to another origin is an error.
    Refuse,
}

/// What to do with one redirect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Hop {
    /// Follow it with the token (if the request carries one).
    KeepToken,
    /// Follow it without `Authorization`, and never put it back on a later hop.
    DropToken,
    /// Do not follow it; the reason, for the error text.
    Refuse(&'static str),
}

/// The rule for a redirect from `from` to `to`.
pub(crate) fn redirect_hop(policy: RedirectAuth, from: &Url, to: &Url) -> Hop {
    if from.scheme() == "https" && to.scheme() == "http" {
        return Hop::Refuse(
            "it downgrades https to http, which would send the request unencrypted",
        );
    }
    if from.origin() == to.origin() {
        return Hop::KeepToken;
    }
    match policy {
        RedirectAuth::Keep => Hop::KeepToken,
        RedirectAuth::Https if to.scheme() == "https" => Hop::KeepToken,
        RedirectAuth::Https | RedirectAuth::Drop => Hop::DropToken,
        RedirectAuth::Refuse => Hop::Refuse("it leaves the origin and redirect-auth is \"refuse\""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hop(policy: RedirectAuth, from: &str, to: &str) -> Hop {
        redirect_hop(policy, &Url::parse(from).unwrap(), &Url::parse(to).unwrap())
    }

    #[test]
    fn token_is_kept_on_a_same_origin_redirect() {
        for policy in [
            RedirectAuth::Https,
            RedirectAuth::Drop,
            RedirectAuth::Keep,
            RedirectAuth::Refuse,
        ] {
            for (from, to) in [
                (
                    "http://127.0.0.1:8080/whip",
                    "http://127.0.0.1:8080/other?x=1",
                ),
                ("https://h.example/whip", "https://h.example:443/a/b"),
                ("https://H.example/whip", "https://h.example/whip2"),
            ] {
                assert_eq!(
                    hop(policy, from, to),
                    Hop::KeepToken,
                    "{policy:?} {from} {to}"
                );
            }
        }
    }

    #[test]
    fn token_is_dropped_on_a_cross_origin_redirect_to_http() {
        for (from, to) in [
            ("http://127.0.0.1:8080/whip", "http://127.0.0.1:8081/whip"),
            ("http://a.example/whip", "http://b.example/whip"),
        ] {
            assert_eq!(hop(RedirectAuth::Https, from, to), Hop::DropToken);
            assert_eq!(hop(RedirectAuth::Drop, from, to), Hop::DropToken);
            assert_eq!(hop(RedirectAuth::Keep, from, to), Hop::KeepToken);
            assert!(matches!(
                hop(RedirectAuth::Refuse, from, to),
                Hop::Refuse(_)
            ));
        }
    }

    #[test]
    fn token_is_kept_on_a_cross_origin_redirect_to_https_by_default() {
        for (from, to) in [
            ("https://a.example/whip", "https://b.example/whip"),
            ("https://a.example/whip", "https://a.example:8443/whip"),
            // An upgrade is another origin too.
            ("http://a.example/whip", "https://a.example/whip"),
        ] {
            assert_eq!(hop(RedirectAuth::Https, from, to), Hop::KeepToken);
            assert_eq!(hop(RedirectAuth::Keep, from, to), Hop::KeepToken);
            assert_eq!(hop(RedirectAuth::Drop, from, to), Hop::DropToken);
            assert!(matches!(
                hop(RedirectAuth::Refuse, from, to),
                Hop::Refuse(_)
            ));
        }
    }

    #[test]
    fn https_to_http_redirect_is_refused() {
        for policy in [
            RedirectAuth::Https,
            RedirectAuth::Drop,
            RedirectAuth::Keep,
            RedirectAuth::Refuse,
        ] {
            for to in ["http://h.example/whip", "http://other.example:8080/whip"] {
                let Hop::Refuse(reason) = hop(policy, "https://h.example/whip", to) else {
                    panic!("{policy:?} followed https → {to}");
                };
                assert!(reason.contains("downgrades https to http"), "{reason}");
            }
        }
    }
}
