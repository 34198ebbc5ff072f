//! sqlweir-sqlite: the SQLite side of the core's `Backend` seam, shared by the native crate
//! (rusqlite over the bundled SQLite) and the browser build (rusqlite over sqlite-wasm-rs).
//!
//! One write connection ([`SqliteBackend`]), errors classified by extended result code
//! ([`classify`]), values bound and read without copies ([`Bind`], [`read_value`]), queries
//! ([`query`]) and migrations kept in `PRAGMA user_version` ([`migrate`]).
//!
//! ```
//! use sqlweir_core::{apply, params, BatchOutcome, Write};
//! use sqlweir_sqlite::SqliteBackend;
//!
//! let conn = rusqlite::Connection::open_in_memory().unwrap();
//! conn.execute_batch("CREATE TABLE t(x INTEGER UNIQUE)").unwrap();
//! let mut db = SqliteBackend::new(conn).unwrap();
//! let writes = [Write::one("INSERT INTO t VALUES (?1)", params![1]), Write::one("INSERT INTO t VALUES (?1)", params![1])];
//! let BatchOutcome::Committed { results, .. } = apply(&mut db, &writes) else { panic!() };
//! assert_eq!(results.iter().map(|r| r.committed_rows()).sum::<u64>(), 1, "the duplicate was rejected alone");
//! ```

use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use rusqlite::hooks::{AuthAction, AuthContext, Authorization};
use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{CachedStatement, Connection, ToSql, ffi};
use sqlweir_core::{Applied, Backend, BackendError, ErrorClass, ErrorKind, Recorded, RequestId, Returned, Value};

/// The table of request markers (`sqlweir_core::request`), written in the writes' own
/// transaction: one row per sender per batch, holding the markers of that sender's committed
/// writes of the batch (numbers `first` to `last`, each write's number and outcome in
/// `receipts`, as `Recorded::encode_all` writes them). One row per batch rather than per write
/// keeps the cost per write to a few bytes of text. No rowid, so that recording leaves the
/// connection's last inserted rowid (a receipt's `last_rowid`) alone.
pub const REQUESTS_SCHEMA: &str = "CREATE TABLE IF NOT EXISTS _sqlweir_requests(origin TEXT NOT NULL, \
     last INTEGER NOT NULL, first INTEGER NOT NULL, receipts BLOB NOT NULL, PRIMARY KEY(origin, last)) WITHOUT ROWID";

/// Whether the marker table exists, as the open transaction sees it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Requests {
    Absent,
    /// Created by the open transaction: gone again if it rolls back.
    Creating,
    Present,
}

/// The one write connection of a store. The host's writer owns it.
pub struct SqliteBackend {
    /// The connection. Hosts use it directly for setup, checkpoints and closing.
    pub conn: Connection,
    guard: Guard,
    requests: Requests,
    /// The tables each write statement may change (its own target, and those of its triggers
    /// and foreign-key actions), learned from the authorizer the first time the text is seen.
    targets: HashMap<String, Arc<[String]>>,
    /// The targets of the statements that changed rows since `begin`, for the commit feed.
    changed: Vec<Arc<[String]>>,
    /// Transactions still to fail with `SQLITE_BUSY` (tests only: the check is compiled out
    /// of every other build).
    #[cfg(feature = "fault-injection")]
    busy_left: u32,
}

impl SqliteBackend {
    /// Wraps an open, configured connection (migrations already run) and installs the guard
    /// that decides which user statements may be prepared on it ([`Guard`]).
    pub fn new(mut conn: Connection) -> Result<Self, BackendError> {
        let guard = Guard::install(&mut conn)?;
        let present: bool = conn
            .query_row("SELECT count(*) > 0 FROM sqlite_master WHERE name = '_sqlweir_requests'", [], |r| r.get(0))
            .map_err(classify)?;
        Ok(SqliteBackend {
            conn,
            guard,
            requests: if present { Requests::Present } else { Requests::Absent },
            targets: HashMap::new(),
            changed: Vec::new(),
            #[cfg(feature = "fault-injection")]
            busy_left: 0,
        })
    }

    /// Runs a query on the write connection: between batches (the browser's reads), or inside
    /// the open transaction (a native transaction closure). Transaction control, savepoints,
    /// ATTACH and pragmas that change a setting are refused while preparing; with `read_only`,
    /// so is any statement that would change the database.
    pub fn query(&self, sql: &str, params: &[Value], read_only: bool) -> Result<Found, BackendError> {
        query_guarded(&self.conn, &self.guard, sql, params, read_only)
    }

    /// The tables `sql` may change, from the authorizer (once per statement text; the map is
    /// bounded like a cache). Triggers and foreign-key actions are coded into the statement
    /// while it is prepared, so their tables are among them.
    fn targets_of(&mut self, sql: &str) -> Arc<[String]> {
        if let Some(found) = self.targets.get(sql) {
            return found.clone();
        }
        if self.targets.len() >= MAX_KNOWN_STATEMENTS {
            self.targets.clear();
        }
        let found: Arc<[String]> = self.guard.targets(&self.conn, sql).into();
        self.targets.insert(sql.to_owned(), found.clone());
        found
    }

