//! The `serverpulse` binary: parse the command line and hand over to the library.

use clap::Parser;

/// mimalloc instead of glibc's allocator: under load a third of the hub's CPU went to
/// glibc's malloc and free (chunk consolidation among them). Built to stand in for
/// `malloc` and `free` themselves (its `override` feature), so SQLite's allocations
/// (a statement's values, every column value sqlx copies out) take it too: the ingest
/// writer costs about a tenth less. See docs/benchmarks.md.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = serverpulse_hub::cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("serverpulse: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serverpulse_hub::cli::run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("serverpulse: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
