//! Access grants besides logins: per-user API keys and shared (link) tokens, and the decision
//! the play authorization backend takes for a node. Pure: key generation, keyed digests,
//! masking, the records kept on objects and the play decision are unit-tested here; the
//! facade does the I/O.
//!
//! Storage:
//! - An **API key** lives only as a keyed digest ([`Digester`], HMAC-SHA256 with a per-install
//!   key) plus its last 4 characters, in a facade-created Secret owned by the User and named by
//!   the User's annotation [`APIKEY_ANNOTATION`]. A key is 160 random bits, so a fast keyed
//!   digest is as strong as argon2 here (argon2's cost protects guessable passwords; nobody
//!   guesses 160 bits), and it lets every login check one digest without the 19 MiB argon2
//!   slot. Without the install key a stolen Secret does not even allow an offline check.
//! - A **shared token** is one annotation on its Stream ([`share_annotation`], a
//!   [`ShareRecord`]: name, permissions, the key's digest, the name of the Secret holding the
//!   key, creation time) plus a facade-created Secret owned by the Stream holding the key in
//!   clear (admins see keys in list and create answers). One annotation per token: creates and
//!   deletes of different tokens never race on one value, and the play backend decides from
//!   the Stream store alone (no Secret read per play).
//!
//! Neither key is ever in a spec, a status or a log line: only digests and last-4s leave the
//! Secrets.

use std::collections::BTreeMap;

use hmac::{Hmac, Mac};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// Annotation of a User naming the Secret of its API key.
pub const APIKEY_ANNOTATION: &str = "panoptes.dev/apikey-secret";
/// Prefix of the annotations of a Stream holding its shared tokens.
pub const SHARE_PREFIX: &str = "shares.panoptes.dev/";
/// Key of the digest in an API key Secret.
pub const DIGEST_FIELD: &str = "digest";
/// Key of the last four characters in an API key Secret.
pub const LAST4_FIELD: &str = "last4";
/// Key of a shared token's key in its Secret.
pub const KEY_FIELD: &str = "key";
/// Length of generated keys (hex of 20 random bytes).
pub const KEY_LEN: usize = 40;

/// A new random key: 160 bits, hex.
pub fn new_key() -> String {
    hex::encode(rand::random::<[u8; 20]>())
}

/// `key` masked but for its last four characters (what `GET /users/{id}/apikey` shows).
pub fn mask(last4: &str) -> String {
    format!("{}{last4}", "*".repeat(KEY_LEN.saturating_sub(last4.len())))
}

/// The last four characters of `key`.
pub fn last4(key: &str) -> String {
    let chars: Vec<char> = key.chars().collect();
    chars[chars.len().saturating_sub(4)..].iter().collect()
}

/// Keyed digests of keys (HMAC-SHA256 with the installation's digest key).
#[derive(Clone)]
pub struct Digester {
    key: Vec<u8>,
}

impl std::fmt::Debug for Digester {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Digester(<redacted>)")
    }
}

impl Digester {
    /// A digester with the installation's key.
    pub fn new(key: Vec<u8>) -> Self {
        Self { key }
    }

    /// Hex HMAC-SHA256 of `secret`.
    pub fn digest(&self, secret: &str) -> String {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key)
            .expect("HMAC takes a key of any length");
        mac.update(secret.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    /// Whether `secret` has digest `digest`, compared in constant time.
    pub fn matches(&self, secret: &str, digest: &str) -> bool {
        self.digest(secret)
            .as_bytes()
            .ct_eq(digest.as_bytes())
            .into()
    }
}

/// What a shared token allows (`SharedTokenPermission`). A token holds a list of them; a
/// play is allowed when any one allows it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SharedTokenPermission {
    /// Adverts (not a play; kept as given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advert: Option<bool>,
    /// Archive (DVR) playback.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dvr: Option<bool>,
    /// How far back (seconds) DVR playback and export may reach; absent or 0: no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dvr_depth_limit: Option<i64>,
    /// Archive export (download of a range).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub export: Option<bool>,
    /// Live playback.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live: Option<bool>,
    /// Camera PTZ control (no node play; kept as given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ptz: Option<bool>,
}

