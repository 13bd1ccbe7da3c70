//! `NodeClient`: one per streamer node, with a connection pool, a bounded number of requests
//! in flight, per-request timeouts, retries with backoff for transient failures, a tracing
//! span per call and per-node metrics.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use reqwest::{Method, Url};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;
use tracing::Instrument;

use super::body::StreamBody;
use super::credentials::Credentials;
use super::error::{Error, Target, from_status};
use super::metrics::NodeMetrics;
use super::retry::RetryPolicy;
use crate::resources::wire::{NodeStream, ServerConfig, ServerStats, ServerWhoami};

const JSON: &str = "application/json";

/// API prefix on every node.
pub const API_PREFIX: [&str; 3] = ["streamer", "api", "v3"];

/// Fields a drift/health poll needs from `GET /streams` (keeps pages small).
pub const POLL_SELECT: &[&str] = &[
    "name",
    "named_by",
    "labels",
    "config_on_disk",
    "stats.status",
    "stats.alive",
    "stats.bitrate",
    "stats.lifetime",
    "stats.ts_delay",
    "stats.source_error",
    "stats.online_clients",
];

tokio::task_local! {
    static TRACE_ID: String;
}

/// Runs `f` with every node request in it carrying `X-Trace-Id: trace_id` (e.g. one per
/// reconcile, so node events can be correlated). Outside it each call gets its own id.
pub async fn with_trace_id<F: Future>(trace_id: impl Into<String>, f: F) -> F::Output {
    TRACE_ID.scope(trace_id.into(), f).await
}

fn new_trace_id() -> String {
    let b: [u8; 16] = rand::random();
    let h = hex::encode(b);
    format!(
        "{}-{}-4{}-a{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}

/// How to reach and treat one node.
#[derive(Clone, Debug)]
pub struct NodeClientConfig {
    /// Node hostname (labels, spans, errors).
    pub hostname: String,
    /// Base URL, e.g. `http://node1:80`; `/streamer/api/v3` is appended.
    pub base_url: String,
    /// Credentials.
    pub credentials: Credentials,
    /// Requests in flight to this node at most.
    pub max_in_flight: usize,
    /// Timeout of one attempt, until the whole body is read.
    pub request_timeout: Duration,
    /// TCP connect timeout.
    pub connect_timeout: Duration,
    /// Retries of transient failures.
    pub retry: RetryPolicy,
    /// Timing of the health probe (separate from `request_timeout`, which must let a big
    /// list or body through, while a probe must tell a hung node quickly).
    pub probe: ProbePolicy,
    /// Page size of stream lists.
    pub page_size: u32,
    /// Whether credentials may travel over plain `http://` (the Streamer's `allowInsecure`).
    pub allow_insecure: bool,
    /// PEM CA bundle trusted (alone) for this node's HTTPS certificate.
    pub ca_bundle: Option<String>,
}

/// How a node's health probe is timed. A hung node (connection accepted, no answer) is
/// judged unreachable after at most [`ProbePolicy::budget`]; a node answering within
/// `timeout` is never. The defaults (1.5 s × 3 attempts, 0.3 s of backoff: 4.8 s) keep the
/// budget under 5 s while a node answering after 800 ms passes every probe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbePolicy {
    /// Timeout of one probe attempt.
    pub timeout: Duration,
    /// Attempts before the node counts as unreachable.
    pub attempts: u32,
}

impl Default for ProbePolicy {
    fn default() -> Self {
        Self {
            timeout: Duration::from_millis(1500),
            attempts: 3,
        }
    }
}

impl ProbePolicy {
    /// The retry policy of probe attempts: short waits, the budget is for the attempts.
    pub fn retry(&self) -> RetryPolicy {
        RetryPolicy {
            max_attempts: self.attempts.max(1),
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(200),
        }
    }

    /// The longest a probe of a hung node takes: every attempt's timeout plus the longest
    /// wait between them.
    pub fn budget(&self) -> Duration {
        let retry = self.retry();
        let waits: Duration = (1..retry.max_attempts).map(|f| retry.ceiling(f)).sum();
        self.timeout * retry.max_attempts + waits
    }
}

impl NodeClientConfig {
    /// Defaults: 8 in flight, 10 s per request, 3 s to connect, 4 attempts, pages of 500.
    pub fn new(
        hostname: impl Into<String>,
        base_url: impl Into<String>,
        credentials: Credentials,
    ) -> Self {
        Self {
            hostname: hostname.into(),
            base_url: base_url.into(),
            credentials,
            max_in_flight: 8,
            request_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(3),
            retry: RetryPolicy::default(),
            probe: ProbePolicy::default(),
            page_size: 500,
            allow_insecure: false,
            ca_bundle: None,
        }
    }

    /// Lets credentials travel over plain `http://` (a lab, the simulator, a trusted link).
    pub fn allow_insecure(mut self, allow: bool) -> Self {
        self.allow_insecure = allow;
        self
    }

    /// Trusts only the CAs of `pem` for this node's certificate.
    pub fn ca_bundle(mut self, pem: Option<String>) -> Self {
        self.ca_bundle = pem;
        self
    }
}

/// Why a client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The base URL does not parse or cannot carry a path.
    #[error("invalid node URL {url:?}: {reason}")]
    Url {
        /// The URL given.
        url: String,
        /// Why.
        reason: String,
    },
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client: {0}")]
    Http(#[from] reqwest::Error),
    /// Credentials would travel in clear.
    #[error(
        "refusing to send credentials to {url} over plain http://; use an https:// URL or set allowInsecure: true on the Streamer"
    )]
    Insecure {
        /// The URL given.
        url: String,
    },
    /// The CA bundle holds no usable certificate.
    #[error("the CA bundle is not a PEM bundle of certificates: {0}")]
    CaBundle(String),
}

