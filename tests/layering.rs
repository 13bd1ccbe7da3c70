//! Issue 15: the direction of dependencies, read from the source tree.
//!
//! - `src/domain` holds the rules both sides use, so it names neither `crate::api` nor
//!   `crate::controllers`;
//! - the facade (`src/api`) never reaches into the controllers, nor they into the facade: what
//!   both need lives in `src/domain` (or on the resource types);
//! - what the reconcilers and the facade share (`state::Shared`: stores, live stats, node
//!   clients, Secret cache, metrics) is built once, by `panoptes run` (`src/run.rs`), and
//!   handed to both: neither side builds a piece of it, and the facade gets nothing from the
//!   reconcilers' `Context`;
//! - a controller module does not borrow another controller module's helpers. The shared kit
//!   every reconciler may use is [`KIT`]; the reconcilers themselves are [`CONTROLLERS`], and
//!   a module of `src/controllers` that is in neither list fails the test until it is sorted
//!   into one (so a new module is a decision, not an accident).
//!
//! The check is textual (comments dropped, `use` groups expanded): cheap, and a path written
//! any other way (`self::super::`, a re-export) would be an obvious dodge in review.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

/// Modules of `src/controllers` that are shared plumbing, not reconcilers: any controller may
/// import them. `kit` (the error type, backoff, status writes, the id-bearing kinds'
/// reconcile skeleton), `refs` (the reference index), `context` (the shared
/// [`Context`]), `conditions` (condition merging), `metrics`, `fleet` (placements and node
/// contents), `ids` (the Lease-backed id allocator's controller side), `leader` (election),
/// `credentials` (facade-created credential Secrets) and `destinations` (push destinations'
/// Secret resolution).
const KIT: &[&str] = &[
    "kit",
    "refs",
    "context",
    "conditions",
    "metrics",
    "fleet",
    "ids",
    "leader",
    "credentials",
    "destinations",
];

/// The reconcilers (and the layouter loop): each owns its helpers; what two of them need is
/// moved to the kit, to `src/domain` or onto the resource type.
const CONTROLLERS: &[&str] = &[
    "layouter",
    "organization",
    "preset",
    "stream",
    "streamer",
    "user",
];

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out.sort();
    out
}

