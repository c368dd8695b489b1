//! The `serverpulse-agent` binary: parse the command line and hand over to the library.

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = serverpulse_agent::cli::Cli::parse();
    match serverpulse_agent::cli::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("serverpulse-agent: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
