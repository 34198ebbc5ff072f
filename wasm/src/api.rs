//! The worker's JavaScript API, exported with wasm-bindgen: `Database` wraps a [`Store`].
//!
//! The npm package's worker bootstrap (`js/worker.js`) drives it: main-thread writes arrive in
//! one message per tick and go in with [`Database::submit`]; their outcomes leave in one call of
//! the `onSettled` listener per batch. Rust code that already runs in a dedicated worker uses
//! [`Store`] directly.

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use js_sys::{Array, Function, Promise};
use sqlweir_core::{
    HealthStatus, JobOutcome, RequestId, Value, Write, WriteError, insert_sql, quote_identifier, upsert_sql,
};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

use crate::convert::{
    acked_to_js, error_to_js, many_rows_from_js, names_from_js, object, params_from_js, row_from_js, rows_from_js,
    rows_to_js, statements_from_js, value_from_js, value_to_js,
};
use crate::error::{Coded, OpenError, QueryError};
use crate::options::Options;
use crate::store::{Acked, Op, Settled, Store, Ticket};
use sqlweir_core::ManyOutcome;

/// What a main-thread write item asks for (its fourth element).
mod kind {
    pub(super) const WRITE: u8 = 0;
    pub(super) const WRITE_MANY: u8 = 1;
    pub(super) const INSERT: u8 = 2;
    pub(super) const UPSERT: u8 = 3;
    pub(super) const INSERT_MANY: u8 = 4;
    pub(super) const TRANSACTION: u8 = 5;
}

/// Largest page `page` returns.
const PAGE_LIMIT_MAX: f64 = 100_000.0;

fn invalid(e: impl std::fmt::Display) -> WriteError {
    WriteError::InvalidInput { message: e.to_string() }
}

/// The queue entry of one main-thread item: `target` is the SQL (writes) or the table (typed
/// writes); `Ok(None)` when there is nothing to write (an `insertMany` of no rows).
fn op_from_js(kind: u8, target: Option<String>, payload: &JsValue, extra: &JsValue) -> Result<Option<Op>, WriteError> {
    let text = move |what: &str| target.ok_or_else(|| invalid(format!("{what} must be a string")));
    let op = match kind {
        // An object binds by name (`:id`, `@id`, `$id` from `{ id }`), an array by position.
        kind::WRITE if payload.is_object() && !Array::is_array(payload) => {
            let row = row_from_js(payload)?;
            Op::Write(Write::named(text("sql")?, row.columns.into_iter().zip(row.values).collect()))
        }
        kind::WRITE => Op::Write(Write::one(text("sql")?, params_from_js(payload)?)),
        kind::WRITE_MANY => Op::Write(Write::many(text("sql")?, rows_from_js(payload)?)),
        kind::INSERT => {
            let row = row_from_js(payload)?;
            Op::Write(Write::one(insert_sql(&text("the table")?, &row.columns).map_err(invalid)?, row.values))
        }
        kind::UPSERT => {
            let row = row_from_js(payload)?;
            let conflict = names_from_js(extra)?;
            let conflict: Vec<&str> = conflict.iter().map(String::as_str).collect();
            let sql = upsert_sql(&text("the table")?, &row.columns, &conflict).map_err(invalid)?;
            Op::Write(Write::one(sql, row.values))
        }
        kind::INSERT_MANY => {
            let table = text("the table")?;
            let Some((columns, rows)) = many_rows_from_js(payload)? else { return Ok(None) };
            Op::Write(Write::many(insert_sql(&table, &columns).map_err(invalid)?, rows))
        }
        kind::TRANSACTION => Op::Transaction(statements_from_js(payload)?, None),
        other => return Err(invalid(format!("unknown write kind {other}"))),
    };
    Ok(Some(op))
}

/// An `insertMany` of no rows: nothing to commit.
const NOTHING: Acked = Acked::Many(ManyOutcome { committed: 0, rejected: Vec::new(), batch: 0 });

/// An open database in this worker.
#[wasm_bindgen]
pub struct Database {
    store: Store,
}

fn js<E: Coded>(e: &E) -> JsValue {
    error_to_js(e, false)
}