/// The source without comments (line comments, doc comments and block comments).
fn code(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap();
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_str();
    let mut in_string = false;
    while let Some(c) = rest.chars().next() {
        if !in_string && rest.starts_with("//") {
            rest = rest.find('\n').map_or("", |i| &rest[i..]);
            continue;
        }
        if !in_string && rest.starts_with("/*") {
            rest = rest.find("*/").map_or("", |i| &rest[i + 2..]);
            continue;
        }
        if rest.starts_with("\\\"") && in_string {
            out.push_str("\\\"");
            rest = &rest[2..];
            continue;
        }
        if c == '"' && !rest.starts_with("'\"'") {
            in_string = !in_string;
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// The first path segments named after `prefix` (`super::{a, b::c}` gives `a`, `b`).
fn heads(code: &str, prefix: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (at, _) in code.match_indices(prefix) {
        // `super::super::x` is seen from the inner `super::` too; only whole paths count.
        let before = &code[..at];
        if before.ends_with("::") || before.ends_with(|c: char| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let rest = &code[at + prefix.len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 1;
            let mut item = String::new();
            let mut items = Vec::new();
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 1 => items.push(std::mem::take(&mut item)),
                    _ if depth == 1 => item.push(c),
                    _ => {}
                }
                if depth == 0 {
                    items.push(item);
                    break;
                }
            }
            out.extend(items.iter().filter_map(|i| segment(i.trim())));
        } else {
            out.extend(segment(rest));
        }
    }
    out
}

fn segment(path: &str) -> Option<String> {
    let head: String = path
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect();
    (!head.is_empty() && head != "super" && head != "self").then_some(head)
}

fn rel(path: &Path) -> String {
    path.strip_prefix(env!("CARGO_MANIFEST_DIR"))
        .unwrap()
        .display()
        .to_string()
}

fn src(dir: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src").join(dir)
}

#[test]
fn facade_domain_and_controllers_point_one_way() {
    let mut wrong = Vec::new();
    for (dir, forbidden) in [
        ("api", &["crate::controllers", "controllers::"][..]),
        ("controllers", &["crate::api"][..]),
        // `panoptes import` reads the wire through the facade's conversions, never through
        // the controllers (it runs outside the operator).
        ("import", &["crate::controllers", "controllers::"][..]),
        (
            "domain",
            &["crate::api", "crate::controllers", "controllers::"][..],
        ),
    ] {
        for file in files(&src(dir)) {
            let code = code(&file);
            for name in forbidden {
                if code.contains(name) {
                    wrong.push(format!("{} names {name}", rel(&file)));
                }
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "layer direction broken:\n{}",
        wrong.join("\n")
    );
}

/// Issue 17, the composition root: the shared state is built by `state::Shared::start`, called
/// from `src/run.rs` alone, and the facade and the peer channel are handed pieces of that
/// bundle, never of the reconcilers' `Context` (`ctx`).
#[test]
fn the_shared_state_is_built_once_by_run_and_lent_by_no_side() {
    // Constructors of the bundle's pieces; `src/state` (where the bundle is) may use them.
    let builders = [
        "LiveStats::new(",
        "NodeClients::new(",
        "Secrets::new(",
        "Secrets::default(",
        "start_sharded(",
        "state::start(",
        "Shared::start(",
    ];
    let mut wrong = Vec::new();
    for file in files(&src("")) {
        let here = rel(&file);
        if here.starts_with("src/state/") {
            continue;
        }
        let code = code(&file);
        for b in builders {
            let allowed = b == "Shared::start(" && here == "src/run.rs";
            if code.contains(b) && !allowed {
                wrong.push(format!("{here} calls {b}"));
            }
        }
    }
    let run = code(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src/run.rs"));
    for lent in [
        "ctx.live",
        "ctx.nodes",
        "ctx.stores",
        "ctx.secrets",
        "ctx.metrics",
    ] {
        if run.contains(lent) {
            wrong.push(format!(
                "src/run.rs hands out {lent} (use the Shared bundle)"
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "the shared state is built by `state::Shared::start` in `run` only:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn controllers_share_only_the_kit() {
    let root = src("controllers");
    let mut found = BTreeSet::new();
    let mut unsorted = Vec::new();
    for file in files(&root) {
        let inner = file.parent() != Some(root.as_path());
        let module = if inner {
            file.parent()
                .unwrap()
                .file_name()
                .unwrap()
                .to_str()
                .unwrap()
        } else {
            file.file_stem().unwrap().to_str().unwrap()
        };
        if module == "mod" {
            continue;
        }
        if !KIT.contains(&module) && !CONTROLLERS.contains(&module) {
            unsorted.push(module.to_string());
        }
        let code = code(&file);
        // From `controllers/x.rs` and `controllers/x/mod.rs`, `super::` is `controllers`; from
        // `controllers/x/y.rs` it is `x` (its own module) and `super::super::` is `controllers`.
        let is_mod = file.file_name().is_some_and(|n| n == "mod.rs");
        let up = if inner && !is_mod {
            "super::super::"
        } else {
            "super::"
        };
        let used = heads(&code, up)
            .into_iter()
            .chain(heads(&code, "crate::controllers::"));
        for other in used {
            if other != module && CONTROLLERS.contains(&other.as_str()) {
                found.insert(format!("{} -> {other}", rel(&file)));
            }
        }
    }
    assert!(
        unsorted.is_empty(),
        "modules of src/controllers in neither KIT nor CONTROLLERS: {unsorted:?}"
    );
    assert!(
        found.is_empty(),
        "controllers importing another controller's helpers (move the helper into the kit, \
         src/domain or onto the resource type):\n{found:#?}"
    );
}

#[test]
fn the_checker_sees_grouped_and_nested_imports() {
    let code =
        "use super::{refs::{self, X}, preset::conflict_message};\nfn f() { super::user::g() }";
    let got: Vec<String> = heads(code, "super::").into_iter().collect();
    assert_eq!(got, ["preset", "refs", "user"]);
    let inner = "use super::super::layouter::watcher_name; use super::Local;";
    assert_eq!(
        heads(inner, "super::super::")
            .into_iter()
            .collect::<Vec<_>>(),
        ["layouter"]
    );
    assert_eq!(
        heads(inner, "super::").into_iter().collect::<Vec<_>>(),
        ["Local"]
    );
}