/// A shared token as kept in its Stream's annotation (no key: that is in the Secret).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShareRecord {
    /// Its name (`SharedToken.name`).
    pub name: String,
    /// Its permissions.
    #[serde(default)]
    pub permissions: Vec<SharedTokenPermission>,
    /// Keyed digest of the key ([`Digester`]).
    pub digest: String,
    /// Secret holding the key (key [`KEY_FIELD`]).
    pub secret: String,
    /// Creation time (UTC ms).
    pub created_at: i64,
}

/// The annotation key of the token whose key has `digest`: a prefix of the digest, so a
/// delete by key finds it without a scan.
pub fn share_annotation(digest: &str) -> String {
    format!("{SHARE_PREFIX}{}", &digest[..digest.len().min(32)])
}

/// The shared tokens recorded in `annotations` (malformed records are skipped).
pub fn shares(annotations: &BTreeMap<String, String>) -> Vec<(&str, ShareRecord)> {
    annotations
        .iter()
        .filter(|(k, _)| k.starts_with(SHARE_PREFIX))
        .filter_map(|(k, v)| Some((k.as_str(), serde_json::from_str(v).ok()?)))
        .collect()
}

/// What a node asks to play.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Play {
    /// Live.
    Live,
    /// Archive playback starting at `from` (UTC seconds; None: unknown).
    Dvr { from: Option<i64> },
    /// Archive export (a file of a range) starting at `from`.
    Export { from: Option<i64> },
}

/// Classifies a play request the way Flussonic describes it to an authorization backend:
/// `media_request` (`dvr_session-hls_mbr_playlist-<from>-<duration>`,
/// `dvr_handler-mp4-<from>-<duration>`, `hls_timeshift_playlist-hls_timeshift_rel-<secs>`,
/// `…timeshift_abs-<from>`, `hls_live-…`), else the simpler `dvr`/`from` parameters; `now`
/// in UTC seconds.
pub fn classify(
    media_request: Option<&str>,
    dvr: Option<&str>,
    from: Option<&str>,
    now: i64,
) -> Play {
    if let Some(mr) = media_request.filter(|m| !m.is_empty()) {
        let parts: Vec<&str> = mr.split('-').collect();
        let num = |s: &&str| s.parse::<i64>().ok();
        let export =
            mr.starts_with("dvr_handler-mp4") || mr.starts_with("dvr_stream_handler-ts_file");
        if mr.contains("timeshift_rel") {
            let back = parts.iter().rev().find_map(num);
            return Play::Dvr {
                from: back.map(|b| now - b),
            };
        }
        if mr.contains("timeshift_abs") {
            return Play::Dvr {
                from: parts.iter().rev().find_map(num),
            };
        }
        if mr.starts_with("dvr") || mr.contains("archive") {
            // `<from>-<duration>` at the end: the first of the two trailing numbers.
            let nums: Vec<i64> = parts.iter().filter_map(num).collect();
            let from = (nums.len() >= 2).then(|| nums[nums.len() - 2]);
            return if export {
                Play::Export { from }
            } else {
                Play::Dvr { from }
            };
        }
        return Play::Live;
    }
    let from = from.and_then(|f| f.parse::<i64>().ok());
    match dvr {
        Some("true" | "1" | "dvr") => Play::Dvr { from },
        Some("export") => Play::Export { from },
        _ => Play::Live,
    }
}

