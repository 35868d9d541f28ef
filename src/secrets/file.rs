//! A directory with one file per principal: the file's name is the principal, its content
//! `user<separator>secret` (a trailing newline is ignored). Each lookup reads the file, so a
//! changed or added file is seen by the next login, and a removed one refuses it.

use std::io::ErrorKind;
use std::path::PathBuf;

use super::{split_entry, Credentials, SecretStore, StoreError};

pub struct FileStore {
    name: String,
    directory: PathBuf,
    separator: String,
}

impl FileStore {
    pub fn new(name: &str, directory: PathBuf, separator: String) -> FileStore {
        FileStore { name: name.to_string(), directory, separator }
    }

    fn error(&self, problem: String) -> StoreError {
        StoreError { store: self.name.clone(), problem }
    }
}

/// Whether a principal can be a file name: not empty, no path separators, not hidden (which
/// also excludes `.`, `..` and Kubernetes' `..data`), no NUL.
fn usable_as_file_name(principal: &str) -> bool {
    !principal.is_empty() && !principal.starts_with('.') && !principal.contains(['/', '\\', '\0'])
}

impl SecretStore for FileStore {
    fn lookup(&self, principal: &str) -> Result<Option<Credentials>, StoreError> {
        if !usable_as_file_name(principal) {
            return Ok(None);
        }
        let path = self.directory.join(principal);
        match std::fs::read_to_string(&path) {
            Ok(entry) => split_entry(&self.name, principal, &entry, &self.separator).map(Some),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.error(format!("cannot read `{}`: {}", path.display(), e.kind()))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_file_per_principal_read_at_every_lookup() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::new("files", dir.path().to_path_buf(), ":".into());
        assert_eq!(store.lookup("alice").unwrap(), None);
        std::fs::write(dir.path().join("alice"), "app:app:pw\n").unwrap();
        let found = store.lookup("alice").unwrap().unwrap();
        assert_eq!((found.user.as_str(), found.secret.expose()), ("app", "app:pw"));
        std::fs::write(dir.path().join("alice"), "other:pw2").unwrap();
        assert_eq!(store.lookup("alice").unwrap().unwrap().user, "other");
        std::fs::write(dir.path().join("bad"), "no-separator-secret").unwrap();
        let error = store.lookup("bad").unwrap_err().to_string();
        assert!(!error.contains("no-separator-secret"), "{error}");
        assert_eq!(store.lookup("../etc/passwd").unwrap(), None);
        assert_eq!(store.lookup("..data").unwrap(), None);
    }
}
