//! From raw query-string pairs to a validated [`Query`].

use super::cursor::Cursor;
use super::error::{QueryError, QueryErrorKind};
use super::filter::{Filter, Op, Search, candidates};
use super::path::Path;
use super::select::Selection;
use super::sort::{SortSpec, parse_sort_keys};

/// A filterable field: the query-parameter base name and the item path it filters.
/// They differ when the documented parameter is not the JSON member, e.g. agents'
/// `stream_is=null` filtering on `streams`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field<'s> {
    pub param: &'s str,
    pub path: &'s str,
    /// What a comparison value must parse as (a typo such as `stats.alive=flase` would
    /// otherwise match nothing and answer 200).
    pub kind: FieldKind,
}

/// The type of a filterable field's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldKind {
    /// Strings, or values of mixed type: any text compares.
    Any,
    /// `true` or `false`.
    Boolean,
    /// An integer (ids, counts, UTC ms).
    Integer,
}

impl<'s> Field<'s> {
    /// Parameter named like the path (`organization_id`, `stats.alive`).
    pub const fn new(path: &'s str) -> Self {
        Self {
            param: path,
            path,
            kind: FieldKind::Any,
        }
    }

    pub const fn alias(param: &'s str, path: &'s str) -> Self {
        Self {
            param,
            path,
            kind: FieldKind::Any,
        }
    }

    /// A boolean field named like its path.
    pub const fn boolean(path: &'s str) -> Self {
        Self {
            kind: FieldKind::Boolean,
            ..Self::new(path)
        }
    }

    /// An integer field named like its path.
    pub const fn integer(path: &'s str) -> Self {
        Self {
            kind: FieldKind::Integer,
            ..Self::new(path)
        }
    }
}

/// What a collection allows and defaults to; usually a `const` per list operation.
#[derive(Debug, Clone, Copy)]
pub struct CollectionSpec<'s> {
    /// Order when the client sends no `sort`, in `sort` syntax (`name`, `-created_at`).
    pub default_sort: &'s str,
    /// Path of a unique key appended (ascending) to every order to make it total.
    pub tiebreak: &'s str,
    pub default_limit: usize,
    /// Larger `limit` values are clamped to this rather than rejected: clients and
    /// schema-driven testers treat "any positive integer" as valid.
    pub max_limit: usize,
    /// Paths `q` searches; empty means the collection has no `q` parameter.
    pub search: &'s [&'s str],
    /// Fields that accept `<param>` and its `_gt`… suffixes.
    pub filters: &'s [Field<'s>],
    /// Parameters the facade handles itself (e.g. `preferred_zones`); the engine
    /// neither rejects nor interprets them.
    pub passthrough: &'s [&'s str],
    /// The members an item may have (ours and the reference's): every `select` and `sort`
    /// path starts with one, so `select=nmae` is a 400 rather than empty objects. Empty:
    /// not checked.
    pub members: &'s [&'s str],
}

/// A validated list query, ready to [`execute`](Query::execute).
#[derive(Debug, Clone)]
pub struct Query {
    pub(crate) sort: SortSpec,
    pub(crate) limit: usize,
    pub(crate) cursor: Option<Cursor>,
    pub(crate) select: Option<Selection>,
    pub(crate) search: Option<Search>,
    pub(crate) filters: Vec<Filter>,
}

/// Each filter is a pass over the collection; more than this is abuse, not a query.
pub(crate) const MAX_FILTERS: usize = 32;

const RESERVED: [&str; 5] = ["select", "sort", "limit", "cursor", "q"];

impl Query {
    /// `pairs` are percent-decoded query pairs in request order, e.g. axum's
    /// `Query<Vec<(String, String)>>`.
    pub fn parse<K, V>(
        pairs: impl IntoIterator<Item = (K, V)>,
        spec: &CollectionSpec<'_>,
    ) -> Result<Self, QueryError>
    where
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let mut reserved: [Option<String>; 5] = Default::default();
        let mut filters = Vec::new();
        for (key, value) in pairs {
            let (key, value) = (key.as_ref(), value.as_ref());
            if spec.passthrough.contains(&key) {
                continue;
            }
            if let Some(slot) = RESERVED.iter().position(|r| *r == key) {
                if key == "q" && spec.search.is_empty() {
                    return Err(QueryError::new(key, QueryErrorKind::UnknownParameter));
                }
                if reserved[slot].is_some() {
                    return Err(QueryError::new(key, QueryErrorKind::Repeated));
                }
                reserved[slot] = Some(value.to_owned());
                continue;
            }
            if filters.len() == MAX_FILTERS {
                return Err(QueryError::invalid(
                    key,
                    format!("at most {MAX_FILTERS} filters"),
                ));
            }
            filters.push(parse_filter(key, value, spec)?);
        }
        // An empty value is treated as absent: clients build query strings from
        // optional fields and send `cursor=` or `sort=` when they have nothing to say.
        let [select, sort, limit, cursor, q] = reserved.map(|v| v.filter(|s| !s.trim().is_empty()));

