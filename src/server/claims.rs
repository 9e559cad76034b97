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

/// The sessions an element serves, live or being answered, against its
/// `max-sessions`.
#[derive(Default, Clone)]
pub struct Slots(Arc<Mutex<usize>>);

/// One session's place among `Slots`; freed when dropped.
pub struct Slot(Slots);

impl Slots {
    /// A place for one more session, or 503 with Retry-After naming the
    /// limit (0: none).
    pub fn take(&self, max: u32) -> Result<Slot, Refusal> {
        let mut used = self.0.lock().unwrap();
        if max > 0 && *used >= max as usize {
            let mut r = Refusal::new(
                503,
                "Service Unavailable",
                format!("this endpoint serves at most {max} sessions at once (max-sessions)"),
            );
            r.retry_after = Some(5);
            return Err(r);
        }
        *used += 1;
        Ok(Slot(self.clone()))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        *self.0 .0.lock().unwrap() -= 1;
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

    #[test]
    fn slots_up_to_the_limit_until_dropped() {
        let slots = Slots::default();
        let a = slots.take(2).unwrap();
        let _b = slots.take(2).unwrap();
        let r = slots.take(2).err().unwrap();
        assert_eq!((r.status, r.retry_after), (503, Some(5)));
        assert!(r.detail.contains("at most 2 sessions"), "{}", r.detail);
        drop(a);
        assert!(slots.take(2).is_ok());
        assert!(slots.take(0).is_ok());
    }
}
