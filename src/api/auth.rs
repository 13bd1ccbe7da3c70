//! Authentication: `POST /login` and the Bearer check of every other route.
//!
//! - `POST /login` takes `Authorization: Basic login:password` (the body may be empty or
//!   JSON `null`, as the SDK sends it), checks the password against the User's argon2 hash
//!   (`controllers::user::verify_password`), and returns a short-lived access JWT plus a
//!   refresh token. The refresh token is a JWT too (type `refresh`, longer lifetime), so
//!   every replica accepts it without shared state; `POST /login` with
//!   `Authorization: Bearer <refresh_token>` returns a new pair.
//! - Tokens are HS256-signed with the key in Secret `panoptes-jwt` (key `signing-key`) in the
//!   system namespace, created with 32 random bytes when absent. Rotation: put the new key in
//!   `signing-key` and the old one in `previous-signing-key`; the facade re-reads the Secret
//!   every 30 s, signs with the new key and still accepts tokens of the old one.
//! - Every protected request needs an access token of a User that still exists (looked up in
//!   the store by uid: deleting or disabling a user revokes its tokens at once), is not
//!   disabled, and has `accessLevel: admin`; others get 403.
//! - Failed logins are counted per login name: after `max_failed_logins` failures in a row,
//!   that login is refused (429, `Retry-After`) for the system setting
//!   `watcher_brute_force_timeout` seconds. Other logins are unaffected.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
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

use super::body::JsonBody;
use super::error::ApiError;
use super::{ApiConfig, ApiState};
use crate::domain::tenancy::{LoginHolder, login_holder};
use crate::resources::User;
use crate::resources::user::AccessLevel;

/// Secret holding the signing key.
pub const KEY_SECRET: &str = "panoptes-jwt";
/// Key of the current signing key in [`KEY_SECRET`].
pub const KEY_FIELD: &str = "signing-key";
/// Key of the previous signing key (still accepted) in [`KEY_SECRET`].
pub const PREVIOUS_KEY_FIELD: &str = "previous-signing-key";
const KEY_REFRESH: Duration = Duration::from_secs(30);

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
}

/// The authenticated caller of a request (in request extensions).
#[derive(Clone, Debug)]
pub struct Caller {
    /// Login name.
    pub login: String,
}

#[derive(Clone)]
struct Keys {
    current: Vec<u8>,
    previous: Option<Vec<u8>>,
}

/// Token keys and the login throttle.
pub struct Auth {
    keys: Arc<RwLock<Keys>>,
    failures: Mutex<HashMap<String, Failures>>,
    access_ttl: Duration,
    refresh_ttl: Duration,
    max_failed: u32,
    server_id: String,
}

#[derive(Default)]
struct Failures {
    count: u32,
    locked_until: Option<Instant>,
}

