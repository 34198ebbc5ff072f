//! The PostgreSQL backend (feature `postgres`): the same queue, contract and metrics in front of
//! a server database.
//!
//! A batch is one transaction. It runs optimistically, one round trip per write; a write that
//! fails on its own aborts the transaction (PostgreSQL's rule), so the transaction is rolled back
//! and the core replays the batch without that write, this time with a savepoint around each
//! write, so that further bad writes are rolled back alone. Either way the rest of the batch
//! commits and nothing is applied twice. Errors are classified by SQLSTATE: serialization
//! failures, deadlocks, lock timeouts and lost connections are retried with the whole batch.
//!
//! A lost connection during COMMIT leaves the outcome unknown. Every batch therefore inserts a
//! unique token into `sqlweir_commits` inside its transaction; after reconnecting, the token
//! says whether the batch committed, so it is neither lost nor applied twice.

use std::collections::HashMap;
use std::time::Duration;

use bytes::BytesMut;
use postgres::types::{IsNull, ToSql, Type, to_sql_checked};
use postgres::{Client, Config, NoTls, Statement};
use sqlweir_core::{Applied, Backend, BackendError, ErrorClass, ErrorKind, Value};

use crate::Options;
use crate::engine::Engine;
use crate::error::{CloseError, OpenError, QueryError};
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
        let mut writer_config = config.clone();
        writer_config.application_name("sqlweir-writer");
        let mut client = writer_config.connect(NoTls).map_err(connect_failed)?;
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
        let engine = PgBackend {
            config: writer_config,
            setup: format!("SET lock_timeout = '{lock_timeout}ms'"),
            client: Some(client),
            statements: HashMap::new(),
            in_tx: false,
            token: None,
            prefix: format!("{:x}-{}", std::process::id(), crate::job::unix_ms(std::time::SystemTime::now())),
            batches: 0,
            careful: false,
        };
        Store::with_engine(
            engine,
            Box::new(ReadPool::new(readers)),
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

/// The writer's PostgreSQL connection.
pub(crate) struct PgBackend {
    config: Config,
    setup: String,
    /// `None` after the connection was lost; the next `begin` reconnects.
    client: Option<Client>,
    statements: HashMap<String, Statement>,
    in_tx: bool,
    /// The open transaction's commit token.
    token: Option<String>,
    prefix: String,
    batches: u64,
    /// A savepoint around each write (after a rejected write forced a replay of this batch).
    careful: bool,
}

fn lost(message: &str) -> BackendError {
    BackendError::new(ErrorKind::Io, ErrorClass::Transient, None, format!("connection to PostgreSQL lost: {message}"))
}

impl PgBackend {
    fn client(&mut self) -> Result<&mut Client, BackendError> {
        if self.client.as_ref().is_none_or(Client::is_closed) {
            self.client = None;
            self.statements.clear();
            let mut client = self.config.connect(NoTls).map_err(|e| lost(&e.to_string()))?;
            client.batch_execute(&self.setup).map_err(|e| lost(&e.to_string()))?;
            self.client = Some(client);
        }
        self.client.as_mut().ok_or_else(|| lost("not connected"))
    }

    /// Records a failure; a lost connection also ends the transaction.
    fn failed(&mut self, e: &postgres::Error) -> BackendError {
        let error = classify(e);
        if self.client.as_ref().is_none_or(Client::is_closed) {
            self.client = None;
            self.in_tx = false;
        }
        error
    }

    /// After a lost connection during COMMIT: reconnect and look for the batch's token.
    fn committed_despite(&mut self, token: &str) -> Option<bool> {
        for attempt in 0..5u32 {
            if let Ok(client) = self.client()
                && let Ok(rows) = client.query("SELECT 1 FROM sqlweir_commits WHERE token = $1", &[&token])
            {
                return Some(!rows.is_empty());
            }
            std::thread::sleep(Duration::from_millis(50) * (attempt + 1));
        }
        None
    }
}

impl Backend for PgBackend {
    fn begin(&mut self) -> Result<(), BackendError> {
        self.batches += 1;
        let token = format!("{}-{}", self.prefix, self.batches);
        let client = self.client()?;
        let result = client
            .batch_execute("BEGIN")
            .and_then(|()| client.execute("INSERT INTO sqlweir_commits(token) VALUES ($1)", &[&token]));
        match result {
            Ok(_) => {
                self.in_tx = true;
                self.token = Some(token);
                Ok(())
            }
            Err(e) => {
                let error = self.failed(&e);
                if let Some(c) = self.client.as_mut() {
                    let _ = c.batch_execute("ROLLBACK");
                }
                self.in_tx = false;
                Err(error)
            }
        }
    }

    fn execute(&mut self, sql: &str, params: &[Value]) -> Result<Applied, BackendError> {
        if let Some(keyword) = transaction_control(sql) {
            return Err(BackendError::new(
                ErrorKind::InvalidInput,
                ErrorClass::Rejected,
                None,
                format!("{keyword} cannot go through the write queue: it would break the batch's transaction"),
            ));
        }
        let careful = self.careful;
        let Some(client) = self.client.as_mut() else { return Err(lost("not connected")) };
        // Optimistic first: no savepoint, one round trip per write. A write that fails aborts
        // the transaction; it is rolled back and the core replays the batch without that write,
        // now `careful`: a savepoint around each write, so further bad writes of this batch are
        // rolled back alone instead of causing one replay each.
        if careful && let Err(e) = client.batch_execute("SAVEPOINT sqlweir_write") {
            return Err(self.failed(&e));
        }
        let bound: Vec<PgParam<'_>> = params.iter().map(PgParam).collect();
        let refs: Vec<&(dyn ToSql + Sync)> = bound.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
        let prepared = match self.statements.get(sql) {
            Some(stmt) => Ok(stmt.clone()),
            None => client.prepare(&translate_placeholders(sql)).inspect(|stmt| {
                if self.statements.len() >= STATEMENT_CACHE {
                    self.statements.clear();
                }
                self.statements.insert(sql.to_owned(), stmt.clone());
            }),
        };
        let result = prepared.and_then(|stmt| client.execute(&stmt, &refs));
        let outcome = match result {
            Ok(changes) if careful => client.batch_execute("RELEASE SAVEPOINT sqlweir_write").map(|()| changes),
            other => other,
        };
        match outcome {
            Ok(changes) => Ok(Applied { changes, last_rowid: 0, returned: None }),
            Err(e) => {
                let error = self.failed(&e);
                if error.class != ErrorClass::Rejected {
                    return Err(error);
                }
                let Some(client) = self.client.as_mut() else { return Err(error) };
                let undo = if careful { "ROLLBACK TO SAVEPOINT sqlweir_write" } else { "ROLLBACK" };
                if let Err(e) = client.batch_execute(undo) {
                    return Err(self.failed(&e));
                }
                if !careful {
                    self.in_tx = false;
                    self.token = None;
                    self.careful = true;
                }
                Err(error)
            }
        }
    }

    fn commit(&mut self) -> Result<(), BackendError> {
        let token = self.token.take();
        // The batch ends here either way: the next one starts optimistic again.
        self.careful = false;
        let client = self.client.as_mut().ok_or_else(|| lost("not connected"))?;
        let result = client.batch_execute("COMMIT");
        self.in_tx = false;
        match result {
            Ok(()) => {
                if self.batches.is_multiple_of(PRUNE_EVERY) {
                    let _ = client.batch_execute(
                        "DELETE FROM sqlweir_commits WHERE committed_at < now() - interval '10 minutes'",
                    );
                }
                Ok(())
            }
            Err(e) => {
                let error = self.failed(&e);
                if self.client.is_some() {
                    return Err(error); // the server refused the commit: nothing was applied
                }
                // The connection died during COMMIT: the token tells what happened.
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
        match self.client.as_mut() {
            Some(client) => client.batch_execute("ROLLBACK").map_err(|e| self.failed(&e)),
            None => Ok(()),
        }
    }

    fn in_transaction(&self) -> bool {
        self.in_tx
    }
}

impl Engine for PgBackend {
    fn query(&mut self, sql: &str, params: &[Value]) -> Result<Rows, QueryError> {
        let client = self.client.as_mut().ok_or_else(|| QueryError::Database(lost("not connected")))?;
        run_query(client, sql, params)
    }

    fn finish(&mut self) -> Result<(), CloseError> {
        if let Some(client) = self.client.take() {
            let _ = client.close();
        }
        Ok(())
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
}

fn run_query(client: &mut Client, sql: &str, params: &[Value]) -> Result<Rows, QueryError> {
    let bound: Vec<PgParam<'_>> = params.iter().map(PgParam).collect();
    let refs: Vec<&(dyn ToSql + Sync)> = bound.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
    let db = |e: postgres::Error| QueryError::Database(classify(&e));
    let stmt = client.prepare(&translate_placeholders(sql)).map_err(db)?;
    let columns: Vec<String> = stmt.columns().iter().map(|c| c.name().to_owned()).collect();
    let rows = client.query(&stmt, &refs).map_err(db)?;
    let mut out = Vec::with_capacity(rows.len());
    for row in &rows {
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
    fn transaction_control_is_recognised() {
        assert_eq!(transaction_control("  commit"), Some("COMMIT"));
        assert_eq!(transaction_control("SAVEPOINT x"), Some("SAVEPOINT"));
        assert_eq!(transaction_control("INSERT INTO commits VALUES (1)"), None);
    }
}
