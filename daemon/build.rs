//! Build facts for `zot_info` / `berth_info`: the git commit and the compiler version.
//! Neither is required: outside a git checkout, or if rustc cannot be asked, they read
//! "unknown".
use std::process::Command;

fn output(command: &mut Command) -> Option<String> {
    let out = command.output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    (out.status.success() && !text.trim().is_empty()).then(|| text.trim().to_owned())
}

fn main() {
    let commit = output(Command::new("git").args(["rev-parse", "--short=12", "HEAD"]));
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let version = output(Command::new(rustc).arg("--version"));
    println!(
        "cargo:rustc-env=BERTH_GIT_COMMIT={}",
        commit.as_deref().unwrap_or("unknown")
    );
    println!(
        "cargo:rustc-env=BERTH_RUSTC_VERSION={}",
        version.as_deref().unwrap_or("unknown")
    );
    // A new commit moves the branch ref (or HEAD itself when detached).
    if let Some(git_dir) = output(Command::new("git").args(["rev-parse", "--git-dir"])) {
        let git_dir = std::path::Path::new(&git_dir);
        println!("cargo:rerun-if-changed={}", git_dir.join("HEAD").display());
        if let Some(head_ref) = output(Command::new("git").args(["symbolic-ref", "-q", "HEAD"])) {
            println!(
                "cargo:rerun-if-changed={}",
                git_dir.join(head_ref).display()
            );
        }
    }
    println!("cargo:rerun-if-changed=build.rs");
}
