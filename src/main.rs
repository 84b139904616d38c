//! The `easel` binary: the one place that picks concrete implementations.

mod engine_args;
mod render_cmd;
mod service;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "easel", version, about = "Media asset service for artwork")]
struct Cli {
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
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Render(args) => render_cmd::render(args),
        Command::Bench(args) => render_cmd::bench(args),
        Command::Serve(args) => service::serve(args),
        Command::Worker(args) => service::worker(args),
        Command::Migrate(args) => service::migrate(args),
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
