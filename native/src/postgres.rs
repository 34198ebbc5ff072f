//! The PostgreSQL backend (feature `postgres`): the same queue, contract and metrics in front of
//! a server database.
//!
//! A batch is one transaction. Its writes are pipelined: the writer's connection is a
//! tokio-postgres client driven by a current-thread runtime on the writer thread, and a group of
//! writes of one statement is sent whole before the first reply is read, so a batch costs a few
//! round trips instead of one per write. Runs of rows of a plain INSERT go as multi-row
//! statements ([`MultiRow`]). Statements are prepared once per connection.
//!
//! The batch runs optimistically, without savepoints; a write that fails on its own aborts the
//! transaction (PostgreSQL's rule), so the transaction is rolled back and the core replays the
//! batch without that write, this time with a savepoint around each write, so that further bad
//! writes are rolled back alone. A multi-row chunk has a savepoint of its own: a bad row in it
//! undoes the chunk, whose rows then go one by one. Either way the rest of the batch commits
//! and nothing is applied twice. Errors are classified by SQLSTATE: serialization failures,
//! deadlocks, lock timeouts and lost connections are retried with the whole batch.
//!
//! A lost connection during COMMIT leaves the outcome unknown. Every batch therefore inserts a
//! unique token into `sqlweir_commits` inside its transaction; after reconnecting, the token
//! says whether the batch committed, so it is neither lost nor applied twice.

use std::collections::HashMap;
use std::time::Duration;

use bytes::BytesMut;
use postgres::types::{IsNull, ToSql, Type, to_sql_checked};
use postgres::{Client, Config, NoTls, Statement};
use sqlweir_core::joblock::{self, HISTORY_LEN};
use sqlweir_core::{
    Applied, Backend, BackendError, ErrorClass, ErrorKind, JobOutcome, JobRun, JobStatus, Lease, LeaseDecision, Value,
};

use crate::Options;
use crate::engine::Engine;
use crate::error::{CloseError, OpenError, QueryError};
use crate::lease::{Attempt, LeaseDb, Leases, QUEUE_HOLD, run_from_parts};
use crate::read::{ReadPool, Reader, Rows};
use crate::store::Store;

/// Statements kept prepared per connection.
const STATEMENT_CACHE: usize = 256;
/// How often (in commits) old commit tokens are deleted.
const PRUNE_EVERY: u64 = 1024;

impl Store {
    /// Opens a store in front of a PostgreSQL database (feature `postgres`).
    ///
    /// `params` is a libpq-style connection string (`host=/run/postgresql user=app dbname=app`)
    /// or URL (`postgresql://app@localhost/app`). Migrations run as with SQLite, each in its own
    /// transaction, with progress in the table `sqlweir_migrations`.
    ///
    /// What changes from SQLite: placeholders `?1`/`?` are translated to `$1` (and `$1` passes
    /// through); receipts' `last_rowid` is 0 (use `RETURNING` in a query or a transaction);
    /// durability is the server's (`synchronous_commit`), `Options::synchronous` is not used;
    /// `Options::busy_timeout` becomes the writer's `lock_timeout`, so a write that meets a
    /// conflicting lock is retried by the store's policy instead of waiting forever.
    pub fn open_postgres(params: &str, options: Options) -> Result<Store, OpenError> {
        let config: Config = params.parse().map_err(|e: postgres::Error| OpenError::Setup(classify(&e)))?;
        let target = describe(&config);
        let connect_failed = |e: postgres::Error| OpenError::Connect { target: target.clone(), source: classify(&e) };
        let mut client = config.connect(NoTls).map_err(connect_failed)?;
        let setup = |e: postgres::Error| OpenError::Setup(classify(&e));
        let lock_timeout = options.busy_timeout.as_millis().max(1);
        client.batch_execute(&format!("SET lock_timeout = '{lock_timeout}ms'")).map_err(setup)?;
        client
            .batch_execute(
                "CREATE TABLE IF NOT EXISTS sqlweir_commits(token text PRIMARY KEY, \
                 committed_at timestamptz NOT NULL DEFAULT now()); \
                 CREATE TABLE IF NOT EXISTS sqlweir_migrations(step integer PRIMARY KEY, \
                 applied_at timestamptz NOT NULL DEFAULT now())",
            )
            .map_err(setup)?;
        migrate(&mut client, &options.migrations)?;
        let version: String = client.query_one("SHOW server_version", &[]).map_err(setup)?.get(0);
        let mut readers = Vec::with_capacity(options.read_connections);
        for _ in 0..options.read_connections {
            readers.push(PgReader {
                config: config.clone(),
                client: Some(config.connect(NoTls).map_err(connect_failed)?),
            });
        }
        // Migrations ran on the blocking client; the writer's own connection is the pipelining
        // one (tokio-postgres on a runtime of the writer thread).
        drop(client);
        let mut pipelined: tokio_postgres::Config =
            params.parse().map_err(|e: postgres::Error| OpenError::Setup(classify(&e)))?;
        pipelined.application_name("sqlweir-writer");
        let prefix = format!("{:x}-{}", std::process::id(), crate::job::unix_ms(std::time::SystemTime::now()));
        let engine = PgBackend::new(pipelined, format!("SET lock_timeout = '{lock_timeout}ms'"), prefix)
            .map_err(|source| OpenError::Connect { target: target.clone(), source })?;
        let mut lease_config = config.clone();
        lease_config.application_name("sqlweir-jobs");
        let leases = Leases::new(Box::new(move || PgLeases::open(&lease_config)), options.job_lease);
        Store::with_engine(
            engine,
            Box::new(ReadPool::new(readers)),
            leases,
            "postgresql".into(),
            format!("PostgreSQL {version}"),
            options,
        )
    }
}