    /// Notes that a statement with these targets changed rows.
    fn note_changed(changed: &mut Vec<Arc<[String]>>, targets: &Arc<[String]>) {
        if !targets.is_empty() && !changed.last().is_some_and(|last| Arc::ptr_eq(last, targets)) {
            changed.push(targets.clone());
        }
    }

    /// The tables `sql` reads, sorted, each once (SQLite's own left out), learned from the
    /// authorizer while preparing it under the read guard: nothing runs. What a live query
    /// watches: a view counts with the tables beneath it, subqueries and CTEs included.
    pub fn tables_read(&self, sql: &str) -> Result<Vec<String>, BackendError> {
        self.guard.tables(&self.conn, sql, Mode::Read)
    }

    /// Makes the next `attempts` transactions fail with `SQLITE_BUSY` (feature `fault-injection`).
    #[cfg(feature = "fault-injection")]
    pub fn inject_busy(&mut self, attempts: u32) {
        self.busy_left = attempts;
    }
}

impl Backend for SqliteBackend {
    fn begin(&mut self) -> Result<(), BackendError> {
        #[cfg(feature = "fault-injection")]
        if self.busy_left > 0 {
            self.busy_left -= 1;
            return Err(classify_code(ffi::SQLITE_BUSY, "database is locked (injected)".into()));
        }
        self.changed.clear();
        // IMMEDIATE takes the write lock up front, so contention shows here, before any work.
        self.conn.prepare_cached("BEGIN IMMEDIATE").and_then(|mut s| s.execute([])).map(drop).map_err(classify)
    }

    fn execute(&mut self, sql: &str, params: &[Value]) -> Result<Applied, BackendError> {
        let targets = self.targets_of(sql);
        let mut stmt = prepare_write(&self.conn, &self.guard, sql)?;
        let (result, _, changed_rows) = run_write(&self.conn, &mut stmt, params, None);
        if changed_rows {
            Self::note_changed(&mut self.changed, &targets);
        }
        result
    }

    fn execute_many(
        &mut self,
        sql: &str,
        names: Option<&[String]>,
        rows: &[&[Value]],
        each: &mut dyn FnMut(usize, Result<Applied, BackendError>, bool) -> bool,
    ) {
        let targets = self.targets_of(sql);
        // One prepared statement for the whole group: the cache lookup is paid once, not per row.
        let prepared = prepare_write(&self.conn, &self.guard, sql).and_then(|stmt| {
            let slots = names.map(|names| named_slots(&stmt, names)).transpose()?;
            Ok((stmt, slots))
        });
        let (mut stmt, slots) = match prepared {
            Ok(found) => found,
            Err(e) => {
                // The statement itself is wrong: every row is rejected with the same error.
                let open = !self.conn.is_autocommit();
                for i in 0..rows.len() {
                    if !each(i, Err(e.clone()), open) {
                        return;
                    }
                }
                return;
            }
        };
        for (i, params) in rows.iter().enumerate() {
            let (result, kept, changed_rows) = run_write(&self.conn, &mut stmt, params, slots.as_deref());
            if changed_rows {
                Self::note_changed(&mut self.changed, &targets);
            }
            if !each(i, result, kept) {
                return;
            }
        }
    }

    fn commit(&mut self) -> Result<(), BackendError> {
        // Not from the statement cache: a user's `COMMIT` text must never find this prepared
        // statement there (cached statements skip the guard).
        self.conn.execute_batch("COMMIT").map_err(classify)?;
        if self.requests == Requests::Creating {
            self.requests = Requests::Present;
        }
        Ok(())
    }

    fn rollback(&mut self) -> Result<(), BackendError> {
        if self.requests == Requests::Creating {
            self.requests = Requests::Absent;
        }
        if self.conn.is_autocommit() {
            return Ok(());
        }
        self.conn.execute_batch("ROLLBACK").map_err(classify)
    }

    fn recorded(&mut self, id: &RequestId) -> Result<Option<Recorded>, BackendError> {
        Ok(self.recorded_many(&id.origin, &[id.seq])?.pop().flatten())
    }

    /// One query for all of them: the sender's marker rows that overlap `seqs`' range, each
    /// decoded once.
    fn recorded_many(&mut self, origin: &Arc<str>, seqs: &[u64]) -> Result<Vec<Option<Recorded>>, BackendError> {
        let mut found: Vec<Option<Recorded>> = vec![None; seqs.len()];
        let (Some(&low), Some(&high)) = (seqs.iter().min(), seqs.iter().max()) else { return Ok(found) };
        if self.requests == Requests::Absent {
            return Ok(found);
        }
        // Where each number asked for goes in `found` (a number asked twice goes twice).
        let mut wanted: HashMap<u64, Vec<usize>> = HashMap::with_capacity(seqs.len());
        for (i, &seq) in seqs.iter().enumerate() {
            wanted.entry(seq).or_default().push(i);
        }
        let mut stmt = self
            .conn
            .prepare_cached("SELECT receipts FROM _sqlweir_requests WHERE origin = ?1 AND last >= ?2 AND first <= ?3")
            .map_err(classify)?;
        let mut rows = stmt.query(rusqlite::params![&**origin, seq_value(low)?, seq_value(high)?]).map_err(classify)?;
        while let Some(row) = rows.next().map_err(classify)? {
            let receipts: Vec<u8> = row.get(0).map_err(classify)?;
            let entries = Recorded::decode_all(&receipts).map_err(|_unreadable| {
                BackendError::new(
                    ErrorKind::Io,
                    ErrorClass::Fatal,
                    None,
                    format!(
                        "a marker row of {origin} in _sqlweir_requests is unreadable; was the table changed by hand?"
                    ),
                )
            })?;
            for (seq, recorded) in entries {
                if let Some(places) = wanted.get(&seq) {
                    for &i in places {
                        found[i] = Some(recorded.clone());
                    }
                }
            }
        }
        Ok(found)
    }

