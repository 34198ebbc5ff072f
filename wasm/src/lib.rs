//! sqlweir-wasm: sqlweir in the browser, the core's write path over SQLite in OPFS, run inside a
//! dedicated worker and exported with wasm-bindgen.
//!
//! Users get it through the npm package `sqlweir` (`js/`), whose main-thread client starts the
//! worker that hosts this module. Rust code that runs in a dedicated worker can use [`Store`]:
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use sqlweir_core::params;
//! use sqlweir_wasm::{Options, Store};
//!
//! let store = Store::open("app.db", Options::default().migrations(&["CREATE TABLE t(x)"])).await?;
//! store.write("INSERT INTO t VALUES (?1)", params![1]).await?;
//! store.close().await?;
//! # Ok(()) }
//! ```
//!
//! # Design
//!
//! - The OPFS sync-access-handle pool VFS (`sqlite-wasm-vfs`) works only in a dedicated worker;
//!   it is installed once per worker and holds one connection per database file, which is both
//!   the writer and the reader: queries run between batches.
//! - The worker is single-threaded. The core's [`WriteQueue`](sqlweir_core::WriteQueue) and
//!   [`WriterState`](sqlweir_core::WriterState) are driven by a task on its event loop; waiting
//!   (retry backoff, breaker cooldown, linger) is a `setTimeout` promise, never a blocking sleep,
//!   and the host clock is `performance.now()`.
//! - Main-thread writes arrive in one message per tick and their outcomes leave in one message
//!   per committed batch ([`Database::submit`], `onSettled`).
//! - Durability: an acked write is committed to the OPFS file and survives a reload or a crash of
//!   the tab or the browser; see [`Journal`] and [`Synchronous`] for an OS crash or power loss.
//!
//! On targets other than wasm32 this crate is empty.
#![cfg(target_arch = "wasm32")]

// The worker is single-threaded (no `atomics`), as the allocator requires. Rust's default on
// wasm32 is dlmalloc; Talc took fewer bytes and less time per write (docs/bench.md, "Package size").
#[global_allocator]
static ALLOCATOR: talc::wasm::WasmDynamicTalc = talc::wasm::new_wasm_dynamic_allocator();

mod api;
#[cfg(feature = "bench")]
mod bench;
mod convert;
mod error;
mod frames;
mod host;
mod opfs;
mod options;
mod sqlite;
mod store;

pub use api::Database;
#[cfg(feature = "bench")]
pub use bench::bench_raw;
pub use error::{CloseError, Coded, LockError, OpenError, QueryError, TxError};
pub use options::{Backpressure, Journal, Options, RetryOptions, Synchronous};
pub use sqlite::QueryRows;
pub use sqlweir_core::{ManyOutcome, Receipt};
pub use store::{Store, TxOutcome};
