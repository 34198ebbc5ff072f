//! Options of [`Store::open`](crate::Store::open), as JavaScript passes them (camelCase keys;
//! an unknown key is an error, not ignored).

use std::time::Duration;

use js_sys::{Array, Object, Reflect};
use sqlweir_core::{RetryPolicy, WriterConfig};
use wasm_bindgen::{JsCast, JsValue};

use crate::error::OpenError;

pub use sqlweir_core::Backpressure;

/// SQLite's `synchronous` setting: what an acknowledged write survives.
///
/// In every mode an acked write has been written to the OPFS file through the worker's
/// synchronous access handle, so it survives a reload, the tab or the worker being killed, and
/// the browser crashing. What differs is an OS crash or power loss, which depends on when SQLite
/// asks OPFS to flush (the access handle's `flush()`, the browser's nearest thing to fsync; the
/// pool VFS flushes on every `xSync`, whatever its flags):
///
/// | journal | `Normal` (default) | `Full` |
/// |---|---|---|
/// | [`Journal::Wal`] (default) | the WAL is flushed at checkpoints only: the commits since the last one may be lost, the database stays consistent | the WAL is flushed at every commit, before the ack: acked writes survive as far as the browser honours the flush |
/// | [`Journal::Delete`] | the journal and the database are flushed at every commit, the journal header once less than under `Full` | every commit is flushed, journal header included |
///
/// With `Full` a batch costs one flush, not one per write: group commit is what keeps it fast.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Synchronous {
    /// `PRAGMA synchronous=NORMAL` (default).
    #[default]
    Normal,
    /// `PRAGMA synchronous=FULL`: every commit flushed before its writes are acked.
    Full,
}

/// SQLite's journal mode. A database in the other mode is converted when it is opened.
///
/// The OPFS pool VFS has no shared memory, so every connection runs in exclusive locking mode
/// from its first statement and SQLite keeps the WAL index in the worker's heap; the VFS gives
/// one connection per file anyway, and the worker is its only user.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Journal {
    /// `PRAGMA journal_mode=WAL` (default): a commit appends to the `-wal` file, checkpoints
    /// (every 1000 pages of 8 KiB, and at close) copy it into the database. As the native default.
    #[default]
    Wal,
    /// `PRAGMA journal_mode=DELETE`: the rollback journal, created and removed at every commit,
    /// with normal locking once open. Several flushes per commit.
    Delete,
}

/// Retry of batches that hit lock contention (see the core's `RetryPolicy`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RetryOptions {
    /// First backoff ceiling, ms.
    pub base_ms: f64,
    /// Largest backoff ceiling, ms.
    pub cap_ms: f64,
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// Total waiting allowed for one batch, ms.
    pub budget_ms: f64,
}

impl RetryOptions {
    fn from_js(value: &JsValue) -> Result<RetryOptions, OpenError> {
        let mut r = RetryOptions::default();
        let Some(fields) = object_of(value, "retry")? else { return Ok(r) };
        for (key, v) in fields {
            match key.as_str() {
                "baseMs" => r.base_ms = number(&v, "retry.baseMs")?,
                "capMs" => r.cap_ms = number(&v, "retry.capMs")?,
                "maxAttempts" => r.max_attempts = count(&v, "retry.maxAttempts")?,
                "budgetMs" => r.budget_ms = number(&v, "retry.budgetMs")?,
                other => return Err(bad(format!("unknown option \"retry.{other}\""))),
            }
        }
        Ok(r)
    }
}

impl Default for RetryOptions {
    fn default() -> Self {
        let p = RetryPolicy::default();
        RetryOptions {
            base_ms: millis(p.base),
            cap_ms: millis(p.cap),
            max_attempts: p.max_attempts,
            budget_ms: millis(p.budget),
        }
    }
}

