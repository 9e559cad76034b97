//! Trickle ICE and ICE restart on a server session: a PATCH of the
//! session's Location with an `application/trickle-ice-sdpfrag` body
//! (RFC 9725 §4.3, RFC 8840; docs/protocol.md P24).
//!
//! - `If-Match` is required (428 without it) and must be the session's
//!   current ETag or `*` (412 otherwise): a client echoing the ETag of the
//!   201 after an ICE restart changed it is told its state is stale.
//! - A fragment with the current remote ufrag (or none) trickles: its
//!   candidates are added to the session's webrtcbin, 204.
//! - A fragment with a new ufrag and password restarts ICE: 200 with our
//!   new credentials and candidates as a fragment, and a new ETag.
//! - Candidates for an m-line the offer does not have, or with an earlier
//!   or unknown ufrag, are refused (422), nothing applied.

use std::sync::{Arc, Mutex};

use crate::peer::{ice, Peer};
use crate::protocol::{parse_sdpfrag, trickle_sdpfrag, SdpFrag};

use super::Refusal;

pub const SDPFRAG: &str = "application/trickle-ice-sdpfrag";

/// One server session's ICE, as PATCHes change it.
pub struct IceSession {
    peer: Arc<Peer>,
    /// The quoted ETag of the current ICE generation.
    etag: Mutex<String>,
    /// PATCHes of one session are applied one at a time, in arrival order.
    generation: tokio::sync::Mutex<Generation>,
}

struct Generation {
    /// The remote offer as last applied: its credentials are the remote's
    /// current ones.
    offer: String,
    remote_ufrag: Option<String>,
    /// ufrags of earlier generations: their late candidates are stale.
    earlier: Vec<String>,
    /// The remote said no more candidates come for this generation.
    ended: bool,
}

/// What a PATCH did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Patched {
    /// Candidates added (204).
    Trickled,
    /// ICE restarted (200): our fragment, and the new ETag.
    Restarted { sdpfrag: String, etag: String },
}

fn new_etag() -> String {
    format!("\"{}\"", super::new_id())
}

fn unprocessable(detail: impl Into<String>) -> Refusal {
    Refusal::new(422, "Unprocessable Content", detail)
}

/// Whether an `If-Match` value (a list of entity-tags, or `*`) matches
/// `etag` (RFC 9110 §13.1.1: strong comparison; quotes are forgiven, as
/// clients echo unquoted ETags unquoted).
fn if_match(value: &str, etag: &str) -> bool {
    let bare = |t: &str| t.trim().trim_matches('"').to_string();
    value.split(',').map(str::trim).any(|tag| {
        tag == "*" || tag == "\"*\"" || (!tag.starts_with("W/") && bare(tag) == bare(etag))
    })
}

impl IceSession {
    /// The session answered `offer`; its first ETag is made here.
    pub fn new(peer: Arc<Peer>, offer: &str) -> Arc<IceSession> {
        Arc::new(IceSession {
            peer,
            etag: Mutex::new(new_etag()),
            generation: tokio::sync::Mutex::new(Generation {
                offer: offer.to_string(),
                remote_ufrag: ice::credentials(offer).map(|(u, _)| u),
                earlier: Vec::new(),
                ended: false,
            }),
        })
    }

    pub fn etag(&self) -> String {
        self.etag.lock().unwrap().clone()
    }

