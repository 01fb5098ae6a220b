//! Where a config keeps its data, and the refusal to migrate a store onto itself.
//!
//! Rules: decided from the validated configs alone, before either store is opened, so a
//! refused run writes nothing. Two configs clash when any part of one store could be the
//! other's: the same or nested `rootDirectory` (it holds the RocksDB index, the blob files and
//! the upload staging files), the same PostgreSQL database and schema, or overlapping key
//! prefixes in the same bucket of the same endpoint.
use std::path::{Component, Path, PathBuf};

use crate::config::{Config, S3Driver};

/// Why `dst` may not receive `src`'s data, or `None` when they are apart.
pub(super) fn clash(src: &Config, dst: &Config) -> Option<String> {
    let (src_root, dst_root) = (
        absolute(&src.storage.root_directory),
        absolute(&dst.storage.root_directory),
    );
    if src_root.starts_with(&dst_root) || dst_root.starts_with(&src_root) {
        return Some(format!(
            "source and destination share storage.rootDirectory ({} and {})",
            src_root.display(),
            dst_root.display()
        ));
    }
    let (src_backends, dst_backends) = (&src.storage.backends, &dst.storage.backends);
    if let (Some(a), Some(b)) = (&src_backends.postgres, &dst_backends.postgres) {
        if a.schema == b.schema && database(a.url.expose()) == database(b.url.expose()) {
            return Some(format!(
                "source and destination use the same PostgreSQL database and schema {:?}",
                a.schema
            ));
        }
    }
    if let (Some(a), Some(b)) = (&src_backends.s3, &dst_backends.s3) {
        if same_bucket(a, b) && prefixes_overlap(&a.root_directory, &b.root_directory) {
            return Some(format!(
                "source and destination use the same bucket {:?} with overlapping \
                 rootdirectory ({:?} and {:?})",
                a.bucket, a.root_directory, b.root_directory
            ));
        }
    }
    None
}

/// `path` made absolute and canonical as far as it exists (the rest appended as written,
/// `..` folded), so two spellings of one directory compare equal even before it exists.
fn absolute(path: &Path) -> PathBuf {
    let joined = match path.is_absolute() {
        true => path.to_path_buf(),
        false => std::env::current_dir()
            .map(|cwd| cwd.join(path))
            .unwrap_or_else(|_| path.to_path_buf()),
    };
    let mut existing = joined.clone();
    let mut rest = Vec::new();
    while !existing.exists() {
        match (existing.file_name(), existing.parent()) {
            (Some(name), Some(parent)) => {
                rest.push(name.to_owned());
                existing = parent.to_path_buf();
            }
            _ => break,
        }
    }
    let mut out = existing.canonicalize().unwrap_or(existing);
    for name in rest.iter().rev() {
        out.push(name);
    }
    let mut folded = PathBuf::new();
    for component in out.components() {
        match component {
            Component::ParentDir => {
                folded.pop();
            }
            Component::CurDir => {}
            other => folded.push(other),
        }
    }
    folded
}

/// The server and database a PostgreSQL URL names (hosts, ports, database; not the user).
fn database(url: &str) -> Option<String> {
    let config: tokio_postgres::Config = url.parse().ok()?;
    let user = config.get_user().unwrap_or_default().to_owned();
    Some(format!(
        "{:?} {:?} {}",
        config.get_hosts(),
        config.get_ports(),
        config.get_dbname().unwrap_or(user.as_str())
    ))
}

fn same_bucket(a: &S3Driver, b: &S3Driver) -> bool {
    let endpoint = |driver: &S3Driver| match &driver.region_endpoint {
        Some(endpoint) => endpoint.trim_end_matches('/').to_ascii_lowercase(),
        None => format!("aws:{}", driver.region),
    };
    a.bucket == b.bucket && endpoint(a) == endpoint(b)
}

/// True when one key prefix holds the other's keys (`""` holds every key).
fn prefixes_overlap(a: &str, b: &str) -> bool {
    let (a, b) = (a.trim_matches('/'), b.trim_matches('/'));
    let within = |inner: &str, outer: &str| {
        outer.is_empty()
            || inner == outer
            || (inner.starts_with(outer) && inner.as_bytes().get(outer.len()) == Some(&b'/'))
    };
    within(a, b) || within(b, a)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_overlap_at_path_boundaries() {
        for (a, b, overlap) in [
            ("", "x", true),
            ("x", "x", true),
            ("x/y", "x", true),
            ("/x/", "x", true),
            ("x", "xy", false),
            ("a", "b", false),
        ] {
            assert_eq!(prefixes_overlap(a, b), overlap, "{a:?} {b:?}");
        }
    }

    #[test]
    fn absolute_folds_spellings_of_one_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let real = dir.path().join("data");
        let spelled = dir.path().join("other/../data/./");
        assert_eq!(absolute(&real), absolute(&spelled));
        assert!(absolute(&real.join("sub")).starts_with(absolute(&real)));
    }

    #[test]
    fn a_database_is_its_server_and_name() {
        let a = database("postgres://alice@db:5432/berth");
        assert_eq!(a, database("postgres://bob:pw@db:5432/berth"));
        assert_ne!(a, database("postgres://alice@db:5432/other"));
        assert_ne!(a, database("postgres://alice@db2:5432/berth"));
    }
}