        for (param, raw) in [("select", &select), ("sort", &sort)] {
            if let Some(raw) = raw {
                check_members(param, raw, spec)?;
            }
        }
        let tiebreak = Path::parse(spec.tiebreak)
            .ok_or_else(|| QueryError::invalid("sort", "collection tiebreak is malformed"))?;
        let keys = match &sort {
            Some(raw) => parse_sort_keys(raw, "sort")?,
            None => parse_sort_keys(spec.default_sort, "sort")?,
        };
        let sort = SortSpec::new(keys, tiebreak);

        let max = spec.max_limit.max(1);
        let limit = match &limit {
            Some(raw) => parse_limit(raw)?.min(max),
            None => spec.default_limit.clamp(1, max),
        };

        let cursor = cursor
            .map(|raw| Cursor::decode(&raw, &sort, "cursor"))
            .transpose()?;
        let select = match &select {
            Some(raw) => Selection::parse(raw, "select")?,
            None => None,
        };
        let search = match &q {
            Some(raw) => {
                let paths = spec
                    .search
                    .iter()
                    .map(|p| {
                        Path::parse(p).ok_or_else(|| {
                            QueryError::invalid("q", "collection search path is malformed")
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Search::new(paths, raw)
            }
            None => None,
        };
        Ok(Self {
            sort,
            limit,
            cursor,
            select,
            search,
            filters,
        })
    }

    /// The effective page size (after defaulting and clamping).
    pub fn limit(&self) -> usize {
        self.limit
    }
}

fn parse_limit(raw: &str) -> Result<usize, QueryError> {
    let raw = raw.trim();
    // Digits only: `+5`, `-1`, `1e2` and `5.0` are not what the docs call an integer.
    if !raw.bytes().all(|b| b.is_ascii_digit()) {
        return Err(QueryError::invalid("limit", "expected a positive integer"));
    }
    match raw.parse::<u64>() {
        Ok(0) => Err(QueryError::invalid("limit", "expected a positive integer")),
        Ok(n) => Ok(usize::try_from(n).unwrap_or(usize::MAX)),
        // Only overflow is left; such a limit means "as many as allowed".
        Err(_) => Ok(usize::MAX),
    }
}

/// Every comma-separated path of `select` or `sort` names a member of the items.
fn check_members(param: &str, raw: &str, spec: &CollectionSpec<'_>) -> Result<(), QueryError> {
    if spec.members.is_empty() {
        return Ok(());
    }
    for part in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let path = part.trim_start_matches(['-', '+']);
        let head = path.split('.').next().unwrap_or(path);
        if !spec.members.contains(&head) {
            return Err(QueryError::invalid(
                param,
                format!("unknown field `{path}`"),
            ));
        }
    }
    Ok(())
}

fn parse_filter(key: &str, value: &str, spec: &CollectionSpec<'_>) -> Result<Filter, QueryError> {
    for (base, op) in candidates(key) {
        if let Some(field) = spec.filters.iter().find(|f| f.param == base) {
            let path = Path::parse(field.path)
                .ok_or_else(|| QueryError::invalid(key, "collection filter path is malformed"))?;
            let compared = !matches!(op, None | Some(Op::Like));
            let ok = match field.kind {
                _ if !compared => true,
                FieldKind::Any => true,
                FieldKind::Boolean => matches!(value, "true" | "false"),
                FieldKind::Integer => value.trim().parse::<i64>().is_ok(),
            };
            if !ok {
                let want = match field.kind {
                    FieldKind::Boolean => "expected `true` or `false`",
                    _ => "expected an integer",
                };
                return Err(QueryError::invalid(key, want));
            }
            return Filter::new(key, path, op, value);
        }
    }
    Err(QueryError::new(key, QueryErrorKind::UnknownParameter))
}
