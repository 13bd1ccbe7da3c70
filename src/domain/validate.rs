//! Input rules that both the facade (Watcher errors) and the CRDs (schema and CEL, so kubectl
//! gets the same answer) enforce. The limits are constants here; the CRD attributes in
//! `resources/` use the same numbers, and a unit test there checks the generated schema.

/// Longest login (bytes). Logins travel in Basic credentials and in object names.
pub const LOGIN_MAX: usize = 256;
/// Longest short name (preset and organization titles).
pub const NAME_MAX: usize = 256;
/// Longest one-line display field (full name, stream title, postal address).
pub const LINE_MAX: usize = 1024;
/// Longest phone number.
pub const PHONE_MAX: usize = 64;
/// Longest free-text note or comment.
pub const TEXT_MAX: usize = 4096;
/// Longest Watcher stream name (bytes).
pub const STREAM_NAME_MAX: usize = 256;

/// What the facade says about a bad stream name.
pub const STREAM_NAME_RULE: &str = "stream names are 1-256 characters of A-Z a-z 0-9 . _ ~ - and inner /, \
     with no empty, `.` or `..` segment";

/// What the facade says about a bad `unix_name` (zone names, label keys).
pub const UNIX_NAME_RULE: &str = "zone names are unix names: 1-63 characters of a-z A-Z 0-9 _ - .";

/// Longest unix name (the reference leaves it open; a Kubernetes label value's limit, so a
/// zone name fits wherever placement needs to record it).
pub const UNIX_NAME_MAX: usize = 63;

/// Whether `name` is a `unix_name` (reference §8.1: only `a-z A-Z 0-9 _ - .`).
pub fn unix_name(name: &str) -> bool {
    (1..=UNIX_NAME_MAX).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// Control characters: C0 and DEL (the CRDs' CEL rules use the class `[\x00-\x1f\x7f]`).
fn is_control(c: char) -> bool {
    c < ' ' || c == '\u{7f}'
}

/// Whether a one-line field may not contain `c`.
pub fn is_forbidden_in_line(c: char) -> bool {
    is_control(c)
}

/// A field's violation, worded for a Watcher client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invalid {
    /// JSON pointer of the field (`/name`).
    pub pointer: &'static str,
    /// What is wrong and what is allowed.
    pub message: String,
}

fn invalid(pointer: &'static str, message: impl Into<String>) -> Invalid {
    Invalid {
        pointer,
        message: message.into(),
    }
}

/// A login: 1-256 bytes, no `:` (Basic credentials split at the first one, so such a login
/// could never log in), no control characters.
pub fn login(value: &str) -> Result<(), Invalid> {
    if value.is_empty() {
        return Err(invalid("/name", "`name` (the login) must not be empty"));
    }
    if value.len() > LOGIN_MAX {
        return Err(invalid(
            "/name",
            format!("`name` (the login) is at most {LOGIN_MAX} bytes long"),
        ));
    }
    if value.contains(':') {
        return Err(invalid(
            "/name",
            "`name` (the login) must not contain `:` (it could never log in)",
        ));
    }
    if value.chars().any(is_control) {
        return Err(invalid(
            "/name",
            "`name` (the login) must not contain control characters",
        ));
    }
    Ok(())
}

/// A one-line display field: at most `max` characters, no control characters.
pub fn line(pointer: &'static str, value: &str, max: usize) -> Result<(), Invalid> {
    let field = pointer.trim_start_matches('/');
    if value.chars().count() > max {
        return Err(invalid(
            pointer,
            format!("`{field}` is at most {max} characters long"),
        ));
    }
    if value.chars().any(is_forbidden_in_line) {
        return Err(invalid(
            pointer,
            format!("`{field}` must not contain control characters"),
        ));
    }
    Ok(())
}

/// A free-text field: at most `max` characters; line breaks and tabs allowed, other control
/// characters not.
pub fn text(pointer: &'static str, value: &str, max: usize) -> Result<(), Invalid> {
    let field = pointer.trim_start_matches('/');
    if value.chars().count() > max {
        return Err(invalid(
            pointer,
            format!("`{field}` is at most {max} characters long"),
        ));
    }
    if value
        .chars()
        .any(|c| is_control(c) && !matches!(c, '\n' | '\r' | '\t'))
    {
        return Err(invalid(
            pointer,
            format!(
                "`{field}` must not contain control characters other than line breaks and tabs"
            ),
        ));
    }
    Ok(())
}

/// Whether `name` is a valid Watcher stream name a node can hold: 1-256 bytes of
/// `A-Z a-z 0-9 . _ ~ - /`, `/` only between non-empty segments, and no segment `.` or `..`
/// (a node's HTTP API resolves those, so such a name would address other paths). The Stream
/// CRD's `spec.name` schema and CEL rule say the same.
pub fn stream_name(name: &str) -> bool {
    (1..=STREAM_NAME_MAX).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._~/-".contains(&b))
        && name.split('/').all(|s| !matches!(s, "" | "." | ".."))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logins() {
        assert!(login("admin").is_ok());
        assert!(login("Jürgen").is_ok());
        assert!(login("colon.user").is_ok());
        assert!(login("a:b").unwrap_err().message.contains("`:`"));
        assert!(login("a\u{7}b").is_err());
        assert!(login("a\nb").is_err());
        assert!(login("").is_err());
        assert!(login(&"x".repeat(257)).is_err());
        assert!(login(&"x".repeat(256)).is_ok());
    }

    #[test]
    fn lines_and_texts() {
        assert!(line("/fullname", "Ann Lee", LINE_MAX).is_ok());
        assert!(line("/fullname", "Ann\tLee", LINE_MAX).is_err());
        assert_eq!(
            line("/phone", &"1".repeat(70_000), PHONE_MAX)
                .unwrap_err()
                .message,
            "`phone` is at most 64 characters long"
        );
        assert!(text("/note", "two\nlines\ttab", TEXT_MAX).is_ok());
        assert!(text("/note", "bell\u{7}", TEXT_MAX).is_err());
        assert!(text("/note", &"ü".repeat(TEXT_MAX), TEXT_MAX).is_ok());
    }

    #[test]
    fn stream_names() {
        for ok in [
            "cam1",
            "mylive/bunny",
            "a.b",
            "..a",
            "a..",
            "a/.b/c",
            "~x_-",
        ] {
            assert!(stream_name(ok), "{ok}");
        }
        for bad in [
            "", ".", "..", "a/..", "../a", "a/./b", "/a", "a/", "a//b", "a b", "a%2F",
        ] {
            assert!(!stream_name(bad), "{bad}");
        }
        assert!(!stream_name(&"a".repeat(257)));
    }
}
