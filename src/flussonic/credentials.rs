//! Credentials for a node's API, built from values the caller read from the Streamer's Secret.
//! `Debug` never prints a secret.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use reqwest::header::HeaderValue;
use sha1::{Digest, Sha1};

use crate::resources::streamer::AuthScheme;

/// How a [`super::NodeClient`] authenticates.
#[derive(Clone, PartialEq, Eq, Default)]
pub enum Credentials {
    /// No `Authorization` header (a node without `edit_auth`).
    #[default]
    None,
    /// `Authorization: Basic base64(login:password)` — the node's `edit_auth`.
    Basic {
        /// Login.
        login: String,
        /// Password.
        password: String,
    },
    /// `Authorization: Bearer <token>` — an API token, or base64 of `login:password`.
    Bearer {
        /// Token.
        token: String,
    },
    /// `Authorization: Cluster <ts>:<hex sha1("<ts>:<key>")>` — the shared cluster key.
    Cluster {
        /// Cluster key.
        key: String,
    },
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::None => f.write_str("None"),
            Self::Basic { login, .. } => f
                .debug_struct("Basic")
                .field("login", login)
                .field("password", &"<redacted>")
                .finish(),
            Self::Bearer { .. } => f
                .debug_struct("Bearer")
                .field("token", &"<redacted>")
                .finish(),
            Self::Cluster { .. } => f
                .debug_struct("Cluster")
                .field("key", &"<redacted>")
                .finish(),
        }
    }
}

/// Why credentials could not be built from Secret data.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CredentialsError {
    /// The keys the scheme needs are absent or empty.
    #[error("the Secret has no usable {scheme} credentials (needs key(s) {keys})")]
    Missing {
        /// Scheme asked for (or `any`).
        scheme: &'static str,
        /// Keys looked for.
        keys: &'static str,
    },
    /// A value is not UTF-8.
    #[error("Secret key {0} is not valid UTF-8")]
    NotUtf8(&'static str),
}

impl Credentials {
    /// Basic credentials.
    pub fn basic(login: impl Into<String>, password: impl Into<String>) -> Self {
        Self::Basic {
            login: login.into(),
            password: password.into(),
        }
    }

    /// Bearer token.
    pub fn bearer(token: impl Into<String>) -> Self {
        Self::Bearer {
            token: token.into(),
        }
    }

    /// Cluster key.
    pub fn cluster(key: impl Into<String>) -> Self {
        Self::Cluster { key: key.into() }
    }

    /// Scheme name, for logs.
    pub fn scheme(&self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Basic { .. } => "basic",
            Self::Bearer { .. } => "bearer",
            Self::Cluster { .. } => "cluster",
        }
    }

    /// The Secret keys these credentials were read from (what a destination binding covers).
    pub fn secret_keys(&self) -> &'static [&'static str] {
        match self {
            Self::None => &[],
            Self::Basic { .. } => &["login", "password"],
            Self::Bearer { .. } => &["token"],
            Self::Cluster { .. } => &["clusterKey"],
        }
    }

    /// Builds credentials from a Secret's data (keys `login` + `password`, `token`,
    /// `clusterKey`). Without a scheme, the first the Secret supports wins, in that order.
    /// `value` looks a key up in the Secret's data.
    pub fn from_secret_data<'d>(
        value: impl Fn(&str) -> Option<&'d [u8]>,
        scheme: Option<AuthScheme>,
    ) -> Result<Self, CredentialsError> {
        let get = |key: &'static str| -> Result<Option<String>, CredentialsError> {
            match value(key) {
                None => Ok(None),
                Some(v) => String::from_utf8(v.to_vec())
                    .map(|s| {
                        Some(s.trim_end_matches(['\n', '\r']).to_string()).filter(|s| !s.is_empty())
                    })
                    .map_err(|_| CredentialsError::NotUtf8(key)),
            }
        };
        let basic = || -> Result<Option<Self>, CredentialsError> {
            Ok(get("login")?
                .zip(get("password")?)
                .map(|(l, p)| Self::basic(l, p)))
        };
        let bearer =
            || -> Result<Option<Self>, CredentialsError> { Ok(get("token")?.map(Self::bearer)) };
        let cluster = || -> Result<Option<Self>, CredentialsError> {
            Ok(get("clusterKey")?.map(Self::cluster))
        };
        match scheme {
            Some(AuthScheme::Basic) => basic()?.ok_or(CredentialsError::Missing {
                scheme: "basic",
                keys: "login, password",
            }),
            Some(AuthScheme::Bearer) => bearer()?.ok_or(CredentialsError::Missing {
                scheme: "bearer",
                keys: "token",
            }),
            Some(AuthScheme::Cluster) => cluster()?.ok_or(CredentialsError::Missing {
                scheme: "cluster",
                keys: "clusterKey",
            }),
            None => basic()?
                .or(bearer()?)
                .or(cluster()?)
                .ok_or(CredentialsError::Missing {
                    scheme: "any",
                    keys: "login+password, token or clusterKey",
                }),
        }
    }

    /// The `Authorization` header at Unix time `now_s` (the Cluster scheme is time-stamped).
    pub fn header_value(&self, now_s: i64) -> Option<HeaderValue> {
        let text = match self {
            Self::None => return None,
            Self::Basic { login, password } => {
                format!("Basic {}", STANDARD.encode(format!("{login}:{password}")))
            }
            Self::Bearer { token } => format!("Bearer {token}"),
            Self::Cluster { key } => format!("Cluster {now_s}:{}", cluster_digest(now_s, key)),
        };
        let mut value = HeaderValue::from_str(&text).ok()?;
        value.set_sensitive(true);
        Some(value)
    }
}

