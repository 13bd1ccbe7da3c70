use std::process::ExitCode;

use clap::{Parser, Subcommand};
use panoptes::run::run;
use panoptes::telemetry::{LogFormat, init_logging};

// See Cargo.toml for why not the system allocator. Counting is off unless
// PANOPTES_HEAP_COUNT is set (see panoptes::heap).
#[global_allocator]
static ALLOCATOR: panoptes::heap::Counting<mimalloc::MiMalloc> =
    panoptes::heap::Counting(mimalloc::MiMalloc);

/// Makes mimalloc hand freed pages back to the OS at once instead of a second later: the
/// operator's heap is long-lived objects among bursts (a watch relist, a bulk apply), and
/// with the delay a burst's pages were still resident when its memory was read (at 10,000
/// streams settled RSS 128 -> 121 MiB, idle 40 -> 31 MiB, the same CPU within noise).
fn purge_freed_pages_at_once() {
    // mimalloc's `mi_option_purge_delay` (15 in its v2 and v3 option enums; the crate binds
    // only older option names). Its defaults are 10 (v2) and 1000 (v3) ms: any other value
    // means the enum moved, and the option is left alone.
    const PURGE_DELAY: std::ffi::c_int = 15;
    unsafe extern "C" {
        fn mi_option_get(option: std::ffi::c_int) -> std::ffi::c_long;
        fn mi_option_set(option: std::ffi::c_int, value: std::ffi::c_long);
    }
    // SAFETY: both only read or write one of mimalloc's option slots.
    unsafe {
        if matches!(mi_option_get(PURGE_DELAY), 10 | 1000) {
            mi_option_set(PURGE_DELAY, 0);
        }
    }
}

/// Panoptes: run a Flussonic Watcher-style VMS from Kubernetes custom resources.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

// Parsed once at start-up: the size of the `run` variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Print every CustomResourceDefinition as YAML (what `crds/` holds).
    Crd {
        /// Write one file per kind into this directory instead of printing.
        #[arg(long)]
        out_dir: Option<std::path::PathBuf>,
    },
    /// Read a Watcher installation (a Watcher or another Panoptes, through its admin API) and
    /// write it as resources (`--out DIR`) or apply them (`--apply`). See README, "Adopting an
    /// existing Watcher".
    Import(panoptes::import::ImportArgs),
    /// Write the resources of a namespace (or of every namespace) as the kustomize tree an
    /// import writes, credentials under `secrets/`: for backups and moves between clusters.
    Export(panoptes::import::export::ExportArgs),
    /// Print the facade's OpenAPI document (JSON), as served at /watcher/admin-api/v3/openapi.json.
    Openapi,
    /// Run the controllers and the facade against the current kube context.
    Run(panoptes::run::RunArgs),
}

#[tokio::main]
async fn main() -> ExitCode {
    panoptes::heap::no_transparent_huge_pages();
    purge_freed_pages_at_once();
    if std::env::var_os("PANOPTES_HEAP_COUNT").is_some_and(|v| v == "1") {
        panoptes::heap::enable();
    }
    match Cli::parse().command {
        Command::Crd { out_dir } => {
            for (file, crd) in panoptes::resources::crds() {
                let yaml = panoptes::resources::crd_yaml(&crd);
                match &out_dir {
                    None => print!("{yaml}"),
                    Some(dir) => {
                        if let Err(error) = std::fs::write(dir.join(file), yaml) {
                            eprintln!("cannot write {}: {error}", dir.join(file).display());
                            return ExitCode::FAILURE;
                        }
                    }
                }
            }
            ExitCode::SUCCESS
        }
        Command::Import(args) => {
            init_logging(LogFormat::Text, "warn");
            panoptes::import::run(args).await
        }
        Command::Export(args) => {
            init_logging(LogFormat::Text, "warn");
            panoptes::import::export::run(args).await
        }
        Command::Openapi => {
            use std::io::Write as _;
            let doc = panoptes::api::openapi::build();
            let text = serde_json::to_string_pretty(&doc).expect("a JSON value always serializes");
            // A closed pipe (`| head`) is not worth a panic.
            match writeln!(std::io::stdout(), "{text}") {
                Ok(()) => ExitCode::SUCCESS,
                Err(_) => ExitCode::FAILURE,
            }
        }
        Command::Run(args) => {
            init_logging(args.log_format, "info,kube=warn");
            match run(args.config()).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    tracing::error!(%error, "panoptes stopped");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    /// clap's own consistency checks of every flag (duplicate names, env clashes, defaults
    /// that do not parse) fail here instead of at a user's start-up.
    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