/// Where a config points, without its password.
fn describe(config: &Config) -> String {
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .map(|h| match h {
            postgres::config::Host::Tcp(name) => name.clone(),
            postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .collect();
    format!("postgresql database {:?} on {}", config.get_dbname().unwrap_or("(default)"), hosts.join(","))
}

fn migrate(client: &mut Client, steps: &[String]) -> Result<(), OpenError> {
    let setup = |e: postgres::Error| OpenError::Setup(classify(&e));
    let known = steps.len();
    loop {
        let mut tx = client.transaction().map_err(setup)?;
        // Two programs opening one database at once run each step once.
        tx.batch_execute("LOCK TABLE sqlweir_migrations IN EXCLUSIVE MODE").map_err(setup)?;
        let applied: i64 = tx.query_one("SELECT count(*) FROM sqlweir_migrations", &[]).map_err(setup)?.get(0);
        let applied = usize::try_from(applied).unwrap_or(usize::MAX);
        if applied > known {
            return Err(OpenError::SchemaTooNew { found: applied as i64, known });
        }
        if applied == known {
            return tx.commit().map_err(setup);
        }
        let step = applied;
        tx.batch_execute(&steps[step]).map_err(|e| OpenError::Migration { step, source: classify(&e) })?;
        tx.execute("INSERT INTO sqlweir_migrations(step) VALUES ($1)", &[&(step as i32)]).map_err(setup)?;
        tx.commit().map_err(|e| OpenError::Migration { step, source: classify(&e) })?;
    }
}

/// The writer's PostgreSQL connection: tokio-postgres driven by a current-thread runtime that
/// lives on the writer thread, so that a group's writes are in flight together (one round trip
/// for the lot, not one per write).
pub(crate) struct PgBackend {
    runtime: tokio::runtime::Runtime,
    config: tokio_postgres::Config,
    setup: String,
    /// `None` after the connection was lost; the next `begin` reconnects.
    client: Option<tokio_postgres::Client>,
    /// Per connection: each statement's prepared form, and its multi-row forms.
    statements: HashMap<String, Prepared>,
    in_tx: bool,
    /// The open transaction's commit token.
    token: Option<String>,
    prefix: String,
    batches: u64,
    /// A savepoint around each write (after a rejected write forced a replay of this batch).
    careful: bool,
}

/// A statement prepared on the writer's connection.
struct Prepared {
    single: Statement,
    /// `Some` when runs of its rows may go as one multi-row INSERT (see [`MultiRow`]).
    multi: Option<MultiRow>,
    /// Multi-row forms prepared so far, by rows per statement (powers of two).
    chunks: HashMap<usize, Statement>,
}

/// One step of a group's pipeline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    /// Rows `start..start + len` as one multi-row INSERT, inside a savepoint of its own.
    Chunk { start: usize, len: usize },
    /// One row, inside a savepoint when `savepoint`.
    Row { row: usize, savepoint: bool },
}

impl Step {
    fn first_row(self) -> usize {
        match self {
            Step::Chunk { start, .. } => start,
            Step::Row { row, .. } => row,
        }
    }

    fn has_savepoint(self) -> bool {
        matches!(self, Step::Chunk { .. } | Step::Row { savepoint: true, .. })
    }
}

/// One request of a pipeline.
enum Op<'a> {
    Simple(&'static str),
    Execute(Statement, Vec<PgParam<'a>>),
}

/// Where a group stopped early: the row, its error, and whether the transaction is still open.
struct Stop {
    row: usize,
    error: BackendError,
    kept: bool,
}

/// How the replies of one pipeline went.
enum Walked {
    /// Every step ran; results are recorded.
    All,
    /// Step `k` (relative) was refused inside its savepoint and undone alone: go on after it.
    RowUndone(usize),
    /// Chunk `k` (relative) was refused and undone: run its rows one by one.
    ChunkUndone(usize),
    /// The group ends here.
    Stop(Stop),
}

/// Runs of fewer rows go one statement per row.
const MULTI_MIN_ROWS: usize = 8;
/// The largest multi-row statement, in rows (a power of two: few distinct statements to prepare).
const MULTI_MAX_ROWS: usize = 512;
/// PostgreSQL's limit on the parameters of one statement.
const MAX_PARAMS: usize = 65_535;

fn lost(message: &str) -> BackendError {
    BackendError::new(ErrorKind::Io, ErrorClass::Transient, None, format!("connection to PostgreSQL lost: {message}"))
}

/// Whether the error means the session is over (closed socket, a FATAL from the server such as
/// `pg_terminate_backend`, a connection exception): then the outcome of a COMMIT is unknown.
fn session_ended(e: &postgres::Error) -> bool {
    if e.is_closed() || std::error::Error::source(e).is_some_and(<dyn std::error::Error>::is::<std::io::Error>) {
        return true;
    }
    e.as_db_error().is_some_and(|db| matches!(db.severity(), "FATAL" | "PANIC") || db.code().code().starts_with("08"))
}

impl PgBackend {
    pub(crate) fn new(config: tokio_postgres::Config, setup: String, prefix: String) -> Result<Self, BackendError> {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| {
            BackendError::new(ErrorKind::Io, ErrorClass::Fatal, None, format!("cannot start the writer's runtime: {e}"))
        })?;
        let mut backend = PgBackend {
            runtime,
            config,
            setup,
            client: None,
            statements: HashMap::new(),
            in_tx: false,
            token: None,
            prefix,
            batches: 0,
            careful: false,
        };
        backend.connect()?;
        Ok(backend)
    }

    fn connect(&mut self) -> Result<(), BackendError> {
        self.client = None;
        self.statements.clear();
        let (client, connection) =
            self.runtime.block_on(self.config.connect(NoTls)).map_err(|e| lost(&e.to_string()))?;
        // The connection task runs whenever the writer blocks on a request: the runtime's one
        // thread is the writer's own.
        self.runtime.spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "the writer's PostgreSQL connection ended");
            }
        });
        self.runtime.block_on(client.batch_execute(&self.setup)).map_err(|e| lost(&e.to_string()))?;
        self.client = Some(client);
        Ok(())
    }

    fn connected(&self) -> bool {
        self.client.as_ref().is_some_and(|c| !c.is_closed())
    }

    /// Classifies a failure; a session that ended also ends the transaction.
    fn failed(&mut self, e: &postgres::Error) -> BackendError {
        if session_ended(e) || !self.connected() {
            self.client = None;
            self.statements.clear();
            self.in_tx = false;
            return lost(&e.to_string());
        }
        classify(e)
    }

    /// Runs statements without parameters, in one round trip.
    fn simple(&mut self, sql: &str) -> Result<(), BackendError> {
        let Some(client) = self.client.as_ref() else { return Err(lost("not connected")) };
        match self.runtime.block_on(client.batch_execute(sql)) {
            Ok(()) => Ok(()),
            Err(e) => Err(self.failed(&e)),
        }
    }

    /// After a lost connection during COMMIT: reconnect and look for the batch's token.
    fn committed_despite(&mut self, token: &str) -> Option<bool> {
        for attempt in 0..5u32 {
            if !self.connected() {
                let _ = self.connect();
            }
            if let Some(client) = self.client.as_ref()
                && let Ok(rows) =
                    self.runtime.block_on(client.query("SELECT 1 FROM sqlweir_commits WHERE token = $1", &[&token]))
            {
                return Some(!rows.is_empty());
            }
            self.client = None;
            std::thread::sleep(Duration::from_millis(50) * (attempt + 1));
        }
        None
    }

    /// Prepares `sql` on first use on this connection, and learns whether its rows may go as
    /// multi-row INSERTs.
    fn prepare(&mut self, sql: &str) -> Result<(), BackendError> {
        let Some(client) = self.client.as_ref() else { return Err(lost("not connected")) };
        let translated = translate_placeholders(sql);
        let prepared = self.runtime.block_on(async {
            let single = client.prepare(&translated).await?;
            let multi = match MultiRow::parse(&translated, single.params().len()) {
                Some(shape) if shape.plain_table(client).await? => Some(shape),
                _ => None,
            };
            Ok::<_, postgres::Error>(Prepared { single, multi, chunks: HashMap::new() })
        });
        match prepared {
            Ok(p) => {
                if self.statements.len() >= STATEMENT_CACHE {
                    self.statements.clear();
                }
                self.statements.insert(sql.to_owned(), p);
                Ok(())
            }
            Err(e) => Err(self.failed(&e)),
        }
    }

    /// [`prepare`](Self::prepare) inside the batch: when careful, inside a savepoint, so a
    /// statement the server cannot prepare is undone alone.
    fn prepare_in_batch(&mut self, sql: &str) -> Result<(), BackendError> {
        if self.statements.contains_key(sql) {
            return Ok(());
        }
        if !self.careful {
            return self.prepare(sql);
        }
        self.simple("SAVEPOINT sqlweir_write")?;
        match self.prepare(sql) {
            Ok(()) => self.simple("RELEASE SAVEPOINT sqlweir_write"),
            Err(e) if e.class == ErrorClass::Rejected => {
                self.undo(WRITE_SAVEPOINT)?;
                Err(e)
            }
            Err(e) => Err(e),
        }
    }

    /// The multi-row form of `sql` for `rows` rows, prepared on first use.
    fn chunk_statement(&mut self, sql: &str, rows: usize) -> Result<Statement, BackendError> {
        let Some(client) = self.client.as_ref() else { return Err(lost("not connected")) };
        let Some(prepared) = self.statements.get_mut(sql) else { return Err(lost("statement cache was reset")) };
        if let Some(stmt) = prepared.chunks.get(&rows) {
            return Ok(stmt.clone());
        }
        let Some(shape) = prepared.multi.as_ref() else { return Err(lost("not a multi-row statement")) };
        match self.runtime.block_on(client.prepare(&shape.sql(rows))) {
            Ok(stmt) => {
                prepared.chunks.insert(rows, stmt.clone());
                Ok(stmt)
            }
            Err(e) => Err(self.failed(&e)),
        }
    }

    /// Cuts a group into steps: runs of accepted rows as multi-row chunks where the statement
    /// allows it (largest power of two first), the rest one row each.
    fn plan(&self, sql: &str, accepted: &[bool], params_per_row: usize) -> Vec<Step> {
        let multi = self.statements.get(sql).is_some_and(|p| p.multi.is_some());
        let cap = MAX_PARAMS.checked_div(params_per_row).unwrap_or(MULTI_MAX_ROWS).min(MULTI_MAX_ROWS);
        let cap = if cap == 0 { 0 } else { 1 << cap.ilog2() };
        let savepoint = self.careful;
        let mut steps = Vec::new();
        let mut i = 0;
        while i < accepted.len() {
            if !accepted[i] {
                i += 1;
                continue;
            }
            let mut left = accepted[i..].iter().take_while(|a| **a).count();
            while multi && cap >= MULTI_MIN_ROWS && left >= MULTI_MIN_ROWS {
                let len = (1usize << left.ilog2()).min(cap);
                steps.push(Step::Chunk { start: i, len });
                i += len;
                left -= len;
            }
            for _ in 0..left {
                steps.push(Step::Row { row: i, savepoint });
                i += 1;
            }
        }
        steps
    }

    /// The requests for `steps`, in order.
    fn ops<'a>(&mut self, sql: &str, steps: &[Step], rows: &[&'a [Value]]) -> Result<Vec<Op<'a>>, BackendError> {
        let Some(single) = self.statements.get(sql).map(|p| p.single.clone()) else {
            return Err(lost("statement cache was reset"));
        };
        let mut ops = Vec::with_capacity(steps.len() * 3);
        for step in steps {
            match *step {
                Step::Chunk { start, len } => {
                    let stmt = self.chunk_statement(sql, len)?;
                    let params = rows[start..start + len].iter().flat_map(|r| r.iter().map(PgParam)).collect();
                    ops.push(Op::Simple("SAVEPOINT sqlweir_chunk"));
                    ops.push(Op::Execute(stmt, params));
                    ops.push(Op::Simple("RELEASE SAVEPOINT sqlweir_chunk"));
                }
                Step::Row { row, savepoint } => {
                    let params = rows[row].iter().map(PgParam).collect();
                    if savepoint {
                        ops.push(Op::Simple("SAVEPOINT sqlweir_write"));
                    }
                    ops.push(Op::Execute(single.clone(), params));
                    if savepoint {
                        ops.push(Op::Simple("RELEASE SAVEPOINT sqlweir_write"));
                    }
                }
            }
        }
        Ok(ops)
    }

    /// Sends `ops` without waiting between them, then collects every reply, in order.
    fn pipeline(&mut self, ops: Vec<Op<'_>>) -> Result<Vec<Result<u64, postgres::Error>>, BackendError> {
        let Some(client) = self.client.as_ref() else { return Err(lost("not connected")) };
        Ok(self.runtime.block_on(send_all(client, ops)))
    }

    /// Reads one pipeline's replies step by step, recording each row's result, up to the first
    /// refused step (after it the server ignored everything: the transaction was aborted).
    fn walk(
        &mut self,
        steps: &[Step],
        replies: Vec<Result<u64, postgres::Error>>,
        results: &mut [Option<Result<Applied, BackendError>>],
    ) -> Walked {
        let mut replies = replies.into_iter();
        for (k, step) in steps.iter().enumerate() {
            let savepoint = step.has_savepoint();
            let opened = if savepoint { replies.next() } else { None };
            let executed = replies.next();
            let released = if savepoint { replies.next() } else { None };
            let outcome = match (opened, executed, released) {
                (Some(Err(e)), ..) | (_, Some(Err(e)), _) | (_, _, Some(Err(e))) => Err(e),
                (_, Some(Ok(n)), _) => Ok(n),
                (_, None, _) => {
                    return Walked::Stop(Stop { row: step.first_row(), error: lost("no reply"), kept: false });
                }
            };
            let e = match outcome {
                Ok(n) => {
                    match *step {
                        Step::Row { row, .. } => results[row] = Some(Ok(applied(n))),
                        Step::Chunk { start, len } => {
                            if n != len as u64 {
                                tracing::warn!(
                                    rows = len,
                                    changed = n,
                                    "a multi-row INSERT changed an unexpected number of rows"
                                );
                            }
                            for slot in &mut results[start..start + len] {
                                *slot = Some(Ok(applied(1)));
                            }
                        }
                    }
                    continue;
                }
                Err(e) => e,
            };
            let error = self.failed(&e);
            let row = step.first_row();
            if error.class != ErrorClass::Rejected {
                return Walked::Stop(Stop { row, error, kept: false });
            }
            return match *step {
                Step::Chunk { .. } => match self.undo(CHUNK_SAVEPOINT) {
                    Ok(()) => Walked::ChunkUndone(k),
                    Err(error) => Walked::Stop(Stop { row, error, kept: false }),
                },
                Step::Row { savepoint: true, .. } => match self.undo(WRITE_SAVEPOINT) {
                    Ok(()) => {
                        results[row] = Some(Err(error));
                        Walked::RowUndone(k)
                    }
                    Err(error) => Walked::Stop(Stop { row, error, kept: false }),
                },
                Step::Row { savepoint: false, .. } => {
                    // The transaction is aborted: roll it back; the core replays the batch
                    // without this row, careful from then on.
                    let error = match self.abandon() {
                        Ok(()) => error,
                        Err(e) => e,
                    };
                    Walked::Stop(Stop { row, error, kept: false })
                }
            };
        }
        Walked::All
    }

    /// Runs a group of rows of one prepared statement; each row's result, and where the group
    /// stopped early, if it did.
    fn run_group(
        &mut self,
        sql: &str,
        rows: &[&[Value]],
    ) -> (Vec<Option<Result<Applied, BackendError>>>, Option<Stop>) {
        let types = self.statements[sql].single.params().to_vec();
        // Values that cannot be sent are refused here, before the pipeline: they never reach
        // the server, so they never abort the transaction.
        let mut results: Vec<Option<Result<Applied, BackendError>>> =
            rows.iter().map(|row| check_row(&types, row).err().map(Err)).collect();
        let accepted: Vec<bool> = results.iter().map(Option::is_none).collect();
        let mut steps = self.plan(sql, &accepted, types.len());
        let mut from = 0;
        while from < steps.len() {
            let replies = match self.ops(sql, &steps[from..], rows).and_then(|ops| self.pipeline(ops)) {
                Ok(replies) => replies,
                Err(error) => return (results, Some(Stop { row: steps[from].first_row(), error, kept: false })),
            };
            match self.walk(&steps[from..], replies, &mut results) {
                Walked::All => from = steps.len(),
                Walked::RowUndone(k) => from += k + 1,
                Walked::ChunkUndone(k) => {
                    // Undone whole: its rows go again one by one, each in a savepoint, so that
                    // only the bad one is rejected.
                    let at = from + k;
                    let Step::Chunk { start, len } = steps[at] else { unreachable!("only a chunk is expanded") };
                    steps.splice(at..=at, (start..start + len).map(|row| Step::Row { row, savepoint: true }));
                    from = at;
                }
                Walked::Stop(stop) => return (results, Some(stop)),
            }
        }
        (results, None)
    }

    /// Undoes the failed step inside its savepoint; the transaction goes on.
    fn undo(&mut self, savepoint: &str) -> Result<(), BackendError> {
        if savepoint == WRITE_SAVEPOINT {
            self.simple("ROLLBACK TO SAVEPOINT sqlweir_write; RELEASE SAVEPOINT sqlweir_write")
        } else {
            self.simple("ROLLBACK TO SAVEPOINT sqlweir_chunk; RELEASE SAVEPOINT sqlweir_chunk")
        }
    }

    /// Abandons the transaction after a write the database refused outside a savepoint: the
    /// core replays the batch without it, with a savepoint around each write.
    fn abandon(&mut self) -> Result<(), BackendError> {
        let undone = self.simple("ROLLBACK");
        self.in_tx = false;
        self.token = None;
        self.careful = true;
        undone
    }
}

