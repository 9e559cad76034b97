//! The server-side resource a session creates, DELETEd exactly once.
//!
//! Stop, EOS and errors can race with a POST still in flight. Whoever
//! closes first takes the URL; a Location that arrives after the close is
//! DELETEd at once by the POST task, so no session is left on the server.

use std::sync::{Arc, Mutex};

use url::Url;

use crate::protocol::{redact_url, Client, DeleteOutcome, ProtocolError};

#[derive(Debug)]
enum State {
    Pending,
    Located(Url),
    /// The server gave no Location: nothing can be DELETEd.
    Unlocated,
    Closed,
}

pub struct Resource {
    client: Client,
    state: Mutex<State>,
    /// Set when closed: a POST still in flight is abandoned (its connection
    /// closed) rather than left to run until its timeout.
    closed: tokio::sync::watch::Sender<bool>,
}

impl Resource {
    pub fn new(client: Client) -> Arc<Self> {
        Arc::new(Self {
            client,
            state: Mutex::new(State::Pending),
            closed: tokio::sync::watch::channel(false).0,
        })
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Records the session URL from the POST answer. Returns it back if the
    /// session was closed meanwhile: the caller must DELETE it now.
    pub fn located(&self, url: Option<Url>) -> Option<Url> {
        let mut state = self.state.lock().unwrap();
        match (&*state, url) {
            (State::Closed, url) => url,
            (_, Some(url)) => {
                *state = State::Located(url);
                None
            }
            (_, None) => {
                *state = State::Unlocated;
                None
            }
        }
    }

    /// Marks the session closed and hands out its URL, the first time only.
    pub fn close(&self) -> Option<Url> {
        let mut state = self.state.lock().unwrap();
        self.closed.send_replace(true);
        match std::mem::replace(&mut *state, State::Closed) {
            State::Located(url) => Some(url),
            _ => None,
        }
    }

    /// Resolves once the session is closed.
    pub async fn closed(&self) {
        let _ = self.closed.subscribe().wait_for(|closed| *closed).await;
    }

    pub fn location(&self) -> Option<Url> {
        match &*self.state.lock().unwrap() {
            State::Located(url) => Some(url.clone()),
            _ => None,
        }
    }

    pub fn is_closed(&self) -> bool {
        matches!(*self.state.lock().unwrap(), State::Closed)
    }

    /// Closes and DELETEs, if there is anything to delete. Bounded by the
    /// client's timeout. Returns the redacted URL and the outcome.
    pub async fn close_and_delete(&self) -> Option<(String, Result<DeleteOutcome, ProtocolError>)> {
        let url = self.close()?;
        Some((redact_url(&url), self.client.delete(&url).await))
    }
}
