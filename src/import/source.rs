//! The source installation: a Watcher admin API (a real Watcher or another Panoptes facade),
//! read through its list operations, page by page along the `next` cursor.

use std::time::{Duration, Instant};

use serde_json::Value;

use super::plan::Snapshot;

/// Items asked for per page (the facade's maximum; a Watcher caps it itself).
const PAGE: usize = 1000;
/// Attempts per page before the import gives up (a page that stays unreachable fails the
/// whole import: nothing is written from a partial read).
const ATTEMPTS: u32 = 3;

/// A logged-in source.
pub struct Source {
    http: reqwest::Client,
    base: String,
    token: String,
    progress: Progress,
}

/// The admin API base URL of `from` (a server URL, or the API URL itself).
pub fn base_url(from: &str) -> String {
    let from = from.trim_end_matches('/');
    if from.ends_with(crate::api::BASE) {
        from.to_string()
    } else {
        format!("{from}{}", crate::api::BASE)
    }
}

impl Source {
    /// Logs in to `from` as `login` (`POST /login` with Basic credentials).
    pub async fn login(from: &str, login: &str, password: &str) -> Result<Self, String> {
        // reqwest is built without a default crypto provider (see Cargo.toml).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| format!("building the HTTP client: {e}"))?;
        let base = base_url(from);
        let resp = http
            .post(format!("{base}/login"))
            .basic_auth(login, Some(password))
            .header("content-type", "application/json")
            .body("null")
            .send()
            .await
            .map_err(|e| format!("logging in to {base}: {e}"))?;
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        let token = body["access_token"]
            .as_str()
            .filter(|_| status.is_success())
            .ok_or_else(|| format!("logging in to {base} as {login}: HTTP {status}"))?;
        Ok(Self {
            http,
            base,
            token: token.to_string(),
            progress: Progress::new(),
        })
    }

    /// Every item of list `path` (envelope member `key`), following `next` to the end.
    pub async fn list(
        &mut self,
        path: &str,
        query: &[(&str, String)],
        key: &str,
    ) -> Result<Vec<Value>, String> {
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        let mut seen = std::collections::HashSet::new();
        let mut page_no = 0;
        loop {
            page_no += 1;
            let mut q: Vec<(&str, String)> = query.to_vec();
            q.push(("limit", PAGE.to_string()));
            if let Some(c) = &cursor {
                q.push(("cursor", c.clone()));
            }
            let page = self.page(path, &q, page_no).await?;
            let got = page[key]
                .as_array()
                .ok_or_else(|| format!("{path} page {page_no}: no `{key}` list in the answer"))?;
            items.extend(got.iter().cloned());
            let total = page["estimated_count"].as_u64();
            self.progress.report(key, items.len(), total);
            match page["next"].as_str().filter(|n| !n.is_empty()) {
                Some(next) if !got.is_empty() => {
                    if !seen.insert(next.to_string()) {
                        return Err(format!(
                            "{path} page {page_no}: the cursor went back to a page already read"
                        ));
                    }
                    cursor = Some(next.to_string());
                }
                _ => break,
            }
        }
        self.progress.done(key, items.len());
        Ok(items)
    }

    async fn page(&self, path: &str, q: &[(&str, String)], n: usize) -> Result<Value, String> {
        let mut last = String::new();
        for attempt in 0..ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(300 * u64::from(attempt))).await;
            }
            let sent = self
                .http
                .get(format!("{}{path}", self.base))
                .query(q)
                .bearer_auth(&self.token)
                .send()
                .await;
            match sent {
                Ok(resp) if resp.status().is_success() => {
                    return resp
                        .json::<Value>()
                        .await
                        .map_err(|e| format!("{path} page {n}: not JSON: {e}"));
                }
                // A client error will not heal by asking again.
                Ok(resp) if resp.status().is_client_error() => {
                    return Err(format!("{path} page {n}: HTTP {}", resp.status()));
                }
                Ok(resp) => last = format!("HTTP {}", resp.status()),
                Err(e) => last = e.to_string(),
            }
        }
        Err(format!(
            "{path} page {n} unreachable after {ATTEMPTS} attempts ({last}); nothing was written"
        ))
    }

    /// `GET /domain_config`; `None` from a source without it (404), an error when it stays
    /// unreachable (like a list page: nothing is written from a partial read).
    async fn domain_config(&self) -> Result<Option<Value>, String> {
        match self.page("/domain_config", &[], 1).await {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.ends_with("HTTP 404 Not Found") => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Reads everything an import needs.
    pub async fn snapshot(&mut self) -> Result<Snapshot, String> {
        let streamers = self.list("/streamers", &[], "streamers").await?;
        let presets = self.list("/presets", &[], "presets").await?;
        let users = self.list("/users", &[], "users_list").await?;
        let streams = self.list("/streams", &[], "streams").await?;
        let domain_config = self.domain_config().await?;
        let mut snapshot = Snapshot {
            streamers,
            streams,
            presets,
            users,
            domain_config,
            ..Default::default()
        };
        let mut orgs = std::collections::BTreeSet::new();
        for u in &snapshot.users {
            for m in u["organizations"].as_array().into_iter().flatten() {
                orgs.extend(m["id"].as_i64());
            }
        }
        for s in &snapshot.streams {
            orgs.extend(s["organization"]["id"].as_i64());
        }
        for id in orgs.into_iter().filter(|id| *id > 0) {
            let offered = self
                .list(
                    "/presets",
                    &[("organization_id", id.to_string())],
                    "presets",
                )
                .await?;
            snapshot.organization_presets.insert(
                id,
                offered.iter().filter_map(|p| p["id"].as_i64()).collect(),
            );
        }
        Ok(snapshot)
    }
}

/// Progress on stderr: counts, rate and (when the source estimates a total) time left, at
/// most once a second per list.
pub(super) struct Progress {
    started: Instant,
    last: Option<Instant>,
}

impl Progress {
    pub(super) fn new() -> Self {
        Self {
            started: Instant::now(),
            last: None,
        }
    }

    pub(super) fn report(&mut self, what: &str, n: usize, total: Option<u64>) {
        if self
            .last
            .is_some_and(|l| l.elapsed() < Duration::from_secs(1))
        {
            return;
        }
        self.last = Some(Instant::now());
        let secs = self.started.elapsed().as_secs_f64().max(0.001);
        let rate = n as f64 / secs;
        let eta = total
            .filter(|t| *t as usize > n && rate > 0.0)
            .map(|t| format!(", ETA {:.0}s", (t as f64 - n as f64) / rate))
            .unwrap_or_default();
        let of = total.map(|t| format!("/~{t}")).unwrap_or_default();
        eprintln!("import: {what}: {n}{of} read ({rate:.0}/s{eta})");
    }

    pub(super) fn done(&mut self, what: &str, n: usize) {
        eprintln!("import: {what}: {n} read");
        self.started = Instant::now();
        self.last = None;
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_base_url_is_added_once() {
        assert_eq!(
            super::base_url("http://w:80/"),
            "http://w:80/watcher/admin-api/v3"
        );
        assert_eq!(
            super::base_url("http://w/watcher/admin-api/v3"),
            "http://w/watcher/admin-api/v3"
        );
    }
}
