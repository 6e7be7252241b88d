//! Finding what the local servers need on this machine: the PostgreSQL and Redis executables,
//! and the `postgres` account to run PostgreSQL as when this process runs as root.

use nix::unistd::{User, geteuid};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::ServicesError;

/// Executables of the servers.
pub(super) struct Binaries {
    pub(super) initdb: PathBuf,
    pub(super) postgres: PathBuf,
    pub(super) redis: PathBuf,
}

pub(super) fn find_binaries() -> Result<Binaries, ServicesError> {
    let bindir = postgres_bindir()?;
    let redis = path_dirs()
        .map(|dir| dir.join("redis-server"))
        .find(|path| is_executable(path))
        .ok_or(ServicesError::MissingBinary {
            binary: "redis-server",
            package: "redis-server",
        })?;
    Ok(Binaries {
        initdb: bindir.join("initdb"),
        postgres: bindir.join("postgres"),
        redis,
    })
}

/// The first folder holding both `initdb` and `postgres`: from PATH, then `pg_config --bindir`,
/// then the highest-versioned `/usr/lib/postgresql/*/bin` (the Debian/Ubuntu layout).
fn postgres_bindir() -> Result<PathBuf, ServicesError> {
    let mut candidates: Vec<PathBuf> = path_dirs()
        .filter(|dir| is_executable(&dir.join("initdb")))
        .collect();
    if let Ok(output) = Command::new("pg_config")
        .arg("--bindir")
        .stderr(Stdio::null())
        .output()
        && output.status.success()
    {
        let dir = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        if !dir.is_empty() {
            candidates.push(PathBuf::from(dir));
        }
    }
    candidates.extend(versioned_bindirs(Path::new("/usr/lib/postgresql")));
    let complete =
        |dir: &PathBuf| is_executable(&dir.join("initdb")) && is_executable(&dir.join("postgres"));
    if let Some(dir) = candidates.iter().find(|dir| complete(dir)) {
        return Ok(dir.clone());
    }
    let has_initdb = candidates
        .iter()
        .any(|dir| is_executable(&dir.join("initdb")));
    Err(ServicesError::MissingBinary {
        binary: if has_initdb { "postgres" } else { "initdb" },
        package: "postgresql",
    })
}

/// `<root>/<version>/bin` for every version folder under `root`, highest version first.
fn versioned_bindirs(root: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(root) else {
        return Vec::new();
    };
    let mut versions: Vec<(Vec<u64>, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let name = entry.file_name();
            let version = parse_version(name.to_str()?)?;
            Some((version, entry.path().join("bin")))
        })
        .collect();
    versions.sort_by(|a, b| b.0.cmp(&a.0));
    versions.into_iter().map(|(_, dir)| dir).collect()
}

/// "15" → [15], "9.6" → [9, 6]; anything else is not a version.
fn parse_version(name: &str) -> Option<Vec<u64>> {
    name.split('.').map(|part| part.parse().ok()).collect()
}

fn path_dirs() -> impl Iterator<Item = PathBuf> {
    std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
}

fn is_executable(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

/// User and group ids to run PostgreSQL as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Account {
    pub(super) uid: u32,
    pub(super) gid: u32,
}

/// `None` when not root (run as the current user); the `postgres` account when root.
pub(super) fn postgres_account() -> Result<Option<Account>, ServicesError> {
    if !geteuid().is_root() {
        return Ok(None);
    }
    let user = User::from_name("postgres").map_err(|e| ServicesError::Io {
        what: "look up the postgres user".into(),
        source: e.into(),
    })?;
    let user = user.ok_or(ServicesError::MissingPostgresUser)?;
    Ok(Some(Account {
        uid: user.uid.as_raw(),
        gid: user.gid.as_raw(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_version_folders_highest_first() {
        let root = std::env::temp_dir().join(format!("livefund-versions-{}", std::process::id()));
        for name in ["9.6", "15", "13", "common", "16beta"] {
            fs::create_dir_all(root.join(name)).expect("create version folder");
        }
        let found = versioned_bindirs(&root);
        let _ = fs::remove_dir_all(&root);
        let expected: Vec<PathBuf> = ["15", "13", "9.6"]
            .iter()
            .map(|name| root.join(name).join("bin"))
            .collect();
        assert_eq!(found, expected);
    }
}