/// `GET /config`: the stored server config plus the read-only members.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeServerConfig {
    /// The configuration.
    #[serde(flatten)]
    pub config: ServerConfig,
    /// Persistent node id.
    #[serde(default)]
    pub server_id: Option<String>,
    /// Runtime status.
    #[serde(default)]
    pub stats: Option<ServerStats>,
}

/// Parameters of `GET /streams`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListQuery {
    /// Fields to return (`name` is always added); empty = everything.
    pub select: Vec<String>,
    /// Sort, e.g. `-stats.bitrate,name`.
    pub sort: Option<String>,
    /// Search text.
    pub q: Option<String>,
    /// Filters by field, e.g. `("named_by", "config")`.
    pub filters: Vec<(String, String)>,
    /// Page size (else the client's `page_size`).
    pub limit: Option<u32>,
}

impl ListQuery {
    /// The query of a drift and health poll ([`POLL_SELECT`]).
    pub fn poll() -> Self {
        Self {
            select: POLL_SELECT.iter().map(|s| s.to_string()).collect(),
            ..Self::default()
        }
    }

    /// Adds a filter.
    pub fn filter(mut self, field: impl Into<String>, value: impl Into<String>) -> Self {
        self.filters.push((field.into(), value.into()));
        self
    }

    /// Sets the page size.
    pub fn limit(mut self, limit: u32) -> Self {
        self.limit = Some(limit);
        self
    }
}

/// One page of `GET /streams`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct StreamsPage {
    /// Streams (fields limited by `select`).
    #[serde(default)]
    pub streams: Vec<NodeStream>,
    /// Estimated total.
    #[serde(default)]
    pub estimated_count: Option<i64>,
    /// Cursor of the next page; absent on the last.
    #[serde(default)]
    pub next: Option<String>,
    /// Cursor of the previous page.
    #[serde(default)]
    pub prev: Option<String>,
    /// Persistent node id.
    #[serde(default)]
    pub server_id: Option<String>,
}

struct Inner {
    cfg: NodeClientConfig,
    http: reqwest::Client,
    api: Url,
    permits: Semaphore,
    metrics: NodeMetrics,
}

/// Client of one node. Cheap to clone (clones share the pool and the in-flight limit).
#[derive(Clone)]
pub struct NodeClient {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for NodeClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeClient")
            .field("hostname", &self.inner.cfg.hostname)
            .field("api", &self.inner.api.as_str())
            .finish()
    }
}