    fn record(&mut self, origin: &str, entries: &[(u64, Recorded)]) -> Result<(), BackendError> {
        let (Some(first), Some(last)) = (entries.iter().map(|(s, _)| *s).min(), entries.iter().map(|(s, _)| *s).max())
        else {
            return Ok(());
        };
        if self.requests == Requests::Absent {
            self.conn.execute_batch(REQUESTS_SCHEMA).map_err(classify)?;
            self.requests = Requests::Creating;
        }
        let mut stmt = self
            .conn
            .prepare_cached("INSERT INTO _sqlweir_requests(origin, last, first, receipts) VALUES (?1, ?2, ?3, ?4)")
            .map_err(classify)?;
        let receipts = Recorded::encode_all(entries);
        stmt.execute(rusqlite::params![origin, seq_value(last)?, seq_value(first)?, receipts])
            .map(drop)
            .map_err(classify)
    }

    fn forget(&mut self, origin: &str, below: u64) -> Result<(), BackendError> {
        if self.requests == Requests::Absent {
            return Ok(());
        }
        let below = i64::try_from(below).unwrap_or(i64::MAX);
        let mut stmt = self
            .conn
            .prepare_cached("DELETE FROM _sqlweir_requests WHERE origin = ?1 AND last < ?2")
            .map_err(classify)?;
        stmt.execute(rusqlite::params![origin, below]).map(drop).map_err(classify)
    }

    fn in_transaction(&self) -> bool {
        !self.conn.is_autocommit()
    }

    fn take_changed(&mut self) -> Vec<String> {
        let mut tables: Vec<String> =
            self.changed.drain(..).flat_map(|t| t.iter().cloned().collect::<Vec<_>>()).collect();
        tables.sort_unstable();
        tables.dedup();
        tables
    }
}

/// A request number as SQLite's integer.
fn seq_value(seq: u64) -> Result<i64, BackendError> {
    i64::try_from(seq)
        .map_err(|_| input(format!("request number {seq} is above {}, the largest SQLite integer", i64::MAX)))
}

/// Prepares a user's write statement (from the cache when it ran before), refusing what must
/// not reach the write connection: see [`Guard`].
fn prepare_write<'c>(conn: &'c Connection, guard: &Guard, sql: &str) -> Result<CachedStatement<'c>, BackendError> {
    let stmt = guard.prepare(conn, sql, Mode::Write)?;
    if stmt.readonly() || stmt.is_explain() != 0 {
        return Err(not_a_write(sql));
    }
    Ok(stmt)
}

/// Statement texts whose targets a backend remembers before it starts over.
const MAX_KNOWN_STATEMENTS: usize = 512;

/// Runs one row of a prepared write; returns its result, whether the transaction can go on
/// (`kept`, see [`Backend::execute_many`]) and whether it changed any row (its own or through
/// triggers), for the commit feed.
///
/// A statement with a `RETURNING` clause is stepped to its end and its rows are kept for the
/// receipt. A failed statement that still changed rows (SQLite's `OR FAIL`, or a trigger's
/// `RAISE(FAIL)`, keep what they did before the failure: statement atomicity does not hold
/// there) is reported as not `kept`, so the batch is rolled back and replayed without it.
///
/// With `slots`, the values are bound to those parameter indexes (named parameters) instead
/// of by position.
fn run_write(
    conn: &Connection,
    stmt: &mut CachedStatement<'_>,
    params: &[Value],
    slots: Option<&[usize]>,
) -> (Result<Applied, BackendError>, bool, bool) {
    let before = conn.total_changes();
    let result = bind(stmt, params, slots).and_then(|()| {
        if stmt.column_count() == 0 {
            stmt.raw_execute().map(|changes| Applied {
                changes: changes as u64,
                last_rowid: conn.last_insert_rowid(),
                returned: None,
            })
        } else {
            returning(conn, stmt)
        }
    });
    // total_changes counts rows changed by triggers too, and nothing of a statement SQLite
    // undid itself: unchanged means no trace is left.
    let changed = conn.total_changes() != before;
    match result {
        Ok(applied) => (Ok(applied), true, changed),
        Err(e) => {
            let kept = !conn.is_autocommit() && !changed;
            (Err(classify(e)), kept, changed)
        }
    }
}

