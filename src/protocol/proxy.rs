//! HTTP proxy choice.
//!
//! Proxies from the environment (`https_proxy`, `http_proxy`, `all_proxy`,
//! `no_proxy`) are honoured as usual, but loopback endpoints are always
//! reached directly: a local MediaMTX or test server must never be sent
//! through a proxy just because one is set for the outside world.

use std::net::IpAddr;

use reqwest::{NoProxy, Proxy};
use url::{Host, Url};

pub(crate) fn env_proxy() -> Option<Proxy> {
    let http = env_var(&["http_proxy", "HTTP_PROXY"]);
    let https = env_var(&["https_proxy", "HTTPS_PROXY"]);
    let all = env_var(&["all_proxy", "ALL_PROXY"]);
    if http.is_none() && https.is_none() && all.is_none() {
        return None;
    }
    let proxy = Proxy::custom(move |url: &Url| {
        if is_loopback(url) {
            return None;
        }
        match url.scheme() {
            "https" => https.clone().or_else(|| all.clone()),
            "http" => http.clone().or_else(|| all.clone()),
            _ => None,
        }
    });
    Some(proxy.no_proxy(NoProxy::from_env()))
}

fn env_var(names: &[&str]) -> Option<String> {
    // Like curl and reqwest: in a CGI context HTTP_PROXY can be set by a
    // request header ("httpoxy"), so the upper-case form is not trusted there.
    let cgi = std::env::var_os("REQUEST_METHOD").is_some();
    names
        .iter()
        .filter(|name| !(cgi && **name == "HTTP_PROXY"))
        .find_map(|name| std::env::var(name).ok())
        .filter(|value| !value.trim().is_empty())
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(Host::Domain(name)) => {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            name == "localhost" || name.ends_with(".localhost")
        }
        Some(Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    }
}
