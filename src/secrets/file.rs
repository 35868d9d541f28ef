//! A directory with one file per principal: the file's name is the principal, its content
//! `user<separator>secret` (a trailing newline is ignored). Each lookup reads the file, so a
//! changed or added file is seen by the next login, and a removed one refuses it.
//!
//! SCRAM verifiers are files too, `<directory>/.scram-sha-256/<user>` (one folder per
//! mechanism), holding Kafka's credential text. The gateway writes them aside and renames them
//! into place, readable by its own user only, so a login never reads half a verifier.

use std::io::{ErrorKind, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::{split_entry, unusable_user, usable_name, verifier_folder, Credentials, SecretStore, StoreError};
use crate::config::Secret;

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

    /// The file of `user`'s verifier for `mechanism`, if `user` can be a file name.
    fn verifier_path(&self, mechanism: &str, user: &str) -> Option<PathBuf> {
        usable_as_file_name(user).then(|| self.directory.join(verifier_folder(mechanism)).join(user))
    }

    /// Write `content` to `path` atomically: a hidden file beside it (mode 0600), synced, then
    /// renamed over it. The folder is created (mode 0700) if needed.
    fn replace_file(&self, path: &Path, content: &str) -> Result<(), StoreError> {
        let folder = path.parent().unwrap_or(&self.directory);
        let cannot = |what: &str, path: &Path, e: std::io::Error| {
            self.error(format!("cannot {what} `{}`: {}", path.display(), e.kind()))
        };
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(folder)
            .map_err(|e| cannot("create", folder, e))?;
        let mut random = [0u8; 8];
        getrandom::fill(&mut random).map_err(|_| self.error("no random source for a temporary name".into()))?;
        let name = path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default();
        let aside = folder.join(format!(".{name}.{:016x}.tmp", u64::from_le_bytes(random)));
        let written = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&aside)
            .and_then(|mut file| file.write_all(content.as_bytes()).and_then(|()| file.sync_all()))
            .and_then(|()| std::fs::rename(&aside, path));
        if let Err(e) = written {
            let _ = std::fs::remove_file(&aside);
            return Err(cannot("write", path, e));
        }
        Ok(())
    }
}

/// Whether a principal can be a file name: not empty, no path separators, not hidden (which
/// also excludes `.`, `..` and Kubernetes' `..data`), no NUL.
fn usable_as_file_name(principal: &str) -> bool {
    usable_name(principal) && !principal.contains(['/', '\\', '\0'])
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

    fn verifier(&self, mechanism: &str, user: &str) -> Result<Option<Secret>, StoreError> {
        let Some(path) = self.verifier_path(mechanism, user) else { return Ok(None) };
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok(Some(Secret::new(text.trim_end_matches(['\r', '\n'])))),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.error(format!("cannot read `{}`: {}", path.display(), e.kind()))),
        }
    }

    fn write_verifier(&self, mechanism: &str, user: &str, verifier: &Secret) -> Result<(), StoreError> {
        let path = self.verifier_path(mechanism, user).ok_or_else(|| unusable_user(&self.name, user))?;
        self.replace_file(&path, verifier.expose())
    }

    fn delete_verifier(&self, mechanism: &str, user: &str) -> Result<bool, StoreError> {
        let Some(path) = self.verifier_path(mechanism, user) else { return Ok(false) };
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
            Err(e) => Err(self.error(format!("cannot remove `{}`: {}", path.display(), e.kind()))),
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

    #[test]
    fn verifiers_are_hidden_files_per_mechanism_apart_from_principals() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::new("files", dir.path().to_path_buf(), ":".into());
        assert_eq!(store.verifier("SCRAM-SHA-256", "alice").unwrap(), None);
        store.write_verifier("SCRAM-SHA-256", "alice", &Secret::new("salt=a,stored_key=b")).unwrap();
        store.write_verifier("SCRAM-SHA-256", "alice", &Secret::new("salt=c,stored_key=d")).unwrap();
        let path = dir.path().join(".scram-sha-256/alice");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "salt=c,stored_key=d");
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::read_dir(path.parent().unwrap()).unwrap().count(), 1, "no temporary file left");
        assert_eq!(store.verifier("SCRAM-SHA-256", "alice").unwrap().unwrap().expose(), "salt=c,stored_key=d");
        assert_eq!(store.verifier("SCRAM-SHA-512", "alice").unwrap(), None, "per mechanism");
        assert_eq!(store.lookup("alice").unwrap(), None, "a verifier is no principal's entry");
        assert_eq!(store.lookup(".scram-sha-256").unwrap(), None);
        assert!(store.write_verifier("SCRAM-SHA-256", "../alice", &Secret::new("x")).is_err());
        assert!(store.write_verifier("SCRAM-SHA-256", ".hidden", &Secret::new("x")).is_err());
        assert!(store.delete_verifier("SCRAM-SHA-256", "alice").unwrap());
        assert!(!store.delete_verifier("SCRAM-SHA-256", "alice").unwrap());
        assert_eq!(store.verifier("SCRAM-SHA-256", "alice").unwrap(), None);
    }
}