const WRITE_SAVEPOINT: &str = "sqlweir_write";
const CHUNK_SAVEPOINT: &str = "sqlweir_chunk";

fn applied(changes: u64) -> Applied {
    Applied { changes, last_rowid: 0, returned: None }
}

/// Polls every request once, in order (each sends its messages on its first poll), then awaits
/// the replies in order: the whole list goes out before the first reply is read.
async fn send_all(client: &tokio_postgres::Client, ops: Vec<Op<'_>>) -> Vec<Result<u64, postgres::Error>> {
    type Reply<'f> = std::pin::Pin<Box<dyn std::future::Future<Output = Result<u64, postgres::Error>> + 'f>>;
    let mut futures: Vec<Reply<'_>> = ops
        .iter()
        .map(|op| -> Reply<'_> {
            match op {
                Op::Simple(sql) => Box::pin(async move { client.batch_execute(sql).await.map(|()| 0) }),
                Op::Execute(stmt, params) => {
                    Box::pin(client.execute_raw(stmt, params.iter().map(|p| p as &(dyn ToSql + Sync))))
                }
            }
        })
        .collect();
    let mut replies: Vec<Option<Result<u64, postgres::Error>>> =
        futures.iter_mut().map(|f| futures_util::FutureExt::now_or_never(f.as_mut())).collect();
    for (future, reply) in futures.iter_mut().zip(replies.iter_mut()) {
        if reply.is_none() {
            *reply = Some(future.await);
        }
    }
    replies.into_iter().map(|r| r.unwrap_or_else(|| unreachable!("every reply was awaited"))).collect()
}

