//! `Link` response headers (RFC 8288) as WHIP/WHEP use them.
//!
//! Servers announce STUN/TURN servers with `rel="ice-server"` (RFC 9725 §4.6,
//! docs/protocol.md P10) and protocol extensions with other relation types,
//! e.g. `urn:ietf:params:whep:ext:core:server-sent-events` (P20). What the
//! field sends is looser than the grammar, so this parser accepts: several
//! header lines or one comma-joined line (commas inside `<...>` or quotes do
//! not split), unquoted parameter values, a trailing `;`, `rel` in any case
//! and as a space-separated list, and credentials holding `=`, `:`, `,` or
//! `;` inside quotes. Unknown relation types are kept as [`Extension`]s and
//! never cause an error (RFC 9725 §4.9, docs/protocol.md P14).

use super::ice_server::IceServer;

/// A `Link` whose relation type is not `ice-server`. `url` is the target as
/// written in the header (the client resolves relative targets against the
/// URL that answered).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extension {
    pub rel: String,
    pub url: String,
}

/// Parses every `Link` header value of one response.
pub fn parse_link_headers<'a>(
    values: impl IntoIterator<Item = &'a str>,
) -> (Vec<IceServer>, Vec<Extension>) {
    let mut ice_servers = Vec::new();
    let mut extensions = Vec::new();
    for value in values {
        for link in split_outside(value, ',', true) {
            let Some((target, params)) = parse_link_value(link) else {
                continue;
            };
            // RFC 8288 §3.3: only the first `rel` counts.
            let Some(rel) = param(&params, "rel") else {
                continue;
            };
            for rel in rel.split_ascii_whitespace() {
                if rel.eq_ignore_ascii_case("ice-server") {
                    ice_servers.push(IceServer {
                        url: target.to_owned(),
                        username: param(&params, "username")
                            .filter(|v| !v.is_empty())
                            .map(str::to_owned),
                        credential: param(&params, "credential")
                            .filter(|v| !v.is_empty())
                            .map(str::to_owned),
                    });
                } else {
                    extensions.push(Extension {
                        rel: rel.to_owned(),
                        url: target.to_owned(),
                    });
                }
            }
        }
    }
    (ice_servers, extensions)
}

/// `<target>; name=value; ...` → the target and the parameters (names in
/// lower case, values unquoted). `None` if there is no `<...>` target.
fn parse_link_value(link: &str) -> Option<(&str, Vec<(String, String)>)> {
    let rest = link.trim().strip_prefix('<')?;
    let (target, rest) = rest.split_once('>')?;
    let target = target.trim();
    if target.is_empty() {
        return None;
    }
    let params = split_outside(rest, ';', false)
        .into_iter()
        .filter_map(|param| {
            let (name, value) = param.split_once('=').unwrap_or((param, ""));
            let name = name.trim();
            if name.is_empty() {
                // The stray `;` some servers leave at the end.
                return None;
            }
            Some((name.to_ascii_lowercase(), unquote(value.trim())))
        })
        .collect();
    Some((target, params))
}

fn param<'p>(params: &'p [(String, String)], name: &str) -> Option<&'p str> {
    params
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// Splits `s` at `sep`, except inside double quotes (with backslash escapes)
/// and, if `angles`, inside `<...>`.
fn split_outside(s: &str, sep: char, angles: bool) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut in_quotes = false;
    let mut in_angles = false;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        if in_quotes {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => in_quotes = false,
                _ => {}
            }
        } else if in_angles {
            in_angles = c != '>';
        } else if c == '"' {
            in_quotes = true;
        } else if angles && c == '<' {
            in_angles = true;
        } else if c == sep {
            parts.push(&s[start..i]);
            start = i + c.len_utf8();
        }
    }
    parts.push(&s[start..]);
    parts
}

/// Removes the quotes of a quoted-string and resolves its escapes. Besides
/// RFC 9110 quoted-pairs (`\x` → `x`), this decodes JSON `\uXXXX` escapes:
/// MediaMTX escapes credentials with a JSON encoder, which writes `&`, `<`
/// and `>` as `\u0026`, `\u003c` and `\u003e`. An unquoted value is returned
/// as is; a missing closing quote is forgiven.
fn unquote(value: &str) -> String {
    let Some(inner) = value.strip_prefix('"') else {
        return value.to_owned();
    };
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => break,
            '\\' => match chars.next() {
                Some('u') => {
                    let rest = chars.as_str();
                    match decode_json_unicode(rest) {
                        Some((decoded, used)) => {
                            out.push(decoded);
                            chars = rest[used..].chars();
                        }
                        None => out.push('u'),
                    }
                }
                Some(other) => out.push(other),
                None => break,
            },
            _ => out.push(c),
        }
    }
    out
}

/// Decodes the `XXXX` (and a following `\uXXXX` low surrogate) after `\u`.
/// Returns the character and how many bytes of `s` it used.
fn decode_json_unicode(s: &str) -> Option<(char, usize)> {
    let high = hex4(s)?;
    if (0xD800..0xDC00).contains(&high) {
        let low = s.get(4..)?.strip_prefix("\\u").and_then(hex4)?;
        if !(0xDC00..0xE000).contains(&low) {
            return None;
        }
        let code = 0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00);
        return char::from_u32(code).map(|c| (c, 10));
    }
    char::from_u32(high).map(|c| (c, 4))
}

fn hex4(s: &str) -> Option<u32> {
    let digits = s.get(..4)?;
    if !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(digits, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_escapes_from_mediamtx() {
        let (ice, _) = parse_link_headers([
            r#"<turn:h:3478>; rel="ice-server"; username="a\u0026b"; credential="q\"\\x\ud83d\ude00\uzz""#,
        ]);
        assert_eq!(ice[0].username.as_deref(), Some("a&b"));
        assert_eq!(ice[0].credential.as_deref(), Some("q\"\\x😀uzz"));
    }

    #[test]
    fn malformed_links_are_skipped() {
        let (ice, ext) = parse_link_headers([
            "",
            "garbage",
            "<>; rel=ice-server",
            "<turn:h; rel=ice-server",
            "<stun:h>",
            "<stun:h>; rel=\"ice-server",
            "\"unterminated, <x>; rel=a",
        ]);
        assert_eq!(ice.len(), 1);
        assert_eq!(ice[0].url, "stun:h");
        assert!(ext.is_empty());
    }
}
