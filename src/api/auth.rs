//! Authentication: `POST /login` and the Bearer check of every other route.
//!
//! - `POST /login` takes `Authorization: Basic login:password` (the body may be empty or
//!   JSON `null`, as the SDK sends it), checks the password with the domain's password store
//!   ([`crate::domain::passwords`]: one argon2 verification on every path, against a dummy
//!   hash for an unknown login, so timing tells nothing), and returns a short-lived access JWT
//!   plus a refresh token. The refresh token is a JWT too (type `refresh`), so every replica
//!   accepts it without shared state; `POST /login` with `Authorization: Bearer
//!   <refresh_token>` returns a new pair.
//! - A User's API key ([`crate::domain::access`]) is accepted wherever its password is: as the
//!   password of Basic credentials, checked by digest after the (always run) argon2
//!   verification, under the same throttle.
//! - Refreshing never extends the session: every token carries the time of the password login
//!   it descends from (`auth_time`), and no token of that chain outlives `auth_time` + the
//!   refresh lifetime (24 h by default). Then the user logs in again.
//! - Every token carries the User's token generation (`gen`, `status.passwordGeneration`,
//!   which the User controller moves on when the password changes or is removed): a token of
//!   an earlier generation is refused, on every replica and after restarts.
//! - Tokens are HS256-signed with the key in Secret `<instance>-jwt` (key `signing-key`) in the
//!   system namespace, created with 32 random bytes when absent. Rotation: put the new key in
//!   `signing-key` and the old one in `previous-signing-key`; the facade re-reads the Secret
//!   every 30 s, signs with the new key and still accepts tokens of the old one.
//! - Every protected request needs an access token of a User that still exists (looked up in
//!   the store by uid: deleting or disabling a user revokes its tokens at once), is not
//!   disabled, and has `accessLevel: admin`; others get 403.
//! - Failed logins are counted per existing login and client address (the peer, or the
//!   `X-Forwarded-For` client when the peer is a `--trusted-proxies` proxy; IPv6 clients per
//!   /64): after `max_failed_logins` failures in a row, that login is refused (429,
//!   `Retry-After`) to that address for the system setting `watcher_brute_force_timeout`
//!   seconds. Others, the same login from elsewhere included, are unaffected. Unknown logins
//!   keep no state at all. The table is capped by entries and bytes (the least recently
//!   failed pair goes first) and lost on restart. With several replicas the leader's table
//!   is the one that counts: a standby asks the leader over the peer channel
//!   ([`SharedLockout`], `crate::peer`) before verifying and reports the outcome after, so
//!   failures spread over replicas lock the login on all of them. While the leader cannot be
//!   reached a standby counts in its own table (per replica, as before).
//! - At most [`VERIFY_SLOTS`] verifications run at once (argon2 takes ~19 MiB and a core
//!   each) and at most [`VERIFY_QUEUE`] wait: more logins at once get 503 with `Retry-After`,
//!   so a login flood bounds memory and CPU instead of exhausting them.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{Extensions, HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PostParams};
use kube::{Client, ResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tokio::task::JoinSet;

use super::body::parse_json;
use super::error::ApiError;
use super::metrics::ApiMetrics;
use super::{ApiConfig, ApiState};
use crate::domain::access::{self, Digester};
use crate::domain::credentials::{self, OwnerKind};
use crate::domain::passwords::Passwords;
use crate::domain::tenancy::{LoginHolder, login_holder};
use crate::resources::User;
use crate::resources::user::AccessLevel;

/// Key of the current signing key in the installation's JWT Secret
/// ([`crate::domain::instance::Instance::jwt_secret`]).
pub const KEY_FIELD: &str = "signing-key";
/// Key of the previous signing key (still accepted) in the JWT Secret.
pub const PREVIOUS_KEY_FIELD: &str = "previous-signing-key";
/// Key of the installation's digest key in the JWT Secret: API keys and shared tokens are
/// stored as HMAC-SHA256 digests under it ([`crate::domain::access::Digester`]). Unlike the
/// signing key it is never rotated (that would invalidate every API key and shared token).
pub const DIGEST_KEY_FIELD: &str = "digest-key";
const KEY_REFRESH: Duration = Duration::from_secs(30);
/// Default cap on the entries of the failed-login table.
pub const FAILURES_MAX_ENTRIES: usize = 10_000;
/// Default cap on the bytes of the failed-login table.
pub const FAILURES_MAX_BYTES: usize = 2 * 1024 * 1024;
/// Password verifications running at once.
pub const VERIFY_SLOTS: usize = 2;
/// Logins waiting for a verification slot before more get 503.
pub const VERIFY_QUEUE: usize = 32;
/// Largest `POST /login` body (the SDK sends `null`): the body is read before anyone is
/// authenticated, so the 16 MiB of other routes would let anyone make the process buffer it.
pub const MAX_LOGIN_BODY_BYTES: usize = 1024;

/// Body of a successful `POST /login` (Watcher's `LoginInfo`).
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct LoginInfo {
    /// Short-lived JWT for `Authorization: Bearer`.
    pub access_token: String,
    /// Token for obtaining a new access token from `POST /login` (as a Bearer credential).
    pub refresh_token: String,
}

/// What a token says.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Claims {
    /// `namespace/name` of the User.
    pub sub: String,
    /// uid of the User (a re-created user with the same name is someone else).
    pub uid: String,
    /// Login name.
    pub name: String,
    /// `access` or `refresh`.
    pub typ: String,
    /// Issued at (UTC seconds).
    pub iat: i64,
    /// Expiry (UTC seconds).
    pub exp: i64,
    /// Time of the password login this token descends from (UTC seconds); absent in tokens
    /// of older versions, which count from `iat`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_time: Option<i64>,
    /// The User's token generation when the chain began (`status.passwordGeneration`).
    #[serde(default)]
    pub generation: i64,
}