/// Binds one row of values: by position, or to the parameter indexes `slots`.
fn bind(stmt: &mut CachedStatement<'_>, params: &[Value], slots: Option<&[usize]>) -> rusqlite::Result<()> {
    match slots {
        None => {
            let expected = stmt.parameter_count();
            if params.len() != expected {
                return Err(rusqlite::Error::InvalidParameterCount(params.len(), expected));
            }
            for (i, v) in params.iter().enumerate() {
                stmt.raw_bind_parameter(i + 1, Bind(v))?;
            }
        }
        Some(slots) => {
            for (&i, v) in slots.iter().zip(params) {
                stmt.raw_bind_parameter(i, Bind(v))?;
            }
        }
    }
    Ok(())
}

/// Where each named value goes: the parameter index of each name (`:id`, `@id`, `$id`; a bare
/// `id` finds whichever the statement uses). A name the statement lacks, or a parameter of the
/// statement no name covers, is the write's own error.
fn named_slots(stmt: &CachedStatement<'_>, names: &[String]) -> Result<Vec<usize>, BackendError> {
    let mut slots = Vec::with_capacity(names.len());
    for name in names {
        let found = if name.starts_with([':', '@', '$']) {
            stmt.parameter_index(name).map_err(classify)?
        } else {
            let mut found = None;
            for prefix in [':', '@', '$'] {
                if let Some(i) = stmt.parameter_index(&format!("{prefix}{name}")).map_err(classify)? {
                    found = Some(i);
                    break;
                }
            }
            found
        };
        match found {
            Some(i) => slots.push(i),
            None => return Err(input(format!("the statement has no parameter named {name}"))),
        }
    }
    let count = stmt.parameter_count();
    if let Some(missing) = (1..=count).find(|i| !slots.contains(i)) {
        let which = stmt.parameter_name(missing).map_or_else(|| format!("?{missing}"), str::to_owned);
        return Err(input(format!("parameter {which} has no value: name every parameter of the statement")));
    }
    Ok(slots)
}

fn returning(conn: &Connection, stmt: &mut CachedStatement<'_>) -> rusqlite::Result<Applied> {
    let (columns, rows) = read_rows(stmt)?;
    Ok(Applied {
        changes: conn.changes(),
        last_rowid: conn.last_insert_rowid(),
        returned: Some(Box::new(Returned { columns, rows })),
    })
}

/// What user statements may do on a connection, enforced by SQLite's authorizer while each
/// statement is prepared, so nothing refused ever runs (SQLite applies some pragmas, such as
/// `query_only` or `ignore_check_constraints`, while *preparing* them; a keyword check on the
/// text can be fooled, the prepared form cannot).
///
/// On a write: no pragma, no transaction control or savepoint, no ATTACH/DETACH. On a read: the
/// same, except pragmas that only report (no value given, or an introspection pragma such as
/// `table_info(t)`). The guard is off for the host's own statements (migrations, BEGIN,
/// COMMIT, checkpoints). Statements found in the cache were checked when first prepared.
#[derive(Clone)]
pub struct Guard {
    state: Arc<GuardState>,
}

struct GuardState {
    mode: AtomicU8,
    /// While set, the tables a statement being prepared would change are collected here.
    capturing: std::sync::atomic::AtomicBool,
    captured: Mutex<Vec<String>>,
    /// Why the last statement was refused, for the error message.
    denied: Mutex<Option<String>>,
}

/// Which statements a guard lets through right now.
#[derive(Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Mode {
    /// The host's own statements: everything.
    Off = 0,
    /// A user's write.
    Write = 1,
    /// A user's query.
    Read = 2,
}

/// Pragmas that take an argument but only report (they change nothing).
const REPORTING_PRAGMAS: &[&str] = &[
    "table_info",
    "table_xinfo",
    "table_list",
    "index_info",
    "index_xinfo",
    "index_list",
    "foreign_key_list",
    "foreign_key_check",
    "integrity_check",
    "quick_check",
];

impl Guard {
    /// Installs the guard's authorizer on `conn`; off until a user statement is prepared.
    pub fn install(conn: &mut Connection) -> Result<Guard, BackendError> {
        let state = Arc::new(GuardState {
            mode: AtomicU8::new(Mode::Off as u8),
            capturing: std::sync::atomic::AtomicBool::new(false),
            captured: Mutex::new(Vec::new()),
            denied: Mutex::new(None),
        });
        let seen = state.clone();
        conn.authorizer(Some(move |ctx: AuthContext<'_>| {
            let mode = seen.mode.load(Ordering::Relaxed);
            if seen.capturing.load(Ordering::Relaxed) {
                let table = if mode == Mode::Read as u8 { read_table(&ctx.action) } else { written_table(&ctx.action) };
                if let Some(table) = table {
                    seen.captured.lock().unwrap_or_else(PoisonError::into_inner).push(table.to_owned());
                }
            }
            if mode == Mode::Off as u8 {
                return Authorization::Allow;
            }
            match refusal(&ctx.action, mode == Mode::Read as u8) {
                None => Authorization::Allow,
                Some(why) => {
                    *seen.denied.lock().unwrap_or_else(PoisonError::into_inner) = Some(why);
                    Authorization::Deny
                }
            }
        }))
        .map_err(classify)?;
        Ok(Guard { state })
    }

    /// Prepares (or finds in the cache) a user statement under `mode`.
    fn prepare<'c>(&self, conn: &'c Connection, sql: &str, mode: Mode) -> Result<CachedStatement<'c>, BackendError> {
        if sql.contains('\0') {
            return Err(input("statement text contains a NUL byte: SQLite would ignore everything after it".into()));
        }
        self.state.mode.store(mode as u8, Ordering::Relaxed);
        let prepared = conn.prepare_cached(sql);
        self.state.mode.store(Mode::Off as u8, Ordering::Relaxed);
        prepared.map_err(|e| {
            let denied = self.state.denied.lock().unwrap_or_else(PoisonError::into_inner).take();
            match (auth_code(&e), denied) {
                (true, Some(why)) => input(why),
                _ => classify(e),
            }
        })
    }
}