    /// Applies a PATCH body (already known to be an sdpfrag) under its
    /// `If-Match` header.
    pub async fn patch(
        &self,
        if_match_header: Option<&str>,
        body: &str,
    ) -> Result<Patched, Refusal> {
        let mut generation = self.generation.lock().await;
        let Some(value) = if_match_header else {
            return Err(Refusal::new(
                428,
                "Precondition Required",
                "a PATCH needs If-Match with the session's ETag (RFC 9725 §4.3.1)",
            ));
        };
        let etag = self.etag();
        if !if_match(value, &etag) {
            return Err(Refusal::new(
                412,
                "Precondition Failed",
                format!("If-Match {value} is not the session's current ETag {etag}"),
            ));
        }
        let frag = parse_sdpfrag(body)
            .map_err(|e| Refusal::new(400, "Bad Request", format!("invalid sdpfrag: {e}")))?;
        let mids = ice::mids(&generation.offer);
        // Every candidate goes to the m-line of its mid; none may name an
        // m-line the offer does not have.
        let mut targets = Vec::new();
        for media in &frag.media {
            let index = match &media.mid {
                None => 0,
                Some(mid) => mids
                    .iter()
                    .position(|m| m.as_deref() == Some(mid.as_str()))
                    .ok_or_else(|| {
                        unprocessable(format!(
                            "the offer has no m-line with mid {mid:?} (it has {})",
                            mids.iter()
                                .map(|m| m.as_deref().unwrap_or("-"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ))
                    })?,
            };
            targets.push(index as u32);
        }
        let current = generation.remote_ufrag.clone();
        match (&frag.ufrag, &frag.pwd) {
            (None, _) => self.trickle(&mut generation, &frag, &targets),
            (Some(u), _) if Some(u) == current.as_ref() => {
                self.trickle(&mut generation, &frag, &targets)
            }
            (Some(u), _) if generation.earlier.contains(u) => Err(unprocessable(format!(
                "ufrag {u} is of an earlier ICE generation, restarted since"
            ))),
            (Some(u), Some(p)) => self.restart(&mut generation, u, p, &frag).await,
            (Some(u), None) => Err(unprocessable(format!(
                "unknown ufrag {u}: not the session's, and without ice-pwd it is no ICE restart"
            ))),
        }
    }

    fn trickle(
        &self,
        generation: &mut Generation,
        frag: &SdpFrag,
        targets: &[u32],
    ) -> Result<Patched, Refusal> {
        let mut added = 0;
        for (media, mline) in frag.media.iter().zip(targets) {
            if generation.ended {
                break;
            }
            for candidate in &media.candidates {
                self.peer.add_remote_candidate(*mline, candidate);
                added += 1;
            }
            if media.end_of_candidates {
                self.peer.add_remote_candidate(*mline, "");
                generation.ended = true;
            }
        }
        if frag.end_of_candidates && !generation.ended {
            self.peer.add_remote_candidate(0, "");
            generation.ended = true;
        }
        gst::debug!(
            super::CAT,
            "trickle: {added} remote candidates added{}",
            if generation.ended {
                ", end of candidates"
            } else {
                ""
            }
        );
        Ok(Patched::Trickled)
    }

    async fn restart(
        &self,
        generation: &mut Generation,
        ufrag: &str,
        pwd: &str,
        frag: &SdpFrag,
    ) -> Result<Patched, Refusal> {
        let candidates: Vec<String> = frag
            .media
            .iter()
            .flat_map(|m| m.candidates.iter().cloned())
            .collect();
        let first_mid = ice::mids(&generation.offer).into_iter().next().flatten();
        let offer = ice::with_candidates(
            &ice::with_credentials(&generation.offer, ufrag, pwd),
            first_mid.as_deref(),
            &candidates,
        );
        let (our_ufrag, our_pwd) = self.peer.answer_ice_restart(&offer).await.map_err(|e| {
            Refusal::new(
                500,
                "Internal Server Error",
                format!("the ICE restart failed: {e}"),
            )
        })?;
        if let Some(old) = generation.remote_ufrag.replace(ufrag.to_string()) {
            generation.earlier.push(old);
        }
        generation.offer = offer;
        generation.ended = frag.end_of_candidates || frag.media.iter().any(|m| m.end_of_candidates);
        let mut ours = self.peer.local_candidates();
        ours.dedup();
        let sdpfrag = trickle_sdpfrag(
            first_mid.as_deref().unwrap_or("0"),
            &our_ufrag,
            &our_pwd,
            &ours,
            true,
        );
        let etag = new_etag();
        *self.etag.lock().unwrap() = etag.clone();
        gst::info!(
            super::CAT,
            "ICE restart: {} remote candidates, answered with {} of ours",
            candidates.len(),
            ours.len()
        );
        Ok(Patched::Restarted { sdpfrag, etag })
    }
}

#[cfg(test)]
mod tests {
    use super::if_match;

    #[test]
    fn if_match_rules() {
        assert!(if_match("\"abc\"", "\"abc\""));
        assert!(if_match("abc", "\"abc\""));
        assert!(if_match("*", "\"abc\""));
        assert!(if_match("\"*\"", "\"abc\""));
        assert!(if_match("\"x\", \"abc\"", "\"abc\""));
        assert!(!if_match("\"abd\"", "\"abc\""));
        assert!(!if_match("W/\"abc\"", "\"abc\""));
    }
}
