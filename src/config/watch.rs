//! Noticing edits of the config file, so they are applied as a SIGHUP would apply them
//! (`reload.watch`).
//!
//! The file is polled: its modification time and size every `reload.intervalMs`, its contents
//! only when those move, and a change is reported only when the contents differ. Polling the
//! path rather than watching an inode, because a Kubernetes ConfigMap volume swaps a symlink
//! and many editors write a new file and rename it over the old one; a watch on the old inode
//! misses both, looking at the path again sees both. A file caught half-written fails to parse,
//! is reported like any bad edit, and is read again once the write completes and moves the stamp.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

pub struct ConfigWatch {
    path: PathBuf,
    interval: Duration,
    stamp: Option<Stamp>,
    contents: u64,
}

/// What is cheap to look at: a change of either means the contents may have changed.
#[derive(Debug, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
}

impl ConfigWatch {
    /// Start from the file as it is now, which is what the gateway runs on.
    pub fn new(path: &Path, interval: Duration) -> ConfigWatch {
        let stamp = std::fs::metadata(path).ok().map(|meta| Stamp::of(&meta));
        let contents = std::fs::read(path).map(|bytes| hash(&bytes)).unwrap_or_default();
        ConfigWatch { path: path.to_path_buf(), interval, stamp, contents }
    }

    /// Resolve once the file's contents differ from the last ones seen. A file that is
    /// missing for a while (being replaced) is waited for.
    pub async fn changed(&mut self) {
        loop {
            tokio::time::sleep(self.interval).await;
            let Ok(meta) = tokio::fs::metadata(&self.path).await else { continue };
            let stamp = Some(Stamp::of(&meta));
            if stamp == self.stamp {
                continue;
            }
            self.stamp = stamp;
            let Ok(bytes) = tokio::fs::read(&self.path).await else { continue };
            let contents = hash(&bytes);
            if contents != self.contents {
                self.contents = contents;
                return;
            }
        }
    }
}

impl Stamp {
    fn of(meta: &std::fs::Metadata) -> Stamp {
        Stamp { modified: meta.modified().ok(), len: meta.len() }
    }
}

fn hash(bytes: &[u8]) -> u64 {
    let mut hasher = DefaultHasher::new();
    bytes.hash(&mut hasher);
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reports_content_changes_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("switchyard.yaml");
        std::fs::write(&path, "routes: []\n").unwrap();
        let mut watch = ConfigWatch::new(&path, Duration::from_millis(10));
        let quiet = tokio::time::timeout(Duration::from_millis(100), watch.changed()).await;
        assert!(quiet.is_err(), "an untouched file is not a change");

        // Replaced by rename, as editors and ConfigMaps do; first with the same contents (the
        // stamp moves, the contents do not), then with an edit.
        let replace = |text: &str| {
            let next = dir.path().join("next.yaml");
            std::fs::write(&next, text).unwrap();
            std::fs::rename(&next, &path).unwrap();
        };
        replace("routes: []\n");
        let same = tokio::time::timeout(Duration::from_millis(100), watch.changed()).await;
        assert!(same.is_err(), "the same contents are not a change");
        replace("routes: [] # edited\n");
        tokio::time::timeout(Duration::from_secs(5), watch.changed()).await.expect("the edit is seen");
    }
}