impl Guard {
    /// The tables `sql` would insert into, update or delete from (its triggers' and
    /// foreign-key actions' included), sorted, each once; SQLite's own tables left out. From a
    /// separate, uncached prepare under the write guard: nothing runs. Empty when the statement
    /// does not prepare (its write then fails with the error that says why).
    fn targets(&self, conn: &Connection, sql: &str) -> Vec<String> {
        self.tables(conn, sql, Mode::Write).unwrap_or_default()
    }

    /// The tables a statement prepared under `mode` writes (`Write`) or reads (`Read`), from
    /// a separate, uncached prepare: nothing runs.
    fn tables(&self, conn: &Connection, sql: &str, mode: Mode) -> Result<Vec<String>, BackendError> {
        if sql.contains('\0') {
            return Err(input("statement text contains a NUL byte: SQLite would ignore everything after it".into()));
        }
        self.state.mode.store(mode as u8, Ordering::Relaxed);
        self.state.capturing.store(true, Ordering::Relaxed);
        let prepared = conn.prepare(sql).map(drop);
        self.state.capturing.store(false, Ordering::Relaxed);
        self.state.mode.store(Mode::Off as u8, Ordering::Relaxed);
        let denied = self.state.denied.lock().unwrap_or_else(PoisonError::into_inner).take();
        let mut tables = std::mem::take(&mut *self.state.captured.lock().unwrap_or_else(PoisonError::into_inner));
        if let Err(e) = prepared {
            return Err(match (auth_code(&e), denied) {
                (true, Some(why)) => input(why),
                _ => classify(e),
            });
        }
        tables.retain(|t| !t.get(..7).is_some_and(|p| p.eq_ignore_ascii_case("sqlite_")));
        tables.sort_unstable();
        tables.dedup();
        Ok(tables)
    }
}

/// The table an authorizer action reads from, if it reads.
fn read_table<'a>(action: &AuthAction<'a>) -> Option<&'a str> {
    match action {
        AuthAction::Read { table_name, .. } => Some(table_name),
        _ => None,
    }
}

/// The table an authorizer action writes to, if it writes.
fn written_table<'a>(action: &AuthAction<'a>) -> Option<&'a str> {
    match action {
        AuthAction::Insert { table_name }
        | AuthAction::Delete { table_name }
        | AuthAction::Update { table_name, .. } => Some(table_name),
        _ => None,
    }
}

fn auth_code(e: &rusqlite::Error) -> bool {
    e.sqlite_error_code() == Some(rusqlite::ErrorCode::AuthorizationForStatementDenied)
}

/// Why a user statement may not do `action`, or `None` when it may.
fn refusal(action: &AuthAction<'_>, read: bool) -> Option<String> {
    match action {
        AuthAction::Pragma { pragma_name, pragma_value } => {
            let reporting =
                pragma_value.is_none() || REPORTING_PRAGMAS.iter().any(|p| p.eq_ignore_ascii_case(pragma_name));
            if read && reporting {
                None
            } else {
                Some(format!(
                    "PRAGMA {pragma_name} refused: pragmas would change the shared connection; set them \
                     with migrations or options"
                ))
            }
        }
        AuthAction::Transaction { .. } | AuthAction::Savepoint { .. } => Some(
            "transaction control (BEGIN, COMMIT, ROLLBACK, SAVEPOINT, RELEASE) refused: the store runs \
             the transactions; use Store::transaction for several statements"
                .into(),
        ),
        AuthAction::Attach { .. } | AuthAction::Detach { .. } => {
            Some("ATTACH and DETACH refused: they would change the shared connection".into())
        }
        _ => None,
    }
}

fn input(message: String) -> BackendError {
    BackendError::new(ErrorKind::InvalidInput, ErrorClass::Rejected, None, message)
}

/// The error for a statement that does not write: SELECT, and also BEGIN/COMMIT/ROLLBACK/
/// SAVEPOINT, which inside a batch would break its atomicity.
fn not_a_write(sql: &str) -> BackendError {
    BackendError::new(
        ErrorKind::InvalidInput,
        ErrorClass::Rejected,
        None,
        format!("statement does not write (a read or transaction control): {sql}; use query for reads"),
    )
}