/// Checks one row's values against the statement's parameter types before anything is sent.
fn check_row(types: &[Type], row: &[Value]) -> Result<(), BackendError> {
    let refuse = |message: String| Err(BackendError::new(ErrorKind::InvalidInput, ErrorClass::Rejected, None, message));
    if types.len() != row.len() {
        return refuse(format!("expected {} parameters but got {}", types.len(), row.len()));
    }
    let mut scratch = BytesMut::new();
    for (i, (ty, value)) in types.iter().zip(row).enumerate() {
        scratch.clear();
        if let Err(e) = PgParam(value).to_sql(ty, &mut scratch) {
            return refuse(format!("error serializing parameter {i}: {e}"));
        }
    }
    Ok(())
}

impl Backend for PgBackend {
    fn begin(&mut self) -> Result<(), BackendError> {
        self.batches += 1;
        let token = format!("{}-{}", self.prefix, self.batches);
        if !self.connected() {
            self.connect()?;
        }
        // The token is our own text (hex, digits and `-`), safe to inline: BEGIN and the token
        // go in one round trip.
        match self.simple(&format!("BEGIN; INSERT INTO sqlweir_commits(token) VALUES ('{token}')")) {
            Ok(()) => {
                self.in_tx = true;
                self.token = Some(token);
                Ok(())
            }
            Err(error) => {
                if self.client.is_some() {
                    let _ = self.simple("ROLLBACK");
                }
                self.in_tx = false;
                Err(error)
            }
        }
    }

    fn execute(&mut self, sql: &str, params: &[Value]) -> Result<Applied, BackendError> {
        let mut result = Err(lost("not run"));
        self.execute_many(sql, None, &[params], &mut |_, r, _| {
            result = r;
            false
        });
        result
    }

    /// Runs a group of rows of one statement as a pipeline: every row's request is sent before
    /// any reply is read, and runs of rows of a plain INSERT go as multi-row statements.
    ///
    /// Optimistic (no savepoints): the first row the database refuses aborts the transaction,
    /// so it is rolled back and reported with `kept = false`, and the core replays the batch
    /// without it, careful: a savepoint around each row; a refused row is undone alone and the
    /// rest of the group is sent again after it. A multi-row chunk always has a savepoint of
    /// its own: when one of its rows is refused the chunk is undone and its rows go one by one,
    /// so that only the bad row is rejected.
    fn execute_many(
        &mut self,
        sql: &str,
        names: Option<&[String]>,
        rows: &[&[Value]],
        each: &mut dyn FnMut(usize, Result<Applied, BackendError>, bool) -> bool,
    ) {
        let refusal = if names.is_some() {
            Some(BackendError::new(
                ErrorKind::InvalidInput,
                ErrorClass::Rejected,
                None,
                "this database takes positional parameters only (?1, ?2, ...)",
            ))
        } else {
            transaction_control(sql).map(|keyword| {
                BackendError::new(
                    ErrorKind::InvalidInput,
                    ErrorClass::Rejected,
                    None,
                    format!("{keyword} cannot go through the write queue: it would break the batch's transaction"),
                )
            })
        };
        if let Some(error) = refusal {
            for i in 0..rows.len() {
                if !each(i, Err(error.clone()), true) {
                    return;
                }
            }
            return;
        }
        if let Err(error) = self.prepare_in_batch(sql) {
            if error.class == ErrorClass::Rejected && self.careful {
                // Undone alone; every row of the group has this statement.
                for i in 0..rows.len() {
                    if !each(i, Err(error.clone()), true) {
                        return;
                    }
                }
                return;
            }
            let error = if error.class == ErrorClass::Rejected { self.abandon().err().unwrap_or(error) } else { error };
            each(0, Err(error), false);
            return;
        }
        let (results, stop) = self.run_group(sql, rows);
        for (i, result) in results.into_iter().enumerate() {
            if let Some(stop) = stop.as_ref().filter(|s| s.row == i) {
                each(i, Err(stop.error.clone()), stop.kept);
                return;
            }
            let result = result.unwrap_or_else(|| Err(lost("no reply for this write")));
            if !each(i, result, true) {
                return;
            }
        }
    }

    fn commit(&mut self) -> Result<(), BackendError> {
        let token = self.token.take();
        // The batch ends here either way: the next one starts optimistic again.
        self.careful = false;
        let Some(client) = self.client.as_ref() else { return Err(lost("not connected")) };
        let result = self.runtime.block_on(client.batch_execute("COMMIT"));
        self.in_tx = false;
        match result {
            Ok(()) => {
                if self.batches.is_multiple_of(PRUNE_EVERY) {
                    let _ =
                        self.simple("DELETE FROM sqlweir_commits WHERE committed_at < now() - interval '10 minutes'");
                }
                Ok(())
            }
            Err(e) => {
                let error = self.failed(&e);
                if self.client.is_some() {
                    return Err(error); // the server refused the commit: nothing was applied
                }
                // The session ended during COMMIT: the token tells what happened.
                match token.as_deref().and_then(|t| self.committed_despite(t)) {
                    Some(true) => Ok(()),
                    Some(false) => Err(error),
                    None => Err(BackendError::new(
                        ErrorKind::Io,
                        ErrorClass::Fatal,
                        None,
                        "connection lost during COMMIT and the server could not be reached to learn its outcome; \
                         the batch may or may not be committed",
                    )),
                }
            }
        }
    }

    fn rollback(&mut self) -> Result<(), BackendError> {
        self.token = None;
        if !self.in_tx {
            return Ok(());
        }
        self.in_tx = false;
        if self.client.is_some() { self.simple("ROLLBACK") } else { Ok(()) }
    }

    fn in_transaction(&self) -> bool {
        self.in_tx
    }
}

impl Engine for PgBackend {
    fn records_requests(&self) -> bool {
        false
    }

    fn query(&mut self, sql: &str, params: &[Value]) -> Result<Rows, QueryError> {
        let Some(client) = self.client.as_ref() else { return Err(QueryError::Database(lost("not connected"))) };
        let bound: Vec<PgParam<'_>> = params.iter().map(PgParam).collect();
        let refs: Vec<&(dyn ToSql + Sync)> = bound.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
        let translated = translate_placeholders(sql);
        let result = self.runtime.block_on(async {
            let stmt = client.prepare(&translated).await?;
            let rows = client.query(&stmt, &refs).await?;
            Ok::<_, postgres::Error>((stmt, rows))
        });
        match result {
            Ok((stmt, rows)) => to_rows(&stmt, &rows),
            Err(e) => Err(QueryError::Database(self.failed(&e))),
        }
    }

    fn finish(&mut self) -> Result<(), CloseError> {
        self.client = None;
        Ok(())
    }
}

/// The lease rows of a PostgreSQL database on a connection of their own (`sqlweir-jobs`), and
/// a session advisory lock per job held, `pg_advisory_lock(JOB_LOCKS, hash(name))`.
///
/// The server's clock decides expiry, so machines with skewed clocks agree. The row decides
/// who holds the job; the advisory lock shows it to the server: `pg_locks` names the session
/// that holds each job, the server drops it when that session ends, and a tool outside
/// sqlweir can wait on it (`pg_advisory_lock` blocks until the job is released or its holder's
/// session is gone). It is taken with each grant and taken back by the holder's renewal after
/// a reconnect. A session that dies frees its advisory lock at once, but its holder may only be
/// reconnecting, so the job is free for sqlweir only when the lease expires, as on SQLite; and
/// an expired lease is granted even while the stalled holder's session keeps its advisory lock
/// (the new holder takes it at its renewal once that session lets go).
pub(crate) struct PgLeases {
    client: Client,
    /// Jobs whose advisory lock this session holds.
    advisory: std::collections::HashSet<String>,
}

