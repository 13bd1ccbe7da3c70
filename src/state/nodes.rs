//! One [`NodeClient`] per declared streamer, shared by the controllers and the facade, so a
//! node's in-flight limit holds across everything that talks to it.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use crate::flussonic::NodeClient;

/// Node clients by hostname; kept current by the Streamer controller.
#[derive(Clone, Default)]
pub struct NodeClients {
    clients: Arc<RwLock<HashMap<String, NodeClient>>>,
}

impl NodeClients {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// The client of `hostname`, if the node is declared and its credentials resolved.
    pub fn get(&self, hostname: &str) -> Option<NodeClient> {
        self.clients
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(hostname)
            .cloned()
    }

    /// Installs (or replaces) the client of a node.
    pub fn insert(&self, client: NodeClient) {
        self.clients
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(client.hostname().to_string(), client);
    }

    /// Drops the client of a node that is gone.
    pub fn remove(&self, hostname: &str) -> Option<NodeClient> {
        self.clients
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(hostname)
    }

    /// Hostnames with a client.
    pub(crate) fn hostnames(&self) -> Vec<String> {
        let mut all: Vec<String> = self
            .clients
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect();
        all.sort();
        all
    }
}
