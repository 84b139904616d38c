//! The `easel` binary: the one place that picks concrete implementations.

mod admin;
mod config_file;
mod engine_args;
mod gc_cmd;
mod progress;
mod render_cmd;
mod rerender_cmd;
mod service;

use clap::{Parser, Subcommand};

/// Renders allocate and free buffers of tens of megabytes per image; glibc
/// hands those back to the kernel each time, and the page faults to get them
/// again cost a third of a decode here. mimalloc keeps them.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `mi_option_purge_delay` (its index in `mimalloc.h`; the
/// bindings name no constant for it).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// How long freed memory stays mapped before mimalloc gives it back.
/// mimalloc gives back, every purge delay (1 s by default), all that is
/// free at that moment; between a service's renders that is most of a
/// render's buffers, and each 4 KiB page then faults back in zeroed. At
/// 10 s an upload of the 12 MP photo took ~1,900 page faults instead of
/// ~5,000-6,000 and ~4% less CPU (`benches/serve.sh`); the memory still
/// goes back within seconds once the process is idle.
const SERVICE_PURGE_DELAY_MS: std::ffi::c_long = 10_000;

/// For the long-running commands that render in loops. A default only:
/// `MIMALLOC_PURGE_DELAY` in the environment still wins. `easel bench` keeps
/// mimalloc's defaults, since it is the yardstick the service is measured
/// against.
fn keep_freed_memory_between_renders() {
    // SAFETY: sets one integer option; called while the process has one
    // thread (mimalloc's option setters are not thread-safe).
    unsafe {
        libmimalloc_sys::mi_option_set_default(MI_OPTION_PURGE_DELAY, SERVICE_PURGE_DELAY_MS)
    };
}

/// A render's buffers are tens of megabytes, freed and taken again per
/// image. With transparent huge pages the kernel zeroes and counts them
/// 2 MiB at a time, touched or not: on a 6000x6000 JPEG the worker's peak
/// RSS was 20-26 MiB higher (225 MiB against 199-205, 238 is the limit)
/// and its render ~0.3 s slower (`benches/worker-rss.sh`). Only this
/// process is affected, not the system's setting. Not for a one-shot
/// `render` or `bench`: there the huge pages are the cheaper way to fault
/// in buffers used once (19,000 page faults instead of 3,150 for the 12 MP
/// photo, about a tenth of the render's CPU; `benches/compare.sh`). Nor
/// for `serve`, whose renders follow each other: since freed memory stays
/// 10 s, they reuse the huge pages instead of zeroing new ones: an upload
/// of the 12 MP photo took 24-87 page faults instead of ~900-1,500 and
/// 3-12% less CPU (alternated batches of 48; ~9% more when the delay was
/// 1 s), for 20-90 MiB more peak RSS.
fn no_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: prctl with plain integer arguments changes only a flag of
        // this process; a kernel without it returns an error, ignored.
        unsafe {
            libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
        }
    }
}

#[derive(Parser)]
#[command(name = "easel", version, about = "Media asset service for artwork")]
struct Cli {
    /// TOML file of settings (keys are flags' long names, e.g. `listen`,
    /// `quality`, `max_bytes`); flags and EASEL_* variables take precedence.
    #[arg(long, global = true, env = "EASEL_CONFIG")]
    config: Option<std::path::PathBuf>,
    #[command(subcommand)]
    command: Command,
}

/// Whether a command runs with the system's transparent huge pages (see
/// [`no_transparent_huge_pages`] for why the others turn them off).
fn keeps_transparent_huge_pages(command: &Command) -> bool {
    matches!(
        command,
        Command::Render(_) | Command::Bench(_) | Command::Serve(_)
    )
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
    /// Delete stored objects no row refers to (safe beside running servers).
    Gc(gc_cmd::GcArgs),
}

fn main() -> std::process::ExitCode {
    if let Err(e) = apply_config_file() {
        eprintln!("easel: {e:#}");
        return std::process::ExitCode::FAILURE;
    }
    let cli = Cli::parse();
    if matches!(cli.command, Command::Render(_) | Command::Bench(_)) {
        quiet_panics();
    }
    if !keeps_transparent_huge_pages(&cli.command) {
        no_transparent_huge_pages();
    }
    if matches!(
        cli.command,
        Command::Serve(_) | Command::Worker(_) | Command::Rerender(_)
    ) {
        keep_freed_memory_between_renders();
    }
    let result = match cli.command {
        Command::Render(args) => caught(|| render_cmd::render(args)),
        Command::Bench(args) => caught(|| render_cmd::bench(args)),
        Command::Serve(args) => service::serve(args),
        Command::Worker(args) => service::worker(args),
        Command::Migrate(args) => service::migrate(args),
        Command::Keys(args) => admin::keys(args),
        Command::Buckets(args) => admin::buckets(args),
        Command::Rerender(args) => rerender_cmd::rerender(args),
        Command::Gc(args) => gc_cmd::gc(args),
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

/// The engine turns a panic on some input into an `internal` error that
/// names the input's sha256; Rust's default report of the panic (a message
/// and a backtrace note on stderr) would break the one-line reason.
fn quiet_panics() {
    std::panic::set_hook(Box::new(|_| {}));
}

/// A panic outside the engine still ends as one line, not a silent exit.
fn caught(command: impl FnOnce() -> anyhow::Result<()>) -> anyhow::Result<()> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(command)).unwrap_or_else(|payload| {
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        Err(anyhow::anyhow!("internal error: {message}"))
    })
}