/// The advisory lock space of held jobs (`pg_advisory_lock(JOB_LOCKS, hash)`): two 32-bit keys,
/// so the application's own single-key advisory locks never collide with them.
const JOB_LOCKS: i32 = 0x5371_6a62;
/// The advisory lock space in which grant decisions are serialised (transaction locks).
const JOB_DECISIONS: i32 = 0x5371_6a63;

/// The second advisory key of a job: FNV-1a of its name (names that collide only share the
/// advisory lock; the lease rows stay apart).
fn job_key(name: &str) -> i32 {
    let hash = name.bytes().fold(0x811c_9dc5_u32, |h, b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193));
    hash as i32
}

const PG_NOW_MS: &str = "(extract(epoch from clock_timestamp()) * 1000)::int8";

fn pg_failed(e: &postgres::Error) -> BackendError {
    if session_ended(e) { lost(&e.to_string()) } else { classify(e) }
}

impl PgLeases {
    fn open(config: &Config) -> Result<Box<dyn LeaseDb>, BackendError> {
        let mut client = config.connect(NoTls).map_err(|e| pg_failed(&e))?;
        // A decision stalled inside its transaction (a stopped process) blocks the others at
        // most this long; they fail with a lock timeout and may try again.
        client.batch_execute("SET lock_timeout = '5s'").map_err(|e| pg_failed(&e))?;
        let mut tx = client.transaction().map_err(|e| pg_failed(&e))?;
        // Two stores creating the tables at once would race in the catalog.
        tx.execute("SELECT pg_advisory_xact_lock($1, 0)", &[&JOB_DECISIONS]).map_err(|e| pg_failed(&e))?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS _sqlweir_jobs(name text PRIMARY KEY, token int8 NOT NULL, \
             holder text, owner text, since_ms int8, expires_ms int8, \
             queued_owner text, queued_holder text, queued_until_ms int8); \
             CREATE TABLE IF NOT EXISTS _sqlweir_job_runs(name text NOT NULL, token int8 NOT NULL, holder text NOT NULL, \
             started_ms int8 NOT NULL, duration_ms int8 NOT NULL, failure text, PRIMARY KEY(name, token))",
        )
        .map_err(|e| pg_failed(&e))?;
        tx.commit().map_err(|e| pg_failed(&e))?;
        Ok(Box::new(PgLeases { client, advisory: std::collections::HashSet::new() }))
    }

    fn try_advisory(&mut self, name: &str) -> Result<bool, BackendError> {
        if self.advisory.contains(name) {
            return Ok(true);
        }
        let got: bool = self
            .client
            .query_one("SELECT pg_try_advisory_lock($1, $2)", &[&JOB_LOCKS, &job_key(name)])
            .map_err(|e| pg_failed(&e))?
            .get(0);
        if got {
            self.advisory.insert(name.to_owned());
        }
        Ok(got)
    }

    fn drop_advisory(&mut self, name: &str) -> Result<(), BackendError> {
        if self.advisory.remove(name) {
            self.client
                .execute("SELECT pg_advisory_unlock($1, $2)", &[&JOB_LOCKS, &job_key(name)])
                .map_err(|e| pg_failed(&e))?;
        }
        Ok(())
    }
}

/// Reads a lease row (`FOR UPDATE` inside a transaction) and the server's clock.
fn pg_lease(
    client: &mut impl postgres::GenericClient,
    name: &str,
    for_update: bool,
) -> Result<(Option<Lease>, u64), postgres::Error> {
    let lock = if for_update { " FOR UPDATE" } else { "" };
    let now: i64 = client.query_one(&format!("SELECT {PG_NOW_MS}"), &[])?.get(0);
    let rows = client.query(
        &format!(
            "SELECT holder, owner, token, since_ms, expires_ms, queued_owner, queued_holder, queued_until_ms \
             FROM _sqlweir_jobs WHERE name = $1{lock}"
        ),
        &[&name],
    )?;
    let lease = rows.first().map(|r| {
        let queued = match (r.get::<_, Option<String>>(5), r.get::<_, Option<String>>(6)) {
            (Some(o), Some(h)) => Some((o, h, r.get::<_, Option<i64>>(7).unwrap_or(0) as u64)),
            _ => None,
        };
        Lease {
            holder: r.get(0),
            owner: r.get(1),
            token: r.get::<_, i64>(2) as u64,
            since_ms: r.get::<_, Option<i64>>(3).unwrap_or(0) as u64,
            expires_ms: r.get::<_, Option<i64>>(4).unwrap_or(0) as u64,
            queued,
        }
    });
    Ok((lease, now as u64))
}

fn pg_record_run(
    tx: &mut postgres::Transaction<'_>,
    name: &str,
    token: u64,
    run: &JobRun,
) -> Result<(), postgres::Error> {
    let failure = match &run.outcome {
        JobOutcome::Succeeded => None,
        JobOutcome::Failed(why) => Some(why.as_str()),
    };
    tx.execute(
        "INSERT INTO _sqlweir_job_runs(name, token, holder, started_ms, duration_ms, failure) \
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (name, token) DO NOTHING",
        &[&name, &(token as i64), &run.holder, &(run.started_ms as i64), &(run.duration_ms as i64), &failure],
    )?;
    tx.execute(
        "DELETE FROM _sqlweir_job_runs WHERE name = $1 AND token NOT IN \
         (SELECT token FROM _sqlweir_job_runs WHERE name = $1 ORDER BY token DESC LIMIT $2)",
        &[&name, &(HISTORY_LEN as i64)],
    )?;
    Ok(())
}

impl LeaseDb for PgLeases {
    fn attempt(
        &mut self,
        name: &str,
        holder: &str,
        owner: &str,
        ttl: Duration,
        queue: bool,
    ) -> Result<Attempt, BackendError> {
        let mut tx = self.client.transaction().map_err(|e| pg_failed(&e))?;
        // One decision at a time per job, also while its row does not exist yet (FOR UPDATE
        // locks nothing then). A key apart from the holder's session lock, which a stalled
        // holder may keep.
        tx.execute("SELECT pg_advisory_xact_lock($1, $2)", &[&JOB_DECISIONS, &job_key(name)])
            .map_err(|e| pg_failed(&e))?;
        let (lease, now) = pg_lease(&mut tx, name, true).map_err(|e| pg_failed(&e))?;
        let decision = joblock::decide(lease.as_ref(), owner, now, queue);
        let attempt = match decision {
            LeaseDecision::Grant { token, expired } => {
                let run = |e: postgres::Error| pg_failed(&e);
                if let Some(expired) = expired {
                    pg_record_run(&mut tx, name, token - 1, &expired).map_err(run)?;
                }
                tx.execute(
                    "INSERT INTO _sqlweir_jobs(name, token, holder, owner, since_ms, expires_ms) \
                     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (name) DO UPDATE SET token = excluded.token, \
                     holder = excluded.holder, owner = excluded.owner, since_ms = excluded.since_ms, \
                     expires_ms = excluded.expires_ms, queued_owner = NULL, queued_holder = NULL, queued_until_ms = NULL",
                    &[&name, &(token as i64), &holder, &owner, &(now as i64), &((now + ttl.as_millis() as u64) as i64)],
                )
                .map_err(run)?;
                Attempt::Granted(token)
            }
            LeaseDecision::Busy { status, queue } => {
                if queue {
                    tx.execute(
                        "UPDATE _sqlweir_jobs SET queued_owner = $2, queued_holder = $3, queued_until_ms = $4 WHERE name = $1",
                        &[&name, &owner, &holder, &((now + QUEUE_HOLD.as_millis() as u64) as i64)],
                    )
                    .map_err(|e| pg_failed(&e))?;
                }
                Attempt::Busy(status)
            }
        };
        tx.commit().map_err(|e| pg_failed(&e))?;
        if matches!(attempt, Attempt::Granted(_)) {
            // Best effort: a stalled former holder's session may still keep it; renewals try
            // again.
            self.try_advisory(name)?;
        }
        Ok(attempt)
    }