#[wasm_bindgen]
impl Database {
    /// Installs the OPFS pool, opens `name`, runs `options.migrations`; rejects with an `Error`
    /// whose `code` says why (`InvalidInput`, `Storage`, `InUse`, `Migration`, `Io`, ...).
    pub async fn open(name: String, options: JsValue) -> Result<Database, JsValue> {
        let options = Options::from_js(&options).map_err(|e| js(&e))?;
        let store = Store::open(&name, options).await.map_err(|e| js(&e))?;
        Ok(Database { store })
    }

    /// Accepts writes sent by the main thread: each item is `[id, target, payload, kind, extra]`
    /// (`kind`: 0 or false write, 1 or true writeMany, 2 insert, 3 upsert, 4 insertMany, 5 transaction; `target`
    /// is the SQL or the table; `extra` the upsert's conflict columns). Returns the refused ones
    /// at once, flat as `[id, false, error, ...]`; the others settle through the `onSettled`
    /// listener.
    ///
    /// With `origin`, item `i` is recorded under the request id (`origin`, `seqs[i]`); with
    /// `resent` (writes its tab sent before, to an earlier leader) each is first looked up: one
    /// committed under its id before (by this worker or an earlier one) is answered with its
    /// first outcome instead of running again.
    #[allow(clippy::needless_pass_by_value)] // wasm-bindgen hands strings over owned
    pub fn submit(&self, items: &Array, origin: Option<String>, seqs: &[f64], resent: bool) -> Result<Array, JsValue> {
        let refused = Array::new();
        let origin: Option<Arc<str>> = origin.map(Into::into);
        for (i, item) in items.iter().enumerate() {
            let id = item.dyn_ref::<Array>().and_then(|a| a.get(0).as_f64());
            let id = id.ok_or_else(|| JsValue::from_str("a write's id must be a number"))?;
            let request = request_id(origin.as_ref(), seqs, i);
            self.submit_item(id, item, request, resent, &refused)?;
        }
        Ok(refused)
    }

    /// Drops the request markers of `origin` numbered below `below`, with the next batch.
    pub fn forget(&self, origin: &str, below: f64) {
        self.store.forget(origin, below as u64);
    }

    /// Accepts one tick's writes packed in columns (the main thread's `sendWrites`), in order:
    /// item `i` has id `ids[i]`; `counts[i]` is its number of parameters when it is a plain
    /// `write` of the SQL `sqls[sql_index[i]]`, `u32::MAX - 1` when it is a `writeMany` of that
    /// SQL (its number of rows is the next of `many_rows`, each row's length the next of
    /// `row_lens`), or `u32::MAX` when it is the next item of `legacy` (any other kind, as
    /// `submit` takes it). The packed writes' parameters follow one another in `tags` (0 null, 1
    /// number, 2 string, 3 boolean, 4 any other value) with numbers and booleans in `nums` (same
    /// index), strings cut from `text` (UTF-8) at the UTF-16 ends `text_ends`, and other values in
    /// `others`. Returns the refused ones like `submit`; `origin`, `seqs` and `resent` give
    /// request ids as there. The id of a `legacy` item is `ids[i]`, not its own first element.
    #[wasm_bindgen(js_name = submitPacked)]
    #[allow(clippy::too_many_arguments, clippy::needless_pass_by_value)]
    pub fn submit_packed(
        &self,
        ids: &[f64],
        counts: &[u32],
        sql_index: &[u32],
        many_rows: &[u32],
        row_lens: &[u32],
        sqls: &Array,
        tags: &[u8],
        nums: &[f64],
        text: &[u8],
        text_ends: &[u32],
        others: &Array,
        legacy: &Array,
        origin: Option<String>,
        seqs: &[f64],
        resent: bool,
    ) -> Result<Array, JsValue> {
        let refused = Array::new();
        let sqls: Vec<Arc<str>> = sqls.iter().map(|s| s.as_string().unwrap_or_default().into()).collect();
        // The page encodes the joined strings with `TextEncoder` (never invalid UTF-8: a lone
        // surrogate becomes U+FFFD); a JS string would be copied into wasm memory one
        // character at a time.
        let text = std::str::from_utf8(text).map_err(|_| malformed())?;
        let mut values =
            Packed { tags, nums, strings: split_text(text, text_ends).into_iter(), others, at: 0, other: 0 };
        // One clock reading for the whole message: its writes were all issued in one tick.
        let now = crate::host::now();
        let (mut old, mut many, mut row) = (0u32, 0usize, 0usize);
        let origin: Option<Arc<str>> = origin.map(Into::into);
        self.store.reserve(ids.len());
        for (i, (&id, &count)) in ids.iter().zip(counts).enumerate() {
            let request = request_id(origin.as_ref(), seqs, i);
            if count == AS_IS {
                self.submit_item(id, legacy.get(old), request, resent, &refused)?;
                old += 1;
                continue;
            }
            let sql = Arc::clone(sql_index.get(i).and_then(|&at| sqls.get(at as usize)).ok_or_else(malformed)?);
            let write = if count == MANY {
                let rows = *many_rows.get(many).ok_or_else(malformed)? as usize;
                many += 1;
                let mut out = Vec::with_capacity(rows);
                let mut error = None;
                for r in 0..rows {
                    let len = *row_lens.get(row).ok_or_else(malformed)?;
                    row += 1;
                    match values.take(len)? {
                        Ok(params) => out.push(params),
                        Err((k, why)) if error.is_none() => {
                            error = Some(invalid(format!("row {r}, parameter {k}: {why}")));
                        }
                        Err(_) => {}
                    }
                }
                error.map_or_else(|| Ok(Write::many(sql, out)), Err)
            } else {
                values
                    .take(count)?
                    .map(|params| Write::one(sql, params))
                    .map_err(|(k, why)| invalid(format!("parameter {k}: {why}")))
            };
            let settled = match write {
                Ok(write) => self.store.submit_at(Op::Write(write).once(request, !resent), Ticket::Id(id), now),
                Err(e) => Err(Settled { id, result: Err(e.into()) }),
            };
            if let Err(s) = settled {
                push_settled(&refused, &s);
            }
        }
        Ok(refused)
    }

