//! A thin VFS over the OPFS pool that writes each WAL frame in one call.
//!
//! SQLite appends a WAL frame as two writes: its 24-byte header, then the page at the next
//! offset (`walWriteOneFrame` in sqlite3.c). On OPFS each `write` of a sync access handle costs
//! about as much for 24 bytes as for a page (docs/bench.md, "WAL frames in one write"), so this
//! layer holds a WAL file's 24-byte write and sends it with the page that follows it, as one
//! write. Anything else that reaches the file first (another write, a read, a sync, a size, a
//! truncate, a file control, the close) sends the held header alone before it goes on, so SQLite
//! never sees the file differ from what it wrote. Nothing is held once SQLite's call returns
//! from writing a frame: a commit's last write is its last page, so an acked commit is in the
//! file exactly as without this layer (and a crash between a frame's two writes leaves what a
//! crash between the two calls left before: an incomplete frame, which SQLite ignores).
//!
//! Every other VFS and file method is the pool's own: the VFS struct is the pool's, with this
//! layer's `xOpen` and file size, and its `pAppData` (all the pool's methods read) unchanged.
//!
//! The one module of the crate with `unsafe`: a VFS is C callbacks over raw pointers. What every
//! block relies on: each file SQLite hands these methods was opened by [`open`] in an allocation
//! of the VFS's `szOsFile` bytes (this layer's [`File`] first, the pool's file at [`INNER`]),
//! and the worker is single-threaded (no two callbacks run at once).
#![allow(unsafe_code)]

use std::cell::RefCell;
use std::ffi::{CString, c_int, c_void};
use std::mem::{align_of, size_of};
use std::ptr;

use sqlite_wasm_rs::{
    SQLITE_ERROR, SQLITE_OK, SQLITE_OPEN_WAL, sqlite3_file, sqlite3_filename, sqlite3_int64, sqlite3_io_methods,
    sqlite3_vfs, sqlite3_vfs_find, sqlite3_vfs_register,
};

/// The size of a WAL frame's header (`WAL_FRAME_HDRSIZE` in sqlite3.c).
const FRAME_HEADER: usize = 24;
#[allow(clippy::cast_possible_truncation, clippy::cast_possible_wrap)]
const HEADER_LEN: c_int = FRAME_HEADER as c_int;

/// One open file: this layer's part, then the pool's file at [`INNER`] (its own `sqlite3_file`).
/// Pointer-aligned only, as SQLite's `sqlite3_file` is.
#[repr(C)]
struct File {
    base: sqlite3_file,
    /// The pool's file methods (what the pool's part was opened with).
    methods: *const sqlite3_io_methods,
    /// Owned; made by [`open`], freed by [`close`].
    held: *mut Held,
}

/// A file's held frame header.
struct Held {
    /// A WAL file: its frame headers are held for the page that follows.
    wal: bool,
    /// The held header's offset, when one is held.
    at: Option<sqlite3_int64>,
    bytes: [u8; FRAME_HEADER],
}

/// Where the pool's file starts inside a [`File`]'s allocation.
const INNER: usize = size_of::<File>().next_multiple_of(align_of::<u64>());

thread_local! {
    // The worker is single-threaded: one buffer joins a header and its page for every file.
    static JOINED: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    // The pool's own VFS, which this layer's `open` opens files with.
    static POOL: RefCell<*mut sqlite3_vfs> = const { RefCell::new(ptr::null_mut()) };
}