/// Column names and rows of a query.
pub type Found = (Vec<String>, Vec<Vec<Value>>);

/// A read-only connection of a read pool, with its guard: a query never leaves it inside a
/// transaction.
pub struct ReadConnection {
    conn: Connection,
    guard: Guard,
}

impl ReadConnection {
    /// Wraps an open read connection and installs its guard.
    pub fn new(mut conn: Connection) -> Result<Self, BackendError> {
        let guard = Guard::install(&mut conn)?;
        Ok(ReadConnection { conn, guard })
    }

    /// Runs a query. Transaction control, savepoints, ATTACH and pragmas that set something
    /// are refused while preparing; should a transaction be open afterwards all the same, it is
    /// rolled back so that the next query sees the latest commit.
    pub fn query(&mut self, sql: &str, params: &[Value]) -> Result<Found, BackendError> {
        let result = query_guarded(&self.conn, &self.guard, sql, params, false);
        if !self.conn.is_autocommit() {
            self.conn.execute_batch("ROLLBACK").map_err(classify)?;
        }
        result
    }

    /// The tables `sql` reads, as [`SqliteBackend::tables_read`] says, on this connection.
    pub fn tables_read(&self, sql: &str) -> Result<Vec<String>, BackendError> {
        self.guard.tables(&self.conn, sql, Mode::Read)
    }
}

fn query_guarded(
    conn: &Connection,
    guard: &Guard,
    sql: &str,
    params: &[Value],
    read_only: bool,
) -> Result<Found, BackendError> {
    let mut stmt = guard.prepare(conn, sql, Mode::Read)?;
    if read_only && !stmt.readonly() {
        return Err(BackendError::new(
            ErrorKind::InvalidInput,
            ErrorClass::Rejected,
            None,
            "query runs read-only statements; send changes with write",
        ));
    }
    bind(&mut stmt, params, None).map_err(classify)?;
    read_rows(&mut stmt).map_err(classify)
}

/// Steps a bound statement to its end: its column names and every row's values.
fn read_rows(stmt: &mut CachedStatement<'_>) -> rusqlite::Result<Found> {
    let columns: Vec<String> = stmt.column_names().map(str::to_owned).collect();
    let width = columns.len();
    let mut rows = Vec::new();
    let mut cursor = stmt.raw_query();
    while let Some(row) = cursor.next()? {
        let mut values = Vec::with_capacity(width);
        for i in 0..width {
            values.push(read_value(row.get_ref(i)?));
        }
        rows.push(values);
    }
    Ok((columns, rows))
}

/// Why migrations did not finish.
#[derive(Debug)]
pub enum MigrationError {
    /// `PRAGMA user_version` is past the steps given: a newer program migrated this database.
    TooNew {
        /// The version found.
        found: i64,
        /// Steps given.
        known: usize,
    },
    /// Step `step` (zero-based) failed; the steps before it stay applied.
    Step {
        /// The failing step.
        step: usize,
        /// What SQLite said.
        source: BackendError,
    },
    /// Reading the version failed.
    Setup(BackendError),
}

/// Runs the steps past `PRAGMA user_version`, each in its own transaction with its version bump,
/// so a failed step leaves the database at the step before it.
///
/// With no steps at all, whatever schema the file has is taken as it is (an existing database,
/// one another program made, one whose `user_version` means something else): `TooNew` is only
/// for a program whose list of steps is behind the file's version.
pub fn migrate(conn: &Connection, steps: &[String]) -> Result<(), MigrationError> {
    if steps.is_empty() {
        return Ok(());
    }
    let version: i64 =
        conn.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(|e| MigrationError::Setup(classify(e)))?;
    let known = steps.len();
    if version > known as i64 {
        return Err(MigrationError::TooNew { found: version, known });
    }
    for (step, sql) in steps.iter().enumerate().skip(usize::try_from(version).unwrap_or(0)) {
        let apply = || -> rusqlite::Result<()> {
            conn.execute_batch("BEGIN IMMEDIATE")?;
            conn.execute_batch(sql)?;
            // user_version takes no parameters; the value is a number we computed.
            conn.execute_batch(&format!("PRAGMA user_version = {}", step + 1))?;
            conn.execute_batch("COMMIT")
        };
        if let Err(e) = apply() {
            if !conn.is_autocommit() {
                let _ = conn.execute_batch("ROLLBACK");
            }
            return Err(MigrationError::Step { step, source: classify(e) });
        }
    }
    Ok(())
}

/// Binds a core [`Value`] without copying it.
pub struct Bind<'a>(pub &'a Value);

impl ToSql for Bind<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match self.0 {
            Value::Null => ValueRef::Null,
            Value::Integer(i) => ValueRef::Integer(*i),
            Value::Real(f) => ValueRef::Real(*f),
            Value::Text(s) => ValueRef::Text(s.as_bytes()),
            Value::Blob(b) => ValueRef::Blob(b),
        }))
    }
}

