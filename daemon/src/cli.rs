//! The `berth` command line: `serve [CONFIG]`, `verify CONFIG`, `fsck CONFIG`, `scrub CONFIG`,
//! `gc CONFIG [--dry-run]`, `migrate SRC_CONFIG DST_CONFIG`, `--version`.
//!
//! Owns argument parsing (clap derive) and the `verify` subcommand, which is config-only.
//! `migrate` (migrate/) copies every repository, manifest, tag and blob of one store into
//! another (files + RocksDB into S3 + PostgreSQL, or any backend into any other), with stars,
//! bookmarks, API keys and the trust store; it is resumable and checks every tag at the end.
//! Exit codes (shared by every subcommand): 0 = fine, 1 = problems found (fsck, scrub, gc,
//! migrate), 2 = usage or config error. clap's own usage errors also exit with 2.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Exit code for a usage or config error.
pub const EXIT_CONFIG_ERROR: u8 = 2;

/// berth: an OCI container registry daemon that reads zot's config.json.
#[derive(Parser, Debug)]
#[command(name = "berth", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: CliCommand,
}

#[derive(Subcommand, Debug)]
enum CliCommand {
    /// Run the registry.
    ///
    /// Without CONFIG, berth uses its built-in default: 127.0.0.1:5000, data under
    /// ./berth-data. Once every listener is bound it prints one line to stdout:
    /// `berth listening on http://<ip>:<port>`.
    Serve {
        /// zot-style config file (.json, or .yaml/.yml).
        config: Option<PathBuf>,
    },
    /// Check a config file and exit.
    ///
    /// Prints every warning, then "config OK" (exit 0); or every problem, each with its key
    /// path (exit 2). Nothing is started and no file is written.
    Verify {
        /// zot-style config file (.json, or .yaml/.yml).
        config: PathBuf,
    },
    /// Check the storage under the config's rootDirectory for consistency.
    ///
    /// Verifies that the index and the blob files agree and prints one line per problem.
    /// Exit 0 when clean, 1 when problems were found, 2 on a config or usage error.
    /// Run it while the daemon is stopped.
    Fsck {
        /// zot-style config file (.json, or .yaml/.yml).
        config: PathBuf,
    },
    /// Re-hash every stored blob and manifest and report each image, as zot's scrub does.
    ///
    /// Prints REPOSITORY / TAG / STATUS / AFFECTED BLOB / ERROR for every tagged image (a
    /// progress bar on a terminal). Exit 0 when everything verified, 1 when anything is
    /// affected, 2 on a config or usage error. Run it while the daemon is stopped.
    Scrub {
        /// zot-style config file (.json, or .yaml/.yml).
        config: PathBuf,
    },
    /// Collect garbage once, with the config's GC and retention settings.
    ///
    /// One full pass: tags retention policies drop, untagged manifests, blobs no manifest
    /// references, orphan files, empty repositories, idle upload sessions. Prints one row per
    /// deletion (KIND / REPOSITORY / WHAT / REASON / BYTES) and a summary line. Exit 0 when
    /// the pass ran, 1 when it had to leave something alone, 2 on a config error or when the
    /// daemon holds the storage. Run it while the daemon is stopped.
    Gc {
        /// zot-style config file (.json, or .yaml/.yml).
        config: PathBuf,
        /// Change nothing; print what would be deleted.
        #[arg(long)]
        dry_run: bool,
    },
    /// Copy a store into another one: every repository, manifest, tag and blob.
    ///
    /// Reads the storage of SRC_CONFIG (opened read-only) and writes into the storage of
    /// DST_CONFIG, which may be any backend: typically a single node's rootDirectory (files +
    /// RocksDB) into blobs in S3 (`storage.storageDriver`) and the index in PostgreSQL
    /// (`storage.index.postgres`). Copies every manifest by digest (untagged ones, indexes
    /// and their children, referrers and signatures), every blob linked in a repository (each
    /// digest verified on the way in), every tag, and users' stars and bookmarks, API keys
    /// (they keep working) and the trust store (with its signature verdicts when the stores
    /// end up equal). Not copied: pull statistics, scrub results, user groups, login and
    /// upload sessions; search data is rebuilt by the destination.
    ///
    /// Order per repository: blobs, manifests (children before an index, subject before its
    /// referrers), tags last. Resumable: run it again after an interruption and it skips what
    /// the destination holds. At the end every tag of every repository must name the same
    /// digest in both stores. Prints a progress bar on a terminal, else one line per
    /// repository, and a summary. Exit 0 when everything checked out, 1 when anything is
    /// missing or differs, 2 on a config error or when both configs name the same storage.
    /// Stop the daemons of both stores first.
    Migrate {
        /// zot-style config of the store to copy from (.json, or .yaml/.yml).
        #[arg(value_name = "SRC_CONFIG")]
        source: PathBuf,
        /// zot-style config of the store to copy into.
        #[arg(value_name = "DST_CONFIG")]
        destination: PathBuf,
    },
}

/// What the command line asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    Serve {
        config: Option<PathBuf>,
    },
    Verify {
        config: PathBuf,
    },
    Fsck {
        config: PathBuf,
    },
    Scrub {
        config: PathBuf,
    },
    Gc {
        config: PathBuf,
        dry_run: bool,
    },
    Migrate {
        source: PathBuf,
        destination: PathBuf,
    },
}

impl From<CliCommand> for Command {
    fn from(command: CliCommand) -> Command {
        match command {
            CliCommand::Serve { config } => Command::Serve { config },
            CliCommand::Verify { config } => Command::Verify { config },
            CliCommand::Fsck { config } => Command::Fsck { config },
            CliCommand::Scrub { config } => Command::Scrub { config },
            CliCommand::Gc { config, dry_run } => Command::Gc { config, dry_run },
            CliCommand::Migrate {
                source,
                destination,
            } => Command::Migrate {
                source,
                destination,
            },
        }
    }
}