/// How to open a store.
#[derive(Clone, Debug, PartialEq)]
pub struct Options {
    /// Schema steps in order; progress is kept in `PRAGMA user_version`, each step in its own
    /// transaction, all run before the first write is accepted.
    pub migrations: Vec<String>,
    /// Rows the queue holds (default 10,000).
    pub queue_capacity: usize,
    /// What a write does when the queue is full.
    pub backpressure: Backpressure,
    /// Rows per batch at first (default 100); grows under load.
    pub batch_rows: usize,
    /// Largest batch under load (default 10,000).
    pub batch_rows_ceiling: usize,
    /// How long the writer waits for more writes before a batch that is not full, ms (default 0).
    pub linger_ms: f64,
    /// What an acknowledged write survives.
    pub synchronous: Synchronous,
    /// SQLite's journal mode (default `Wal`).
    pub journal: Journal,
    /// Retry of batches after lock contention.
    pub retry: RetryOptions,
    /// Consecutive failed batches that open the breaker (default 5).
    pub breaker_threshold: u32,
    /// How long an open breaker waits before a trial batch, ms (default 500).
    pub breaker_cooldown_ms: f64,
    /// The OPFS directory of the VFS pool; one per worker (default `.sqlweir`).
    pub directory: String,
}

impl Default for Options {
    fn default() -> Self {
        let w = WriterConfig::default();
        Options {
            migrations: Vec::new(),
            queue_capacity: 10_000,
            backpressure: Backpressure::Wait,
            batch_rows: w.batch_rows,
            batch_rows_ceiling: w.batch_rows_ceiling,
            linger_ms: millis(w.linger),
            synchronous: Synchronous::Normal,
            journal: Journal::Wal,
            retry: RetryOptions::default(),
            breaker_threshold: w.breaker_threshold,
            breaker_cooldown_ms: millis(w.breaker_cooldown),
            directory: ".sqlweir".into(),
        }
    }
}

impl Options {
    /// The options as JavaScript passes them: an object with camelCase keys (absent, `undefined`
    /// or `null` ones keep their defaults), or `undefined`/`null` for all defaults. An unknown
    /// key or a value of the wrong type is an [`OpenError::Options`] naming it.
    pub fn from_js(value: &JsValue) -> Result<Options, OpenError> {
        let mut o = Options::default();
        let Some(fields) = object_of(value, "the options")? else { return Ok(o) };
        for (key, v) in fields {
            match key.as_str() {
                "migrations" => o.migrations = strings(&v, "migrations")?,
                "queueCapacity" => o.queue_capacity = whole(&v, "queueCapacity")?,
                "backpressure" => {
                    o.backpressure =
                        one_of(&v, "backpressure", [("wait", Backpressure::Wait), ("fail", Backpressure::Fail)])?;
                }
                "batchRows" => o.batch_rows = whole(&v, "batchRows")?,
                "batchRowsCeiling" => o.batch_rows_ceiling = whole(&v, "batchRowsCeiling")?,
                "lingerMs" => o.linger_ms = number(&v, "lingerMs")?,
                "synchronous" => {
                    o.synchronous =
                        one_of(&v, "synchronous", [("normal", Synchronous::Normal), ("full", Synchronous::Full)])?;
                }
                "journal" => o.journal = one_of(&v, "journal", [("wal", Journal::Wal), ("delete", Journal::Delete)])?,
                "retry" => o.retry = RetryOptions::from_js(&v)?,
                "breakerThreshold" => o.breaker_threshold = count(&v, "breakerThreshold")?,
                "breakerCooldownMs" => o.breaker_cooldown_ms = number(&v, "breakerCooldownMs")?,
                "directory" => o.directory = text(&v, "directory")?,
                other => return Err(bad(format!("unknown option {other:?}"))),
            }
        }
        Ok(o)
    }

    /// Sets the migrations.
    pub fn migrations<S: AsRef<str>>(mut self, migrations: &[S]) -> Self {
        self.migrations = migrations.iter().map(|m| m.as_ref().to_owned()).collect();
        self
    }