/// The authenticated caller of a request (in request extensions).
#[derive(Clone, Debug)]
pub struct Caller {
    /// Login name.
    pub login: String,
    /// uid of the User (`DELETE /users/{id}` refuses deleting yourself).
    pub uid: String,
    /// Whether the caller is an admin (operations open to every user check it themselves).
    pub admin: bool,
}

#[derive(Clone)]
struct Keys {
    current: Vec<u8>,
    previous: Option<Vec<u8>>,
}

/// Token keys and the login throttle.
pub struct Auth {
    keys: Arc<RwLock<Keys>>,
    failures: Mutex<FailureTable>,
    passwords: Passwords,
    verify_slots: tokio::sync::Semaphore,
    verify_waiting: AtomicUsize,
    metrics: ApiMetrics,
    access_ttl: Duration,
    refresh_ttl: Duration,
    max_failed: u32,
    trusted_proxies: Vec<ipnet::IpNet>,
    server_id: String,
    digester: Digester,
    decoy_namespace: String,
    shared: std::sync::OnceLock<Arc<dyn SharedLockout>>,
}

/// What a login did to a (login, client address) pair, as a standby reports it to the leader.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LoginEvent {
    /// The User's uid.
    pub uid: String,
    /// The throttled client address.
    pub client: IpAddr,
    /// What happened.
    pub kind: LoginEventKind,
    /// The lockout a failure starts (the replica's `watcher_brute_force_timeout`).
    pub lockout_secs: u64,
}

/// See [`LoginEvent`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoginEventKind {
    /// Before verifying: is the pair locked?
    Check,
    /// A wrong password.
    Failed,
    /// A right password (clears the pair's failures).
    Succeeded,
}

/// The cluster-wide failed-login table, as seen from one replica.
pub trait SharedLockout: Send + Sync {
    /// Applies `event` at the leader: Some(seconds the pair stays locked, 0 when it is not),
    /// or None when this replica is to count locally (it leads, or the leader is unreachable).
    fn exchange(
        &self,
        event: LoginEvent,
    ) -> std::pin::Pin<Box<dyn Future<Output = Option<u64>> + Send + '_>>;
}

/// Failed logins by (User uid, client address): only logins that exist get an entry, so the
/// key is small and of bounded size whatever the attacker sends.
#[derive(Default)]
struct FailureTable {
    map: HashMap<(String, IpAddr), Failures>,
    bytes: usize,
    max_entries: usize,
    max_bytes: usize,
}

struct Failures {
    count: u32,
    locked_until: Option<Instant>,
    last: Instant,
}

impl FailureTable {
    fn entry_bytes(key: &(String, IpAddr)) -> usize {
        key.0.len() + std::mem::size_of::<((String, IpAddr), Failures)>()
    }

    fn remove(&mut self, key: &(String, IpAddr)) {
        if self.map.remove(key).is_some() {
            self.bytes -= Self::entry_bytes(key);
        }
    }