    fn renew(&mut self, name: &str, owner: &str, token: u64, ttl: Duration) -> Result<bool, BackendError> {
        // After a reconnect the session lost its advisory locks: take this one back (best
        // effort; the row decides).
        let _ = self.try_advisory(name)?;
        let changed = self
            .client
            .execute(
                &format!(
                    "UPDATE _sqlweir_jobs SET expires_ms = {PG_NOW_MS} + $4 \
                     WHERE name = $1 AND owner = $2 AND token = $3 AND holder IS NOT NULL"
                ),
                &[&name, &owner, &(token as i64), &(ttl.as_millis() as i64)],
            )
            .map_err(|e| pg_failed(&e))?;
        if changed == 0 {
            self.drop_advisory(name)?;
        }
        Ok(changed == 1)
    }

    fn release(&mut self, name: &str, owner: &str, token: u64, outcome: &JobOutcome) -> Result<bool, BackendError> {
        let mut tx = self.client.transaction().map_err(|e| pg_failed(&e))?;
        let (lease, now) = pg_lease(&mut tx, name, true).map_err(|e| pg_failed(&e))?;
        let released = joblock::still_granted(lease.as_ref(), owner, token);
        if let Some(lease) = lease.filter(|_| released) {
            tx.execute(
                "UPDATE _sqlweir_jobs SET holder = NULL, owner = NULL, since_ms = NULL, expires_ms = NULL WHERE name = $1",
                &[&name],
            )
            .map_err(|e| pg_failed(&e))?;
            let run = JobRun {
                holder: lease.holder.unwrap_or_default(),
                started_ms: lease.since_ms,
                duration_ms: now.saturating_sub(lease.since_ms),
                outcome: outcome.clone(),
            };
            pg_record_run(&mut tx, name, token, &run).map_err(|e| pg_failed(&e))?;
        }
        tx.commit().map_err(|e| pg_failed(&e))?;
        self.drop_advisory(name)?;
        Ok(released)
    }

    fn holds(&mut self, name: &str, owner: &str, token: u64) -> Result<bool, BackendError> {
        let (lease, now) = pg_lease(&mut self.client, name, false).map_err(|e| pg_failed(&e))?;
        Ok(joblock::still_granted(lease.as_ref(), owner, token) && lease.is_some_and(|l| l.expires_ms > now))
    }

    fn status(&mut self, name: &str) -> Result<Option<JobStatus>, BackendError> {
        let (lease, now) = pg_lease(&mut self.client, name, false).map_err(|e| pg_failed(&e))?;
        Ok(lease.and_then(|l| match l.holder {
            Some(holder) if l.expires_ms > now => Some(JobStatus { holder, since_ms: l.since_ms }),
            _ => None,
        }))
    }

    fn history(&mut self, name: &str) -> Result<Vec<JobRun>, BackendError> {
        let rows = self
            .client
            .query(
                "SELECT holder, started_ms, duration_ms, failure FROM _sqlweir_job_runs WHERE name = $1 \
                 ORDER BY token DESC LIMIT $2",
                &[&name, &(HISTORY_LEN as i64)],
            )
            .map_err(|e| pg_failed(&e))?;
        Ok(rows.iter().rev().map(|r| run_from_parts(r.get(0), r.get(1), r.get(2), r.get(3))).collect())
    }
}

/// A read connection; reconnects when its connection was lost.
pub(crate) struct PgReader {
    config: Config,
    client: Option<Client>,
}

impl Reader for PgReader {
    fn run(&mut self, sql: &str, params: &[Value]) -> Result<Rows, QueryError> {
        if self.client.as_ref().is_none_or(Client::is_closed) {
            self.client = Some(self.config.connect(NoTls).map_err(|e| QueryError::Database(lost(&e.to_string())))?);
        }
        let client = self.client.as_mut().ok_or_else(|| QueryError::Database(lost("not connected")))?;
        run_query(client, sql, params)
    }

    fn tables_read(&mut self, _sql: &str) -> Result<Vec<String>, QueryError> {
        Err(QueryError::Database(BackendError::new(
            ErrorKind::InvalidInput,
            ErrorClass::Rejected,
            None,
            "live queries need the commit feed, which a PostgreSQL store does not publish yet: poll with query",
        )))
    }
}

fn run_query(client: &mut Client, sql: &str, params: &[Value]) -> Result<Rows, QueryError> {
    let bound: Vec<PgParam<'_>> = params.iter().map(PgParam).collect();
    let refs: Vec<&(dyn ToSql + Sync)> = bound.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
    let db = |e: postgres::Error| QueryError::Database(classify(&e));
    let stmt = client.prepare(&translate_placeholders(sql)).map_err(db)?;
    let rows = client.query(&stmt, &refs).map_err(db)?;
    to_rows(&stmt, &rows)
}

/// A query's rows as values.
fn to_rows(stmt: &Statement, rows: &[postgres::Row]) -> Result<Rows, QueryError> {
    let columns: Vec<String> = stmt.columns().iter().map(|c| c.name().to_owned()).collect();
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let mut values = Vec::with_capacity(columns.len());
        for (i, column) in row.columns().iter().enumerate() {
            values.push(read_value(row, i, column.type_()).map_err(|message| {
                QueryError::Database(BackendError::new(ErrorKind::InvalidInput, ErrorClass::Rejected, None, message))
            })?);
        }
        out.push(values);
    }
    Ok(Rows { columns, rows: out })
}

fn read_value(row: &postgres::Row, i: usize, ty: &Type) -> Result<Value, String> {
    let get_err = |e: postgres::Error| e.to_string();
    let v = match *ty {
        Type::INT2 => row.try_get::<_, Option<i16>>(i).map_err(get_err)?.map(|v| Value::Integer(v.into())),
        Type::INT4 => row.try_get::<_, Option<i32>>(i).map_err(get_err)?.map(|v| Value::Integer(v.into())),
        Type::INT8 => row.try_get::<_, Option<i64>>(i).map_err(get_err)?.map(Value::Integer),
        Type::OID => row.try_get::<_, Option<u32>>(i).map_err(get_err)?.map(|v| Value::Integer(v.into())),
        Type::FLOAT4 => row.try_get::<_, Option<f32>>(i).map_err(get_err)?.map(|v| Value::Real(v.into())),
        Type::FLOAT8 => row.try_get::<_, Option<f64>>(i).map_err(get_err)?.map(Value::Real),
        Type::BOOL => row.try_get::<_, Option<bool>>(i).map_err(get_err)?.map(|v| Value::Integer(v.into())),
        Type::BYTEA => row.try_get::<_, Option<Vec<u8>>>(i).map_err(get_err)?.map(Value::Blob),
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN => {
            row.try_get::<_, Option<String>>(i).map_err(get_err)?.map(Value::Text)
        }
        ref other => {
            return Err(format!(
                "column {i} has type {other}, which sqlweir does not read; cast it in the query (e.g. column::text)"
            ));
        }
    };
    Ok(v.unwrap_or(Value::Null))
}

/// Binds a [`Value`] to whatever type the server expects for the parameter, converting only
/// where nothing is lost (an integer into an INT4 parameter if it fits, never text to a number).
#[derive(Debug)]
struct PgParam<'a>(&'a Value);

