//! The peer channel between replicas: standbys read the leader's live view and count failed
//! logins at the leader, so every replica's facade gives one answer.
//!
//! Why this shape: only the leader probes nodes (node load must not grow with the replica
//! count) and live figures never go to the API server (that would be steady-state writes),
//! so a standby copies the leader's cache. It polls every [`POLL_EVERY`] with the `changes`
//! value of its last copy and gets only the nodes edited since ([`LiveDelta`]): at rest an
//! answer is a few bytes, and a node's report travels once per edit. Polling (rather than
//! a stream of deltas) keeps the leader stateless about its standbys and makes a dead
//! leader show at once as a failed request; the staleness is at most one poll interval plus
//! the transfer, within the 1 s budget.
//!
//! - Found only through the system-namespace Lease: the leader publishes its peer address
//!   as an annotation ([`crate::controllers::leader::PEER_ADDRESS_ANNOTATION`]); standbys
//!   read it from there and nowhere else.
//! - Authenticated: every request carries the key of Secret `<instance>-peer-key` (system
//!   namespace, created with 32 random bytes by the first replica) as a bearer token; the
//!   port is also closed to everything but the operator's own pods by the chart's
//!   NetworkPolicy.
//! - A standby that cannot reach the leader keeps the last copy and says it is stale (the
//!   facade's `Warning: 110` header, see `crate::api`); it never serves an empty view.

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use k8s_openapi::api::core::v1::Secret;
use kube::Client;
use kube::api::{Api, PostParams};
use serde::Deserialize;
use tokio::sync::watch;

use crate::api::ApiState;
use crate::api::auth::{LoginEvent, SharedLockout};
use crate::controllers::leader::LeaderStatus;
use crate::state::{LiveDelta, LiveStats};

/// Key of the peer key in the installation's peer key Secret
/// ([`crate::domain::instance::Instance::peer_key`]).
pub const KEY_FIELD: &str = "key";
/// How often a standby refreshes its copy of the live view.
pub const POLL_EVERY: Duration = Duration::from_millis(250);
/// How long a standby waits for the leader before counting a login locally.
const LOGIN_TIMEOUT: Duration = Duration::from_millis(800);
const LIVE_TIMEOUT: Duration = Duration::from_secs(2);

/// The shared key, as sent in `Authorization: Bearer`.
#[derive(Clone)]
pub struct PeerKey(Arc<str>);

impl PeerKey {
    /// Reads the key Secret, creating it when absent (a replica that loses the race reads
    /// the winner's).
    pub async fn load(client: &Client, namespace: &str, name: &str) -> Result<Self, kube::Error> {
        let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
        for _ in 0..3 {
            if let Some(s) = api.get_opt(name).await? {
                return Ok(Self::of(&s, name));
            }
            let key: [u8; 32] = rand::random();
            let secret = crate::api::auth::key_secret(name, KEY_FIELD, &key);
            match api.create(&PostParams::default(), &secret).await {
                Ok(_) => return Ok(Self(hex::encode(key).into())),
                Err(kube::Error::Api(s)) if s.is_already_exists() => continue,
                Err(e) => return Err(e),
            }
        }
        api.get(name).await.map(|s| Self::of(&s, name))
    }

    fn of(secret: &Secret, name: &str) -> Self {
        let key = secret
            .data
            .as_ref()
            .and_then(|d| d.get(KEY_FIELD))
            .filter(|k| k.0.len() >= 16);
        match key {
            Some(k) => Self(hex::encode(&k.0).into()),
            None => {
                tracing::warn!(
                    "Secret {name} has no usable {KEY_FIELD}; the peer channel is closed"
                );
                // A key nobody else knows: the channel refuses everyone, replicas still serve.
                Self(hex::encode(rand::random::<[u8; 32]>()).into())
            }
        }
    }

