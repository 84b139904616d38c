//! The `easel` binary: the one place that picks concrete implementations.

mod admin;
mod config_file;
mod engine_args;
mod render_cmd;
mod rerender_cmd;
mod service;

use clap::{Parser, Subcommand};

/// Renders allocate and free buffers of tens of megabytes per image; glibc
/// hands those back to the kernel each time, and the page faults to get them
/// again cost a third of a decode here. mimalloc keeps them.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "easel", version, about = "Media asset service for artwork")]
struct Cli {
    /// TOML file of settings (keys are flag names, e.g. `listen`,
    /// `jpeg_quality`); flags and EASEL_* variables take precedence.
    #[arg(long, global = true, env = "EASEL_CONFIG")]
    config: Option<std::path::PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Render every style of one image into a folder (no service needed).
    Render(render_cmd::RenderArgs),
    /// Time the full style set per stage; `--json` for machines.
    Bench(render_cmd::BenchArgs),
    /// Run the HTTP API with an embedded worker.
    Serve(service::ServeArgs),
    /// Run render workers only (scale-out).
    Worker(service::WorkerArgs),
    /// Apply database migrations and exit.
    Migrate(service::MigrateArgs),
    /// Create, list and revoke API keys.
    Keys(admin::KeysArgs),
    /// Per-bucket settings (who may fetch style files without a key).
    Buckets(admin::BucketsArgs),
    /// Re-render stale images (or all) with a progress bar; resumable.
    Rerender(rerender_cmd::RerenderArgs),
}

fn main() -> std::process::ExitCode {
    if let Err(e) = apply_config_file() {
        eprintln!("easel: {e:#}");
        return std::process::ExitCode::FAILURE;
    }
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Render(args) => render_cmd::render(args),
        Command::Bench(args) => render_cmd::bench(args),
        Command::Serve(args) => service::serve(args),
        Command::Worker(args) => service::worker(args),
        Command::Migrate(args) => service::migrate(args),
        Command::Keys(args) => admin::keys(args),
        Command::Buckets(args) => admin::buckets(args),
        Command::Rerender(args) => rerender_cmd::rerender(args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // One line, cause chain included: scripts read it, people too.
            eprintln!("easel: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Loads the config file into the environment before clap reads it, while
/// the process still has one thread.
fn apply_config_file() -> anyhow::Result<()> {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let Some(path) = config_file::path_from(&args) else {
        return Ok(());
    };
    let known = config_file::known_variables(&<Cli as clap::CommandFactory>::command());
    for (name, value) in config_file::variables(&path, &known, |v| std::env::var_os(v).is_some())? {
        std::env::set_var(name, value);
    }
    Ok(())
}