impl ToSql for PgParam<'_> {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        let refuse = |what: &str| -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
            Err(format!("cannot send {what} as a {ty} parameter; cast it in SQL (e.g. $1::{ty})").into())
        };
        match (self.0, ty) {
            (Value::Null, _) => Ok(IsNull::Yes),
            (Value::Integer(i), &Type::INT8) => i.to_sql(ty, out),
            (Value::Integer(i), &Type::INT4) => i32::try_from(*i)?.to_sql(ty, out),
            (Value::Integer(i), &Type::INT2) => i16::try_from(*i)?.to_sql(ty, out),
            (Value::Integer(i), &Type::FLOAT8) => (*i as f64).to_sql(ty, out),
            (Value::Integer(i), &Type::BOOL) if *i == 0 || *i == 1 => (*i == 1).to_sql(ty, out),
            (Value::Integer(_), _) => refuse("an integer"),
            (Value::Real(f), &Type::FLOAT8) => f.to_sql(ty, out),
            (Value::Real(f), &Type::FLOAT4) => (*f as f32).to_sql(ty, out),
            (Value::Real(_), _) => refuse("a float"),
            (Value::Text(s), _) if <&str as ToSql>::accepts(ty) => s.as_str().to_sql(ty, out),
            (Value::Text(_), _) => refuse("text"),
            (Value::Blob(b), &Type::BYTEA) => b.as_slice().to_sql(ty, out),
            (Value::Blob(_), _) => refuse("a blob"),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

/// Classifies a PostgreSQL error by its SQLSTATE, never by its message.
pub(crate) fn classify(e: &postgres::Error) -> BackendError {
    use ErrorClass::{Fatal, Rejected, Transient};
    let Some(db) = e.as_db_error() else {
        if e.is_closed() || std::error::Error::source(e).is_some_and(<dyn std::error::Error>::is::<std::io::Error>) {
            return lost(&e.to_string());
        }
        // Client-side: a parameter count or conversion problem with this write.
        return BackendError::new(ErrorKind::InvalidInput, Rejected, None, e.to_string());
    };
    let state = db.code().code();
    let (kind, class) = match state {
        // serialization failure, deadlock, lock timeout, server shutting down or restarting,
        // too many connections, any connection exception
        "40001" | "40P01" | "55P03" | "57P01" | "57P02" | "57P03" | "53300" => (ErrorKind::Busy, Transient),
        s if s.starts_with("08") => (ErrorKind::Io, Transient),
        s if s.starts_with("23") => (ErrorKind::Constraint, Rejected),
        // raise_exception from PL/pgSQL (a trigger refusing the row)
        "P0001" => (ErrorKind::Constraint, Rejected),
        s if s.starts_with("22") || s.starts_with("54") => (ErrorKind::InvalidInput, Rejected),
        "25006" | "42501" => (ErrorKind::ReadOnly, Fatal),
        s if s.starts_with("42") || s == "0A000" || s == "21000" => (ErrorKind::Sql, Rejected),
        "53100" => (ErrorKind::DiskFull, Fatal),
        _ => (ErrorKind::Io, Fatal),
    };
    BackendError::new(kind, class, None, format!("{} (SQLSTATE {state})", db.message()))
}

/// The transaction-control keyword a statement starts with, if any.
fn transaction_control(sql: &str) -> Option<&'static str> {
    let first = sql.trim_start().split(|c: char| !c.is_ascii_alphabetic()).next().unwrap_or("");
    ["BEGIN", "START", "COMMIT", "END", "ROLLBACK", "ABORT", "SAVEPOINT", "RELEASE", "PREPARE"]
        .into_iter()
        .find(|k| first.eq_ignore_ascii_case(k))
}

/// Rewrites SQLite-style placeholders for PostgreSQL: `?NNN` becomes `$NNN`, a bare `?` the next
/// number. String literals, quoted identifiers, dollar-quoted strings and comments are left
/// alone; `$1` passes through.
pub(crate) fn translate_placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut next = 1;
    let chars: Vec<char> = sql.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '\'' | '"' => {
                let end = chars[i + 1..].iter().position(|&d| d == c).map_or(chars.len(), |p| i + 1 + p + 1);
                out.extend(&chars[i..end]);
                i = end;
            }
            '-' if chars.get(i + 1) == Some(&'-') => {
                let end = chars[i..].iter().position(|&d| d == '\n').map_or(chars.len(), |p| i + p);
                out.extend(&chars[i..end]);
                i = end;
            }
            '/' if chars.get(i + 1) == Some(&'*') => {
                let end = (i + 2..chars.len().saturating_sub(1))
                    .find(|&j| chars[j] == '*' && chars[j + 1] == '/')
                    .map_or(chars.len(), |j| j + 2);
                out.extend(&chars[i..end]);
                i = end;
            }
            '$' if dollar_tag(&chars[i..]).is_some() => {
                // `$$ ... $$` or `$tag$ ... $tag$`: copied as it is, up to the same delimiter.
                let tag = dollar_tag(&chars[i..]).expect("matched above");
                let body = i + tag.len();
                let end = (body..=chars.len().saturating_sub(tag.len()))
                    .find(|&j| chars[j..j + tag.len()] == tag[..])
                    .map_or(chars.len(), |j| j + tag.len());
                out.extend(&chars[i..end]);
                i = end;
            }
            '?' => {
                let digits: String = chars[i + 1..].iter().take_while(|d| d.is_ascii_digit()).collect();
                if digits.is_empty() {
                    out.push('$');
                    out.push_str(&next.to_string());
                    next += 1;
                } else {
                    out.push('$');
                    out.push_str(&digits);
                }
                i += 1 + digits.len();
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

/// The opening delimiter of a dollar-quoted string at the start of `chars` (`$$`, `$tag$`), or
/// `None` (a `$1` parameter, a lone `$`).
fn dollar_tag(chars: &[char]) -> Option<Vec<char>> {
    let close = chars.iter().skip(1).position(|&c| c == '$')? + 1;
    let tag = &chars[1..close];
    let starts_well = tag.first().is_none_or(|c| c.is_alphabetic() || *c == '_');
    (starts_well && tag.iter().all(|c| c.is_alphanumeric() || *c == '_')).then(|| chars[..=close].to_vec())
}

/// A plain `INSERT INTO table [(columns)] VALUES (tuple)` whose rows may go several to one
/// statement: `VALUES (tuple 1), (tuple 2), ...` with the parameters renumbered.
///
/// Only where that changes nothing a write can see: the tuple holds parameters, literals,
/// casts and operators but no parentheses (so no function call and no subquery, which would
/// see the table as before the whole statement instead of before each row), nothing follows it
/// (no `ON CONFLICT`, no `RETURNING`), and the target is an ordinary table without user
/// triggers or rules (checked in the catalog when the statement is first prepared on a
/// connection), so each row inserts exactly one row and nothing fires once per statement.
#[derive(Clone, Debug, PartialEq, Eq)]
struct MultiRow {
    /// The text before the tuple (`INSERT INTO t(a, b) VALUES `).
    head: String,
    /// The tuple, cut at its parameters.
    tuple: Vec<Piece>,
    /// What follows the tuple (blanks, comments, `;`).
    tail: String,
    /// Parameters per row.
    params: usize,
    /// The target table as written (`events`, `app."Events"`), for the catalog check.
    table: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Piece {
    Text(String),
    Param(usize),
}

/// A token of a statement, with where it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Token<'a> {
    Word(&'a str),
    QuotedName,
    Literal,
    Param(usize),
    Punct(char),
}

/// Cuts translated SQL (placeholders `$n`) into tokens, skipping blanks and comments. `None`
/// for text it does not understand (an unterminated quote or comment).
fn tokens(sql: &str) -> Option<Vec<(Token<'_>, std::ops::Range<usize>)>> {
    let bytes = sql.as_bytes();
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b >= 0x80;
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let start = i;
        let token = match b {
            _ if b.is_ascii_whitespace() => {
                i += 1;
                continue;
            }
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                i = sql[i..].find('\n').map_or(bytes.len(), |p| i + p);
                continue;
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                i = i + 2 + sql[i + 2..].find("*/")? + 2;
                continue;
            }
            b'\'' | b'"' => {
                // A doubled quote inside is the quote itself: the scan goes on past it.
                let mut j = i + 1;
                loop {
                    j += sql[j..].find(b as char)?;
                    if bytes.get(j + 1) == Some(&b) {
                        j += 2;
                    } else {
                        break;
                    }
                }
                i = j + 1;
                if b == b'"' { Token::QuotedName } else { Token::Literal }
            }
            b'$' if bytes.get(i + 1).is_some_and(u8::is_ascii_digit) => {
                let digits = sql[i + 1..].bytes().take_while(u8::is_ascii_digit).count();
                i += 1 + digits;
                Token::Param(sql[start + 1..i].parse().ok()?)
            }
            b'$' => {
                let chars: Vec<char> = sql[i..].chars().collect();
                let tag: String = dollar_tag(&chars)?.into_iter().collect();
                let body = i + tag.len();
                i = body + sql[body..].find(&tag)? + tag.len();
                Token::Literal
            }
            _ if b.is_ascii_digit() || (b == b'.' && bytes.get(i + 1).is_some_and(u8::is_ascii_digit)) => {
                i += sql[i..].bytes().take_while(|c| c.is_ascii_alphanumeric() || *c == b'.').count();
                Token::Literal
            }
            _ if word(b) => {
                i += sql[i..].bytes().take_while(|c| word(*c)).count();
                Token::Word(&sql[start..i])
            }
            _ => {
                let c = sql[i..].chars().next()?;
                i += c.len_utf8();
                Token::Punct(c)
            }
        };
        out.push((token, start..i));
    }
    Some(out)
}