/// Loads the config file into the environment before clap reads it, while
/// the process still has one thread.
fn apply_config_file() -> anyhow::Result<()> {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let Some(path) = config_file::path_from(&args) else {
        return Ok(());
    };
    let known = config_file::known_keys(&<Cli as clap::CommandFactory>::command())
        .map_err(anyhow::Error::msg)?;
    for (name, value) in config_file::variables(&path, &known, |v| std::env::var_os(v).is_some())? {
        std::env::set_var(name, value);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use clap::{CommandFactory, Parser};

    use super::Cli;

    #[test]
    fn the_purge_delay_index_is_mimallocs_and_the_services_default_takes() {
        // SAFETY: reads and sets one integer option; the worst a wrong
        // index does is change another option of this test process.
        let get = || unsafe { libmimalloc_sys::mi_option_get(super::MI_OPTION_PURGE_DELAY) };
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
            return; // the environment wins, by design
        }
        // mimalloc v3's default for purge_delay; another option, or v2
        // (10 ms), has another value.
        assert_eq!(get(), 1000);
        super::keep_freed_memory_between_renders();
        assert_eq!(get(), super::SERVICE_PURGE_DELAY_MS);
    }

    #[test]
    fn serve_render_and_bench_keep_huge_pages_and_the_worker_commands_turn_them_off() {
        let keeps = |args: &[&str]| {
            let cli = Cli::try_parse_from(args).unwrap();
            super::keeps_transparent_huge_pages(&cli.command)
        };
        assert!(keeps(&["easel", "serve"]));
        assert!(keeps(&["easel", "bench"]));
        assert!(keeps(&["easel", "render", "in.jpg", "--out", "out"]));
        assert!(!keeps(&["easel", "worker"]));
        assert!(!keeps(&["easel", "rerender", "--all"]));
        assert!(!keeps(&["easel", "migrate"]));
    }

    /// The README's configuration table: flag -> (variable, default cell).
    fn readme_settings() -> BTreeMap<String, (String, String)> {
        let readme = include_str!("../README.md");
        readme
            .lines()
            .filter(|line| line.starts_with("| `--"))
            .map(|line| {
                let cells: Vec<&str> = line.split(" | ").collect();
                let unquote = |cell: &str| {
                    cell.trim_matches(|c| c == '|' || c == ' ' || c == '`')
                        .to_string()
                };
                (
                    unquote(cells[0]).trim_start_matches("--").to_string(),
                    (unquote(cells[1]), cells[2].trim().to_string()),
                )
            })
            .collect()
    }

    /// Every argument that an `EASEL_*` variable can set: (long, variable, default).
    fn cli_settings() -> BTreeMap<String, (String, Option<String>)> {
        let command = Cli::command();
        let mut out = BTreeMap::new();
        let mut stack = vec![&command];
        while let Some(cmd) = stack.pop() {
            for arg in cmd.get_arguments() {
                let (Some(env), Some(long)) = (arg.get_env(), arg.get_long()) else {
                    continue;
                };
                if env == "EASEL_CONFIG" {
                    continue;
                }
                let default = arg
                    .get_default_values()
                    .first()
                    .map(|v| v.to_string_lossy().into_owned());
                out.insert(
                    long.to_string(),
                    (env.to_string_lossy().into_owned(), default),
                );
            }
            stack.extend(cmd.get_subcommands());
        }
        out
    }

    /// clap checks its definition only in debug builds, when a command is
    /// first parsed: `easel render` panicked there (two argument groups
    /// named `EngineArgs`) while the release build ran.
    #[test]
    fn the_cli_definition_is_valid() {
        Cli::command().debug_assert();
    }

    #[test]
    fn config_keys_are_unambiguous() {
        let keys =
            crate::config_file::known_keys(&Cli::command()).expect("no flag reads two variables");
        assert_eq!(keys.variable("quality"), Some("EASEL_JPEG_QUALITY"));
        assert_eq!(keys.variable("jpeg_quality"), Some("EASEL_JPEG_QUALITY"));
        assert_eq!(keys.variable("max_bytes"), Some("EASEL_MAX_BYTES"));
    }

    #[test]
    fn the_readme_table_lists_every_setting_with_its_variable_and_default() {
        let readme = readme_settings();
        let cli = cli_settings();
        for (long, (env, default)) in &cli {
            let Some((documented_env, documented_default)) = readme.get(long) else {
                panic!("README's configuration table has no row for --{long} ({env})");
            };
            assert_eq!(
                documented_env, env,
                "README gives --{long} another variable"
            );
            if let Some(default) = default {
                let documented = match documented_default.split('`').nth(1) {
                    Some(value) => value.to_string(),
                    None => documented_default.clone(),
                };
                let expected = match default.as_str() {
                    "" => "empty",
                    "false" => "off",
                    other => other,
                };
                assert!(
                    documented == expected || documented_default.starts_with(expected),
                    "README says --{long} defaults to {documented_default:?}, the CLI to {default:?}"
                );
            }
        }
        for long in readme.keys() {
            assert!(
                cli.contains_key(long),
                "README documents --{long}, which no command has"
            );
        }
    }
}