/// `hex(sha1("<ts>:<key>"))`.
pub fn cluster_digest(ts: i64, key: &str) -> String {
    hex::encode(Sha1::digest(format!("{ts}:{key}").as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_secrets() {
        for c in [
            Credentials::basic("admin", "s3cret"),
            Credentials::bearer("s3cret"),
            Credentials::cluster("s3cret"),
        ] {
            let d = format!("{c:?}");
            assert!(!d.contains("s3cret"), "{d}");
        }
        assert!(format!("{:?}", Credentials::basic("admin", "x")).contains("admin"));
    }

    #[test]
    fn headers() {
        assert_eq!(
            Credentials::basic("a", "b").header_value(0).unwrap(),
            "Basic YTpi"
        );
        assert_eq!(
            Credentials::bearer("t").header_value(0).unwrap(),
            "Bearer t"
        );
        let c = Credentials::cluster("k").header_value(1700000000).unwrap();
        assert_eq!(
            c.to_str().unwrap(),
            format!("Cluster 1700000000:{}", cluster_digest(1700000000, "k"))
        );
        assert_eq!(cluster_digest(1, "k").len(), 40);
        assert!(Credentials::None.header_value(0).is_none());
        assert!(
            Credentials::basic("a", "b")
                .header_value(0)
                .unwrap()
                .is_sensitive()
        );
    }

    #[test]
    fn from_secret() {
        let mut d = std::collections::BTreeMap::new();
        d.insert("clusterKey".to_string(), b"ck\n".to_vec());
        assert_eq!(
            Credentials::from_secret_data(|k| d.get(k).map(Vec::as_slice), None).unwrap(),
            Credentials::cluster("ck")
        );
        d.insert("login".to_string(), b"l".to_vec());
        d.insert("password".to_string(), b"p".to_vec());
        assert_eq!(
            Credentials::from_secret_data(|k| d.get(k).map(Vec::as_slice), None).unwrap(),
            Credentials::basic("l", "p")
        );
        assert_eq!(
            Credentials::from_secret_data(
                |k| d.get(k).map(Vec::as_slice),
                Some(AuthScheme::Cluster)
            )
            .unwrap(),
            Credentials::cluster("ck")
        );
        assert!(matches!(
            Credentials::from_secret_data(
                |k| d.get(k).map(Vec::as_slice),
                Some(AuthScheme::Bearer)
            ),
            Err(CredentialsError::Missing { .. })
        ));
        d.insert("token".to_string(), vec![0xff]);
        assert_eq!(
            Credentials::from_secret_data(
                |k| d.get(k).map(Vec::as_slice),
                Some(AuthScheme::Bearer)
            ),
            Err(CredentialsError::NotUtf8("token"))
        );
    }
}
