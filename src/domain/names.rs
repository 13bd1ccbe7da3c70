//! Kubernetes object names for Watcher names (stream names with `/`, hostnames, logins):
//! the one mapping the facade's creates and `panoptes import` both use, so an object
//! created either way is found again by its Watcher name and two Watcher names never share
//! an object.

/// A Kubernetes object name for a Watcher name, injective: a Watcher name that is already a
/// valid object name (a DNS-1123 subdomain with no `--`) maps to itself (after `prefix`);
/// every other name maps to a readable base, `--` and a digest of the exact name. No name of
/// the first kind contains `--`, so the two kinds never meet (`-leading-dash` and
/// `leading-dash` get different objects), and the facade never sends the API server a name it
/// would refuse in its own words.
pub fn object_name(prefix: &str, watcher: &str) -> String {
    let exact = format!("{prefix}{watcher}");
    if is_dns_subdomain(&exact) && !exact.contains("--") {
        return exact;
    }
    hashed_object_name(prefix, watcher)
}

/// The object name for a new object holding `watcher`, whose name no existing object
/// holds: [`object_name`] unless `taken` says another object has it (a GitOps object
/// `central-cam-01` holding stream `traffic/central-cam-01`), then the readable base plus
/// a digest, which no plain name can equal. Objects are found again by their Watcher name
/// (`spec.name`, `spec.hostname`, …), never by recomputing this.
pub fn free_object_name(prefix: &str, watcher: &str, taken: impl Fn(&str) -> bool) -> String {
    let plain = object_name(prefix, watcher);
    if taken(&plain) {
        hashed_object_name(prefix, watcher)
    } else {
        plain
    }
}

/// A readable base, `--` and a digest of the exact name (always a valid object name).
fn hashed_object_name(prefix: &str, watcher: &str) -> String {
    let mut base = String::with_capacity(watcher.len().min(180));
    for c in watcher.chars() {
        let c = match c {
            'a'..='z' | '0'..='9' => c,
            'A'..='Z' => c.to_ascii_lowercase(),
            _ => '-',
        };
        if !(c == '-' && base.ends_with('-')) {
            base.push(c);
        }
        if base.len() >= 180 {
            break;
        }
    }
    let head = format!("{prefix}{base}");
    let head = head.trim_matches('-');
    let head = if head.is_empty() { "n" } else { head };
    format!("{head}--{}", digest(watcher))
}

/// Whether `name` is a DNS-1123 subdomain (what Kubernetes accepts as an object name).
pub fn is_dns_subdomain(name: &str) -> bool {
    (1..=253).contains(&name.len())
        && name.split('.').all(|label| {
            let b = label.as_bytes();
            (1..=63).contains(&b.len())
                && b.iter()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
                && b[0] != b'-'
                && b[b.len() - 1] != b'-'
        })
}

/// 48 bits of SHA-1 of the exact name, in hex. Not a security boundary: a save whose object
/// holds another Watcher name is refused anyway.
fn digest(s: &str) -> String {
    use sha1::Digest;
    let d = sha1::Sha1::digest(s.as_bytes());
    hex::encode(&d[..6])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_names_are_dns_and_distinct() {
        assert_eq!(object_name("", "cam1"), "cam1");
        assert_eq!(object_name("user-", "admin"), "user-admin");
        let a = object_name("", "Cam/1");
        let b = object_name("", "cam-1");
        assert_ne!(a, b);
        assert!(a.starts_with("cam-1--"));
        assert!(is_dns_subdomain(&object_name("", "/")));
        assert!(object_name("", &"x".repeat(300)).len() < 200);
        assert_ne!(object_name("", "-leading-dash"), "leading-dash");
        for odd in [
            "a..b",
            "x.-y",
            "-leading-dash",
            "a--b",
            ".",
            "..",
            "ü",
            "A",
            "user-",
        ] {
            assert!(is_dns_subdomain(&object_name("", odd)), "{odd}");
            assert!(is_dns_subdomain(&object_name("user-", odd)), "{odd}");
        }
        assert!(is_dns_subdomain(&object_name("user-", "")));
    }

    proptest::proptest! {
        /// Distinct Watcher names never share an object, and every object name is valid.
        #[test]
        fn object_names_are_injective(a in "[-a-zA-Z0-9._~/:]{0,12}", b in "[-a-z0-9.]{0,12}") {
            for prefix in ["", "user-"] {
                let (x, y) = (object_name(prefix, &a), object_name(prefix, &b));
                proptest::prop_assert!(is_dns_subdomain(&x));
                proptest::prop_assert_eq!(a == b, x == y, "{} {} -> {} {}", a, b, x, y);
            }
        }
    }

    proptest::proptest! {
        /// A name taken by another Watcher name's object yields a new object name that no
        /// plain name can take and that differs for every Watcher name.
        #[test]
        fn free_object_names_never_collide(
            a in "[-a-zA-Z0-9._~/:]{1,16}",
            b in "[-a-zA-Z0-9._~/:]{1,16}",
            held in "[a-z0-9]([-a-z0-9]{0,10}[a-z0-9])?",
        ) {
            // `held` is an object that GitOps created for some other Watcher name.
            let taken = |o: &str| o == held;
            let (x, y) = (free_object_name("", &a, taken), free_object_name("", &b, taken));
            proptest::prop_assert!(is_dns_subdomain(&x));
            proptest::prop_assert!(x != held);
            proptest::prop_assert_eq!(a == b, x == y, "{} {} -> {} {}", a, b, x, y);
            // Neither meets the plain name of any other Watcher name.
            if a != b {
                proptest::prop_assert!(x != object_name("", &b));
            }
        }
    }

    #[test]
    fn a_taken_plain_name_gets_a_hashed_object() {
        let taken = |o: &str| o == "central-cam-01";
        let x = free_object_name("", "central-cam-01", taken);
        assert!(x.starts_with("central-cam-01--"), "{x}");
        assert_eq!(free_object_name("", "cam-2", taken), "cam-2");
    }
}