    /// Makes room for one more entry of `size` bytes: expired locks first, then the pairs that
    /// failed least recently (a full table forgets old failures rather than growing).
    fn make_room(&mut self, size: usize) {
        let over = |t: &Self| t.map.len() + 1 > t.max_entries || t.bytes + size > t.max_bytes;
        if !over(self) {
            return;
        }
        let now = Instant::now();
        let before = self.map.len();
        self.map
            .retain(|_, f| f.locked_until.is_none_or(|until| until > now));
        if self.map.len() != before {
            self.bytes = self.map.keys().map(Self::entry_bytes).sum();
        }
        while over(self) {
            let Some(oldest) = self
                .map
                .iter()
                .min_by_key(|(_, f)| f.last)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            self.remove(&oldest);
        }
    }
}

impl Auth {
    /// Loads (or creates) the key Secret and starts re-reading it for rotations.
    pub async fn load(
        client: &Client,
        config: &ApiConfig,
        metrics: &ApiMetrics,
        tasks: &mut JoinSet<()>,
    ) -> Result<Self, kube::Error> {
        let api: Api<Secret> = Api::namespaced(client.clone(), &config.system_namespace);
        let name = config.instance.jwt_secret();
        let keys = ensure_keys(&api, &name).await?;
        let digester = Digester::new(ensure_digest_key(&api, &name).await?);
        // The key Secret is created on the first start of an installation: its uid serves
        // as the installation id (`server_id` of the cluster stats).
        let server_id = api
            .get_opt(&name)
            .await?
            .and_then(|s| s.uid())
            .unwrap_or_default();
        let keys = Arc::new(RwLock::new(keys));
        let shared = keys.clone();
        tasks.spawn(async move {
            loop {
                tokio::time::sleep(KEY_REFRESH).await;
                match api.get_opt(&name).await {
                    Ok(Some(s)) => {
                        if let Some(k) = keys_of(&s) {
                            *shared.write().unwrap_or_else(|e| e.into_inner()) = k;
                        }
                    }
                    Ok(None) => {}
                    Err(error) => tracing::warn!(%error, "re-reading the JWT key Secret failed"),
                }
            }
        });
        // The first unknown login must not pay for making the dummy hash (a timing tell).
        Passwords::warm_up().await;
        Ok(Self {
            keys,
            failures: Mutex::new(FailureTable {
                max_entries: config.limits.login_failures_max_entries,
                max_bytes: config.limits.login_failures_max_bytes,
                ..FailureTable::default()
            }),
            passwords: Passwords::with_decoy_reads(config.namespace.clone()),
            verify_slots: tokio::sync::Semaphore::new(VERIFY_SLOTS),
            verify_waiting: AtomicUsize::new(0),
            metrics: metrics.clone(),
            access_ttl: config.access_ttl,
            refresh_ttl: config.refresh_ttl,
            max_failed: config.max_failed_logins.max(1),
            trusted_proxies: config.trusted_proxies.clone(),
            server_id,
            shared: std::sync::OnceLock::new(),
            digester,
            decoy_namespace: config.namespace.clone(),
        })
    }

    /// Counts failed logins at `shared` (the leader) from now on; a second call is ignored.
    pub fn share_lockout(&self, shared: Arc<dyn SharedLockout>) {
        let _ = self.shared.set(shared);
    }

    /// Applies a login event to this replica's own table: the leader's side of
    /// [`SharedLockout`]. Returns the seconds the pair stays locked (0: not locked).
    pub fn apply_login_event(&self, event: &LoginEvent) -> u64 {
        let key = (event.uid.clone(), event.client);
        match event.kind {
            LoginEventKind::Check => {}
            LoginEventKind::Failed => {
                self.failed(key.clone(), Duration::from_secs(event.lockout_secs))
            }
            LoginEventKind::Succeeded => self.succeeded(&key),
        }
        self.throttled(&key).unwrap_or(0)
    }

    /// Applies `kind` at the leader when there is one to ask, else here; the seconds the
    /// pair stays locked (None: not locked).
    async fn login_event(
        &self,
        key: &(String, IpAddr),
        kind: LoginEventKind,
        lockout: Duration,
    ) -> Option<u64> {
        let event = LoginEvent {
            uid: key.0.clone(),
            client: key.1,
            kind,
            lockout_secs: lockout.as_secs(),
        };
        let remote = match self.shared.get() {
            Some(shared) => shared.exchange(event.clone()).await,
            None => None,
        };
        let secs = remote.unwrap_or_else(|| self.apply_login_event(&event));
        (secs > 0).then_some(secs)
    }

    /// Installation id.
    pub fn server_id(&self) -> &str {
        &self.server_id
    }

    /// Keyed digests of API keys and shared tokens.
    pub fn digester(&self) -> &Digester {
        &self.digester
    }