/// Registers `name`, this layer over the VFS `pool` (registered already), unless it is
/// registered already.
pub(crate) fn register(name: &str, pool: &str) -> Result<(), String> {
    let own_name = CString::new(name).map_err(|e| e.to_string())?;
    // SAFETY: sqlite3_vfs_find takes a NUL-terminated name and returns a registered VFS or null.
    if !unsafe { sqlite3_vfs_find(own_name.as_ptr()) }.is_null() {
        return Ok(());
    }
    let pool_name = CString::new(pool).map_err(|e| e.to_string())?;
    // SAFETY: sqlite3_vfs_find takes a NUL-terminated name and returns a registered VFS or null.
    let inner = unsafe { sqlite3_vfs_find(pool_name.as_ptr()) };
    if inner.is_null() {
        return Err(format!("the OPFS pool VFS {pool:?} is not registered"));
    }
    // SAFETY: `inner` is a registered VFS, never unregistered while this worker runs.
    let mut vfs = unsafe { *inner };
    let inner_size = usize::try_from(vfs.szOsFile).map_err(|e| e.to_string())?;
    vfs.szOsFile = c_int::try_from(INNER + inner_size).map_err(|e| e.to_string())?;
    vfs.pNext = ptr::null_mut();
    // The name and the VFS are leaked: a registered VFS lives as long as the worker.
    vfs.zName = own_name.into_raw();
    vfs.xOpen = Some(open);
    POOL.with(|p| *p.borrow_mut() = inner);
    let vfs = Box::into_raw(Box::new(vfs));
    // SAFETY: `vfs` is a complete VFS that lives for the rest of the worker's life.
    let rc = unsafe { sqlite3_vfs_register(vfs, 0) };
    if rc == SQLITE_OK { Ok(()) } else { Err(format!("registering the {name:?} VFS failed: SQLite error {rc}")) }
}

static METHODS: sqlite3_io_methods = sqlite3_io_methods {
    iVersion: 1,
    xClose: Some(close),
    xRead: Some(read),
    xWrite: Some(write),
    xTruncate: Some(truncate),
    xSync: Some(sync),
    xFileSize: Some(file_size),
    xLock: Some(lock),
    xUnlock: Some(unlock),
    xCheckReservedLock: Some(check_reserved_lock),
    xFileControl: Some(file_control),
    xSectorSize: Some(sector_size),
    xDeviceCharacteristics: Some(device_characteristics),
    xShmMap: None,
    xShmLock: None,
    xShmBarrier: None,
    xShmUnmap: None,
    xFetch: None,
    xUnfetch: None,
};

/// The pool's file inside `file`.
unsafe fn inner(file: *mut sqlite3_file) -> *mut sqlite3_file {
    // SAFETY: every file of this VFS was allocated with `INNER` + the pool's size (szOsFile).
    unsafe { file.cast::<u8>().add(INNER).cast() }
}

/// The pool's method table of `file`.
unsafe fn pool_methods<'a>(file: *mut sqlite3_file) -> &'a sqlite3_io_methods {
    // SAFETY: set by `open` to the pool's static method table before any other method runs.
    unsafe { &*(*file.cast::<File>()).methods }
}

/// Writes the held header, if any, alone.
unsafe fn send_held(file: *mut sqlite3_file) -> c_int {
    // SAFETY: `file` is one of this layer's open files.
    unsafe {
        let held = &mut *(*file.cast::<File>()).held;
        let Some(at) = held.at.take() else { return SQLITE_OK };
        let bytes = held.bytes;
        let Some(pool_write) = pool_methods(file).xWrite else { return SQLITE_ERROR };
        pool_write(inner(file), bytes.as_ptr().cast(), HEADER_LEN, at)
    }
}

unsafe extern "C" fn open(
    _vfs: *mut sqlite3_vfs,
    name: sqlite3_filename,
    file: *mut sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    let pool = POOL.with(|p| *p.borrow());
    // SAFETY: SQLite gives `file` szOsFile bytes; the pool opens its part at `INNER`.
    unsafe {
        (*file).pMethods = ptr::null();
        let Some(pool_open) = (*pool).xOpen else { return SQLITE_ERROR };
        let rc = pool_open(pool, name, inner(file), flags, out_flags);
        if rc != SQLITE_OK {
            return rc;
        }
        ptr::write(
            file.cast::<File>(),
            File {
                base: sqlite3_file { pMethods: &raw const METHODS },
                methods: (*inner(file)).pMethods,
                held: Box::into_raw(Box::new(Held {
                    wal: flags & SQLITE_OPEN_WAL != 0,
                    at: None,
                    bytes: [0; FRAME_HEADER],
                })),
            },
        );
        SQLITE_OK
    }
}

