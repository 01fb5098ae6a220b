//! [`Containers`]: private container storage and registry config for podman, buildah and
//! skopeo's `containers-storage:` in one test.
//!
//! How the clients run here (root in a sandbox, no systemd, no overlay): every tool gets a
//! private `storage.conf` (driver `vfs`, graphroot/runroot in a temp dir) through
//! `CONTAINERS_STORAGE_CONF`, a `registries.conf` marking the registry's address insecure
//! through `CONTAINERS_REGISTRIES_CONF`, an auth file of its own (`REGISTRY_AUTH_FILE`; podman 4
//! wants it to exist, even empty), and `BUILDAH_ISOLATION=chroot`. There are two stores, so
//! that a pull really downloads what was pushed from the other.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Private container storage and registry config for one test (removed on drop).
pub struct Containers {
    tmp: tempfile::TempDir,
    registries_conf: PathBuf,
    auth_file: PathBuf,
}

#[derive(Clone, Copy)]
pub enum Store {
    /// Where images are built and pushed from.
    Build,
    /// Where images are pulled into.
    Pull,
}

impl Store {
    fn name(self) -> &'static str {
        match self {
            Store::Build => "build",
            Store::Pull => "pull",
        }
    }
}

impl Containers {
    /// Stores and config for a registry at `registry_addr` (`host:port`, plain HTTP).
    pub fn new(registry_addr: &str) -> Containers {
        let tmp = tempfile::Builder::new()
            .prefix("berth-containers-")
            .tempdir()
            .expect("temp dir");
        for store in [Store::Build, Store::Pull] {
            let root = tmp.path().join(store.name());
            std::fs::write(
                Containers::storage_conf(tmp.path(), store),
                format!(
                    "[storage]\ndriver = \"vfs\"\ngraphroot = \"{0}/graph\"\nrunroot = \"{0}/run\"\n",
                    root.display()
                ),
            )
            .expect("storage.conf");
        }
        let registries_conf = tmp.path().join("registries.conf");
        std::fs::write(
            &registries_conf,
            format!(
                "unqualified-search-registries = []\n\n[[registry]]\nlocation = \"{registry_addr}\"\ninsecure = true\n"
            ),
        )
        .expect("registries.conf");
        let auth_file = tmp.path().join("auth.json");
        std::fs::write(&auth_file, "{}").expect("auth.json");
        Containers {
            tmp,
            registries_conf,
            auth_file,
        }
    }

    fn storage_conf(dir: &Path, store: Store) -> PathBuf {
        dir.join(format!("storage-{}.conf", store.name()))
    }

    /// `tool` (podman, buildah, skopeo) on `store`, run in the temp dir.
    pub fn cmd(&self, tool: &str, store: Store) -> Command {
        let mut cmd = Command::new(tool);
        cmd.env(
            "CONTAINERS_STORAGE_CONF",
            Containers::storage_conf(self.tmp.path(), store),
        )
        .env("CONTAINERS_REGISTRIES_CONF", &self.registries_conf)
        .env("REGISTRY_AUTH_FILE", &self.auth_file)
        .env("BUILDAH_ISOLATION", "chroot")
        .current_dir(self.tmp.path());
        cmd
    }

    /// Puts `image` into the build store as `localhost/app:v1` (through the OCI layout
    /// `dir()/layout`, tag `v1`, and skopeo; podman 4 cannot name an image pulled from a
    /// mixed-case path) and returns that name, ready for `podman push`.
    pub fn stage_image(&self, image: &crate::Image) -> String {
        let layout = self.dir().join("layout");
        crate::write_oci_layout(&layout, "v1", image);
        let local = "localhost/app:v1".to_owned();
        crate::run_ok(
            self.cmd("skopeo", Store::Build)
                .args(["--insecure-policy", "copy"])
                .arg(format!("oci:{}:v1", layout.display()))
                .arg(format!("containers-storage:{local}")),
        );
        local
    }

    /// The temp dir (for files the test writes next to the stores).
    pub fn dir(&self) -> &Path {
        self.tmp.path()
    }
}