    /// Password verifications run by this facade's logins so far.
    pub fn password_verifications(&self) -> u64 {
        self.passwords.verifications()
    }

    fn keys(&self) -> Keys {
        self.keys.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn issue(
        &self,
        user: &User,
        typ: &str,
        exp: i64,
        auth_time: i64,
        generation: i64,
    ) -> Result<String, ApiError> {
        let claims = Claims {
            sub: crate::domain::key::ObjectKey::of(user).to_string(),
            uid: user.uid().unwrap_or_default(),
            name: user.spec.name.clone(),
            typ: typ.to_string(),
            iat: chrono::Utc::now().timestamp(),
            exp,
            auth_time: Some(auth_time),
            generation,
        };
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(&self.keys().current),
        )
        .map_err(|e| ApiError::internal("signing a token", e))
    }

    /// The claims of a valid token of type `typ`.
    pub fn verify(&self, token: &str, typ: &str) -> Option<Claims> {
        let keys = self.keys();
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 5;
        validation.set_required_spec_claims(&["exp", "sub"]);
        let candidates = std::iter::once(&keys.current).chain(keys.previous.iter());
        for key in candidates {
            if let Ok(data) =
                jsonwebtoken::decode::<Claims>(token, &DecodingKey::from_secret(key), &validation)
            {
                return (data.claims.typ == typ).then_some(data.claims);
            }
        }
        None
    }

    /// A token pair of the chain that began with a password login at `auth_time`: nothing in
    /// it outlives `auth_time` + the refresh lifetime, however often it is refreshed.
    fn pair(&self, user: &User, auth_time: i64, generation: i64) -> Result<LoginInfo, ApiError> {
        let now = chrono::Utc::now().timestamp();
        let chain_end = auth_time.saturating_add(self.refresh_ttl.as_secs() as i64);
        let access_end = now
            .saturating_add(self.access_ttl.as_secs() as i64)
            .min(chain_end);
        Ok(LoginInfo {
            access_token: self.issue(user, "access", access_end, auth_time, generation)?,
            refresh_token: self.issue(user, "refresh", chain_end, auth_time, generation)?,
        })
    }

    /// The client a request comes from: the peer, or, when the peer is a trusted proxy, the
    /// rightmost `X-Forwarded-For` address that is not one (proxies append on the right, so
    /// everything left of the first untrusted hop is the client's own say).
    pub fn client_addr(&self, peer: Option<IpAddr>, headers: &HeaderMap) -> Option<IpAddr> {
        client_addr(&self.trusted_proxies, peer, headers)
    }

    fn throttled(&self, key: &(String, IpAddr)) -> Option<u64> {
        let mut table = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let f = table.map.get(key)?;
        match f.locked_until {
            Some(until) if until > Instant::now() => {
                Some((until - Instant::now()).as_secs().max(1))
            }
            Some(_) => {
                table.remove(key);
                self.report(&table);
                None
            }
            None => None,
        }
    }

    fn failed(&self, key: (String, IpAddr), lockout: Duration) {
        let mut table = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if !table.map.contains_key(&key) {
            let size = FailureTable::entry_bytes(&key);
            table.make_room(size);
            if table.map.len() >= table.max_entries || table.bytes + size > table.max_bytes {
                // A cap of (nearly) zero: keep nothing rather than exceed it.
                return;
            }
            table.bytes += size;
            table.map.insert(
                key.clone(),
                Failures {
                    count: 0,
                    locked_until: None,
                    last: now,
                },
            );
        }
        if let Some(f) = table.map.get_mut(&key) {
            f.count += 1;
            f.last = now;
            if f.count >= self.max_failed {
                f.count = 0;
                f.locked_until = Some(now + lockout);
            }
        }
        self.report(&table);
    }

    fn succeeded(&self, key: &(String, IpAddr)) {
        let mut table = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        table.remove(key);
        self.report(&table);
    }

    fn report(&self, table: &FailureTable) {
        self.metrics
            .login_failures_entries
            .set(table.map.len() as i64);
        self.metrics.login_failures_bytes.set(table.bytes as i64);
    }

    /// Checks `password` for `user` (None: unknown login) with exactly one verification, at
    /// most [`VERIFY_SLOTS`] at once: `Some(Some(the hash's token generation))` on a match,
    /// `Some(None)` on a mismatch, None when too many logins already wait.
    async fn check_password(
        &self,
        client: &Client,
        user: Option<&User>,
        password: &str,
    ) -> Option<Option<i64>> {
        if self.verify_waiting.fetch_add(1, Ordering::SeqCst) >= VERIFY_QUEUE + VERIFY_SLOTS {
            self.verify_waiting.fetch_sub(1, Ordering::SeqCst);
            return None;
        }
        let permit = self.verify_slots.acquire().await;
        self.metrics.password_verifications.inc();
        let ok = self
            .passwords
            .check_with_generation(client, user, password)
            .await;
        drop(permit);
        self.verify_waiting.fetch_sub(1, Ordering::SeqCst);
        Some(ok)
    }
}

