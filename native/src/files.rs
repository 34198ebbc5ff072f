//! One file, one writer: the process-wide registry of database files open in a store.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::error::OpenError;

/// Database files open in this process: one file, one writer, even across `Store::open` calls.
static OPEN_FILES: Mutex<BTreeSet<FileId>> = Mutex::new(BTreeSet::new());

/// What a database file is, as the OS sees it: its device and inode where there are such
/// (every spelling, symlink and hard link of one file gives the same), else its canonical path.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum FileId {
    Inode(u64, u64),
    Path(PathBuf),
}

impl FileId {
    fn of(path: &Path) -> FileId {
        // A file that does not exist yet is created empty (SQLite reads an empty file as an
        // empty database), so that it has an identity before anyone else can link to it.
        // SQLite's special names (`:memory:`, `file:` URIs) are not paths: never create those.
        let special = path.to_str().is_some_and(|p| p.is_empty() || p == ":memory:" || p.starts_with("file:"));
        if !special && !path.exists() {
            let _ = std::fs::OpenOptions::new().write(true).create_new(true).open(path);
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            if let Ok(meta) = std::fs::metadata(path) {
                return FileId::Inode(meta.dev(), meta.ino());
            }
        }
        // Elsewhere (or when the file cannot be read: SQLite will say why) the canonical path
        // stands for the file; its directory must exist.
        if let Ok(canonical) = std::fs::canonicalize(path) {
            return FileId::Path(canonical);
        }
        FileId::Path(match (path.parent(), path.file_name()) {
            (Some(dir), Some(name)) => {
                std::fs::canonicalize(if dir.as_os_str().is_empty() { Path::new(".") } else { dir })
                    .map_or_else(|_| path.to_path_buf(), |d| d.join(name))
            }
            _ => path.to_path_buf(),
        })
    }
}

/// A file's place in [`OPEN_FILES`], given back when the store's writer has stopped (or when
/// opening fails).
pub(crate) struct OpenFile(Mutex<Option<FileId>>);

impl OpenFile {
    /// Claims `path` for this process, or says it is already open.
    pub(crate) fn claim(path: &Path) -> Result<OpenFile, OpenError> {
        let key = FileId::of(path);
        if !lock(&OPEN_FILES).insert(key.clone()) {
            return Err(OpenError::AlreadyOpen { path: path.to_path_buf() });
        }
        Ok(OpenFile(Mutex::new(Some(key))))
    }

    pub(crate) fn release(&self) {
        if let Some(key) = lock(&self.0).take() {
            lock(&OPEN_FILES).remove(&key);
        }
    }
}

impl Drop for OpenFile {
    fn drop(&mut self) {
        self.release();
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Each update of the registry is one call: a panic elsewhere cannot leave it half done.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