struct Call<'a> {
    op: &'static str,
    stream: Option<&'a str>,
    method: Method,
    url: Url,
    body: Option<Vec<u8>>,
    /// Content type of `body` (JSON everywhere but firmware uploads).
    content_type: &'static str,
    retry: bool,
    /// A health probe: its own timeout and attempts, and no queueing behind other requests
    /// (a node whose permits are held by hung requests must still be probed on time).
    probe: bool,
}

/// One HTTP client for every node client with the same settings. Building a reqwest client
/// loads and parses the system's CA bundle (tens of milliseconds of CPU): once per node, that
/// was a sixth of the operator's CPU while a restart with 100 nodes probed them, and it held up
/// their first lists. Connection pools are per host inside a client, so sharing it changes
/// nothing else.
/// A node with its own CA bundle gets a client of its own that trusts only that bundle.
fn shared_http(
    connect_timeout: Duration,
    idle_per_host: usize,
    ca_bundle: Option<&str>,
) -> Result<reqwest::Client, BuildError> {
    type Key = (Duration, usize, Option<String>);
    static CLIENTS: std::sync::Mutex<Vec<(Key, reqwest::Client)>> =
        std::sync::Mutex::new(Vec::new());
    let key = (
        connect_timeout,
        idle_per_host,
        ca_bundle.map(str::to_string),
    );
    let mut clients = CLIENTS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, c)) = clients.iter().find(|(k, _)| *k == key) {
        return Ok(c.clone());
    }
    let mut builder = reqwest::Client::builder();
    if let Some(pem) = ca_bundle {
        builder = builder.tls_certs_only(ca_certificates(pem)?);
    }
    let client = builder
        .connect_timeout(connect_timeout)
        .pool_max_idle_per_host(idle_per_host)
        .pool_idle_timeout(Duration::from_secs(60))
        .tcp_nodelay(true)
        .user_agent(concat!("panoptes/", env!("CARGO_PKG_VERSION")))
        .build()?;
    clients.push((key, client.clone()));
    Ok(client)
}

/// The certificates of a PEM bundle, each checked to be a usable trust anchor (reqwest takes
/// any bytes and would fail only on the first TLS handshake, with a less useful message).
fn ca_certificates(pem: &str) -> Result<Vec<reqwest::Certificate>, BuildError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let bad = |e: &dyn std::fmt::Display| BuildError::CaBundle(e.to_string());
    let mut anchors = rustls::RootCertStore::empty();
    let mut out = Vec::new();
    for der in CertificateDer::pem_slice_iter(pem.as_bytes()) {
        let der = der.map_err(|e| bad(&e))?;
        anchors.add(der.clone()).map_err(|e| bad(&e))?;
        out.push(reqwest::Certificate::from_der(&der).map_err(|e| bad(&e))?);
    }
    if out.is_empty() {
        return Err(BuildError::CaBundle("no certificate in it".into()));
    }
    Ok(out)
}