impl Auth {
    /// Whether `key` is `user`'s API key: its digest against the one in the Secret the User's
    /// [`access::APIKEY_ANNOTATION`] names, trusted only when the facade created it for this
    /// very User (uid). One Secret read on every path (of a Secret that does not exist when
    /// there is nothing to read), so timing does not tell who has a key.
    async fn check_apikey(&self, client: &Client, user: Option<&User>, key: &str) -> bool {
        let target = user.and_then(|u| {
            Some((
                u.namespace()?,
                u.annotations().get(access::APIKEY_ANNOTATION)?.clone(),
                u.uid()?,
            ))
        });
        let Some((ns, name, uid)) = target else {
            let _ = Api::<Secret>::namespaced(client.clone(), &self.decoy_namespace)
                .get_opt("panoptes-apikey-decoy")
                .await;
            return false;
        };
        match Api::<Secret>::namespaced(client.clone(), &ns)
            .get_opt(&name)
            .await
        {
            Ok(Some(s)) if credentials::owned_by(&s, OwnerKind::User, &uid) => s
                .data
                .as_ref()
                .and_then(|d| d.get(access::DIGEST_FIELD))
                .and_then(|d| std::str::from_utf8(&d.0).ok())
                .is_some_and(|d| self.digester.matches(key, d)),
            _ => false,
        }
    }
}

/// See [`Auth::client_addr`].
fn client_addr(
    trusted_proxies: &[ipnet::IpNet],
    peer: Option<IpAddr>,
    headers: &HeaderMap,
) -> Option<IpAddr> {
    let trusted = |ip: &IpAddr| trusted_proxies.iter().any(|n| n.contains(ip));
    let mut client = peer.map(|p| p.to_canonical())?;
    if trusted(&client) {
        let hops = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect::<Vec<_>>();
        for hop in hops.into_iter().rev() {
            let Ok(ip) = hop.parse::<IpAddr>().map(|ip| ip.to_canonical()) else {
                break;
            };
            client = ip;
            if !trusted(&ip) {
                break;
            }
        }
    }
    Some(client)
}

/// The address a failed login is counted against: IPv6 clients per /64, what one subscriber
/// usually holds (else one client would have 2^64 fresh tries).
fn throttled_addr(client: IpAddr) -> IpAddr {
    match client {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        v4 => v4,
    }
}

/// The token generation of `user` (0 until its password first changes).
fn generation(user: &User) -> i64 {
    user.status
        .as_ref()
        .and_then(|s| s.password_generation)
        .unwrap_or(0)
}

async fn ensure_keys(api: &Api<Secret>, name: &str) -> Result<Keys, kube::Error> {
    for _ in 0..3 {
        if let Some(s) = api.get_opt(name).await? {
            if let Some(k) = keys_of(&s) {
                return Ok(k);
            }
            tracing::warn!("Secret {name} has no usable {KEY_FIELD}; using a process-local key");
            return Ok(Keys {
                current: rand::random::<[u8; 32]>().to_vec(),
                previous: None,
            });
        }
        let key: [u8; 32] = rand::random();
        let secret = key_secret(name, KEY_FIELD, &key);
        match api.create(&PostParams::default(), &secret).await {
            Ok(_) => {
                return Ok(Keys {
                    current: key.to_vec(),
                    previous: None,
                });
            }
            // Another replica created it first: read theirs.
            Err(kube::Error::Api(s)) if s.code == 409 => continue,
            Err(e) => return Err(e),
        }
    }
    api.get(name).await.map(|s| {
        keys_of(&s).unwrap_or(Keys {
            current: rand::random::<[u8; 32]>().to_vec(),
            previous: None,
        })
    })
}

/// Secret `name` holding `key` under `field`, labelled as Panoptes' own: a key the first
/// replica that needs it creates (the signing key, the peer key).
pub fn key_secret(name: &str, field: &str, key: &[u8]) -> Secret {
    let mut secret = Secret::default();
    secret.metadata.name = Some(name.into());
    secret.metadata.labels = Some(
        [(
            "app.kubernetes.io/managed-by".to_string(),
            "panoptes".to_string(),
        )]
        .into(),
    );
    secret.data = Some([(field.to_string(), ByteString(key.to_vec()))].into());
    secret
}