    fn submit_item(
        &self,
        id: f64,
        item: JsValue,
        request: Option<RequestId>,
        resent: bool,
        refused: &Array,
    ) -> Result<(), JsValue> {
        let item: Array =
            item.dyn_into().map_err(|_| JsValue::from_str("submit takes [id, target, payload, kind] items"))?;
        // `false` and `true` are write and writeMany; the typed writes use numbers.
        let kind = item.get(3);
        let kind = kind.as_f64().map_or(if kind.is_truthy() { kind::WRITE_MANY } else { kind::WRITE }, |k| k as u8);
        let settled = match op_from_js(kind, item.get(1).as_string(), &item.get(2), &item.get(4)) {
            Ok(Some(op)) => self.store.submit(op.once(request, !resent), Ticket::Id(id)),
            Ok(None) => Err(Settled { id, result: Ok(NOTHING) }),
            Err(e) => Err(Settled { id, result: Err(e.into()) }),
        };
        if let Err(s) = settled {
            push_settled(refused, &s);
        }
        Ok(())
    }

    /// Sets the listener of main-thread writes: called once per settled batch with a flat array
    /// `[id, ok, value, ...]` where `value` is the receipt, or a plain error object, and a
    /// `Float64Array` `[id, changes, lastRowid, batch, ...]` of the plain receipts (`write`s
    /// whose rowid a number holds exactly), which are not in the first.
    #[wasm_bindgen(js_name = onSettled)]
    pub fn on_settled(&self, listener: Function) {
        self.store.set_listener(Rc::new(move |settled: Vec<Settled>| {
            let out = Array::new();
            let mut receipts = Vec::with_capacity(settled.len() * 4);
            for s in &settled {
                match &s.result {
                    Ok(Acked::One(r)) if r.returned.is_none() && r.last_rowid.unsigned_abs() <= MAX_SAFE_INTEGER => {
                        receipts.extend([s.id, r.changes as f64, r.last_rowid as f64, r.batch as f64]);
                    }
                    _ => push_settled(&out, s),
                }
            }
            let receipts = js_sys::Float64Array::from(receipts.as_slice());
            if let Err(e) = listener.call2(&JsValue::UNDEFINED, &out, &receipts) {
                crate::host::warn(&format!("sqlweir: the onSettled listener threw: {e:?}"));
            }
        }));
    }

