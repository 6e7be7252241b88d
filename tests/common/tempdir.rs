//! A fresh folder under the system temp folder (which the `postgres` user can reach when
//! the tests run as root), removed when dropped, also when a test fails.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// A fresh folder under the system temp folder, removed when dropped (also when a test fails).
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(label: &str) -> TempDir {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock after 1970")
            .as_nanos();
        let name = format!("livefund-{label}-{}-{nanos}", std::process::id());
        let path = std::env::temp_dir().join(name);
        fs::create_dir_all(&path).expect("create temp folder");
        // Canonical, so that it compares equal to the working folders read from /proc.
        TempDir(fs::canonicalize(&path).expect("canonical temp folder"))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}