    /// Sets the journal mode.
    pub fn journal(mut self, journal: Journal) -> Self {
        self.journal = journal;
        self
    }

    /// The core writer's configuration, or what is wrong with the options.
    pub(crate) fn writer_config(&self) -> Result<WriterConfig, OpenError> {
        Ok(WriterConfig {
            batch_rows: self.batch_rows,
            batch_rows_ceiling: self.batch_rows_ceiling,
            linger: duration("lingerMs", self.linger_ms)?,
            retry: RetryPolicy {
                base: duration("retry.baseMs", self.retry.base_ms)?,
                cap: duration("retry.capMs", self.retry.cap_ms)?,
                max_attempts: self.retry.max_attempts.max(1),
                budget: duration("retry.budgetMs", self.retry.budget_ms)?,
            },
            breaker_threshold: self.breaker_threshold,
            breaker_cooldown: duration("breakerCooldownMs", self.breaker_cooldown_ms)?,
            ..WriterConfig::default()
        })
    }
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn duration(name: &str, ms: f64) -> Result<Duration, OpenError> {
    Duration::try_from_secs_f64(ms / 1000.0)
        .map_err(|_| OpenError::Options { message: format!("{name} must be a finite number of ms >= 0, got {ms}") })
}

fn bad(message: String) -> OpenError {
    OpenError::Options { message }
}

/// The own keys of `value` with their values, skipping `undefined` and `null` ones; `None` when
/// `value` itself is `undefined` or `null`.
fn object_of(value: &JsValue, what: &str) -> Result<Option<Vec<(String, JsValue)>>, OpenError> {
    if value.is_undefined() || value.is_null() {
        return Ok(None);
    }
    let Some(object) = value.dyn_ref::<Object>().filter(|_| !Array::is_array(value)) else {
        return Err(bad(format!("{what} must be an object")));
    };
    let mut fields = Vec::new();
    for key in Object::keys(object).iter() {
        let v = Reflect::get(object, &key).unwrap_or(JsValue::UNDEFINED);
        if v.is_undefined() || v.is_null() {
            continue;
        }
        fields.push((key.as_string().unwrap_or_default(), v));
    }
    Ok(Some(fields))
}

fn number(v: &JsValue, name: &str) -> Result<f64, OpenError> {
    v.as_f64().ok_or_else(|| bad(format!("{name} must be a number")))
}

fn whole(v: &JsValue, name: &str) -> Result<usize, OpenError> {
    match v.as_f64() {
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // checked: a whole number in range
        Some(n) if n.fract() == 0.0 && (0.0..=9_007_199_254_740_991.0).contains(&n) => Ok(n as usize),
        _ => Err(bad(format!("{name} must be a whole number >= 0"))),
    }
}

fn count(v: &JsValue, name: &str) -> Result<u32, OpenError> {
    u32::try_from(whole(v, name)?).map_err(|_| bad(format!("{name} is too large")))
}

/// The one of `choices` whose name `v` is.
fn one_of<T: Copy>(value: &JsValue, name: &str, choices: [(&str, T); 2]) -> Result<T, OpenError> {
    let given = text(value, name)?;
    match choices.iter().find(|(word, _)| *word == given) {
        Some(&(_, chosen)) => Ok(chosen),
        None => Err(bad(format!("{name} must be {:?} or {:?}, got {given:?}", choices[0].0, choices[1].0))),
    }
}

fn text(v: &JsValue, name: &str) -> Result<String, OpenError> {
    v.as_string().ok_or_else(|| bad(format!("{name} must be a string")))
}

fn strings(v: &JsValue, name: &str) -> Result<Vec<String>, OpenError> {
    let Some(list) = v.dyn_ref::<Array>() else { return Err(bad(format!("{name} must be an array of strings"))) };
    list.iter()
        .enumerate()
        .map(|(i, s)| s.as_string().ok_or_else(|| bad(format!("{name}[{i}] must be a string"))))
        .collect()
}
