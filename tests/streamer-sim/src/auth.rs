//! Node API authentication: Basic with `edit_auth` / `view_auth`, `Bearer base64(login:pass)`
//! or an API token, and `Cluster <ts>:<hex sha1("<ts>:<cluster_key>")>`; `api_allowed_from`.

use std::net::IpAddr;

use axum::http::HeaderMap;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;
use sha1::{Digest, Sha1};

use crate::error::ApiError;
use crate::node::NodeState;

const HASH_PREFIX: &str = "$sim-sha1$";

/// How the simulator stores a password when `hash: true` (the real format is unknown).
pub fn hash_password(password: &str) -> String {
    if password.starts_with(HASH_PREFIX) {
        return password.to_string();
    }
    format!(
        "{HASH_PREFIX}{}",
        hex::encode(Sha1::digest(password.as_bytes()))
    )
}

/// `Cluster` scheme digest for a timestamp and key.
pub fn cluster_digest(ts: &str, key: &str) -> String {
    hex::encode(Sha1::digest(format!("{ts}:{key}").as_bytes()))
}

struct Creds<'a> {
    login: &'a str,
    password: &'a str,
    hash: bool,
}

fn creds<'a>(server: &'a serde_json::Map<String, Value>, key: &str) -> Option<Creds<'a>> {
    let c = server.get(key)?;
    Some(Creds {
        login: c.get("login")?.as_str()?,
        password: c.get("password")?.as_str()?,
        hash: c.get("hash").and_then(Value::as_bool).unwrap_or(false),
    })
}

impl Creds<'_> {
    fn matches(&self, login: &str, password: &str) -> bool {
        let given = if self.hash {
            hash_password(password)
        } else {
            password.to_string()
        };
        self.login == login && self.password == given
    }
}

fn in_cidr(ip: IpAddr, cidr: &str) -> bool {
    let (net, bits) = match cidr.split_once('/') {
        Some((n, b)) => (n, b.parse::<u32>().ok()),
        None => (cidr, None),
    };
    let Ok(net) = net.parse::<IpAddr>() else {
        return false;
    };
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let bits = bits.unwrap_or(32).min(32);
            let mask = if bits == 0 {
                0
            } else {
                u32::MAX << (32 - bits)
            };
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let bits = bits.unwrap_or(128).min(128);
            let mask = if bits == 0 {
                0
            } else {
                u128::MAX << (128 - bits)
            };
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

/// Checks one request. `write` = anything but GET/HEAD.
pub fn check(
    st: &NodeState,
    headers: &HeaderMap,
    peer: Option<IpAddr>,
    write: bool,
    now_s: i64,
) -> Result<(), ApiError> {
    let server = &st.disk.server;
    let beh = &st.beh;
    let unauthorized = |t: &str| ApiError::new(beh.unauthorized_status, "unauthorized", t);
    let forbidden = |t: &str| ApiError::new(beh.forbidden_status, "forbidden", t);
    if let Some(allowed) = server
        .get("api_allowed_from")
        .and_then(Value::as_array)
        .filter(|a| !a.is_empty())
    {
        let ok = peer.is_some_and(|ip| {
            allowed
                .iter()
                .filter_map(Value::as_str)
                .any(|c| in_cidr(ip, c))
        });
        if !ok {
            return Err(forbidden("caller is not in api_allowed_from"));
        }
    }
    let edit = creds(server, "edit_auth");
    let view = creds(server, "view_auth");
    let key = server
        .get("cluster_key")
        .and_then(Value::as_str)
        .filter(|k| !k.is_empty());
    if edit.is_none() && view.is_none() && key.is_none() && st.tokens.is_empty() {
        return Ok(());
    }
    let Some(header) = headers.get("authorization").and_then(|h| h.to_str().ok()) else {
        return Err(unauthorized("authorization required"));
    };
    let (scheme, value) = header.trim().split_once(' ').unwrap_or((header, ""));
    let value = value.trim();
    let read_only = || {
        if write {
            Err(forbidden(
                "read-only credentials cannot change configuration",
            ))
        } else {
            Ok(())
        }
    };
    match scheme.to_ascii_lowercase().as_str() {
        "basic" | "bearer" => {
            if scheme.eq_ignore_ascii_case("bearer") {
                if st.tokens.iter().any(|t| t == value) {
                    return Ok(());
                }
                if beh.bearer_accepts_cluster_key && key == Some(value) {
                    return Ok(());
                }
            }
            let decoded = STANDARD
                .decode(value)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .unwrap_or_default();
            let Some((login, password)) = decoded.split_once(':') else {
                return Err(unauthorized("invalid credentials"));
            };
            if edit.as_ref().is_some_and(|c| c.matches(login, password)) {
                Ok(())
            } else if view.as_ref().is_some_and(|c| c.matches(login, password)) {
                read_only()
            } else {
                Err(unauthorized("invalid credentials"))
            }
        }
        "cluster" => {
            let (Some(key), Some((ts, digest))) = (key, value.split_once(':')) else {
                return Err(unauthorized("invalid cluster credentials"));
            };
            let Ok(ts_num) = ts.parse::<i64>() else {
                return Err(unauthorized("invalid cluster timestamp"));
            };
            if let Some(window) = beh.cluster_auth_window_s
                && (now_s - ts_num).unsigned_abs() > window
            {
                return Err(unauthorized(
                    "cluster timestamp outside the accepted window",
                ));
            }
            if cluster_digest(ts, key).eq_ignore_ascii_case(digest) {
                Ok(())
            } else {
                Err(unauthorized("invalid cluster credentials"))
            }
        }
        _ => Err(unauthorized("unsupported authorization scheme")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs() {
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        assert!(in_cidr(ip, "127.0.0.0/8"));
        assert!(in_cidr(ip, "127.0.0.1"));
        assert!(!in_cidr(ip, "10.0.0.0/8"));
        assert!(in_cidr(ip, "0.0.0.0/0"));
    }

    #[test]
    fn hashing_is_idempotent() {
        let h = hash_password("pw");
        assert_eq!(hash_password(&h), h);
        assert_ne!(h, "pw");
    }
}