fn keys_of(secret: &Secret) -> Option<Keys> {
    let data = secret.data.as_ref()?;
    let current = data.get(KEY_FIELD).map(|b| b.0.clone())?;
    // A key shorter than 16 bytes is a configuration mistake; refuse to sign with it.
    if current.len() < 16 {
        return None;
    }
    Some(Keys {
        current,
        previous: data.get(PREVIOUS_KEY_FIELD).map(|b| b.0.clone()),
    })
}

/// The installation's digest key from its JWT Secret `name`, added (32 random bytes) when missing.
/// The add is guarded by the read `resourceVersion`, so replicas starting together agree on
/// one key.
async fn ensure_digest_key(api: &Api<Secret>, name: &str) -> Result<Vec<u8>, kube::Error> {
    for _ in 0..5 {
        let secret = api.get(name).await?;
        if let Some(k) = secret
            .data
            .as_ref()
            .and_then(|d| d.get(DIGEST_KEY_FIELD))
            .filter(|k| k.0.len() >= 16)
        {
            return Ok(k.0.clone());
        }
        let key: [u8; 32] = rand::random();
        let body = serde_json::json!({
            "metadata": {"resourceVersion": secret.resource_version()},
            "data": {DIGEST_KEY_FIELD: STANDARD.encode(key)},
        });
        match api
            .patch(
                name,
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(&body),
            )
            .await
        {
            Ok(_) => return Ok(key.to_vec()),
            Err(kube::Error::Api(s)) if s.code == 409 => continue,
            Err(e) => return Err(e),
        }
    }
    tracing::warn!(
        "{name} kept changing; API keys and shared tokens use a process-local digest key"
    );
    Ok(rand::random::<[u8; 32]>().to_vec())
}

enum Credentials {
    Basic(String, String),
    Bearer(String),
}

fn credentials(headers: &HeaderMap) -> Option<Credentials> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, rest) = value.split_once(' ')?;
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = STANDARD.decode(rest).ok()?;
        let text = String::from_utf8(decoded).ok()?;
        let (login, password) = text.split_once(':')?;
        Some(Credentials::Basic(login.to_string(), password.to_string()))
    } else if scheme.eq_ignore_ascii_case("bearer") {
        Some(Credentials::Bearer(rest.to_string()))
    } else {
        None
    }
}

/// The User who holds `login`: the one identity (a User of the facade's namespace or of an
/// `--identity-namespaces` namespace) claiming it. None when nobody does, and also when
/// several do: a login claimed twice is nobody's until the conflict is resolved, so a second
/// claimant can neither take it over nor be taken over.
pub fn user_by_login(state: &ApiState, login: &str) -> Option<Arc<User>> {
    let users = state.stores.users.state();
    match login_holder(&state.config.identities(), &users, login) {
        LoginHolder::One(u) => Some(u),
        LoginHolder::Nobody | LoginHolder::Conflict(_) => None,
    }
}

/// Whether any identity claims `login` (a create or rename onto it is a conflict).
pub fn login_taken(state: &ApiState, login: &str) -> bool {
    let users = state.stores.users.state();
    !matches!(
        login_holder(&state.config.identities(), &users, login),
        LoginHolder::Nobody
    )
}

/// The identity with `uid`, if it still holds its login (a token outlives neither the User
/// nor its sole claim to the login).
fn user_by_uid(state: &ApiState, uid: &str) -> Option<Arc<User>> {
    let users = state.stores.users.state();
    let identities = state.config.identities();
    let user = users.iter().find(|u| {
        u.uid().as_deref() == Some(uid)
            && u.metadata.deletion_timestamp.is_none()
            && identities.is_identity(u)
    })?;
    match login_holder(&identities, &users, &user.spec.name) {
        LoginHolder::One(u) if u.uid().as_deref() == Some(uid) => Some(u),
        _ => None,
    }
}

