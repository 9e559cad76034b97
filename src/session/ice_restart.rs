//! ICE restart of a live session by PATCH (RFC 9725 §4.3.3, docs/protocol.md
//! P12): when only the network path broke, the server's resource, the DTLS
//! association and the media pipeline stay, and ICE alone starts over with
//! new credentials over the addresses the peer has (libnice gathers only
//! once: an address that appeared after the session started cannot be used,
//! a new session is then the way).

use std::sync::Arc;

use gst_webrtc::WebRTCSDPType;

use super::Resource;
use crate::peer::{ice, Peer};
use crate::protocol::{parse_sdpfrag, trickle_sdpfrag};

/// Restarts ICE on `peer`, the session `resource`: a new offer with new
/// credentials, its candidates PATCHed with `If-Match: "*"`, the server's
/// fragment applied as the new answer. Err: why not (no Location, the
/// server refused, a bad answer); the session is then to be replaced.
pub async fn restart(peer: &Arc<Peer>, resource: &Resource) -> Result<(), String> {
    let url = resource
        .location()
        .ok_or("the server gave no Location to PATCH")?;
    let offer = peer.offer_ice_restart().await.map_err(|e| e.to_string())?;
    let (ufrag, pwd) = ice::credentials(&offer).ok_or("the new offer has no ICE credentials")?;
    let mid = ice::mids(&offer)
        .into_iter()
        .next()
        .flatten()
        .unwrap_or_else(|| "0".into());
    let mut candidates = peer.local_candidates();
    candidates.dedup();
    let frag = trickle_sdpfrag(&mid, &ufrag, &pwd, &candidates, true);
    let answer = resource
        .client()
        .patch_ice_restart(&url, &frag)
        .await
        .map_err(|e| format!("the server refused the ICE restart: {e}"))?;
    let answer = parse_sdpfrag(&answer.sdpfrag).map_err(|e| format!("ICE restart answer: {e}"))?;
    let (Some(their_ufrag), Some(their_pwd)) = (answer.ufrag, answer.pwd) else {
        return Err("the ICE restart answer has no ice-ufrag/ice-pwd".into());
    };
    let theirs: Vec<String> = answer
        .media
        .into_iter()
        .flat_map(|m| m.candidates)
        .collect();
    let remote = peer
        .description("remote-description")
        .ok_or("no remote description to restart")?;
    let remote = ice::with_candidates(
        &ice::with_credentials(&remote, &their_ufrag, &their_pwd),
        Some(&mid),
        &theirs,
    );
    peer.set_remote(WebRTCSDPType::Answer, &remote)
        .await
        .map_err(|e| format!("the ICE restart answer was rejected: {e}"))
}