    fn matches(&self, header: Option<&str>) -> bool {
        let Some(token) = header.and_then(|h| h.strip_prefix("Bearer ")) else {
            return false;
        };
        // Constant time in the key's length: the comparison tells nothing of a prefix.
        let (a, b) = (token.as_bytes(), self.0.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

#[derive(Clone)]
struct Server {
    live: LiveStats,
    key: PeerKey,
    epoch: u64,
    facade: Option<ApiState>,
}

#[derive(Deserialize)]
struct Since {
    #[serde(default)]
    since: u64,
    #[serde(default)]
    epoch: u64,
}

/// The peer endpoints: `GET /internal/v1/live?since=&epoch=` (a [`LiveDelta`]) and
/// `POST /internal/v1/logins` (a [`LoginEvent`], answered with the lock's seconds).
pub fn router(live: LiveStats, key: PeerKey, facade: Option<ApiState>) -> Router {
    let server = Server {
        live,
        key,
        // Never 0: a standby's first request (epoch 0) always gets the whole view.
        epoch: rand::random::<u64>().max(1),
        facade,
    };
    Router::new()
        .route("/internal/v1/live", get(live_delta))
        .route("/internal/v1/logins", post(login_event))
        .layer(axum::middleware::from_fn_with_state(
            server.clone(),
            authenticate,
        ))
        .with_state(server)
}

async fn authenticate(State(s): State<Server>, req: Request, next: Next) -> Response {
    let auth = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if !s.key.matches(auth) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    next.run(req).await
}

async fn live_delta(State(s): State<Server>, Query(q): Query<Since>) -> axum::Json<LiveDelta> {
    let since = if q.epoch == s.epoch { q.since } else { 0 };
    let mut delta = s.live.delta(since);
    delta.epoch = s.epoch;
    axum::Json(delta)
}

async fn login_event(
    State(s): State<Server>,
    axum::Json(event): axum::Json<LoginEvent>,
) -> Response {
    match &s.facade {
        Some(f) => axum::Json(f.auth.apply_login_event(&event)).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// Serves [`router`] on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

/// A standby's side of the channel: where the leader is (from the Lease) and how to ask it.
#[derive(Clone)]
pub struct PeerClient {
    http: reqwest::Client,
    key: PeerKey,
    leader: watch::Receiver<Option<String>>,
    status: LeaderStatus,
    own: Option<String>,
}

impl PeerClient {
    /// A client following the leader address `leader` (as the elector reads it from the
    /// Lease); it asks nobody while `status` says this replica leads, nor its own address
    /// `own` (a restarted leader's Lease still names it until the Lease expires).
    pub fn new(
        key: PeerKey,
        leader: watch::Receiver<Option<String>>,
        status: LeaderStatus,
        own: Option<String>,
    ) -> Self {
        Self {
            http: reqwest::Client::builder()
                .no_proxy()
                .build()
                .unwrap_or_default(),
            key,
            leader,
            status,
            own,
        }
    }

    fn leader_url(&self, path: &str) -> Option<String> {
        if self.status.leading() {
            return None;
        }
        let addr = self.leader.borrow().clone()?;
        (Some(&addr) != self.own.as_ref()).then(|| format!("http://{addr}{path}"))
    }

    /// Keeps `live` a copy of the leader's until this replica leads (then the cache is its
    /// own again and this returns).
    pub async fn mirror(self, live: LiveStats) {
        live.set_mirror(true);
        let (mut since, mut epoch) = (0u64, 0u64);
        let mut warned = false;
        while !self.status.leading() {
            if let Some(url) = self.leader_url("/internal/v1/live") {
                match self.fetch(&url, since, epoch).await {
                    Ok(delta) => {
                        (since, epoch) = (delta.changes, delta.epoch);
                        live.apply(delta);
                        warned = false;
                    }
                    Err(error) if !warned => {
                        warned = true;
                        tracing::warn!(%error, "cannot read the leader's live view; serving the last copy as stale");
                    }
                    Err(_) => {}
                }
            }
            tokio::time::sleep(POLL_EVERY).await;
        }
        live.set_mirror(false);
    }

    async fn fetch(&self, url: &str, since: u64, epoch: u64) -> Result<LiveDelta, reqwest::Error> {
        self.http
            .get(url)
            .query(&[("since", since), ("epoch", epoch)])
            .bearer_auth(&*self.key.0)
            .timeout(LIVE_TIMEOUT)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await
    }
}

impl SharedLockout for PeerClient {
    fn exchange(
        &self,
        event: LoginEvent,
    ) -> Pin<Box<dyn Future<Output = Option<u64>> + Send + '_>> {
        Box::pin(async move {
            let url = self.leader_url("/internal/v1/logins")?;
            let sent = self
                .http
                .post(url)
                .bearer_auth(&*self.key.0)
                .json(&event)
                .timeout(LOGIN_TIMEOUT)
                .send()
                .await
                .and_then(reqwest::Response::error_for_status);
            match sent {
                Ok(resp) => resp.json::<u64>().await.ok(),
                Err(error) => {
                    tracing::warn!(%error, "cannot reach the leader; counting the login here");
                    None
                }
            }
        })
    }
}

/// The address a replica publishes for its peer endpoint: `advertise` if given, else the
/// pod IP (`POD_IP`) with the listen port, else the listen address itself.
pub fn advertised(listen: std::net::SocketAddr, advertise: Option<&str>) -> String {
    if let Some(a) = advertise {
        return a.to_string();
    }
    match std::env::var("POD_IP")
        .ok()
        .and_then(|ip| ip.parse::<IpAddr>().ok())
    {
        Some(ip) => std::net::SocketAddr::new(ip, listen.port()).to_string(),
        None => listen.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_key_as_a_bearer_token_opens_the_channel() {
        let key = PeerKey("00ff".repeat(16).into());
        let good = format!("Bearer {}", "00ff".repeat(16));
        assert!(key.matches(Some(&good)));
        for bad in [
            None,
            Some("00ff".repeat(16)),
            Some(format!("Basic {}", "00ff".repeat(16))),
            Some(format!("Bearer {}", "00ff".repeat(15))),
            Some(format!("Bearer {}0", "00ff".repeat(16))),
            Some(format!("Bearer {}", "00fe".repeat(16))),
        ] {
            assert!(!key.matches(bad.as_deref()), "{bad:?}");
        }
    }

    #[test]
    fn the_advertised_address_is_the_flag_or_the_listen_address() {
        let listen: std::net::SocketAddr = "127.0.0.1:8082".parse().unwrap();
        assert_eq!(advertised(listen, Some("10.1.2.3:9")), "10.1.2.3:9");
        if std::env::var("POD_IP").is_err() {
            assert_eq!(advertised(listen, None), "127.0.0.1:8082");
        }
    }
}
