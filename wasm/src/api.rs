//! The worker's JavaScript API, exported with wasm-bindgen: `Database` wraps a [`Store`].
//!
//! The npm package's worker bootstrap (`js/worker.js`) drives it: main-thread writes arrive in
//! one message per tick and go in with [`Database::submit`]; their outcomes leave in one call of
//! the `onSettled` listener per batch. Code that already runs in a dedicated worker can also use
//! the promise methods directly.

use std::rc::Rc;
use std::time::Duration;

use js_sys::{Array, Function, Promise};
use serde::Serialize;
use sqlweir_core::{HealthStatus, JobOutcome, Write, WriteError};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

use crate::convert::{acked_to_js, error_to_js, params_from_js, rows_from_js, rows_to_js, value_from_js};
use crate::error::{Coded, OpenError};
use crate::options::Options;
use crate::store::{Settled, Store, Ticket};

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
        let options: Options = if options.is_undefined() || options.is_null() {
            Options::default()
        } else {
            serde_wasm_bindgen::from_value(options).map_err(|e| js(&OpenError::Options { message: e.to_string() }))?
        };
        let store = Store::open(&name, options).await.map_err(|e| js(&e))?;
        Ok(Database { store })
    }

    /// Writes one statement; resolves with `{ changes, lastRowid, batch }` after its batch commits.
    pub fn write(&self, sql: String, params: &JsValue) -> Promise {
        let store = self.store.clone();
        let write = params_from_js(params).map(|p| Write::one(sql, p));
        future_to_promise(async move {
            let acked = store.write_any(write.map_err(|e| js(&e))?).await.map_err(|e| js(&e))?;
            Ok(acked_to_js(&acked, false))
        })
    }

    /// Writes many rows for one statement; resolves with `{ committed, rejected, batch }`.
    #[wasm_bindgen(js_name = writeMany)]
    pub fn write_many(&self, sql: String, rows: &JsValue) -> Promise {
        let store = self.store.clone();
        let write = rows_from_js(rows).map(|r| Write::many(sql, r));
        future_to_promise(async move {
            let acked = store.write_any(write.map_err(|e| js(&e))?).await.map_err(|e| js(&e))?;
            Ok(acked_to_js(&acked, false))
        })
    }

    /// Accepts writes sent by the main thread: each item is `[id, sql, params, many]`. Returns
    /// the refused ones at once, flat as `[id, false, error, ...]`; the others settle through the
    /// `onSettled` listener.
    pub fn submit(&self, items: &Array) -> Result<Array, JsValue> {
        let refused = Array::new();
        for item in items.iter() {
            let item: Array =
                item.dyn_into().map_err(|_| JsValue::from_str("submit takes [id, sql, params, many] items"))?;
            let id = item.get(0).as_f64().ok_or_else(|| JsValue::from_str("a write's id must be a number"))?;
            let write = match item.get(1).as_string() {
                None => Err(WriteError::InvalidInput { message: "sql must be a string".into() }),
                Some(sql) if item.get(3).is_truthy() => rows_from_js(&item.get(2)).map(|r| Write::many(sql, r)),
                Some(sql) => params_from_js(&item.get(2)).map(|p| Write::one(sql, p)),
            };
            let settled = match write {
                Ok(write) => self.store.submit(write, Ticket::Id(id)),
                Err(e) => Err(Settled { id, result: Err(e) }),
            };
            if let Err(s) = settled {
                push_settled(&refused, &s);
            }
        }
        Ok(refused)
    }

    /// Sets the listener of main-thread writes: called once per settled batch with a flat array
    /// `[id, ok, value, ...]` where `value` is the receipt, or a plain error object.
    #[wasm_bindgen(js_name = onSettled)]
    pub fn on_settled(&self, listener: Function) {
        self.store.set_listener(Rc::new(move |settled: Vec<Settled>| {
            let out = Array::new();
            for s in &settled {
                push_settled(&out, s);
            }
            if let Err(e) = listener.call1(&JsValue::UNDEFINED, &out) {
                crate::host::warn(&format!("sqlweir: the onSettled listener threw: {e:?}"));
            }
        }));
    }

    /// Runs a read-only statement; rows as plain objects (integers beyond 2^53 as bigint).
    pub fn query(&self, sql: &str, params: &JsValue) -> Result<Array, JsValue> {
        let params = params_from_js(params).map_err(|e| js(&e))?;
        let found = self.store.query(sql, &params).map_err(|e| js(&e))?;
        rows_to_js(&found)
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
        let out = JsMetrics {
            queue_depth: m.queue_depth,
            queue_capacity: m.queue_capacity,
            accepted: m.accepted,
            committed: m.committed,
            rejected: m.rejected,
            failed: m.failed,
            retries: m.retries,
            replays: m.replays,
            batches: m.batches,
            mean_batch_size: m.mean_batch_size,
            batch_limit: m.batch_limit,
            commit_p50_ms: ms(m.commit_p50),
            commit_p99_ms: ms(m.commit_p99),
            ack_p50_ms: ms(m.ack_p50),
            ack_p99_ms: ms(m.ack_p99),
            breaker: m.breaker,
            breaker_opened: m.breaker_opened,
            last_error: m.last_error,
            journal_mode: m.journal_mode,
            sqlite_version: m.sqlite_version,
        };
        to_js(&out)
    }

    /// `{ status: "ok" | "degraded" | "failing", reason }`.
    pub fn health(&self) -> Result<JsValue, JsValue> {
        let h = self.store.health();
        let status = match h.status {
            HealthStatus::Ok => "ok",
            HealthStatus::Degraded => "degraded",
            HealthStatus::Failing => "failing",
        };
        to_js(&JsHealth { status, reason: h.reason })
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
        let out = JsJobStatus {
            holder: held.map(|h| JsHolder { holder: h.holder, since_ms: h.since_ms }),
            runs: runs
                .into_iter()
                .map(|r| JsRun {
                    holder: r.holder,
                    started_ms: r.started_ms,
                    duration_ms: r.duration_ms,
                    failure: match r.outcome {
                        JobOutcome::Succeeded => None,
                        JobOutcome::Failed(why) => Some(why),
                    },
                })
                .collect(),
        };
        to_js(&out)
    }
}