    /// Sets the listener of the commit feed: called after each committed batch that changed
    /// rows, with its batch id and an array of the tables it changed (its triggers' and
    /// foreign-key actions' included), before any of its writes is answered.
    #[wasm_bindgen(js_name = onCommit)]
    pub fn on_commit(&self, listener: Function) {
        self.store.set_commit_listener(Rc::new(move |batch: u64, tables: Vec<String>| {
            let names: Array = tables.iter().map(|t| JsValue::from_str(t)).collect();
            if let Err(e) = listener.call2(&JsValue::UNDEFINED, &JsValue::from_f64(batch as f64), &names) {
                crate::host::warn(&format!("sqlweir: the onCommit listener threw: {e:?}"));
            }
        }));
    }

    /// The tables a read-only statement reads, from SQLite's authorizer while preparing it
    /// (nothing runs): what a live query watches.
    #[wasm_bindgen(js_name = tablesRead)]
    pub fn tables_read(&self, sql: &str) -> Result<Array, JsValue> {
        let tables = self.store.tables_read(sql).map_err(|e| js(&e))?;
        Ok(tables.iter().map(|t| JsValue::from_str(t)).collect())
    }

    /// Runs a read-only statement; rows as plain objects (integers beyond 2^53 as bigint).
    pub fn query(&self, sql: &str, params: &JsValue) -> Result<Array, JsValue> {
        let params = params_from_js(params).map_err(|e| js(&e))?;
        let found = self.store.query(sql, &params).map_err(|e| js(&e))?;
        rows_to_js(&found)
    }

    /// One page of `table` in keyset order of the column `key`: up to `limit` rows whose key is
    /// greater than `after` (from the start when null or undefined), as
    /// `{ rows, next }`; `next` is the last row's key when the page is full, else null.
    pub fn page(&self, table: &str, key: &str, after: &JsValue, limit: f64) -> Result<JsValue, JsValue> {
        let bad = |message: String| js(&QueryError::InvalidInput { message });
        if !(1.0..=PAGE_LIMIT_MAX).contains(&limit) || limit.fract() != 0.0 {
            return Err(bad(format!("limit must be a whole number from 1 to {PAGE_LIMIT_MAX}, got {limit}")));
        }
        let limit = limit as usize;
        let (t, k) = (
            quote_identifier(table).map_err(|e| bad(e.to_string()))?,
            quote_identifier(key).map_err(|e| bad(e.to_string()))?,
        );
        let limit_value = Value::Integer(limit as i64);
        let found = if after.is_undefined() || after.is_null() {
            self.store.query(&format!("SELECT * FROM {t} ORDER BY {k} LIMIT ?1"), &[limit_value])
        } else {
            let after = value_from_js(after).map_err(|why| bad(format!("after: {why}")))?;
            self.store.query(&format!("SELECT * FROM {t} WHERE {k} > ?1 ORDER BY {k} LIMIT ?2"), &[after, limit_value])
        }
        .map_err(|e| js(&e))?;
        let next = match (found.rows.last(), found.columns.iter().position(|c| c == key)) {
            (Some(last), Some(at)) if found.rows.len() == limit => value_to_js(&last[at]),
            (Some(_), None) => {
                return Err(bad(format!(
                    "key {key:?} is not a column of {table:?} (SELECT * does not return it); page by one of its columns"
                )));
            }
            _ => JsValue::NULL,
        };
        let out = js_sys::Object::new();
        js_sys::Reflect::set(&out, &"rows".into(), &rows_to_js(&found)?.into())?;
        js_sys::Reflect::set(&out, &"next".into(), &next)?;
        Ok(out.into())
    }

    /// Resolves when every write accepted before the call has settled.
    pub fn flush(&self) -> Promise {
        let store = self.store.clone();
        future_to_promise(async move {
            store.flush().await;
            Ok(JsValue::UNDEFINED)
        })
    }

    /// Lets accepted writes settle, then closes; later writes fail with `Closed`.
    pub fn close(&self) -> Promise {
        let store = self.store.clone();
        future_to_promise(async move {
            store.close().await.map_err(|e| js(&e))?;
            Ok(JsValue::UNDEFINED)
        })
    }