impl MultiRow {
    /// The shape of `sql` (placeholders already `$n`), if its rows may be combined.
    fn parse(sql: &str, params: usize) -> Option<MultiRow> {
        let toks = tokens(sql)?;
        let is = |t: Option<&(Token<'_>, std::ops::Range<usize>)>, kw: &str| matches!(t, Some((Token::Word(w), _)) if w.eq_ignore_ascii_case(kw));
        if !is(toks.first(), "insert") || !is(toks.get(1), "into") {
            return None;
        }
        // The table: a name, or schema.name, each plain or quoted.
        let name = |t: Option<&(Token<'_>, std::ops::Range<usize>)>| {
            matches!(t, Some((Token::QuotedName, _)))
                || matches!(t, Some((Token::Word(w), _)) if !w.contains('$') && !w.eq_ignore_ascii_case("values"))
        };
        if !name(toks.get(2)) {
            return None;
        }
        let mut at = 3;
        if matches!(toks.get(3), Some((Token::Punct('.'), _))) && name(toks.get(4)) {
            at = 5;
        }
        let table = sql[toks[2].1.start..toks[at - 1].1.end].to_owned();
        // An optional column list of names and commas, then VALUES.
        if matches!(toks.get(at), Some((Token::Punct('('), _))) {
            at += 1;
            while let Some((t, _)) = toks.get(at) {
                match t {
                    Token::Punct(')') => break,
                    Token::Word(_) | Token::QuotedName | Token::Punct(',') => at += 1,
                    _ => return None,
                }
            }
            at += 1;
        }
        if !is(toks.get(at), "values") || !matches!(toks.get(at + 1), Some((Token::Punct('('), _))) {
            return None;
        }
        let open = toks[at + 1].1.start;
        let mut tuple = Vec::new();
        let mut text_from = open;
        let mut seen = vec![false; params];
        let mut k = at + 2;
        let close = loop {
            let (t, span) = toks.get(k)?;
            match t {
                Token::Punct(')') => break span.end,
                Token::Punct('(' | ';') => return None,
                Token::Param(n) => {
                    *seen.get_mut(n.checked_sub(1)?)? = true;
                    tuple.push(Piece::Text(sql[text_from..span.start].to_owned()));
                    tuple.push(Piece::Param(*n));
                    text_from = span.end;
                }
                _ => {}
            }
            k += 1;
        };
        tuple.push(Piece::Text(sql[text_from..close].to_owned()));
        // Nothing but `;` may follow; every parameter is in the tuple.
        if toks[k + 1..].iter().any(|(t, _)| *t != Token::Punct(';')) || !seen.iter().all(|s| *s) {
            return None;
        }
        Some(MultiRow { head: sql[..open].to_owned(), tuple, tail: sql[close..].to_owned(), params, table })
    }

    /// The statement for `rows` rows.
    fn sql(&self, rows: usize) -> String {
        let mut out = self.head.clone();
        for r in 0..rows {
            if r > 0 {
                out.push_str(", ");
            }
            for piece in &self.tuple {
                match piece {
                    Piece::Text(t) => out.push_str(t),
                    Piece::Param(n) => {
                        out.push('$');
                        out.push_str(&(n + r * self.params).to_string());
                    }
                }
            }
        }
        out.push_str(&self.tail);
        out
    }

    /// Whether the target is an ordinary table without user triggers or rules, so that rows
    /// combined into one statement behave as they would one by one.
    async fn plain_table(&self, client: &tokio_postgres::Client) -> Result<bool, postgres::Error> {
        let rows = client
            .query(
                "SELECT c.relkind = 'r' \
                   AND NOT EXISTS (SELECT 1 FROM pg_trigger t WHERE t.tgrelid = c.oid AND NOT t.tgisinternal) \
                   AND NOT EXISTS (SELECT 1 FROM pg_rewrite r WHERE r.ev_class = c.oid AND r.rulename <> '_RETURN') \
                 FROM pg_class c WHERE c.oid = to_regclass($1)",
                &[&self.table],
            )
            .await?;
        Ok(rows.first().is_some_and(|r| r.get::<_, bool>(0)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_translated_outside_literals_and_comments() {
        assert_eq!(translate_placeholders("INSERT INTO t VALUES (?1, ?2, ?10)"), "INSERT INTO t VALUES ($1, $2, $10)");
        assert_eq!(translate_placeholders("SELECT ?, ?"), "SELECT $1, $2");
        assert_eq!(
            translate_placeholders("SELECT '?1', \"a?\" -- ?3\n, ?1 /* ? */"),
            "SELECT '?1', \"a?\" -- ?3\n, $1 /* ? */"
        );
        assert_eq!(translate_placeholders("SELECT $1"), "SELECT $1");
        // Dollar-quoted strings were rewritten although the comment said they were left alone.
        assert_eq!(translate_placeholders("SELECT $$ why? $$, ?"), "SELECT $$ why? $$, $1");
        assert_eq!(translate_placeholders("SELECT $fn$ a ?1 $x$ ? $fn$, ?2"), "SELECT $fn$ a ?1 $x$ ? $fn$, $2");
        assert_eq!(translate_placeholders("SELECT $$ unterminated ?"), "SELECT $$ unterminated ?");
    }

    #[test]
    fn plain_inserts_become_multi_row_statements_and_nothing_else_does() {
        let shape = MultiRow::parse("INSERT INTO events(ts, source) VALUES ($1, $2::text)", 2).expect("plain insert");
        assert_eq!(shape.table, "events");
        assert_eq!(
            shape.sql(3),
            "INSERT INTO events(ts, source) VALUES ($1, $2::text), ($3, $4::text), ($5, $6::text)"
        );
        let quoted = MultiRow::parse("insert into app.\"Odd \"\"name\" values ('a''b', $1, NULL, DEFAULT);", 1)
            .expect("quoted names, literals, keywords");
        assert_eq!(quoted.table, "app.\"Odd \"\"name\"");
        assert_eq!(
            quoted.sql(2),
            "insert into app.\"Odd \"\"name\" values ('a''b', $1, NULL, DEFAULT), ('a''b', $2, NULL, DEFAULT);"
        );
        assert_eq!(
            MultiRow::parse("INSERT INTO t VALUES ($2, $1) -- note", 2).expect("any order").sql(2),
            "INSERT INTO t VALUES ($2, $1), ($4, $3) -- note"
        );
        for sql in [
            "INSERT INTO t(k) VALUES ($1) ON CONFLICT DO NOTHING",
            "INSERT INTO t(k) VALUES ($1) RETURNING k",
            "INSERT INTO t(k) VALUES (lower($1))",
            "INSERT INTO t(k) VALUES ((SELECT max(k) FROM t) + $1)",
            "INSERT INTO t(k) SELECT $1",
            "WITH x AS (SELECT 1) INSERT INTO t(k) VALUES ($1)",
            "UPDATE t SET k = $1",
            "INSERT INTO t(k) VALUES ($1), ($2)",
            "INSERT INTO t(k) VALUES ($1); DELETE FROM t",
            "INSERT INTO t(k) VALUES ('unterminated",
            "INSERT INTO t(k, v) VALUES ($1, 'x') ",
        ] {
            let params = if sql.contains("$2") { 2 } else { 1 };
            let shape = MultiRow::parse(sql, params);
            if sql.ends_with("'x') ") {
                assert!(shape.is_some(), "{sql}");
            } else {
                assert_eq!(shape, None, "{sql}");
            }
        }
        assert_eq!(MultiRow::parse("INSERT INTO t(a, b) VALUES ($1, 0)", 2), None, "a parameter outside the tuple");
        assert_eq!(
            MultiRow::parse("INSERT INTO t(k) VALUES ($$ a ) b $$ || $1)", 1).map(|m| m.sql(2)),
            Some("INSERT INTO t(k) VALUES ($$ a ) b $$ || $1), ($$ a ) b $$ || $2)".into())
        );
    }

    #[test]
    fn transaction_control_is_recognised() {
        assert_eq!(transaction_control("  commit"), Some("COMMIT"));
        assert_eq!(transaction_control("SAVEPOINT x"), Some("SAVEPOINT"));
        assert_eq!(transaction_control("INSERT INTO commits VALUES (1)"), None);
    }
}
