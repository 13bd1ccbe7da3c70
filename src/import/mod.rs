//! `panoptes import`: turns a running Watcher installation (a real Watcher, or another
//! Panoptes facade: both speak the admin API) into resources, as a reviewed kustomize tree
//! (`--out`) or applied to the cluster (`--apply`).
//!
//! Read ([`source`]) → plan ([`plan`], pure: names, ids, Secrets, findings) → write
//! ([`output`]) or apply ([`apply`]). The source is read completely before anything is
//! written, so an unreachable page leaves nothing half-done; credentials only ever go to
//! `secrets/`; imported Users cannot log in until they get a password
//! ([`crate::domain::accounts::PASSWORD_RESET_ANNOTATION`]).
//!
//! `panoptes export` ([`export`]) is the same writer over the local cluster state.
//!
//! The import speaks to the facade's wire types and the domain rules; it never imports the
//! controllers (see tests/layering.rs).

pub mod apply;
pub mod export;
pub mod output;
pub mod plan;
pub mod settings;
pub mod source;

use std::path::PathBuf;
use std::process::ExitCode;

use plan::{Options, Plan, Severity};

/// Environment variable holding the source password (never a command-line flag: those are
/// visible to every user of the machine).
pub const PASSWORD_ENV: &str = "PANOPTES_IMPORT_PASSWORD";

/// `panoptes import` flags.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct ImportArgs {
    /// Watcher admin API to read: a server URL, or its `/watcher/admin-api/v3` URL.
    #[arg(long)]
    pub from: String,
    /// Admin login on the source.
    #[arg(long)]
    pub login: String,
    /// File holding the source password (else the environment variable
    /// PANOPTES_IMPORT_PASSWORD).
    #[arg(long)]
    pub password_file: Option<PathBuf>,
    /// Write a kustomize-ready tree here (credentials under `secrets/`, git-ignored).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Server-side apply to the current kube context (pre-flight and dry run first; nothing
    /// is applied unless every object passes).
    #[arg(long)]
    pub apply: bool,
    /// Namespace of the imported objects (the kustomization's `namespace`, and where
    /// `--apply` writes; default "default" there).
    #[arg(long)]
    pub namespace: Option<String>,
    /// Import only this organization (id or title): its streams, members and presets.
    #[arg(long)]
    pub organization: Option<String>,
    /// Read and plan only: print counts per kind and the findings, write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Write Secret templates with empty values instead of the source's credentials (and
    /// leave them out of `--apply`).
    #[arg(long)]
    pub no_secrets: bool,
}

/// What an import did.
#[derive(Debug)]
pub struct Outcome {
    /// The plan (objects and findings).
    pub plan: Plan,
    /// Why `--apply` applied nothing (or stopped), if it did.
    pub refused: Option<apply::Refused>,
    /// Whether `--apply` applied every object.
    pub applied: bool,
}

impl Outcome {
    /// Exit status: failure on errors (findings, refusals), success with warnings.
    pub fn failed(&self) -> bool {
        self.plan.has_errors() || self.refused.is_some()
    }
}

/// The source password: `--password-file` (first line), else the environment.
pub fn password(args: &ImportArgs) -> Result<String, String> {
    match &args.password_file {
        Some(f) => std::fs::read_to_string(f)
            .map(|t| t.lines().next().unwrap_or_default().to_string())
            .map_err(|e| format!("reading {}: {e}", f.display())),
        None => std::env::var(PASSWORD_ENV)
            .map_err(|_| format!("no password: use --password-file or set {PASSWORD_ENV}")),
    }
}

