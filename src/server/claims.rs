//! One publisher per path: whipserversrc claims a path for a publisher from
//! its offer on, and the claim goes with the publisher. A second publisher on
//! a live path (a relay name already published) is refused with 409 instead
//! of being mixed into what the first one feeds.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use super::Refusal;

/// The paths that have a publisher, or one being answered.
#[derive(Default, Clone)]
pub struct PathClaims(Arc<Mutex<HashSet<String>>>);

/// A path held for one publisher; released when dropped.
pub struct Claim {
    claims: PathClaims,
    path: String,
}

impl PathClaims {
    /// Claims `path`, or says why not: 409 with Retry-After (the path is
    /// free again once its publisher leaves).
    pub fn claim(&self, path: &str) -> Result<Claim, Refusal> {
        if self.0.lock().unwrap().insert(path.to_string()) {
            return Ok(Claim {
                claims: self.clone(),
                path: path.to_string(),
            });
        }
        let shown = if path.is_empty() { "/" } else { path };
        let mut r = Refusal::new(409, "Conflict", format!("{shown} already has a publisher"));
        r.retry_after = Some(1);
        Err(r)
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.claims.0.lock().unwrap().remove(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_claim_per_path_until_dropped() {
        let claims = PathClaims::default();
        let a = claims.claim("/whip/test").unwrap();
        let _b = claims.claim("/whip/other").unwrap();
        let r = claims.claim("/whip/test").err().unwrap();
        assert_eq!(r.status, 409);
        assert_eq!(r.detail, "/whip/test already has a publisher");
        drop(a);
        assert!(claims.claim("/whip/test").is_ok());
    }
}
