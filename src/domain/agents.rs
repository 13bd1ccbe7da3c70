//! Which agent an input names. An agent connection is an input URL (or its `via`) of the form
//! `agent://ID`, optionally followed by a path, query or fragment that concern the stream on
//! the agent, not the agent: `agent://a1/x`, `agent://a1?k=v` and `agent://a1` are all agent
//! `a1`. `GET /agents` lists agents and `/cluster/stats` counts them, so both read ids here.

/// The agent id of an input URL, if it is an agent connection with a non-empty id.
pub fn agent_id(url: &str) -> Option<&str> {
    let rest = url.strip_prefix("agent://")?;
    let id = rest.split(['/', '?', '#']).next()?;
    (!id.is_empty()).then_some(id)
}

/// The distinct agents an input's `url` and `via` name, sorted.
pub fn agents_of<'a>(urls: impl IntoIterator<Item = &'a str>) -> Vec<&'a str> {
    let mut ids: Vec<&str> = urls.into_iter().filter_map(agent_id).collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_id_ends_where_the_path_query_or_fragment_begins() {
        for (url, want) in [
            ("agent://a1", Some("a1")),
            ("agent://a1/x", Some("a1")),
            ("agent://a1/x/y", Some("a1")),
            ("agent://a1?k=v", Some("a1")),
            ("agent://a1#frag", Some("a1")),
            ("agent://", None),
            ("agent:///x", None),
            ("agent://?k", None),
            ("rtsp://a1/x", None),
            ("AGENT://a1", None),
            ("fake://agent://a1", None),
        ] {
            assert_eq!(agent_id(url), want, "{url}");
        }
    }

    #[test]
    fn urls_naming_one_agent_count_once() {
        let urls = ["agent://b", "agent://a1/x", "rtsp://cam", "agent://a1?k=v"];
        assert_eq!(agents_of(urls), ["a1", "b"]);
        assert!(agents_of([]).is_empty());
    }
}