unsafe extern "C" fn write(file: *mut sqlite3_file, buf: *const c_void, amount: c_int, at: sqlite3_int64) -> c_int {
    // SAFETY: `file` is one of this layer's open files; `buf` holds `amount` bytes.
    unsafe {
        let held = (*file.cast::<File>()).held;
        let Some(pool_write) = pool_methods(file).xWrite else { return SQLITE_ERROR };
        let Ok(len) = usize::try_from(amount) else { return pool_write(inner(file), buf, amount, at) };
        if let Some(held_at) = (*held).at
            && held_at + sqlite3_int64::from(HEADER_LEN) == at
            && let Some(total) = amount.checked_add(HEADER_LEN)
        {
            // The page of the held header: both in one write.
            (*held).at = None;
            let header = (*held).bytes;
            return JOINED.with(|j| {
                let mut joined = j.borrow_mut();
                joined.clear();
                joined.extend_from_slice(&header);
                joined.extend_from_slice(std::slice::from_raw_parts(buf.cast::<u8>(), len));
                pool_write(inner(file), joined.as_ptr().cast(), total, held_at)
            });
        }
        let rc = send_held(file);
        if rc != SQLITE_OK {
            return rc;
        }
        if (*held).wal && len == FRAME_HEADER {
            (*held).bytes.copy_from_slice(std::slice::from_raw_parts(buf.cast::<u8>(), FRAME_HEADER));
            (*held).at = Some(at);
            return SQLITE_OK;
        }
        pool_write(inner(file), buf, amount, at)
    }
}

unsafe extern "C" fn close(file: *mut sqlite3_file) -> c_int {
    // SAFETY: `file` is one of this layer's open files; it is not used after this.
    unsafe {
        let held = send_held(file);
        let rc = pool_methods(file).xClose.map_or(SQLITE_ERROR, |pool_close| pool_close(inner(file)));
        drop(Box::from_raw((*file.cast::<File>()).held));
        (*file).pMethods = ptr::null();
        if held == SQLITE_OK { rc } else { held }
    }
}

/// Defines a method that sends the held header, then calls the pool's method of the same name.
macro_rules! after_held {
    ($name:ident, $field:ident, ($($arg:ident: $ty:ty),*)) => {
        unsafe extern "C" fn $name(file: *mut sqlite3_file $(, $arg: $ty)*) -> c_int {
            // SAFETY: `file` is one of this layer's open files; the arguments are SQLite's.
            unsafe {
                let rc = send_held(file);
                if rc != SQLITE_OK {
                    return rc;
                }
                match pool_methods(file).$field {
                    Some(method) => method(inner(file) $(, $arg)*),
                    None => SQLITE_ERROR,
                }
            }
        }
    };
}

after_held!(read, xRead, (buf: *mut c_void, amount: c_int, at: sqlite3_int64));
after_held!(truncate, xTruncate, (size: sqlite3_int64));
after_held!(sync, xSync, (flags: c_int));
after_held!(file_size, xFileSize, (size: *mut sqlite3_int64));
after_held!(lock, xLock, (level: c_int));
after_held!(unlock, xUnlock, (level: c_int));
after_held!(check_reserved_lock, xCheckReservedLock, (out: *mut c_int));
after_held!(file_control, xFileControl, (op: c_int, arg: *mut c_void));

unsafe extern "C" fn sector_size(file: *mut sqlite3_file) -> c_int {
    // SAFETY: `file` is one of this layer's open files.
    unsafe { pool_methods(file).xSectorSize.map_or(0, |method| method(inner(file))) }
}

unsafe extern "C" fn device_characteristics(file: *mut sqlite3_file) -> c_int {
    // SAFETY: `file` is one of this layer's open files.
    unsafe { pool_methods(file).xDeviceCharacteristics.map_or(0, |method| method(inner(file))) }
}
