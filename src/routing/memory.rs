//! What a route remembers across gateway restarts, in `state.directory`.
//!
//! Clients keep running while the gateway restarts, and they remember what it showed them: the
//! cluster id, and each topic's id (franz-go fails for good a topic whose id changes, as if it
//! had been deleted and created again). After a live switchover, a restart must not show them
//! the destination's ids; nor after Confluent's edit-and-restart procedure, which points the
//! route at another domain while the gateway is down. So each route writes down the ids its
//! clients were shown and the domain it was on, and a restarted gateway takes them up
//! ([`crate::routing::Route::recall`]): when the ids came from another cluster than the one
//! the route is on now, the route counts as moved, and translates them as after a live cut.
//!
//! One small JSON file per route, replaced whole (written aside, then renamed), so a crash
//! leaves the old file or the new one, never half of one. A file that cannot be read is
//! reported and ignored: the route starts afresh.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::IdsByName;

/// A route's memory file larger than this is not read: 10,000 topic names of Kafka's longest
/// (249 characters) with their ids take about 3 MiB.
const MAX_FILE_BYTES: u64 = 8 << 20;

/// What one route remembers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RouteMemory {
    /// The streaming domain the route was on when this was written.
    pub domain: String,
    /// Whether the ids below came from another cluster than that domain's (the route had moved).
    pub moved: bool,
    /// The cluster id clients were shown, if one was.
    pub cluster_id: Option<String>,
    /// The id clients were shown, by topic name.
    pub topic_ids: BTreeMap<String, Uuid>,
}

impl RouteMemory {
    pub fn presented_ids(&self) -> IdsByName {
        self.topic_ids.iter().map(|(name, id)| (name.clone(), *id)).collect()
    }
}

/// The memory files of a gateway's routes.
#[derive(Debug, Clone)]
pub struct MemoryDir {
    dir: PathBuf,
}

impl MemoryDir {
    /// Use `dir`, creating it if need be.
    pub fn open(dir: &Path) -> io::Result<MemoryDir> {
        std::fs::create_dir_all(dir)?;
        Ok(MemoryDir { dir: dir.to_path_buf() })
    }

    /// What route `route` wrote last; `None` if it never did. An error says why the file could
    /// not be used.
    pub fn load(&self, route: &str) -> Result<Option<RouteMemory>, String> {
        let path = self.file(route);
        let size = match std::fs::metadata(&path) {
            Ok(meta) => meta.len(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        if size > MAX_FILE_BYTES {
            return Err(format!(
                "{}: {size} bytes, more than the {MAX_FILE_BYTES} a route's memory can take",
                path.display()
            ));
        }
        let text = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        serde_json::from_slice(&text).map(Some).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Replace route `route`'s file with `memory`.
    pub fn save(&self, route: &str, memory: &RouteMemory) -> io::Result<()> {
        let path = self.file(route);
        let aside = path.with_extension("json.next");
        let mut file = std::fs::File::create(&aside)?;
        file.write_all(&serde_json::to_vec(memory)?)?;
        // On disk before it replaces the old file, so that a crash cannot leave an empty one.
        file.sync_all()?;
        std::fs::rename(&aside, &path)
    }

    /// `route-<name>.json`, with every byte of the name outside `[A-Za-z0-9._-]` written as
    /// `%XX`, so that no route name reaches outside the directory.
    fn file(&self, route: &str) -> PathBuf {
        let mut name = String::from("route-");
        for byte in route.bytes() {
            if byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b'-') {
                name.push(char::from(byte));
            } else {
                name.push_str(&format!("%{byte:02X}"));
            }
        }
        self.dir.join(name + ".json")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn memory() -> RouteMemory {
        RouteMemory {
            domain: "source".into(),
            moved: true,
            cluster_id: Some("abc".into()),
            topic_ids: BTreeMap::from([("orders".to_string(), Uuid::from_u128(7))]),
        }
    }

    #[test]
    fn a_saved_memory_loads_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = MemoryDir::open(&dir.path().join("state")).unwrap();
        assert_eq!(store.load("main").unwrap(), None);
        store.save("main", &memory()).unwrap();
        assert_eq!(store.load("main").unwrap(), Some(memory()));
        assert!(store.load("other").unwrap().is_none());
    }

    #[test]
    fn route_names_stay_inside_the_directory() {
        let store = MemoryDir { dir: PathBuf::from("/state") };
        assert_eq!(store.file("../etc/x"), PathBuf::from("/state/route-..%2Fetc%2Fx.json"));
        assert_eq!(store.file("a.b-c_d"), PathBuf::from("/state/route-a.b-c_d.json"));
    }

    #[test]
    fn a_damaged_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = MemoryDir::open(dir.path()).unwrap();
        std::fs::write(dir.path().join("route-main.json"), b"{\"domain\": 3").unwrap();
        let error = store.load("main").unwrap_err();
        assert!(error.contains("route-main.json"), "{error}");
    }
}
