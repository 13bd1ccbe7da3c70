//! Opaque keyset cursors.
//!
//! A cursor names a position between items — the full sort key (tiebreak included) of
//! the boundary item and a direction — not an offset, so items added or removed between
//! requests neither shift pages nor cause skips or repeats. It carries a fingerprint of
//! the sort order it was issued for: a key tuple means nothing under another order.

use base64::Engine as _;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::error::{QueryError, QueryErrorKind};
use super::sort::SortSpec;

/// Far above any cursor this engine issues for realistic keys (names, titles, times),
/// and small enough that decoding a hostile one is cheap.
pub(crate) const MAX_CURSOR_LEN: usize = 16 * 1024;

const VERSION: u8 = 1;

/// Unpadded base64url on output; padding tolerated on input because some clients and
/// proxies re-pad what looks like base64.
const ENGINE: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Direction {
    /// The page of items strictly after the boundary.
    After,
    /// The page of items strictly before the boundary.
    Before,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Cursor {
    pub(crate) direction: Direction,
    /// `None` means an open end: `After` from the very start, `Before` from the very end.
    /// Needed when a page comes back empty and there is no item to anchor on.
    pub(crate) boundary: Option<Vec<Value>>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Wire {
    v: u8,
    s: String,
    d: char,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    k: Option<Vec<Value>>,
}

/// FNV-1a: stable across builds and processes (unlike `DefaultHasher`), so cursors
/// survive a facade restart or a request landing on another replica.
fn fingerprint(sort: &SortSpec) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in sort.canonical().bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

impl Cursor {
    pub(crate) fn encode(&self, sort: &SortSpec) -> String {
        let wire = Wire {
            v: VERSION,
            s: fingerprint(sort),
            d: match self.direction {
                Direction::After => 'a',
                Direction::Before => 'b',
            },
            k: self.boundary.clone(),
        };
        // Serialising plain JSON values into a Vec cannot fail.
        let bytes = serde_json::to_vec(&wire).unwrap_or_default();
        ENGINE.encode(bytes)
    }

    pub(crate) fn decode(raw: &str, sort: &SortSpec, parameter: &str) -> Result<Self, QueryError> {
        let malformed = || QueryError::new(parameter, QueryErrorKind::MalformedCursor);
        if raw.len() > MAX_CURSOR_LEN {
            return Err(malformed());
        }
        let bytes = ENGINE.decode(raw.trim()).map_err(|_| malformed())?;
        let wire: Wire = serde_json::from_slice(&bytes).map_err(|_| malformed())?;
        if wire.v != VERSION {
            return Err(malformed());
        }
        let direction = match wire.d {
            'a' => Direction::After,
            'b' => Direction::Before,
            _ => return Err(malformed()),
        };
        if wire.s != fingerprint(sort) {
            return Err(QueryError::new(
                parameter,
                QueryErrorKind::CursorSortMismatch,
            ));
        }
        if let Some(keys) = &wire.k {
            let scalar = |v: &Value| !matches!(v, Value::Array(_) | Value::Object(_));
            if keys.len() != sort.len() || !keys.iter().all(scalar) {
                return Err(malformed());
            }
        }
        Ok(Self {
            direction,
            boundary: wire.k,
        })
    }
}