/// Parses `std::env::args`. On `--help`/`--version` prints and exits 0; on a usage error prints
/// it and exits 2.
pub fn parse_args() -> Command {
    Cli::parse().command.into()
}

/// Parses an explicit argument list (the first item is the program name).
pub fn try_parse_from<I, T>(args: I) -> Result<Command, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    Cli::try_parse_from(args).map(|cli| cli.command.into())
}

/// `berth verify CONFIG`: loads and validates the config, prints warnings and "config OK"
/// (exit 0) to stdout, or every error to stderr (exit 2).
pub fn verify(path: &Path) -> ExitCode {
    let mut stdout = std::io::stdout().lock();
    let mut stderr = std::io::stderr().lock();
    let code = verify_to(path, &mut stdout, &mut stderr);
    ExitCode::from(code)
}

/// [`verify`] with its outputs given, returning the exit code as a number (for tests).
pub fn verify_to(path: &Path, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    // Output is best effort: a closed pipe must not turn a valid config into a failure.
    match crate::config::load(Some(path)) {
        Ok((_config, warnings)) => {
            for warning in &warnings {
                let _ = writeln!(out, "warning: {warning}");
            }
            let _ = writeln!(out, "config OK");
            0
        }
        Err(errors) => {
            for error in &errors.0 {
                let _ = writeln!(err, "error: {error}");
            }
            let count = errors.0.len();
            let noun = if count == 1 { "problem" } else { "problems" };
            let _ = writeln!(err, "config invalid: {count} {noun} in {}", path.display());
            EXIT_CONFIG_ERROR
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn parses_each_subcommand() {
        let table: &[(&[&str], Command)] = &[
            (&["berth", "serve"], Command::Serve { config: None }),
            (
                &["berth", "serve", "c.json"],
                Command::Serve {
                    config: Some(PathBuf::from("c.json")),
                },
            ),
            (
                &["berth", "verify", "c.json"],
                Command::Verify {
                    config: PathBuf::from("c.json"),
                },
            ),
            (
                &["berth", "fsck", "c.yaml"],
                Command::Fsck {
                    config: PathBuf::from("c.yaml"),
                },
            ),
            (
                &["berth", "migrate", "a.json", "b.yaml"],
                Command::Migrate {
                    source: PathBuf::from("a.json"),
                    destination: PathBuf::from("b.yaml"),
                },
            ),
        ];
        for (args, expected) in table {
            assert_eq!(&try_parse_from(*args).unwrap(), expected, "{args:?}");
        }
    }

    #[test]
    fn rejects_bad_usage() {
        for args in [
            &["berth"][..],
            &["berth", "verify"],
            &["berth", "fsck"],
            &["berth", "migrate", "a.json"],
            &["berth", "serve", "a", "b"],
            &["berth", "frobnicate"],
        ] {
            let error = try_parse_from(args).unwrap_err();
            assert_eq!(error.exit_code(), 2, "{args:?}");
        }
    }

    #[test]
    fn version_and_help_are_served() {
        for args in [
            &["berth", "--version"][..],
            &["berth", "serve", "--help"],
            &["berth", "verify", "--help"],
            &["berth", "fsck", "--help"],
            &["berth", "migrate", "--help"],
        ] {
            let error = try_parse_from(args).unwrap_err();
            assert_eq!(error.exit_code(), 0, "{args:?}");
        }
    }

    fn run_verify(text: &str, extension: &str) -> (u8, String, String) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(format!("config.{extension}"));
        std::fs::write(&path, text).unwrap();
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = verify_to(&path, &mut out, &mut err);
        (
            code,
            String::from_utf8(out).unwrap(),
            String::from_utf8(err).unwrap(),
        )
    }

    #[test]
    fn verify_accepts_a_valid_config() {
        let text = r#"{"storage": {"rootDirectory": "/tmp/x"}, "http": {"port": "0", "tls": {}}}"#;
        let (code, out, err) = run_verify(text, "json");
        assert_eq!(code, 0, "{err}");
        assert!(out.ends_with("config OK\n"), "{out}");
        assert!(out.contains("warning: http.tls: "), "{out}");
        assert!(err.is_empty(), "{err}");
    }

    #[test]
    fn verify_lists_every_error_and_exits_2() {
        let text = r#"{"storage": {"rootDirectory": ""}, "http": {"port": "abc", "bogus": 1}}"#;
        let (code, out, err) = run_verify(text, "json");
        assert_eq!(code, 2);
        assert!(!out.contains("config OK"), "{out}");
        assert!(
            err.contains("error: storage.rootDirectory: must not be empty"),
            "{err}"
        );
        assert!(
            err.contains("error: http.port: expected a port number from 0 to 65535, got \"abc\""),
            "{err}"
        );
        assert!(err.contains("error: http.bogus: unknown key"), "{err}");
        assert!(err.contains("3 problems"), "{err}");
    }

    #[test]
    fn verify_reports_a_missing_file() {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = verify_to(Path::new("/nonexistent/berth.json"), &mut out, &mut err);
        assert_eq!(code, 2);
        let err = String::from_utf8(err).unwrap();
        assert!(
            err.contains("cannot read config file /nonexistent/berth.json"),
            "{err}"
        );
    }

    #[test]
    fn verify_reads_yaml() {
        let text = "storage:\n  rootDirectory: /tmp/x\nhttp:\n  port: 5000\n";
        let (code, out, err) = run_verify(text, "yaml");
        assert_eq!((code, out.as_str()), (0, "config OK\n"), "{err}");
    }
}