/// Reads a column into a core [`Value`]. Text that is not valid UTF-8 is converted lossily.
pub fn read_value(v: ValueRef<'_>) -> Value {
    match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => Value::Integer(i),
        ValueRef::Real(f) => Value::Real(f),
        ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(b) => Value::Blob(b.to_vec()),
    }
}

/// Classifies a rusqlite error by its extended result code, never by its message.
pub fn classify(e: rusqlite::Error) -> BackendError {
    use rusqlite::Error as E;
    match e {
        E::SqliteFailure(err, msg) => classify_code(err.extended_code, msg.unwrap_or_else(|| err.to_string())),
        E::SqlInputError { error, msg, .. } => classify_code(error.extended_code, msg),
        E::InvalidParameterCount(given, expected) => {
            input(format!("statement takes {expected} parameters but {given} were given"))
        }
        E::ExecuteReturnedResults => input("statement returns rows; use query for reads".into()),
        E::Empty => input("empty statement: the text holds no SQL (only blanks, comments or `;`)".into()),
        E::MultipleStatement => input("a write is one statement; send several writes instead".into()),
        E::ToSqlConversionFailure(err) => input(format!("parameter cannot be converted: {err}")),
        E::NulError(err) => input(format!("text contains a NUL byte: {err}")),
        E::InvalidParameterName(name) => input(format!("no parameter named {name}")),
        E::IntegralValueOutOfRange(i, v) => input(format!("value {v} of column {i} is out of range")),
        E::FromSqlConversionFailure(i, t, err) => input(format!("column {i} of type {t} cannot be read: {err}")),
        E::InvalidColumnType(i, name, t) => input(format!("column {i} ({name}) has unexpected type {t}")),
        other => BackendError::new(ErrorKind::Io, ErrorClass::Fatal, None, other.to_string()),
    }
}