fn push_settled(out: &Array, s: &Settled) {
    out.push(&JsValue::from_f64(s.id));
    match &s.result {
        Ok(acked) => {
            out.push(&JsValue::TRUE);
            out.push(&acked_to_js(acked, true));
        }
        Err(e) => {
            out.push(&JsValue::FALSE);
            out.push(&error_to_js(e, true));
        }
    }
}

fn to_js<T: Serialize>(value: &T) -> Result<JsValue, JsValue> {
    value.serialize(&serde_wasm_bindgen::Serializer::json_compatible()).map_err(Into::into)
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct JsMetrics {
    queue_depth: usize,
    queue_capacity: usize,
    accepted: u64,
    committed: u64,
    rejected: u64,
    failed: u64,
    retries: u64,
    replays: u64,
    batches: u64,
    mean_batch_size: f64,
    batch_limit: usize,
    commit_p50_ms: f64,
    commit_p99_ms: f64,
    ack_p50_ms: f64,
    ack_p99_ms: f64,
    breaker: &'static str,
    breaker_opened: u64,
    last_error: Option<String>,
    journal_mode: String,
    sqlite_version: String,
}

#[derive(Serialize)]
struct JsHealth {
    status: &'static str,
    reason: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct JsHolder {
    holder: String,
    since_ms: u64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct JsRun {
    holder: String,
    started_ms: u64,
    duration_ms: u64,
    failure: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct JsJobStatus {
    holder: Option<JsHolder>,
    runs: Vec<JsRun>,
}

/// Converts one JavaScript parameter, for tests of the value rules.
#[doc(hidden)]
pub fn param_type(v: &JsValue) -> Result<sqlweir_core::Value, String> {
    value_from_js(v)
}