/// Runs an import with `password`; `client` is the target cluster for `--apply`.
pub async fn execute(
    args: &ImportArgs,
    password: &str,
    client: Option<kube::Client>,
) -> Result<Outcome, String> {
    if args.out.is_none() && !args.apply && !args.dry_run {
        return Err("say what to do: --out DIR, --apply or --dry-run".into());
    }
    let mut source = source::Source::login(&args.from, &args.login, password).await?;
    let snapshot = source.snapshot().await?;
    let plan = plan::plan(
        &snapshot,
        &Options {
            organization: args.organization.clone(),
        },
    );
    let mut outcome = Outcome {
        plan,
        refused: None,
        applied: false,
    };
    if args.dry_run {
        return Ok(outcome);
    }
    if let Some(dir) = &args.out {
        output::write_tree(
            dir,
            &outcome.plan,
            args.namespace.as_deref(),
            !args.no_secrets,
        )
        .map_err(|e| format!("writing {}: {e}", dir.display()))?;
    }
    if args.apply && !outcome.plan.settings.is_empty() {
        outcome.plan.findings.push(plan::Finding {
            severity: Severity::Warning,
            object: "domain settings".into(),
            path: None,
            message: "not applied with --apply (they belong to the system namespace): write them with --out and apply settings/ and secrets/settings/ there".into(),
        });
    }
    if args.apply {
        if outcome.plan.has_errors() {
            return Ok(outcome);
        }
        let client = match client {
            Some(c) => c,
            None => kube::Client::try_default()
                .await
                .map_err(|e| format!("connecting to the cluster: {e}"))?,
        };
        let ns = args.namespace.as_deref().unwrap_or("default");
        outcome.refused = apply::apply(&client, ns, &outcome.plan, !args.no_secrets)
            .await
            .err();
        outcome.applied = outcome.refused.is_none();
    }
    Ok(outcome)
}

/// The summary printed at the end: counts per kind, findings, users to reset.
pub fn summary(args: &ImportArgs, outcome: &Outcome) -> String {
    use std::fmt::Write as _;
    let plan = &outcome.plan;
    let mut s = String::new();
    let counts = plan.counts();
    let _ = writeln!(s, "import summary ({}):", args.from);
    for kind in plan::Kind::ALL {
        let _ = writeln!(
            s,
            "  {:<13} {}",
            kind.as_str(),
            counts.get(&kind).copied().unwrap_or(0)
        );
    }
    let warnings = plan
        .findings
        .iter()
        .filter(|f| f.severity == Severity::Warning)
        .count();
    let errors = plan.findings.len() - warnings;
    if !plan.settings.is_empty() {
        let _ = writeln!(s, "  {:<13} 1", "settings");
    }
    let _ = writeln!(s, "  warnings      {warnings}\n  errors        {errors}");
    for f in &plan.findings {
        let _ = writeln!(s, "  {f}");
    }
    if !plan.reset_users.is_empty() {
        let _ = writeln!(
            s,
            "users that must get a new password before logging in (a Watcher does not export passwords): {}",
            plan.reset_users.join(", ")
        );
    }
    match &outcome.refused {
        None if outcome.applied => {
            let _ = writeln!(s, "applied with field manager panoptes-import");
        }
        None if args.apply && !args.dry_run => {
            let _ = writeln!(s, "nothing applied: fix the errors above first");
        }
        None => {}
        Some(apply::Refused::Collisions(c)) => {
            let _ = writeln!(s, "nothing applied: the target already holds these:");
            for c in c {
                let _ = writeln!(s, "  {c}");
            }
        }
        Some(apply::Refused::DryRun(f)) => {
            let _ = writeln!(s, "nothing applied: the dry run refused:");
            for f in f {
                let _ = writeln!(s, "  {f}");
            }
        }
        Some(apply::Refused::Apply(f)) => {
            let _ = writeln!(
                s,
                "apply stopped (kinds before the failing one are applied; run again once fixed):"
            );
            for f in f {
                let _ = writeln!(s, "  {f}");
            }
        }
        Some(apply::Refused::Target(e)) => {
            let _ = writeln!(s, "nothing applied: {e}");
        }
    }
    s
}

/// `panoptes import`.
pub async fn run(args: ImportArgs) -> ExitCode {
    let password = match password(&args) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("import: {e}");
            return ExitCode::from(2);
        }
    };
    match execute(&args, &password, None).await {
        Ok(outcome) => {
            print!("{}", summary(&args, &outcome));
            if outcome.failed() {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("import: {e}");
            ExitCode::from(2)
        }
    }
}