/// Classifies an SQLite (extended) result code.
pub fn classify_code(extended_code: i32, message: String) -> BackendError {
    use ErrorClass::{Fatal, Rejected, Transient};
    let (kind, class) = match extended_code & 0xff {
        ffi::SQLITE_BUSY | ffi::SQLITE_LOCKED => (ErrorKind::Busy, Transient),
        ffi::SQLITE_CONSTRAINT => (ErrorKind::Constraint, Rejected),
        // AUTH: the guard refused the statement while preparing it (see `Guard`).
        ffi::SQLITE_MISMATCH | ffi::SQLITE_RANGE | ffi::SQLITE_TOOBIG | ffi::SQLITE_AUTH => {
            (ErrorKind::InvalidInput, Rejected)
        }
        // Syntax errors, unknown tables and columns: the statement is wrong, not the database.
        ffi::SQLITE_ERROR => (ErrorKind::Sql, Rejected),
        // One write that does not fit is refused alone; smaller ones may still fit.
        ffi::SQLITE_FULL => (ErrorKind::DiskFull, Rejected),
        ffi::SQLITE_READONLY => (ErrorKind::ReadOnly, Fatal),
        // IOERR, CORRUPT, NOTADB, CANTOPEN, NOMEM and anything unforeseen: the database is at fault.
        _ => (ErrorKind::Io, Fatal),
    };
    BackendError::new(kind, class, Some(extended_code), message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlweir_core::{BatchOutcome, Write, WriteResult, apply, params};

    fn db() -> SqliteBackend {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t(x INTEGER UNIQUE NOT NULL)").unwrap();
        SqliteBackend::new(conn).unwrap()
    }

    #[test]
    fn a_query_reads_the_tables_the_authorizer_reports_through_views_and_subqueries() {
        let db = db();
        db.conn
            .execute_batch(
                "CREATE TABLE u(id INTEGER PRIMARY KEY, t_x INTEGER); CREATE TABLE w(y); \
                 CREATE VIEW v AS SELECT x FROM t WHERE x IN (SELECT y FROM w)",
            )
            .unwrap();
        let read = |sql: &str| db.tables_read(sql).unwrap();
        assert_eq!(read("SELECT count(*) FROM t"), vec!["t"], "count(*) reads the table without a column");
        assert_eq!(read("SELECT * FROM t JOIN u ON u.t_x = t.x"), vec!["t", "u"]);
        assert_eq!(read("SELECT x FROM v"), vec!["t", "v", "w"], "the view, and the tables beneath it");
        assert_eq!(read("WITH c AS (SELECT id FROM u) SELECT * FROM c"), vec!["u"]);
        assert_eq!(read("SELECT 1"), Vec::<String>::new());
        let refused = db.tables_read("PRAGMA journal_mode = DELETE").unwrap_err();
        assert_eq!(refused.kind, ErrorKind::InvalidInput, "{refused}");
        assert_eq!(db.tables_read("SELECT * FROM nowhere").unwrap_err().kind, ErrorKind::Sql);
    }

    #[test]
    fn errors_are_classified_by_code() {
        let mut b = db();
        b.begin().unwrap();
        let dup = b.execute("INSERT INTO t VALUES (1)", &[]).and_then(|_| b.execute("INSERT INTO t VALUES (1)", &[]));
        let e = dup.unwrap_err();
        assert_eq!((e.kind, e.class, e.code), (ErrorKind::Constraint, ErrorClass::Rejected, Some(2067)));
        let e = b.execute("INSERT INTO nowhere VALUES (1)", &[]).unwrap_err();
        assert_eq!((e.kind, e.class), (ErrorKind::Sql, ErrorClass::Rejected));
        let e = b.execute("INSERT INTO t VALUES (?1)", &[]).unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidInput);
        for sql in ["SELECT 1", "COMMIT", "SAVEPOINT s"] {
            assert_eq!(b.execute(sql, &[]).unwrap_err().kind, ErrorKind::InvalidInput, "{sql}");
        }
        assert!(b.in_transaction(), "the refused statements did not end the transaction");
        b.rollback().unwrap();
        assert_eq!(classify_code(517, "x".into()).class, ErrorClass::Transient, "SQLITE_BUSY_SNAPSHOT");
        assert_eq!(classify_code(266, "x".into()).class, ErrorClass::Fatal, "SQLITE_IOERR_READ");
    }

    #[test]
    fn a_group_with_a_bad_statement_rejects_every_row_and_the_rest_commits() {
        let mut b = db();
        let writes = [
            Write::one("INSERT INTO t VALUES (?1)", params![1]),
            Write::many("INSERT INTO nope VALUES (?1)", vec![params![2], params![3]]),
            Write::one("INSERT INTO t VALUES (?1)", params![4]),
        ];
        let BatchOutcome::Committed { results, .. } = apply(&mut b, &writes) else { panic!("commits") };
        assert!(matches!(&results[1], WriteResult::Many { committed: 0, rejected } if rejected.len() == 2));
        let (_, rows) = b.query("SELECT x FROM t ORDER BY x", &[], true).unwrap();
        assert_eq!(rows, vec![vec![Value::Integer(1)], vec![Value::Integer(4)]]);
        assert!(b.query("DELETE FROM t", &[], true).is_err(), "read-only queries refuse writes");
    }

    #[test]
    fn statements_that_must_not_run_are_refused_alone_inside_a_batch_without_any_text_check() {
        //! Empty SQL reached the backend as rusqlite's "empty query", classified `Io`, and failed
        //! its whole batch; a pragma after `;` or in a statement's tail ran while being prepared.
        //! Here the core's text check is bypassed: the connection's own guard must hold.
        let mut b = db();
        b.conn.execute_batch("CREATE TABLE c(v INTEGER CHECK (v > 0))").unwrap();
        let bad = [
            "",
            "  ",
            "-- c",
            ";",
            "; PRAGMA query_only = 1",
            "INSERT INTO t VALUES (50); PRAGMA ignore_check_constraints = 1",
            "INSERT INTO t VALUES (51); PRAGMA query_only = 1",
            "INSERT INTO t VALUES (52)\0; DROP TABLE t",
            "ATTACH ':memory:' AS x",
            "SAVEPOINT s",
            "EXPLAIN INSERT INTO t VALUES (53)",
        ];
        let mut writes = Vec::new();
        for (i, sql) in bad.iter().enumerate() {
            writes.push(Write::one("INSERT INTO t VALUES (?1)", params![i as i64]));
            writes.push(Write::one(*sql, vec![]));
        }
        writes.push(Write::one("INSERT INTO c VALUES (-1)", vec![]));
        let BatchOutcome::Committed { results, .. } = apply(&mut b, &writes) else { panic!("the batch commits") };
        for (i, sql) in bad.iter().enumerate() {
            let WriteResult::One(Err(e)) = &results[2 * i + 1] else { panic!("{sql:?} was applied") };
            assert_eq!(e.code(), "InvalidInput", "{sql:?}: {e}");
            assert!(matches!(results[2 * i], WriteResult::One(Ok(_))), "the good write before {sql:?}");
        }
        let WriteResult::One(Err(check)) = results.last().unwrap() else { panic!("CHECK was ignored") };
        assert_eq!(check.code(), "Constraint");
        let (_, rows) = b.query("SELECT count(*) FROM t", &[], true).unwrap();
        assert_eq!(rows, vec![vec![Value::Integer(bad.len() as i64)]]);
        let (_, only) = b.query("PRAGMA query_only", &[], true).unwrap();
        assert_eq!(only, vec![vec![Value::Integer(0)]], "the writer is not read-only");
    }

    #[test]
    fn migrations_track_user_version_and_stop_at_a_bad_step() {
        let conn = Connection::open_in_memory().unwrap();
        let steps = vec!["CREATE TABLE a(x)".to_string(), "CREATE TABLE b(".to_string()];
        assert!(matches!(migrate(&conn, &steps), Err(MigrationError::Step { step: 1, .. })));
        let v: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
        assert_eq!(v, 1);
        assert!(migrate(&conn, &[]).is_ok(), "no steps: any schema is taken as it is");
        conn.execute_batch("PRAGMA user_version = 3").unwrap();
        assert!(matches!(migrate(&conn, &steps), Err(MigrationError::TooNew { found: 3, known: 2 })));
    }
}