    /// Counters and latencies (durations in ms).
    pub fn metrics(&self) -> Result<JsValue, JsValue> {
        let m = self.store.metrics();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let n = |x: f64| JsValue::from_f64(x);
        let text = |t: Option<String>| t.map_or(JsValue::NULL, |t| JsValue::from_str(&t));
        Ok(object(&[
            ("queueDepth", n(m.queue_depth as f64)),
            ("queueCapacity", n(m.queue_capacity as f64)),
            ("accepted", n(m.accepted as f64)),
            ("committed", n(m.committed as f64)),
            ("rejected", n(m.rejected as f64)),
            ("failed", n(m.failed as f64)),
            ("retries", n(m.retries as f64)),
            ("replays", n(m.replays as f64)),
            ("batches", n(m.batches as f64)),
            ("meanBatchSize", n(m.mean_batch_size)),
            ("batchLimit", n(m.batch_limit as f64)),
            ("commitP50Ms", n(ms(m.commit_p50))),
            ("commitP99Ms", n(ms(m.commit_p99))),
            ("ackP50Ms", n(ms(m.ack_p50))),
            ("ackP99Ms", n(ms(m.ack_p99))),
            ("breaker", JsValue::from_str(m.breaker)),
            ("breakerOpened", n(m.breaker_opened as f64)),
            ("lastError", text(m.last_error)),
            ("journalMode", JsValue::from_str(&m.journal_mode)),
            ("engine", JsValue::from_str(&m.engine)),
        ]))
    }

    /// `{ status: "ok" | "degraded" | "failing", reason }`.
    pub fn health(&self) -> Result<JsValue, JsValue> {
        let h = self.store.health();
        let status = match h.status {
            HealthStatus::Ok => "ok",
            HealthStatus::Degraded => "degraded",
            HealthStatus::Failing => "failing",
        };
        let reason = h.reason.map_or(JsValue::NULL, |r| JsValue::from_str(&r));
        Ok(object(&[("status", JsValue::from_str(status)), ("reason", reason)]))
    }

    /// Takes the job lock `name`; resolves with a token for `unlock`, or rejects with code
    /// `InProgress` (and `holder`, `sinceMs`) when someone holds it past `timeoutMs`.
    pub fn lock(&self, name: String, holder: String, timeout_ms: Option<f64>) -> Promise {
        let store = self.store.clone();
        future_to_promise(async move {
            let wait = timeout_ms.map(|ms| Duration::try_from_secs_f64(ms / 1000.0).unwrap_or_default());
            match store.lock(&name, &holder, wait).await {
                Ok(token) => Ok(JsValue::from_f64(f64::from(token))),
                Err(e) => {
                    let err = js(&e);
                    if let crate::error::LockError::InProgress { holder, since_ms } = &e {
                        let _ = js_sys::Reflect::set(&err, &"holder".into(), &holder.into());
                        let _ = js_sys::Reflect::set(&err, &"sinceMs".into(), &JsValue::from_f64(*since_ms as f64));
                    }
                    Err(err)
                }
            }
        })
    }

    /// Releases a job lock; `failure` records the run as failed with that reason.
    pub fn unlock(&self, token: u32, failure: Option<String>) -> bool {
        self.store.unlock(token, failure)
    }

    /// Makes the next `attempts` batch attempts fail with `SQLITE_BUSY`, as if another connection
    /// held the write lock; `0` releases it. Only in builds with the `fault-injection` feature
    /// (the tests and the demo page): in the browser nothing else can lock the file.
    #[cfg(feature = "fault-injection")]
    #[wasm_bindgen(js_name = injectBusy)]
    pub fn inject_busy(&self, attempts: u32) {
        self.store.inject_busy(attempts);
    }