impl Auth {
    /// Loads (or creates) the key Secret and starts re-reading it for rotations.
    pub async fn load(
        client: &Client,
        config: &ApiConfig,
        tasks: &mut JoinSet<()>,
    ) -> Result<Self, kube::Error> {
        let api: Api<Secret> = Api::namespaced(client.clone(), &config.system_namespace);
        let keys = ensure_keys(&api).await?;
        // The key Secret is created on the first start of an installation: its uid serves
        // as the installation id (`server_id` of the cluster stats).
        let server_id = api
            .get_opt(KEY_SECRET)
            .await?
            .and_then(|s| s.uid())
            .unwrap_or_default();
        let keys = Arc::new(RwLock::new(keys));
        let shared = keys.clone();
        tasks.spawn(async move {
            loop {
                tokio::time::sleep(KEY_REFRESH).await;
                match api.get_opt(KEY_SECRET).await {
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
        Ok(Self {
            keys,
            failures: Mutex::new(HashMap::new()),
            access_ttl: config.access_ttl,
            refresh_ttl: config.refresh_ttl,
            max_failed: config.max_failed_logins.max(1),
            server_id,
        })
    }

    /// Installation id.
    pub fn server_id(&self) -> &str {
        &self.server_id
    }

    fn keys(&self) -> Keys {
        self.keys.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn issue(&self, user: &User, typ: &str, ttl: Duration) -> Result<String, ApiError> {
        let now = chrono::Utc::now().timestamp();
        let claims = Claims {
            sub: crate::state::key(user),
            uid: user.uid().unwrap_or_default(),
            name: user.spec.name.clone(),
            typ: typ.to_string(),
            iat: now,
            exp: now + ttl.as_secs() as i64,
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

    fn pair(&self, user: &User) -> Result<LoginInfo, ApiError> {
        Ok(LoginInfo {
            access_token: self.issue(user, "access", self.access_ttl)?,
            refresh_token: self.issue(user, "refresh", self.refresh_ttl)?,
        })
    }

    fn throttled(&self, login: &str) -> Option<u64> {
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let f = map.get_mut(login)?;
        match f.locked_until {
            Some(until) if until > Instant::now() => {
                Some((until - Instant::now()).as_secs().max(1))
            }
            Some(_) => {
                map.remove(login);
                None
            }
            None => None,
        }
    }

    fn failed(&self, login: &str, lockout: Duration) {
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        // Bound the table: a flood of random login names must not grow it forever.
        if map.len() > 100_000 {
            map.retain(|_, f| f.locked_until.is_some());
        }
        let f = map.entry(login.to_string()).or_default();
        f.count += 1;
        if f.count >= self.max_failed {
            f.count = 0;
            f.locked_until = Some(Instant::now() + lockout);
        }
    }

    fn succeeded(&self, login: &str) {
        self.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(login);
    }
}

async fn ensure_keys(api: &Api<Secret>) -> Result<Keys, kube::Error> {
    for _ in 0..3 {
        if let Some(s) = api.get_opt(KEY_SECRET).await? {
            if let Some(k) = keys_of(&s) {
                return Ok(k);
            }
            tracing::warn!(
                "Secret {KEY_SECRET} has no usable {KEY_FIELD}; using a process-local key"
            );
            return Ok(Keys {
                current: rand::random::<[u8; 32]>().to_vec(),
                previous: None,
            });
        }
        let key: [u8; 32] = rand::random();
        let mut secret = Secret::default();
        secret.metadata.name = Some(KEY_SECRET.into());
        secret.metadata.labels = Some(
            [(
                "app.kubernetes.io/managed-by".to_string(),
                "panoptes".to_string(),
            )]
            .into(),
        );
        secret.data = Some([(KEY_FIELD.to_string(), ByteString(key.to_vec()))].into());
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
    api.get(KEY_SECRET).await.map(|s| {
        keys_of(&s).unwrap_or(Keys {
            current: rand::random::<[u8; 32]>().to_vec(),
            previous: None,
        })
    })
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
    _body: JsonBody,
) -> Result<Response, ApiError> {
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
            if user.spec.disabled.unwrap_or(false) {
                return Err(ApiError::forbidden("the user is disabled"));
            }
            Ok(axum::Json(state.auth.pair(&user)?).into_response())
        }
        Credentials::Basic(login, password) => {
            if let Some(secs) = state.auth.throttled(&login) {
                let mut e = ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "too_many_failed_logins",
                    "too many failed logins; try again later",
                );
                e.retry_after = Some(secs);
                return Err(e);
            }
            let user = user_by_login(&state, &login);
            let ok = match &user {
                Some(u) => {
                    crate::controllers::user::verify_password(&state.client, u, &password).await
                }
                None => false,
            };
            let Some(user) = user.filter(|_| ok) else {
                let lockout = Duration::from_secs(state.settings.brute_force_timeout());
                state.auth.failed(&login, lockout);
                return Err(ApiError::unauthorized("invalid login or password"));
            };
            state.auth.succeeded(&login);
            if user.spec.disabled.unwrap_or(false) {
                return Err(ApiError::forbidden("the user is disabled"));
            }
            Ok(axum::Json(state.auth.pair(&user)?).into_response())
        }
    }
}

/// Middleware of every protected route: a valid access token of an enabled admin user.
pub async fn require_admin(
    State(state): State<ApiState>,
    mut req: Request,
    next: Next,
) -> Result<Response, ApiError> {
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
    let user = user_by_uid(&state, &claims.uid)
        .ok_or_else(|| ApiError::unauthorized("the user no longer exists"))?;
    if user.spec.disabled.unwrap_or(false) {
        return Err(ApiError::forbidden("the user is disabled"));
    }
    if user.spec.access_level != Some(AccessLevel::Admin) {
        return Err(ApiError::forbidden(
            "the admin API needs access_level admin",
        ));
    }
    let caller = Caller {
        login: user.spec.name.clone(),
    };
    req.extensions_mut().insert(caller.clone());
    let mut resp = next.run(req).await;
    // The audit middleware sits outside this one and reads the caller from the response.
    resp.extensions_mut().insert(caller);
    Ok(resp)
}
