//! Helpers shared by the integration tests (`mod common;`).

pub mod e2e;
pub mod front;
pub mod http_server;
pub mod launch;
pub mod netns;
pub mod offers;
pub mod peer_client;
pub mod stamp;