    /// `{ holder: { holder, sinceMs } | null, runs: [{ holder, startedMs, durationMs, failure }] }`.
    #[wasm_bindgen(js_name = jobStatus)]
    pub fn job_status(&self, name: &str) -> Result<JsValue, JsValue> {
        let (held, runs) = self.store.job_status(name);
        let n = |x: u64| JsValue::from_f64(x as f64);
        let holder = held
            .map_or(JsValue::NULL, |h| object(&[("holder", JsValue::from_str(&h.holder)), ("sinceMs", n(h.since_ms))]));
        let runs: Array = runs
            .into_iter()
            .map(|r| {
                let failure = match r.outcome {
                    JobOutcome::Succeeded => JsValue::NULL,
                    JobOutcome::Failed(why) => JsValue::from_str(&why),
                };
                object(&[
                    ("holder", JsValue::from_str(&r.holder)),
                    ("startedMs", n(r.started_ms)),
                    ("durationMs", n(r.duration_ms)),
                    ("failure", failure),
                ])
            })
            .collect();
        Ok(object(&[("holder", holder), ("runs", runs.into())]))
    }
}

/// The whole file of the open database `name` in the pool of `directory`, read between batches
/// (call it when no transaction is open: the worker runs it after a flush). A second, read-only
/// connection copies the database with `VACUUM INTO` (in WAL mode the WAL's commits included)
/// to a scratch file of the pool, which is read and removed; the header says rollback journal.
#[wasm_bindgen(js_name = exportFile)]
pub async fn export_file(directory: String, name: String) -> Result<Vec<u8>, JsValue> {
    use rusqlite::config::DbConfig;
    use rusqlite::{Connection, OpenFlags};
    use sqlite_wasm_rs::vfs::VfsFilesManager;
    use sqlite_wasm_rs::vfs::transfer::DbTransfer;
    let util = crate::opfs::pool(&directory).await.map_err(|e| js(&e))?;
    let storage = |e: &dyn std::fmt::Display| js(&OpenError::Storage { message: e.to_string() });
    let scratch = format!("{name}.sqlweir-export");
    let clear = || [scratch.clone(), format!("{scratch}-journal")].iter().try_for_each(|f| util.remove(f).map(drop));
    clear().map_err(|e| storage(&e))?;
    let copied = (|| {
        let conn = Connection::open_with_flags_and_vfs(&name, OpenFlags::SQLITE_OPEN_READ_ONLY, crate::opfs::VFS_NAME)?;
        // It must never checkpoint or delete the WAL the store's connection uses.
        conn.set_db_config(DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true)?;
        // The VFS has no shared memory: a WAL file is read with the WAL index in the heap.
        conn.pragma_update(None, "locking_mode", "EXCLUSIVE")?;
        conn.execute("VACUUM INTO ?1", [&scratch])?;
        conn.close().map_err(|(_, e)| e)
    })();
    let bytes = match copied {
        Ok(()) => util.export_db(&scratch).map_err(|e| storage(&e)),
        Err(e) => Err(js(&OpenError::Database(sqlweir_sqlite::classify(e)))),
    };
    clear().map_err(|e| storage(&e))?;
    let mut bytes = bytes?;
    if let Some(versions) = bytes.get_mut(18..20) {
        versions.copy_from_slice(&[1, 1]);
    }
    Ok(bytes)
}

/// Writes `bytes`, the whole file of an SQLite database (the npm package's `importFile` checks
/// the header first; `exportFile` makes such a file), as the database `name` of the OPFS pool in
/// `directory`, replacing a closed database of that name and its journal. Rejects with `InUse`
/// while `name` is open in this worker, `Storage` when the pool refuses.
#[wasm_bindgen(js_name = importFile)]
pub async fn import_file(directory: String, name: String, bytes: Vec<u8>) -> Result<(), JsValue> {
    use sqlite_wasm_rs::vfs::VfsFilesManager;
    use sqlite_wasm_rs::vfs::transfer::DbTransfer;
    let util = crate::opfs::pool(&directory).await.map_err(|e| js(&e))?;
    crate::opfs::claim(&name).map_err(|e| js(&e))?;
    let done = [name.clone(), format!("{name}-journal"), format!("{name}-wal")]
        .iter()
        .try_for_each(|file| util.remove(file).map(drop))
        .and_then(|()| util.import_db(&name, &bytes));
    crate::opfs::release(&name);
    done.map_err(|e| js(&OpenError::Storage { message: e.to_string() }))
}

/// What `submitPacked` throws for columns that do not fit together (a bug, not bad input).
fn malformed() -> JsValue {
    JsValue::from_str("submitPacked: malformed columns")
}

