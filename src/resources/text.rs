//! Strings that repeat across many cached objects, held once (issue 21).
//!
//! At 100,000 Streams the same few texts are read 100,000 times each: condition types,
//! statuses and reasons, and messages naming one of a thousand nodes. As `String`s each copy
//! was its own allocation in every cached object. A [`Text`] read from the API server (or
//! built by a controller) is looked up in one process-wide pool and shares the allocation of
//! an equal text already held. The wire and the schema are a plain string's.
//!
//! The pool holds only texts some object still holds: it forgets the others whenever it has
//! doubled since it last looked, so what a writer can make it keep is bounded by what the
//! caches hold anyway.

use std::borrow::Borrow;
use std::collections::HashSet;
use std::fmt;
use std::ops::Deref;
use std::sync::{Arc, LazyLock, Mutex};

use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An immutable string shared with every equal [`Text`] in the process.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Text(Arc<str>);

struct Pool {
    texts: HashSet<Arc<str>>,
    /// The pool's size at which it next forgets the texts nobody holds.
    sweep_at: usize,
}

/// Below this many texts the pool never sweeps.
const SWEEP_FLOOR: usize = 1024;

static POOL: LazyLock<Mutex<Pool>> = LazyLock::new(|| {
    Mutex::new(Pool {
        texts: HashSet::new(),
        sweep_at: SWEEP_FLOOR,
    })
});

impl Text {
    /// `s`, shared with an equal text already held.
    pub fn new(s: &str) -> Self {
        let mut pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(held) = pool.texts.get(s) {
            return Self(held.clone());
        }
        let text: Arc<str> = Arc::from(s);
        pool.texts.insert(text.clone());
        if pool.texts.len() >= pool.sweep_at {
            // Only the pool holds a text whose count is one.
            pool.texts.retain(|t| Arc::strong_count(t) > 1);
            pool.sweep_at = (pool.texts.len() * 2).max(SWEEP_FLOOR);
        }
        Self(text)
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Texts the pool holds now (for tests of its bound).
    pub fn pooled() -> usize {
        POOL.lock().unwrap_or_else(|e| e.into_inner()).texts.len()
    }
}

impl Default for Text {
    fn default() -> Self {
        Self::new("")
    }
}

impl Deref for Text {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for Text {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for Text {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&*self.0, f)
    }
}

impl From<&str> for Text {
    fn from(s: &str) -> Self {
        Self::new(s)
    }
}

impl From<String> for Text {
    fn from(s: String) -> Self {
        Self::new(&s)
    }
}

impl From<&String> for Text {
    fn from(s: &String) -> Self {
        Self::new(s)
    }
}

impl From<Text> for Arc<str> {
    fn from(t: Text) -> Self {
        t.0
    }
}

impl From<Text> for String {
    fn from(t: Text) -> Self {
        t.0.to_string()
    }
}

impl PartialEq<str> for Text {
    fn eq(&self, other: &str) -> bool {
        &*self.0 == other
    }
}

impl PartialEq<&str> for Text {
    fn eq(&self, other: &&str) -> bool {
        &*self.0 == *other
    }
}

impl PartialEq<String> for Text {
    fn eq(&self, other: &String) -> bool {
        *self.0 == **other
    }
}

impl PartialEq<Text> for str {
    fn eq(&self, other: &Text) -> bool {
        self == &*other.0
    }
}

impl PartialEq<Text> for &str {
    fn eq(&self, other: &Text) -> bool {
        *self == &*other.0
    }
}

impl PartialEq<Text> for String {
    fn eq(&self, other: &Text) -> bool {
        **self == *other.0
    }
}

impl Serialize for Text {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Text;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Text, E> {
                Ok(Text::new(v))
            }
        }
        d.deserialize_str(Visitor)
    }
}

impl JsonSchema for Text {
    fn inline_schema() -> bool {
        true
    }
    fn schema_name() -> std::borrow::Cow<'static, str> {
        String::schema_name()
    }
    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        String::json_schema(generator)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_texts_share_one_allocation_and_read_as_strings() {
        let a: Text = serde_json::from_str("\"receiving frames on streamer-0001\"").unwrap();
        let b = Text::from(String::from("receiving frames on streamer-0001"));
        assert!(
            Arc::ptr_eq(&a.0, &b.0),
            "two equal texts are two allocations"
        );
        assert_eq!(a, "receiving frames on streamer-0001");
        assert_eq!(
            serde_json::to_string(&a).unwrap(),
            "\"receiving frames on streamer-0001\""
        );
        assert_eq!(String::from(b), "receiving frames on streamer-0001");
        assert!(serde_json::from_str::<Text>("7").is_err());
    }

    #[test]
    fn the_pool_forgets_texts_nobody_holds() {
        // Distinct texts written and dropped, as a writer changing a message on every write
        // would: the pool stays near what is still held, not what was ever seen.
        let kept: Vec<Text> = (0..100).map(|i| Text::new(&format!("kept {i}"))).collect();
        for i in 0..50_000 {
            drop(Text::new(&format!("passing {i}")));
        }
        // Other tests of this binary hold texts too: a bound, not an exact count.
        assert!(
            Text::pooled() < 4 * SWEEP_FLOOR + 2 * kept.len(),
            "the pool holds {} texts after 50,000 dropped ones",
            Text::pooled()
        );
        assert!(
            kept.iter()
                .enumerate()
                .all(|(i, t)| *t == format!("kept {i}"))
        );
    }

    #[test]
    fn its_schema_is_a_strings() {
        let mut g = SchemaGenerator::default();
        assert_eq!(Text::json_schema(&mut g), String::json_schema(&mut g));
    }
}