/// Whether `permissions` allow `play` at `now` (UTC seconds). Archive access beyond a
/// permission's depth limit, or of an unknown start under a limit, is denied.
pub fn allows(permissions: &[SharedTokenPermission], play: Play, now: i64) -> bool {
    let within = |p: &SharedTokenPermission, from: Option<i64>| match p.dvr_depth_limit {
        None | Some(0) => true,
        Some(limit) => from.is_some_and(|f| now.saturating_sub(f) <= limit),
    };
    permissions.iter().any(|p| match play {
        Play::Live => p.live == Some(true),
        Play::Dvr { from } => p.dvr == Some(true) && within(p, from),
        Play::Export { from } => p.export == Some(true) && within(p, from),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_random_hex_and_masked_but_for_four() {
        let (a, b) = (new_key(), new_key());
        assert_ne!(a, b);
        assert_eq!(a.len(), KEY_LEN);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        let m = mask(&last4(&a));
        assert_eq!(m.len(), KEY_LEN);
        assert!(m.ends_with(&a[KEY_LEN - 4..]));
        assert!(m.starts_with("****"));
        assert_eq!(last4("ab"), "ab");
    }

    #[test]
    fn digests_depend_on_the_install_key() {
        let d = Digester::new(b"install-key-1".to_vec());
        let other = Digester::new(b"install-key-2".to_vec());
        let k = new_key();
        assert!(d.matches(&k, &d.digest(&k)));
        assert!(!d.matches(&new_key(), &d.digest(&k)));
        assert!(!other.matches(&k, &d.digest(&k)));
        assert!(!format!("{d:?}").contains("install"));
        assert!(share_annotation(&d.digest(&k)).len() <= 63 + SHARE_PREFIX.len());
    }

    #[test]
    fn flussonic_media_requests_classify() {
        let now = 1_700_000_000;
        let t = |mr: &str| classify(Some(mr), None, None, now);
        assert_eq!(t("hls_live-hls_mbr_playlist"), Play::Live);
        assert_eq!(t("mpegts_handler-request"), Play::Live);
        assert_eq!(
            t("dvr_session-hls_mbr_playlist-1362504585-3600"),
            Play::Dvr {
                from: Some(1362504585)
            }
        );
        assert_eq!(
            t("dvr_handler-mp4-1362504585-3600"),
            Play::Export {
                from: Some(1362504585)
            }
        );
        assert_eq!(
            t("dvr_stream_handler-ts_file-1362504585-3600"),
            Play::Export {
                from: Some(1362504585)
            }
        );
        assert_eq!(
            t("hls_timeshift_playlist-hls_timeshift_rel-360"),
            Play::Dvr {
                from: Some(now - 360)
            }
        );
        assert_eq!(
            t("dvr_handler-timeshift_abs-1362504585"),
            Play::Dvr {
                from: Some(1362504585)
            }
        );
        assert_eq!(
            classify(None, Some("true"), Some("5"), now),
            Play::Dvr { from: Some(5) }
        );
        assert_eq!(classify(None, None, None, now), Play::Live);
    }

    #[test]
    fn permissions_decide_each_kind_of_play() {
        let now = 10_000;
        let live = SharedTokenPermission {
            live: Some(true),
            ..Default::default()
        };
        let dvr_1h = SharedTokenPermission {
            dvr: Some(true),
            dvr_depth_limit: Some(3600),
            ..Default::default()
        };
        let export = SharedTokenPermission {
            export: Some(true),
            ..Default::default()
        };
        let dvr = |from| Play::Dvr { from };
        let table: &[(&[SharedTokenPermission], Play, bool)] = &[
            (std::slice::from_ref(&live), Play::Live, true),
            (std::slice::from_ref(&live), dvr(Some(now)), false),
            (std::slice::from_ref(&dvr_1h), Play::Live, false),
            (std::slice::from_ref(&dvr_1h), dvr(Some(now - 3600)), true),
            (std::slice::from_ref(&dvr_1h), dvr(Some(now - 3601)), false),
            (std::slice::from_ref(&dvr_1h), dvr(None), false),
            (
                std::slice::from_ref(&dvr_1h),
                Play::Export { from: Some(now) },
                false,
            ),
            (
                std::slice::from_ref(&export),
                Play::Export { from: None },
                true,
            ),
            (&[live.clone(), dvr_1h.clone()], dvr(Some(now - 10)), true),
            (&[], Play::Live, false),
        ];
        for (perms, play, want) in table {
            assert_eq!(allows(perms, *play, now), *want, "{perms:?} {play:?}");
        }
    }

    #[test]
    fn records_round_trip_through_annotations() {
        let r = ShareRecord {
            name: "door".into(),
            permissions: vec![SharedTokenPermission {
                live: Some(true),
                ..Default::default()
            }],
            digest: "ab".repeat(32),
            secret: "cam-shared-token-x".into(),
            created_at: 1,
        };
        let mut a = BTreeMap::new();
        a.insert(
            share_annotation(&r.digest),
            serde_json::to_string(&r).unwrap(),
        );
        a.insert(format!("{SHARE_PREFIX}broken"), "{".into());
        a.insert("other".into(), "x".into());
        let got = shares(&a);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].1, r);
    }
}