impl NodeClient {
    /// Builds a client. Installs the rustls `ring` provider if none is installed yet.
    pub fn new(cfg: NodeClientConfig, metrics: NodeMetrics) -> Result<Self, BuildError> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let bad = |reason: &str| BuildError::Url {
            url: cfg.base_url.clone(),
            reason: reason.to_string(),
        };
        let mut api = Url::parse(&cfg.base_url).map_err(|e| bad(&e.to_string()))?;
        if !matches!(api.scheme(), "http" | "https") {
            return Err(bad("scheme must be http or https"));
        }
        api.set_query(None);
        api.path_segments_mut()
            .map_err(|_| bad("cannot carry a path"))?
            .pop_if_empty()
            .extend(API_PREFIX);
        if api.scheme() == "http" && cfg.credentials != Credentials::None && !cfg.allow_insecure {
            return Err(BuildError::Insecure {
                url: cfg.base_url.clone(),
            });
        }
        let http = shared_http(
            cfg.connect_timeout,
            cfg.max_in_flight.max(1),
            cfg.ca_bundle.as_deref(),
        )?;
        let permits = Semaphore::new(cfg.max_in_flight.max(1));
        Ok(Self {
            inner: Arc::new(Inner {
                cfg,
                http,
                api,
                permits,
                metrics,
            }),
        })
    }

    /// Node hostname.
    pub fn hostname(&self) -> &str {
        &self.inner.cfg.hostname
    }

    /// `…/streamer/api/v3` of this node.
    pub fn api_url(&self) -> &Url {
        &self.inner.api
    }

    /// Whether secrets (camera passwords in stream configs) may be sent to this node: it is
    /// reached over HTTPS, or its Streamer allows plain HTTP explicitly.
    pub fn may_carry_secrets(&self) -> bool {
        self.inner.api.scheme() == "https" || self.inner.cfg.allow_insecure
    }

    /// A URL below the API base from fixed segments (never a stream name: see
    /// [`Self::stream_url`]).
    fn url(&self, segments: &[&str]) -> Url {
        let mut u = self.inner.api.clone();
        u.path_segments_mut()
            .expect("checked in new")
            .extend(segments);
        u
    }

    /// `…/streams/{name}/{tail…}`, the name as exactly one path segment. A name that cannot be
    /// one (empty, `.`, `..`) is refused before anything is sent: a dot segment would address
    /// the node's whole stream collection.
    fn stream_url(&self, op: &'static str, name: &str, tail: &[&str]) -> Result<Url, Error> {
        stream_url(&self.inner.api, name, tail).ok_or_else(|| Error::Rejected {
            target: self.target(op, Some(name)),
            status: 400,
            code: Some("invalid_name".into()),
            message: "a stream name must be one non-empty path segment other than `.` and `..`"
                .into(),
            pointer: None,
            parameter: None,
        })
    }

    fn target(&self, op: &'static str, stream: Option<&str>) -> Box<Target> {
        Box::new(Target {
            node: self.inner.cfg.hostname.clone(),
            op,
            stream: stream.map(str::to_string),
        })
    }

    fn transport(&self, target: Box<Target>, e: reqwest::Error, timeout: Duration) -> Error {
        if e.is_timeout() {
            return Error::Timeout {
                target,
                after: timeout,
            };
        }
        let mut message = e.to_string();
        let mut src = std::error::Error::source(&e);
        while let Some(s) = src {
            message.push_str(": ");
            message.push_str(&s.to_string());
            src = s.source();
        }
        Error::Unreachable { target, message }
    }

    async fn attempt(&self, call: &Call<'_>, trace_id: &str) -> Result<Vec<u8>, Error> {
        let inner = &self.inner;
        let target = || self.target(call.op, call.stream);
        let _permit = if call.probe {
            None
        } else {
            Some(
                inner
                    .permits
                    .acquire()
                    .await
                    .expect("semaphore never closed"),
            )
        };
        let timeout = if call.probe {
            inner.cfg.probe.timeout
        } else {
            inner.cfg.request_timeout
        };
        let started = Instant::now();
        let now_s = chrono::Utc::now().timestamp();
        let mut req = inner
            .http
            .request(call.method.clone(), call.url.clone())
            .timeout(timeout)
            .header(ACCEPT, HeaderValue::from_static("application/json"))
            .header("X-Originator", HeaderValue::from_static("panoptes"))
            .header("X-Trace-Id", trace_id);
        if let Some(auth) = inner.cfg.credentials.header_value(now_s) {
            req = req.header(AUTHORIZATION, auth);
        }
        if let Some(body) = &call.body {
            req = req
                .header(CONTENT_TYPE, HeaderValue::from_static(call.content_type))
                .body(body.clone());
        }
        let result = match req.send().await {
            Err(e) => Err(self.transport(target(), e, timeout)),
            Ok(resp) => {
                let status = resp.status().as_u16();
                match resp.bytes().await {
                    Err(e) => Err(self.transport(target(), e, timeout)),
                    Ok(bytes) if (200..300).contains(&status) => Ok(bytes.to_vec()),
                    Ok(bytes) => Err(from_status(*target(), status, &bytes)),
                }
            }
        };
        let outcome = result
            .as_ref()
            .map(|_| "ok")
            .unwrap_or_else(|e| e.category());
        inner.metrics.observe(
            &inner.cfg.hostname,
            outcome,
            started.elapsed().as_secs_f64(),
        );
        result
    }

    async fn execute(&self, call: Call<'_>) -> Result<Vec<u8>, Error> {
        let trace_id = TRACE_ID
            .try_with(Clone::clone)
            .unwrap_or_else(|_| new_trace_id());
        let span = tracing::debug_span!("node_request", node = %self.inner.cfg.hostname, op = call.op, stream = call.stream.unwrap_or(""), trace_id = %trace_id);
        async {
            let probe_policy;
            let policy = if call.probe {
                probe_policy = self.inner.cfg.probe.retry();
                &probe_policy
            } else {
                &self.inner.cfg.retry
            };
            let max = if call.retry || call.probe {
                policy.max_attempts.max(1)
            } else {
                1
            };
            let mut failed = 0;
            loop {
                match self.attempt(&call, &trace_id).await {
                    Ok(bytes) => return Ok(bytes),
                    Err(e) if e.is_transient() && failed + 1 < max => {
                        failed += 1;
                        let wait = policy.backoff(failed);
                        tracing::debug!(error = %e, attempt = failed, wait_ms = wait.as_millis() as u64, "transient node error, retrying");
                        self.inner.metrics.retried(&self.inner.cfg.hostname);
                        tokio::time::sleep(wait).await;
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, category = e.category(), "node request failed");
                        return Err(e);
                    }
                }
            }
        }
        .instrument(span)
        .await
    }

    fn decode<T: DeserializeOwned>(
        &self,
        op: &'static str,
        stream: Option<&str>,
        bytes: &[u8],
    ) -> Result<T, Error> {
        serde_json::from_slice(bytes).map_err(|e| Error::Decode {
            target: self.target(op, stream),
            message: e.to_string(),
        })
    }

    async fn get_json<T: DeserializeOwned>(
        &self,
        op: &'static str,
        stream: Option<&str>,
        url: Url,
        retry: bool,
    ) -> Result<T, Error> {
        let bytes = self
            .execute(Call {
                op,
                stream,
                method: Method::GET,
                url,
                body: None,
                content_type: JSON,
                retry,
                probe: false,
            })
            .await?;
        self.decode(op, stream, &bytes)
    }

    fn encode(
        &self,
        op: &'static str,
        stream: Option<&str>,
        body: &impl Serialize,
    ) -> Result<Vec<u8>, Error> {
        serde_json::to_vec(body).map_err(|e| Error::Decode {
            target: self.target(op, stream),
            message: e.to_string(),
        })
    }

    // ---- server ----------------------------------------------------------------------

    /// `GET /config`: stored server config, `server_id` and `stats`.
    pub async fn config_get(&self) -> Result<NodeServerConfig, Error> {
        self.get_json("config_get", None, self.url(&["config"]), true)
            .await
    }

    /// `PUT /config` with a partial config: only the members set are sent.
    pub async fn config_save(&self, partial: &ServerConfig) -> Result<NodeServerConfig, Error> {
        let body = self.encode("config_save", None, partial)?;
        let bytes = self
            .execute(Call {
                op: "config_save",
                stream: None,
                method: Method::PUT,
                url: self.url(&["config"]),
                body: Some(body),
                content_type: JSON,
                retry: true,
                probe: false,
            })
            .await?;
        self.decode("config_save", None, &bytes)
    }

    /// `GET /config/stats` as the health probe: [`ProbePolicy`] timing, no queueing behind
    /// other requests to the node.
    pub async fn probe(&self) -> Result<ServerStats, Error> {
        let op = "config_stats_probe";
        let bytes = self
            .execute(Call {
                op,
                stream: None,
                method: Method::GET,
                url: self.url(&["config", "stats"]),
                body: None,
                content_type: JSON,
                retry: true,
                probe: true,
            })
            .await?;
        self.decode(op, None, &bytes)
    }

    /// `GET /config/stats`: the cheap health / drift / restart poll.
    pub async fn config_stats(&self) -> Result<ServerStats, Error> {
        self.get_json(
            "config_stats_get",
            None,
            self.url(&["config", "stats"]),
            true,
        )
        .await
    }

    /// `GET /monitoring/liveness` (one attempt: a probe observes, it does not insist).
    pub async fn liveness(&self) -> Result<ServerWhoami, Error> {
        self.get_json(
            "liveness_probe",
            None,
            self.url(&["monitoring", "liveness"]),
            false,
        )
        .await
    }

    /// `GET /monitoring/readiness` (one attempt).
    pub async fn readiness(&self) -> Result<ServerWhoami, Error> {
        self.get_json(
            "readiness_probe",
            None,
            self.url(&["monitoring", "readiness"]),
            false,
        )
        .await
    }

    // ---- streams ---------------------------------------------------------------------

    /// `GET /streams/{name}` (effective config, `config_on_disk`, stats).
    pub async fn stream_get(&self, name: &str) -> Result<NodeStream, Error> {
        self.get_json(
            "stream_get",
            Some(name),
            self.stream_url("stream_get", name, &[])?,
            true,
        )
        .await
    }

    /// `PUT /streams/{name}`: a partial update, or a full replacement when the body has `$reset`.
    pub async fn stream_save(&self, body: &StreamBody) -> Result<NodeStream, Error> {
        self.save(body).await
    }

    /// [`NodeClient::stream_save`], reading only the saved `config_on_disk` from the answer:
    /// the push path keeps nothing else, and decoding the whole stream (stats, the effective
    /// config) for every push was 7 % of the operator's CPU in a restart onto wiped nodes
    /// (issue 21).
    pub async fn stream_save_config(
        &self,
        body: &StreamBody,
    ) -> Result<Option<serde_json::Value>, Error> {
        #[derive(Deserialize)]
        struct Saved {
            #[serde(default)]
            config_on_disk: Option<serde_json::Value>,
        }
        self.save::<Saved>(body).await.map(|s| s.config_on_disk)
    }

    async fn save<T: DeserializeOwned>(&self, body: &StreamBody) -> Result<T, Error> {
        let name = body.name();
        let bytes = self.encode("stream_save", Some(name), body.as_json())?;
        let call = Call {
            op: "stream_save",
            stream: Some(name),
            method: Method::PUT,
            url: self.stream_url("stream_save", name, &[])?,
            body: Some(bytes),
            content_type: JSON,
            retry: true,
            probe: false,
        };
        let out = self.execute(call).await?;
        self.decode("stream_save", Some(name), &out)
    }

    /// `DELETE /streams/{name}`. A stream that is already gone (404) counts as deleted.
    pub async fn stream_delete(&self, name: &str) -> Result<(), Error> {
        let call = Call {
            op: "stream_delete",
            stream: Some(name),
            method: Method::DELETE,
            url: self.stream_url("stream_delete", name, &[])?,
            body: None,
            content_type: JSON,
            retry: true,
            probe: false,
        };
        match self.execute(call).await {
            Ok(_) | Err(Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// `POST /streams/{name}/stop`: restarts a static stream, stops an on-demand one.
    pub async fn stream_stop(&self, name: &str) -> Result<(), Error> {
        let call = Call {
            op: "stream_stop",
            stream: Some(name),
            method: Method::POST,
            url: self.stream_url("stream_stop", name, &["stop"])?,
            body: None,
            content_type: JSON,
            retry: true,
            probe: false,
        };
        self.execute(call).await.map(|_| ())
    }

    /// One page of `GET /streams`.
    pub async fn streams_page(
        &self,
        query: &ListQuery,
        cursor: Option<&str>,
    ) -> Result<StreamsPage, Error> {
        let mut url = self.url(&["streams"]);
        {
            let mut qp = url.query_pairs_mut();
            if !query.select.is_empty() {
                let mut fields: Vec<&str> = query.select.iter().map(String::as_str).collect();
                if !fields.contains(&"name") {
                    fields.insert(0, "name");
                }
                qp.append_pair("select", &fields.join(","));
            }
            qp.append_pair(
                "limit",
                &query.limit.unwrap_or(self.inner.cfg.page_size).to_string(),
            );
            if let Some(s) = &query.sort {
                qp.append_pair("sort", s);
            }
            if let Some(q) = &query.q {
                qp.append_pair("q", q);
            }
            for (k, v) in &query.filters {
                qp.append_pair(k, v);
            }
            if let Some(c) = cursor {
                qp.append_pair("cursor", c);
            }
        }
        self.get_json("streams_list", None, url, true).await
    }

    /// Every stream, following `next` until it is absent. Each page is retried on its own;
    /// an error anywhere fails the whole list (never act on a partial list).
    pub async fn streams_list(&self, query: &ListQuery) -> Result<Vec<NodeStream>, Error> {
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        let mut seen = HashSet::new();
        loop {
            let page = self.streams_page(query, cursor.as_deref()).await?;
            out.extend(page.streams);
            match page.next.filter(|n| !n.is_empty()) {
                None => return Ok(out),
                Some(next) if !seen.insert(next.clone()) => {
                    return Err(Error::Decode {
                        target: self.target("streams_list", None),
                        message: "the node returned the same cursor twice".into(),
                    });
                }
                Some(next) => cursor = Some(next),
            }
        }
    }

    /// `PUT /streams/{name}/firmware_update?proto=…` with the raw image
    /// (`application/octet-stream`): asks the node to flash the camera behind the stream.
    ///
    /// Assumption: the node API reference has no such endpoint; this is where a Flussonic
    /// node would take it (the Watcher admin API forwards its `stream_firmware_update` to
    /// the node that captures the camera). Not retried: a flash is not idempotent.
    pub async fn firmware_update(
        &self,
        name: &str,
        proto: &str,
        image: Vec<u8>,
    ) -> Result<(), Error> {
        let mut url = self.stream_url("stream_firmware_update", name, &["firmware_update"])?;
        url.query_pairs_mut().append_pair("proto", proto);
        let call = Call {
            op: "stream_firmware_update",
            stream: Some(name),
            method: Method::PUT,
            url,
            body: Some(image),
            content_type: "application/octet-stream",
            retry: false,
            probe: false,
        };
        self.execute(call).await.map(|_| ())
    }
}

/// Bytes a path segment keeps as they are: RFC 3986 unreserved. Everything else (`/`, `%`,
/// `?`, `#`, spaces, non-ASCII) is percent-encoded, so a name is always exactly one segment.
const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// `{base}/streams/{name}/{tail…}` with `name` as one encoded segment; None for a name that
/// cannot be one: empty, `.` or `..` (URL parsers resolve those, encoded or not).
pub fn stream_url(base: &Url, name: &str, tail: &[&str]) -> Option<Url> {
    if matches!(name, "" | "." | "..") {
        return None;
    }
    let mut path = base.path().trim_end_matches('/').to_string();
    path.push_str("/streams/");
    path.extend(percent_encoding::utf8_percent_encode(name, SEGMENT));
    for t in tail {
        path.push('/');
        path.extend(percent_encoding::utf8_percent_encode(t, SEGMENT));
    }
    let mut url = base.clone();
    url.set_path(&path);
    // The encoding leaves nothing a parser could resolve; this only guards that reasoning.
    let segments = url.path_segments()?.count();
    let expected = base
        .path_segments()
        .map_or(0, |s| s.filter(|s| !s.is_empty()).count())
        + 2
        + tail.len();
    (segments == expected).then_some(url)
}

#[cfg(test)]
mod url_tests {
    use super::*;

    fn base() -> Url {
        Url::parse("http://node:8080/streamer/api/v3").unwrap()
    }

    #[test]
    fn a_stream_name_is_exactly_one_segment() {
        let u = |n: &str| stream_url(&base(), n, &[]).map(|u| u.path().to_string());
        assert_eq!(u("cam1").as_deref(), Some("/streamer/api/v3/streams/cam1"));
        assert_eq!(
            u("mylive/bunny").as_deref(),
            Some("/streamer/api/v3/streams/mylive%2Fbunny")
        );
        assert_eq!(
            u("a b?c#d%2E").as_deref(),
            Some("/streamer/api/v3/streams/a%20b%3Fc%23d%252E")
        );
        assert_eq!(u("ü").as_deref(), Some("/streamer/api/v3/streams/%C3%BC"));
        assert_eq!(u("..a").as_deref(), Some("/streamer/api/v3/streams/..a"));
        assert_eq!(
            u("a/../.."),
            Some("/streamer/api/v3/streams/a%2F..%2F..".into())
        );
        for bad in ["", ".", ".."] {
            assert_eq!(u(bad), None, "{bad:?}");
        }
        assert_eq!(
            stream_url(&base(), "x", &["stop"]).unwrap().path(),
            "/streamer/api/v3/streams/x/stop"
        );
    }

    #[test]
    fn a_delete_never_reaches_the_collection() {
        for name in ["", ".", "..", "%2E%2E", "%2e", "./", "../..", "/"] {
            if let Some(u) = stream_url(&base(), name, &[]) {
                assert_ne!(u.path().trim_end_matches('/'), "/streamer/api/v3/streams");
                assert!(u.path().starts_with("/streamer/api/v3/streams/"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A self-signed test CA (certificate only; nothing it signs is trusted anywhere else).
    const TEST_CA: &str = "-----BEGIN CERTIFICATE-----
MIIBjTCCATOgAwIBAgIUBGaOAY+VVgY/6+0iffpy04X4eFswCgYIKoZIzj0EAwIw
GzEZMBcGA1UEAwwQcGFub3B0ZXMgdGVzdCBDQTAgFw0yNjEyMDUyMzU2MThaGA8y
MTI2MTExMTIzNTYxOFowGzEZMBcGA1UEAwwQcGFub3B0ZXMgdGVzdCBDQTBZMBMG
ByqGSM49AgEGCCqGSM49AwEHA0IABI+AkYWYT909A/EYMCYaROoRklAws7zmo/g+
Pwgect4Kpu3Jz23HXhGcS80pWYKGjJPpWyh7XZQHIBfPjN6RDXqjUzBRMB0GA1Ud
DgQWBBQKxIryQIz1TlK30h2eRb4+xGp/ATAfBgNVHSMEGDAWgBQKxIryQIz1TlK3
0h2eRb4+xGp/ATAPBgNVHRMBAf8EBTADAQH/MAoGCCqGSM49BAMCA0gAMEUCIFL/
pG08kTAx6AcSgr24gCnsKAaA9G3YPIpfZuhaWZZLAiEAt3gOBAZH+1SzXrfH7/ft
RjtYluxiqag56G1OdK82NcM=
-----END CERTIFICATE-----
";

    fn build(cfg: NodeClientConfig) -> Result<NodeClient, BuildError> {
        NodeClient::new(cfg, NodeMetrics::new())
    }

    #[test]
    fn credentials_never_go_over_plain_http_unless_allowed() {
        let basic = Credentials::basic("admin", "pw");
        let err = build(NodeClientConfig::new("n", "http://n:80", basic.clone())).unwrap_err();
        assert!(matches!(err, BuildError::Insecure { .. }), "{err}");
        assert!(err.to_string().contains("allowInsecure"));
        let c =
            build(NodeClientConfig::new("n", "http://n:80", basic.clone()).allow_insecure(true))
                .unwrap();
        assert!(c.may_carry_secrets());
        let c = build(NodeClientConfig::new("n", "https://n", basic)).unwrap();
        assert!(c.may_carry_secrets());
        // No credentials: the client works, but camera passwords are not for it.
        let c = build(NodeClientConfig::new("n", "http://n", Credentials::None)).unwrap();
        assert!(!c.may_carry_secrets());
    }

    #[test]
    fn a_ca_bundle_must_hold_certificates() {
        let ok = NodeClientConfig::new("n", "https://n", Credentials::None)
            .ca_bundle(Some(TEST_CA.into()));
        build(ok).unwrap();
        for bad in [
            "",
            "not pem",
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        ] {
            let cfg = NodeClientConfig::new("n", "https://n", Credentials::None)
                .ca_bundle(Some(bad.into()));
            assert!(
                matches!(build(cfg), Err(BuildError::CaBundle(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn the_default_probe_detects_a_hung_node_within_5s_and_passes_a_slow_one() {
        let p = ProbePolicy::default();
        assert_eq!(p.budget(), Duration::from_millis(4800));
        assert!(p.budget() <= Duration::from_secs(5));
        assert!(p.timeout > Duration::from_millis(800));
        let cases = [
            (
                ProbePolicy {
                    timeout: Duration::from_secs(1),
                    attempts: 1,
                },
                1000,
            ),
            (
                ProbePolicy {
                    timeout: Duration::from_secs(1),
                    attempts: 0,
                },
                1000,
            ),
            (
                ProbePolicy {
                    timeout: Duration::from_secs(2),
                    attempts: 4,
                },
                8000 + 100 + 200 + 200,
            ),
        ];
        for (p, ms) in cases {
            assert_eq!(p.budget(), Duration::from_millis(ms), "{p:?}");
        }
    }
}
