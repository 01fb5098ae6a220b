//! The `berth` binary: parses the command line and runs the chosen command.

use std::process::ExitCode;

use berth::{cli, ext::scrub, migrate, policy::gc, serve};

fn main() -> ExitCode {
    let result = match cli::parse_args() {
        cli::Command::Serve { config } => {
            serve::serve(config.as_deref()).map(|()| ExitCode::SUCCESS)
        }
        cli::Command::Verify { config } => Ok(cli::verify(&config)),
        cli::Command::Fsck { config } => serve::fsck(&config),
        cli::Command::Scrub { config } => scrub::run_offline(&config),
        cli::Command::Gc { config, dry_run } => gc::run_offline(&config, dry_run),
        cli::Command::Migrate {
            source,
            destination,
        } => migrate::run(&source, &destination),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("berth: {error:#}");
            ExitCode::from(2)
        }
    }
}