/// `counts` entry of an item that travels as it is (`pack.js`).
const AS_IS: u32 = u32::MAX;
/// `counts` entry of a packed `writeMany`.
const MANY: u32 = u32::MAX - 1;

/// The parameter columns of `submitPacked`, read in order.
struct Packed<'a> {
    tags: &'a [u8],
    nums: &'a [f64],
    strings: std::vec::IntoIter<String>,
    others: &'a Array,
    /// The next value's index in `tags` and `nums`.
    at: usize,
    /// The next one's in `others`.
    other: u32,
}

impl Packed<'_> {
    /// The next `count` values: all of them, or the first refused one's position (from 1) and
    /// why; every one of them is read either way. `Err` when the columns are malformed.
    fn take(&mut self, count: u32) -> Result<Result<Vec<Value>, (usize, String)>, JsValue> {
        let mut params = Vec::with_capacity(count as usize);
        let mut error = None;
        for k in 1..=count as usize {
            let (&tag, &n) = self.tags.get(self.at).zip(self.nums.get(self.at)).ok_or_else(malformed)?;
            self.at += 1;
            let value = match tag {
                0 => Ok(Value::Null),
                1 => Ok(number_value(n)),
                2 => Ok(Value::Text(self.strings.next().ok_or_else(malformed)?)),
                3 => Ok(Value::Integer(n as i64)),
                _ => {
                    self.other += 1;
                    value_from_js(&self.others.get(self.other - 1))
                }
            };
            match value {
                Ok(value) => params.push(value),
                Err(why) if error.is_none() => error = Some((k, why)),
                Err(_) => {}
            }
        }
        Ok(error.map_or(Ok(params), Err))
    }
}

/// The request id of item `i`: (`origin`, `seqs[i]`), when an origin is given.
fn request_id(origin: Option<&Arc<str>>, seqs: &[f64], i: usize) -> Option<RequestId> {
    Some(RequestId::new(Arc::clone(origin?), *seqs.get(i)? as u64))
}

/// Largest integer a JavaScript number holds exactly (2^53 - 1).
const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// A number parameter, by [`value_from_js`]'s rule: integral within +-(2^53 - 1) as INTEGER.
fn number_value(n: f64) -> Value {
    #[allow(clippy::float_cmp)] // an exact test: is the number integral?
    let integral = n.trunc() == n && n.abs() <= MAX_SAFE_INTEGER as f64;
    if integral { Value::Integer(n as i64) } else { Value::Real(n) }
}

/// The strings joined in `text`, cut at `ends` (cumulative, in UTF-16 code units as JavaScript
/// counts them). A lone surrogate became U+FFFD on the way in, as for one string alone; a
/// surrogate pair that two neighbouring strings made up is cut back into two U+FFFD.
fn split_text(text: &str, ends: &[u32]) -> Vec<String> {
    let mut out = Vec::with_capacity(ends.len());
    if ends.last().is_none_or(|&total| total as usize == text.len()) {
        // Every character is ASCII: a UTF-16 unit is a byte.
        let mut start = 0usize;
        for &end in ends {
            let end = (end as usize).clamp(start, text.len());
            out.push(text[start..end].to_owned());
            start = end;
        }
        return out;
    }
    let mut ends = ends.iter().map(|&e| e as usize).peekable();
    let (mut unit, mut current) = (0usize, String::new());
    for c in text.chars() {
        while ends.peek().is_some_and(|&end| end <= unit) {
            ends.next();
            out.push(std::mem::take(&mut current));
        }
        let width = c.len_utf16();
        if width == 2 && ends.peek() == Some(&(unit + 1)) {
            ends.next();
            current.push(char::REPLACEMENT_CHARACTER);
            out.push(std::mem::take(&mut current));
            current.push(char::REPLACEMENT_CHARACTER);
        } else {
            current.push(c);
        }
        unit += width;
    }
    for _ in ends {
        out.push(std::mem::take(&mut current));
    }
    out
}

fn push_settled(out: &Array, s: &Settled) {
    out.push(&JsValue::from_f64(s.id));
    match &s.result {
        Ok(acked) => {
            out.push(&JsValue::TRUE);
            out.push(&acked_to_js(acked));
        }
        Err(e) => {
            out.push(&JsValue::FALSE);
            out.push(&error_to_js(e, true));
        }
    }
}