/// `POST /login`.
pub async fn login(
    State(state): State<ApiState>,
    headers: HeaderMap,
    extensions: Extensions,
    body: axum::body::Body,
) -> Result<Response, ApiError> {
    // Read before anyone is authenticated: only what a login body needs (it is ignored).
    let bytes = axum::body::to_bytes(body, MAX_LOGIN_BODY_BYTES)
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!("a login body is at most {MAX_LOGIN_BODY_BYTES} bytes (send null)"),
            )
        })?;
    parse_json(&bytes)?;
    let creds = credentials(&headers).ok_or_else(|| {
        ApiError::unauthorized(
            "send credentials as Authorization: Basic (or a refresh token as Bearer)",
        )
    })?;
    match creds {
        Credentials::Bearer(token) => {
            let claims = state
                .auth
                .verify(&token, "refresh")
                .ok_or_else(|| ApiError::unauthorized("invalid or expired refresh token"))?;
            let user = user_by_uid(&state, &claims.uid)
                .ok_or_else(|| ApiError::unauthorized("the user no longer exists"))?;
            if revoked(&claims, &user) {
                return Err(ApiError::unauthorized(
                    "the password changed since this token was issued; log in again",
                ));
            }
            if user.spec.disabled.unwrap_or(false) {
                return Err(ApiError::forbidden("the user is disabled"));
            }
            reset_pending(&user)?;
            let auth_time = claims.auth_time.unwrap_or(claims.iat);
            logged_in(&state, &user, auth_time, claims.generation)
        }
        Credentials::Basic(login, password) => {
            let peer = extensions
                .get::<ConnectInfo<super::conn::Peer>>()
                .map(|c| c.0.0.ip());
            let client = state
                .auth
                .client_addr(peer, &headers)
                .map_or(IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED), throttled_addr);
            let user = user_by_login(&state, &login);
            // Only logins that exist are throttled and counted: an unknown login keeps no
            // state, so random logins cannot fill the table.
            let key = user.as_ref().map(|u| (u.uid().unwrap_or_default(), client));
            let lockout = Duration::from_secs(state.settings.brute_force_timeout());
            let locked = match &key {
                Some(key) => {
                    state
                        .auth
                        .login_event(key, LoginEventKind::Check, lockout)
                        .await
                }
                None => None,
            };
            if let Some(secs) = locked {
                let mut e = ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "too_many_failed_logins",
                    "too many failed logins; try again later",
                );
                e.retry_after = Some(secs);
                return Err(e);
            }
            let Some(matched) = state
                .auth
                .check_password(&state.client, user.as_deref(), &password)
                .await
            else {
                let mut e = ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "busy",
                    "too many logins in progress; try again shortly",
                );
                e.retry_after = Some(1);
                return Err(e);
            };
            // An API key is accepted wherever a password is (reference §1); same throttle.
            let ok = state
                .auth
                .check_apikey(&state.client, user.as_deref(), &password)
                .await
                || matched.is_some();
            let (Some(user), Some(key), true) = (user, key.clone(), ok) else {
                if let Some(key) = key {
                    state
                        .auth
                        .login_event(&key, LoginEventKind::Failed, lockout)
                        .await;
                }
                return Err(ApiError::unauthorized("invalid login or password"));
            };
            state
                .auth
                .login_event(&key, LoginEventKind::Succeeded, lockout)
                .await;
            if user.spec.disabled.unwrap_or(false) {
                return Err(ApiError::forbidden("the user is disabled"));
            }
            reset_pending(&user)?;
            // The hash just verified may be newer than the status in the store (its
            // generation is recorded with it): tokens carry the newer of the two.
            let generation = generation(&user).max(matched.unwrap_or(0));
            logged_in(&state, &user, chrono::Utc::now().timestamp(), generation)
        }
    }
}

/// Whether a token of `claims` is revoked: it is of an earlier token generation than `user`'s.
/// A later one is not: a login verified against a new hash before the User's status recorded
/// its generation carries that generation already (generations only grow).
fn revoked(claims: &Claims, user: &User) -> bool {
    claims.generation < generation(user)
}

/// Refuses a user that must get a new password first (an imported user, see
/// [`crate::domain::accounts::blocks_login`]). Checked after the password, like `disabled`,
/// so it tells nothing to someone who does not know the password.
fn reset_pending(user: &User) -> Result<(), ApiError> {
    let conditions = user
        .status
        .as_ref()
        .map(|s| s.common.conditions.as_slice())
        .unwrap_or_default();
    if crate::domain::accounts::blocks_login(conditions) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "password_reset_required",
            "this user must get a new password before logging in; ask an administrator to set one",
        ));
    }
    Ok(())
}

/// A new token pair, with the caller recorded for the audit trail.
fn logged_in(
    state: &ApiState,
    user: &User,
    auth_time: i64,
    generation: i64,
) -> Result<Response, ApiError> {
    let mut resp = axum::Json(state.auth.pair(user, auth_time, generation)?).into_response();
    resp.extensions_mut().insert(Caller {
        login: user.spec.name.clone(),
        uid: user.uid().unwrap_or_default(),
        admin: user.spec.access_level == Some(AccessLevel::Admin),
    });
    Ok(resp)
}

