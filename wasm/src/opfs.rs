//! The OPFS sync-access-handle pool VFS: installed once per worker, shared by its databases.

use std::cell::RefCell;
use std::time::Duration;

use sqlite_wasm_rs::WasmOsCallback;
use sqlite_wasm_vfs::sahpool::{OpfsSAHError, OpfsSAHPoolCfgBuilder, OpfsSAHPoolUtil, install};
use wasm_bindgen::JsValue;

use crate::error::OpenError;
use crate::host;

/// The VFS name databases are opened with: the pool, with each WAL frame written in one call
/// (frames.rs).
pub(crate) const VFS_NAME: &str = "sqlweir-opfs";

/// The pool's own VFS name, under [`VFS_NAME`].
const POOL_VFS_NAME: &str = "sqlweir-opfs-pool";

/// Pool slots kept free beyond the files in use, ensured before each database is opened: the
/// new database and its WAL or rollback journal (this SQLite keeps temporary files in memory,
/// `SQLITE_TEMP_STORE=2`, so nothing else takes a slot). Also the pool's first size. Kept small
/// on purpose: installing the pool rewrites and flushes the header of every free slot (two
/// `flush()`es each), and creates and flushes each new one, at every page's first open.
const SPARE_SLOTS: usize = 2;

/// Install attempts while another worker (a reloaded page's) still holds the pool's handles.
const HANDOVER_ATTEMPTS: u32 = 40;

thread_local! {
    // The worker is single-threaded: the pool and the set of open names live with it.
    static POOL: RefCell<Option<(String, OpfsSAHPoolUtil)>> = const { RefCell::new(None) };
    // A list, not a set: a page opens a handful of databases (and a set's code costs bytes).
    static OPEN: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
}

/// Installs the pool in `directory` (or reuses it) with room for one more database.
pub(crate) async fn pool(directory: &str) -> Result<OpfsSAHPoolUtil, OpenError> {
    let existing = POOL.with(|p| p.borrow().clone());
    let util = match existing {
        Some((dir, util)) if dir == directory => util,
        Some((dir, _)) => {
            return Err(OpenError::Options {
                message: format!(
                    "this worker's OPFS pool is in {dir:?}, not {directory:?}; use one directory per page"
                ),
            });
        }
        None => {
            let util = install_with_handover(directory).await?;
            POOL.with(|p| *p.borrow_mut() = Some((directory.to_owned(), util.clone())));
            util
        }
    };
    if util.is_paused() {
        util.resume().await.map_err(|e| storage(&e))?;
    }
    let files = sqlite_wasm_rs::vfs::VfsFilesManager::len(&util).map_err(|e| storage(&e))?;
    util.ensure_capacity(files + SPARE_SLOTS).await.map_err(|e| storage(&e))?;
    Ok(util)
}

async fn install_with_handover(directory: &str) -> Result<OpfsSAHPoolUtil, OpenError> {
    let cfg =
        OpfsSAHPoolCfgBuilder::new().vfs_name(POOL_VFS_NAME).directory(directory).initial_capacity(SPARE_SLOTS).build();
    let mut attempt = 0;
    loop {
        match install::<WasmOsCallback>(&cfg, false).await {
            Ok(util) => {
                crate::frames::register(VFS_NAME, POOL_VFS_NAME).map_err(|message| OpenError::Storage { message })?;
                return Ok(util);
            }
            // After a reload the old page's worker may still hold the access handles for a
            // moment; they are released when it is torn down.
            Err(e) if attempt < HANDOVER_ATTEMPTS && is_held_elsewhere(&e) => {
                attempt += 1;
                host::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => return Err(storage(&e)),
        }
    }
}

fn is_held_elsewhere(e: &OpfsSAHError) -> bool {
    let OpfsSAHError::Opfs { value, .. } = e else { return false };
    js_sys::Reflect::get(value, &JsValue::from_str("name"))
        .ok()
        .and_then(|n| n.as_string())
        .is_some_and(|n| n == "NoModificationAllowedError")
}

fn storage(e: &OpfsSAHError) -> OpenError {
    OpenError::Storage { message: e.to_string() }
}

/// Marks `name` open in this worker; a second connection to one file would corrupt it, since
/// the pool VFS does not coordinate locks between connections.
pub(crate) fn claim(name: &str) -> Result<(), OpenError> {
    OPEN.with(|o| {
        let mut open = o.borrow_mut();
        if open.iter().any(|n| n == name) {
            return Err(OpenError::InUse { name: name.to_owned() });
        }
        open.push(name.to_owned());
        Ok(())
    })
}

/// Marks `name` closed.
pub(crate) fn release(name: &str) {
    OPEN.with(|o| o.borrow_mut().retain(|n| n != name));
}
