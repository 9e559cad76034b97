//! Bearer tokens and URL redaction.
//!
//! WHIP/WHEP authenticate with `Authorization: Bearer <token>` (RFC 9725 §4.7,
//! docs/protocol.md P7), and several services put secrets in the URL query instead
//! (SRS `?token=`, MediaMTX `?pass=`). Neither may reach a log line or an
//! error message, so everything user-visible goes through [`redact_url`] and
//! the token type has no `Display` and a redacting `Debug`.

use std::fmt;

use url::Url;

/// A bearer token. It can only be read with [`AuthToken::expose`], so that a
/// stray `{:?}` or `{}` cannot print it.
#[derive(Clone, PartialEq, Eq)]
pub struct AuthToken(String);

impl AuthToken {
    pub fn new(s: impl Into<String>) -> Self {
        AuthToken(s.into())
    }

    /// The secret itself, for building the `Authorization` header.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for AuthToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AuthToken(<redacted>)")
    }
}

/// `url` without its userinfo and fragment, with every query value replaced
/// by `***`. Keys are kept so that a log still says which parameters were
/// sent; a query item without `=` could itself be the secret, so it becomes
/// `***` as a whole.
pub fn redact_url(url: &Url) -> String {
    let mut url = url.clone();
    // Fails only for URLs that cannot have userinfo at all; nothing to drop then.
    let _ = url.set_username("");
    let _ = url.set_password(None);
    url.set_fragment(None);
    if let Some(query) = url.query().map(str::to_owned) {
        let redacted: Vec<String> = query
            .split('&')
            .filter(|item| !item.is_empty())
            .map(|item| match item.split_once('=') {
                Some((key, _)) => format!("{key}=***"),
                None => "***".to_owned(),
            })
            .collect();
        url.set_query(Some(&redacted.join("&")));
    }
    url.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_userinfo_query_values_and_fragment() {
        let url = Url::parse("https://u:p@h.example/rtc/v1/whip/?app=live&token=s3cr3t&bare#frag")
            .unwrap();
        assert_eq!(
            redact_url(&url),
            "https://h.example/rtc/v1/whip/?app=***&token=***&***"
        );
    }

    #[test]
    fn debug_hides_the_token() {
        assert_eq!(
            format!("{:?}", AuthToken::new("abc")),
            "AuthToken(<redacted>)"
        );
    }
}