/// The enabled User a request's access token names.
fn authenticate(state: &ApiState, req: &Request) -> Result<(Arc<User>, Caller), ApiError> {
    let token = match credentials(req.headers()) {
        Some(Credentials::Bearer(t)) => t,
        _ => {
            return Err(ApiError::unauthorized(
                "Authorization: Bearer <access_token> required",
            ));
        }
    };
    let claims = state
        .auth
        .verify(&token, "access")
        .ok_or_else(|| ApiError::unauthorized("invalid or expired access token"))?;
    let user = user_by_uid(state, &claims.uid)
        .ok_or_else(|| ApiError::unauthorized("the user no longer exists"))?;
    if revoked(&claims, &user) {
        return Err(ApiError::unauthorized(
            "the password changed since this token was issued; log in again",
        ));
    }
    if user.spec.disabled.unwrap_or(false) {
        return Err(ApiError::forbidden("the user is disabled"));
    }
    let caller = Caller {
        login: user.spec.name.clone(),
        uid: claims.uid.clone(),
        admin: user.spec.access_level == Some(AccessLevel::Admin),
    };
    Ok((user, caller))
}

/// Runs `req` as `caller`, recorded for the handler and the audit trail.
async fn run_as(caller: Caller, mut req: Request, next: Next) -> Response {
    req.extensions_mut().insert(caller.clone());
    let mut resp = next.run(req).await;
    // The audit middleware sits outside this one and reads the caller from the response.
    resp.extensions_mut().insert(caller);
    resp
}

/// Middleware of every protected route: a valid access token of an enabled admin user.
pub async fn require_admin(
    State(state): State<ApiState>,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let (_, caller) = authenticate(&state, &req)?;
    if !caller.admin {
        return Err(ApiError::forbidden(
            "the admin API needs access_level admin",
        ));
    }
    Ok(run_as(caller, req, next).await)
}

/// Middleware of the operations a user may call on themself ([`super::operations::Access::Own`]):
/// a valid access token of any enabled user; the handler admits admins and the user the path
/// names.
pub async fn require_user(
    State(state): State<ApiState>,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let (_, caller) = authenticate(&state, &req)?;
    Ok(run_as(caller, req, next).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(max_entries: usize, max_bytes: usize) -> FailureTable {
        FailureTable {
            max_entries,
            max_bytes,
            ..FailureTable::default()
        }
    }

    #[test]
    fn the_failure_table_stays_within_both_caps() {
        let key = |i: u8| (format!("uid-{i}"), IpAddr::from([10, 0, 0, i]));
        let size = FailureTable::entry_bytes(&key(1));
        for (max_entries, max_bytes) in [(3, usize::MAX), (usize::MAX, 2 * size + 1)] {
            let mut t = table(max_entries, max_bytes);
            for i in 0..10 {
                let k = key(i);
                t.make_room(FailureTable::entry_bytes(&k));
                t.bytes += FailureTable::entry_bytes(&k);
                t.map.insert(
                    k,
                    Failures {
                        count: 1,
                        locked_until: None,
                        last: Instant::now(),
                    },
                );
                assert!(t.map.len() <= max_entries && t.bytes <= max_bytes);
            }
            assert!(t.map.contains_key(&key(9)), "the newest stays");
        }
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let trusted: Vec<ipnet::IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let mut h = HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            "1.1.1.1, 2.2.2.2, 10.1.1.1".parse().unwrap(),
        );
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        // The rightmost hop that is not a proxy; what is left of it is the client's own say.
        assert_eq!(client_addr(&trusted, ip("10.9.9.9"), &h), ip("2.2.2.2"));
        assert_eq!(client_addr(&trusted, ip("8.8.8.8"), &h), ip("8.8.8.8"));
        assert_eq!(client_addr(&[], ip("10.9.9.9"), &h), ip("10.9.9.9"));
        h.insert("x-forwarded-for", "garbage, 10.1.1.1".parse().unwrap());
        assert_eq!(client_addr(&trusted, ip("10.9.9.9"), &h), ip("10.1.1.1"));
        // IPv6 counted per /64, IPv4-mapped addresses as IPv4.
        assert_eq!(
            throttled_addr(ip("2001:db8:1:2:3:4:5:6").unwrap()),
            ip("2001:db8:1:2::").unwrap()
        );
        assert_eq!(
            client_addr(&[], ip("::ffff:192.0.2.1"), &HeaderMap::new()),
            ip("192.0.2.1")
        );
    }
}
