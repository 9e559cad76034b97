//! A forwarding HTTP front for end-to-end tests: passes every request to an
//! upstream server (our whipserversrc), records what went through, and can
//! rewrite the Location header, to show how the client resolves it. It can
//! also answer the first POSTs itself (a canned refusal, say) before it
//! starts forwarding, to show how the client retries.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

#[derive(Debug, Clone)]
pub struct Passed {
    pub method: String,
    pub path: String,
    pub status: u16,
    pub authorization: Option<String>,
}

type Rewrite = Arc<dyn Fn(&str) -> String + Send + Sync>;

fn unchanged(s: &str) -> String {
    s.to_string()
}

/// A reply the front gives by itself instead of forwarding.
#[derive(Debug, Clone)]
pub struct Canned {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

pub struct Front {
    addr: SocketAddr,
    passed: Arc<Mutex<Vec<Passed>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Front {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Front {
    /// Forwards to `upstream` (`http://host:port`), rewriting Location with
    /// `rewrite`. Must be called inside a tokio runtime.
    pub async fn start(
        upstream: String,
        rewrite: impl Fn(&str) -> String + Send + Sync + 'static,
    ) -> Front {
        Self::start_full(upstream, rewrite, unchanged, Vec::new(), None).await
    }

    /// Forwards everything but PATCH, which it answers `status` by itself
    /// (problem+json): a server that does no trickle and no ICE restart.
    pub async fn refusing_patch(upstream: String, status: u16) -> Front {
        Self::start_full(upstream, unchanged, unchanged, Vec::new(), Some(status)).await
    }

    /// Also rewrites POSTed offers and successful answers (SDP) with `body`.
    pub async fn start_with(
        upstream: String,
        rewrite: impl Fn(&str) -> String + Send + Sync + 'static,
        body: impl Fn(&str) -> String + Send + Sync + 'static,
    ) -> Front {
        Self::start_full(upstream, rewrite, body, Vec::new(), None).await
    }

    /// Like `start`, but answers the first POSTs with `first_posts`, in
    /// order, and forwards only the POSTs after them.
    pub async fn start_with_first_posts(
        upstream: String,
        rewrite: impl Fn(&str) -> String + Send + Sync + 'static,
        first_posts: Vec<Canned>,
    ) -> Front {
        Self::start_full(upstream, rewrite, unchanged, first_posts, None).await
    }

    async fn start_full(
        upstream: String,
        rewrite: impl Fn(&str) -> String + Send + Sync + 'static,
        body: impl Fn(&str) -> String + Send + Sync + 'static,
        first_posts: Vec<Canned>,
        patch_status: Option<u16>,
    ) -> Front {
        let body_rewrite: Rewrite = Arc::new(body);
        let canned = Arc::new(Mutex::new(VecDeque::from(first_posts)));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let passed = Arc::new(Mutex::new(Vec::new()));
        let rewrite: Rewrite = Arc::new(rewrite);
        let client = reqwest::Client::builder().no_proxy().build().unwrap();
        let shared = passed.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (passed, rewrite, client, upstream, canned) = (
                    shared.clone(),
                    rewrite.clone(),
                    client.clone(),
                    upstream.clone(),
                    canned.clone(),
                );
                let body_rewrite = body_rewrite.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let (passed, rewrite, client, upstream, canned) = (
                            passed.clone(),
                            rewrite.clone(),
                            client.clone(),
                            upstream.clone(),
                            canned.clone(),
                        );
                        let body_rewrite = body_rewrite.clone();
                        async move {
                            let method = req.method().clone();
                            let path = req
                                .uri()
                                .path_and_query()
                                .map(|p| p.to_string())
                                .unwrap_or_default();
                            let headers = req.headers().clone();
                            let authorization = headers
                                .get("authorization")
                                .and_then(|v| v.to_str().ok())
                                .map(String::from);
                            let own = if method == hyper::Method::POST {
                                canned.lock().unwrap().pop_front()
                            } else if method == hyper::Method::PATCH {
                                patch_status.map(|status| Canned {
                                    status,
                                    headers: vec![(
                                        "Content-Type".into(),
                                        "application/problem+json".into(),
                                    )],
                                    body: format!(
                                        "{{\"status\":{status},\"title\":\"no PATCH here\"}}"
                                    ),
                                })
                            } else {
                                None
                            };
                            if let Some(own) = own {
                                passed.lock().unwrap().push(Passed {
                                    method: method.to_string(),
                                    path,
                                    status: own.status,
                                    authorization,
                                });
                                let mut builder = hyper::Response::builder().status(own.status);
                                for (name, value) in &own.headers {
                                    builder = builder.header(name.as_str(), value.as_str());
                                }
                                return Ok(builder.body(Full::new(Bytes::from(own.body))).unwrap());
                            }
                            let body = req
                                .into_body()
                                .collect()
                                .await
                                .map(|b| b.to_bytes())
                                .unwrap_or_default();
                            let mut fwd = client.request(
                                reqwest::Method::from_bytes(method.as_str().as_bytes()).unwrap(),
                                format!("{upstream}{path}"),
                            );
                            for name in ["content-type", "authorization", "if-match"] {
                                if let Some(v) = headers.get(name) {
                                    fwd = fwd.header(name, v.as_bytes());
                                }
                            }
                            let body = if method == hyper::Method::POST {
                                body_rewrite(&String::from_utf8_lossy(&body)).into_bytes()
                            } else {
                                body.to_vec()
                            };
                            let resp = fwd.body(body).send().await;
                            let reply = match resp {
                                Ok(resp) => {
                                    let status = resp.status().as_u16();
                                    let mut builder = hyper::Response::builder().status(status);
                                    for (name, value) in resp.headers() {
                                        if name == "location" {
                                            let loc = rewrite(value.to_str().unwrap_or(""));
                                            builder = builder.header("location", loc);
                                        } else if name != "content-length"
                                            && name != "transfer-encoding"
                                        {
                                            builder =
                                                builder.header(name.as_str(), value.as_bytes());
                                        }
                                    }
                                    let body = resp.bytes().await.unwrap_or_default();
                                    let body = if status / 100 == 2 {
                                        Bytes::from(body_rewrite(&String::from_utf8_lossy(&body)))
                                    } else {
                                        body
                                    };
                                    passed.lock().unwrap().push(Passed {
                                        method: method.to_string(),
                                        path,
                                        status,
                                        authorization,
                                    });
                                    builder.body(Full::new(body)).unwrap()
                                }
                                Err(_) => hyper::Response::builder()
                                    .status(502)
                                    .body(Full::new(Bytes::new()))
                                    .unwrap(),
                            };
                            Ok::<_, Infallible>(reply)
                        }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Front { addr, passed, task }
    }

    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn passed(&self) -> Vec<Passed> {
        self.passed.lock().unwrap().clone()
    }
}
