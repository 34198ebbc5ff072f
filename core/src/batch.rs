//! Batches: how many writes go into one transaction, and how a batch is applied with salvage.

use std::borrow::Borrow;
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;

use crate::backend::{Applied, Backend, Returned};
use crate::error::{BackendError, ErrorClass, WriteError};
use crate::request::{Forget, Recorded, Request, RequestId};
use crate::row::{RowError, from_row};
use crate::value::Value;

/// One accepted write: a statement and its parameter rows.
#[derive(Clone, Debug, PartialEq)]
pub struct Write {
    /// The statement, run with a cached prepared statement; shared by the writes of one
    /// statement that a host receives together (a clone is a count, not a copy).
    pub sql: Arc<str>,
    /// One parameter row (`write`) or many (`write_many`).
    pub rows: Rows,
    /// The parameter names the values of each row are bound to, in the rows' order (`:id`,
    /// `@id`, `$id`, or a bare `id` for whichever of those the statement uses); `None` binds
    /// them by position.
    pub names: Option<Box<[String]>>,
    /// The id it is recorded under ([`Write::once`]): applied at most once per id.
    pub request: Option<Box<Request>>,
}

/// The parameter rows of a write.
#[derive(Clone, Debug, PartialEq)]
pub enum Rows {
    /// A single write: resolves with its [`Applied`] or its error.
    One(Vec<Value>),
    /// Many rows for one statement: resolves with a count and the rejected rows.
    Many(Vec<Vec<Value>>),
}

impl Write {
    /// A single write.
    pub fn one(sql: impl Into<Arc<str>>, params: Vec<Value>) -> Self {
        Write { sql: sql.into(), rows: Rows::One(params), names: None, request: None }
    }

    /// Many parameter rows for one statement.
    pub fn many(sql: impl Into<Arc<str>>, rows: Vec<Vec<Value>>) -> Self {
        Write { sql: sql.into(), rows: Rows::Many(rows), names: None, request: None }
    }

    /// A single write with named parameters: each value is bound to the parameter its name
    /// gives. A name the statement does not have, or a parameter of the statement left without
    /// a value, rejects the write with `InvalidInput`.
    pub fn named(sql: impl Into<Arc<str>>, params: Vec<(String, Value)>) -> Self {
        let (names, values): (Vec<String>, Vec<Value>) = params.into_iter().unzip();
        Write { sql: sql.into(), rows: Rows::One(values), names: Some(names.into_boxed_slice()), request: None }
    }

    /// The same write, recorded under `id` (see [`crate::request`]): inside its batch's
    /// transaction it first looks for a marker of `id`; found, it does not run and settles
    /// [`WriteResult::Again`] with the outcome recorded then; not found, it runs and its marker
    /// commits with it (a rejected write leaves none). A resend after a lost answer is thus
    /// applied once.
    #[must_use]
    pub fn once(mut self, id: RequestId) -> Self {
        self.request = Some(Box::new(Request { id, first_send: false }));
        self
    }

    /// [`Write::once`] for a write its sender knows it never sent before under `id` (not a
    /// resend): no marker can exist yet, so none is looked up; the marker is still written.
    /// Sending such a write twice applies it twice: a resend must use [`Write::once`].
    #[must_use]
    pub fn once_first(mut self, id: RequestId) -> Self {
        self.request = Some(Box::new(Request { id, first_send: true }));
        self
    }

    /// Parameter rows carried (its weight in the queue and in a batch).
    pub fn row_count(&self) -> usize {
        match &self.rows {
            Rows::One(_) => 1,
            Rows::Many(rows) => rows.len(),
        }
    }

    /// Checks the write before it is accepted: its text, then the values (the first bad value
    /// is reported).
    ///
    /// Refused here: text with a NUL byte (SQLite would stop reading at it and silently drop
    /// what follows), text with no statement at all (empty, blanks, comments, `;`), and PRAGMA
    /// and EXPLAIN statements, which would change the shared writer connection (set pragmas
    /// through migrations or the store's options). The backend checks the prepared statement
    /// itself as well (SQLite's authorizer refuses pragmas and transaction control while
    /// preparing, before they can run); this check gives the common mistakes a clear message
    /// before the write is queued.
    pub fn check(&self) -> Result<(), WriteError> {
        let refuse = |message: String| Err(WriteError::InvalidInput { message });
        if let Some(names) = &self.names {
            for (i, name) in names.iter().enumerate() {
                if names[..i].contains(name) {
                    return refuse(format!("parameter {name} is given twice"));
                }
            }
        }
        if self.sql.contains('\0') {
            return refuse(
                "statement text contains a NUL byte: SQLite would ignore everything after it; \
                 pass values as parameters"
                    .into(),
            );
        }
        let keyword = leading_keyword(&self.sql);
        if keyword.is_empty() {
            return refuse(if starts_statement(&self.sql) {
                format!("statement does not start with a keyword: {}", self.sql.trim())
            } else {
                "empty statement: the text holds no SQL (only blanks, comments or `;`)".into()
            });
        }
        if keyword.eq_ignore_ascii_case("pragma") || keyword.eq_ignore_ascii_case("explain") {
            return refuse(format!(
                "{} statements cannot go through the write queue: they would change the shared writer \
                 connection; set pragmas with migrations or options",
                keyword.to_ascii_uppercase()
            ));
        }
        let check_row = |row: &[Value], at: Option<usize>| {
            for (i, v) in row.iter().enumerate() {
                if let Err(why) = v.check() {
                    let place = at.map_or(String::new(), |r| format!("row {r}, "));
                    return Err(WriteError::InvalidInput { message: format!("{place}parameter {}: {why}", i + 1) });
                }
            }
            Ok(())
        };
        match &self.rows {
            Rows::One(row) => check_row(row, None),
            Rows::Many(rows) => rows.iter().enumerate().try_for_each(|(r, row)| check_row(row, Some(r))),
        }
    }
}

/// The first keyword of a statement, after whitespace, comments and empty statements (`;`).
fn leading_keyword(sql: &str) -> &str {
    let rest = skip_blanks(sql);
    let end = rest.find(|c: char| !c.is_ascii_alphabetic()).unwrap_or(rest.len());
    &rest[..end]
}

/// Whether anything but whitespace, comments and `;` is left.
fn starts_statement(sql: &str) -> bool {
    !skip_blanks(sql).is_empty()
}

fn skip_blanks(sql: &str) -> &str {
    let mut rest = sql;
    loop {
        rest = rest.trim_start_matches(|c: char| c.is_whitespace() || c == ';');
        if let Some(after) = rest.strip_prefix("--") {
            rest = after.find('\n').map_or("", |i| &after[i..]);
        } else if let Some(after) = rest.strip_prefix("/*") {
            rest = after.find("*/").map_or("", |i| &after[i + 2..]);
        } else {
            return rest;
        }
    }
}

/// What a committed write did: what its owner's ticket resolves with.
#[derive(Clone, Debug, PartialEq)]
pub struct Receipt {
    /// Rows changed by the statement.
    pub changes: u64,
    /// The last inserted rowid after the statement (0 where the database has none).
    pub last_rowid: i64,
    /// The batch (transaction) it committed in.
    pub batch: u64,
    /// The rows of the statement's `RETURNING` clause, `None` without one (see
    /// [`Receipt::rows`]).
    pub returned: Option<Box<Returned>>,
}

impl Receipt {
    /// The receipt of a write applied in batch `batch`.
    pub fn new(applied: Applied, batch: u64) -> Self {
        Receipt { changes: applied.changes, last_rowid: applied.last_rowid, batch, returned: applied.returned }
    }

    /// The rows of the write's `RETURNING` clause, each deserialized into `T` as
    /// `query_as` does (structs by column name, tuples by position, one column into a scalar).
    /// Empty for a write without `RETURNING`.
    ///
    /// ```
    /// use sqlweir_core::{Applied, Receipt, Returned, Value};
    /// let returned = Returned { columns: vec!["id".into()], rows: vec![vec![Value::Integer(7)]] };
    /// let receipt = Receipt::new(Applied { changes: 1, last_rowid: 7, returned: Some(Box::new(returned)) }, 1);
    /// assert_eq!(receipt.rows::<i64>().unwrap(), vec![7]);
    /// ```
    pub fn rows<T: DeserializeOwned>(&self) -> Result<Vec<T>, RowError> {
        let Some(returned) = &self.returned else { return Ok(Vec::new()) };
        returned.rows.iter().map(|r| from_row(&returned.columns, r)).collect()
    }
}

/// What a committed `write_many` did: rows committed and each rejected row with its own error.
#[derive(Clone, Debug, PartialEq)]
pub struct ManyOutcome {
    /// Rows committed.
    pub committed: u64,
    /// Rejected rows, by index into the rows given.
    pub rejected: Vec<(usize, WriteError)>,
    /// The batch (transaction) it committed in.
    pub batch: u64,
}

/// How one write of a committed batch ended.
#[derive(Clone, Debug, PartialEq)]
pub enum WriteResult {
    /// A single write: applied, or rejected alone with its error.
    One(Result<Applied, WriteError>),
    /// A `write_many`: rows committed, and each rejected row's index with its error.
    Many {
        /// Rows committed.
        committed: u64,
        /// Rejected rows, by index into the rows given.
        rejected: Vec<(usize, WriteError)>,
    },
    /// The write carried a request id already recorded (committed before, or earlier in this
    /// batch): it did not run again; this is the outcome recorded the first time.
    Again(Recorded),
}

impl WriteResult {
    /// Rows this write committed.
    pub fn committed_rows(&self) -> u64 {
        match self {
            WriteResult::One(Ok(_)) => 1,
            WriteResult::One(Err(_)) => 0,
            WriteResult::Many { committed, .. } => *committed,
            WriteResult::Again(r) => r.committed_rows(),
        }
    }

    /// Rows of this write that were rejected.
    pub fn rejected_rows(&self) -> u64 {
        match self {
            WriteResult::One(Ok(_)) => 0,
            WriteResult::One(Err(_)) => 1,
            WriteResult::Many { rejected, .. } => rejected.len() as u64,
            WriteResult::Again(r) => r.rejected_rows(),
        }
    }

    /// What a marker keeps of this result in batch `batch`: `None` for a rejected single write
    /// (it leaves no marker) and for a result that is itself an answer from a marker.
    pub fn to_recorded(&self, batch: u64) -> Option<Recorded> {
        match self {
            WriteResult::One(Ok(a)) => Some(Recorded::One { changes: a.changes, last_rowid: a.last_rowid, batch }),
            WriteResult::Many { committed, rejected } => {
                Some(Recorded::Many { committed: *committed, rejected: rejected.clone(), batch })
            }
            WriteResult::One(Err(_)) | WriteResult::Again(_) => None,
        }
    }
}

/// What applying a batch did. Only `Committed` resolves tickets `Ok`.
#[derive(Debug, PartialEq)]
pub enum BatchOutcome {
    /// The transaction committed. One result per write, in batch order.
    Committed {
        /// Per-write results.
        results: Vec<WriteResult>,
        /// How many times the batch was replayed because the database rolled the whole
        /// transaction back after a rejected write.
        replays: u32,
    },
    /// Lock contention; the transaction was rolled back. Retry the whole batch later.
    Transient(BackendError),
    /// The database failed; the transaction was rolled back. Every write of the batch fails.
    Failed(BackendError),
}

/// Applies a batch in one transaction, salvaging what can be salvaged.
///
/// A write rejected on its own (constraint, bad SQL, bad parameter) is recorded with its error
/// and the others go on: SQLite's statement atomicity has undone its partial effect. If the
/// database rolled the whole transaction back (checked with [`Backend::in_transaction`]), the
/// batch is replayed from the start without the rejected rows, so nothing is applied twice and
/// nothing is half applied. A transient or fatal error rolls everything back and is returned.
///
/// Consecutive single writes of the same statement, and each `write_many`, go to the backend
/// as one group ([`Backend::execute_many`]), so the statement is looked up once per group.
pub fn apply<B: Backend + ?Sized, W: Borrow<Write>>(backend: &mut B, writes: &[W]) -> BatchOutcome {
    apply_numbered(backend, writes, 0, &[])
}

/// [`apply`] for batch number `batch`, which the markers of writes with a request id record,
/// also dropping the markers `forget` names in the same transaction.
///
/// Inside the transaction, before any write runs, each write with a request id is looked up
/// ([`Backend::recorded`]); one found there (or an earlier write of this batch with the same
/// id) does not run and settles [`WriteResult::Again`]. The rest run as [`apply`] says; then,
/// right before `COMMIT`, each that committed (a single write applied, a `write_many`) gets
/// its marker ([`Backend::record`]). A replay rolls the markers back with the writes and
/// writes them again, so a committed batch leaves exactly one marker per committed write.
pub fn apply_numbered<B: Backend + ?Sized, W: Borrow<Write>>(
    backend: &mut B,
    writes: &[W],
    batch: u64,
    forget: &[Forget],
) -> BatchOutcome {
    // Where each write's rows start in the flat list of per-row results.
    let mut offsets = Vec::with_capacity(writes.len() + 1);
    let mut total = 0;
    for w in writes {
        offsets.push(total);
        total += w.borrow().row_count();
    }
    offsets.push(total);
    let marked = writes.iter().any(|w| w.borrow().request.is_some());
    // The rows rejected so far, by flat index (`offsets[w] + r`); more on each replay, so
    // replays end.
    let mut rejected = vec![false; total];
    let mut errors: Vec<((usize, usize), WriteError)> = Vec::new();
    let mut replays = 0;
    loop {
        let mut applied: Vec<Option<Applied>> = vec![None; total];
        let mut done = None;
        let ended = transaction(backend, |b| {
            // Per write: answered from a marker (`Again`), or the index of an earlier write of
            // this batch with the same id, instead of running.
            let answers = if marked { look_up(b, writes)? } else { Vec::new() };
            let skip: Vec<bool> =
                answers.iter().map(|a| matches!(a, Answer::Recorded(_) | Answer::SameAs(_))).collect();
            run_writes(b, writes, &offsets, &skip, &mut rejected, &mut errors, &mut applied)?;
            let mut results =
                assemble(writes, &offsets, std::mem::take(&mut applied), std::mem::take(&mut errors), &skip);
            // Per sender, in order of appearance: its committed writes' markers, one call each.
            let mut markers: Vec<(&str, Vec<(u64, Recorded)>)> = Vec::new();
            for (w, answer) in answers.into_iter().enumerate() {
                match answer {
                    Answer::Run => {
                        let id = &writes[w].borrow().request.as_deref().expect("only marked writes are looked up").id;
                        if let Some(recorded) = results[w].to_recorded(batch) {
                            match markers.iter_mut().find(|(origin, _)| **origin == *id.origin) {
                                Some((_, list)) => list.push((id.seq, recorded)),
                                None => markers.push((&id.origin, vec![(id.seq, recorded)])),
                            }
                        }
                    }
                    Answer::Recorded(r) => results[w] = WriteResult::Again(r),
                    Answer::SameAs(first) => {
                        results[w] = match &results[first] {
                            WriteResult::One(Err(e)) => WriteResult::One(Err(e.clone())),
                            WriteResult::Again(r) => WriteResult::Again(r.clone()),
                            other => WriteResult::Again(other.to_recorded(batch).expect("a committed result records")),
                        };
                    }
                    Answer::Unmarked => {}
                }
            }
            for (origin, list) in &markers {
                b.record(origin, list).map_err(Ended::Database)?;
            }
            for f in forget {
                b.forget(&f.origin, f.below).map_err(Ended::Database)?;
            }
            done = Some(results);
            Ok(())
        });
        match ended {
            Ok(()) => {
                return BatchOutcome::Committed { results: done.expect("a committed attempt has results"), replays };
            }
            // The database may have rolled back already; if not (the failed statement left part
            // of its effect), `transaction` undid everything, markers included: start over
            // without the row.
            Err(Ended::Body(Replay)) => replays += 1,
            Err(Ended::Database(e)) => return BatchOutcome::abandoned(e),
        }
    }
}

/// What the lookup of a batch's request ids decided for one write.
enum Answer {
    /// No request id: runs.
    Unmarked,
    /// Not recorded: runs, and is recorded if it commits.
    Run,
    /// Recorded before: answered with that outcome.
    Recorded(Recorded),
    /// The same id as the earlier write at this index of the batch: answered as that one ends.
    SameAs(usize),
}

/// One sender's writes to look up in a batch: (index in the batch, number).
type Asks<'a> = (&'a std::sync::Arc<str>, Vec<(usize, u64)>);

/// Looks up every request id of the batch inside the open transaction: the ids to look up are
/// gathered per sender, and each sender's asked for in one [`Backend::recorded_many`].
fn look_up<B: Backend + ?Sized, W: Borrow<Write>>(backend: &mut B, writes: &[W]) -> Result<Vec<Answer>, Ended<Replay>> {
    let mut seen: std::collections::HashMap<&RequestId, usize> = std::collections::HashMap::new();
    // Only a resend can meet a copy of itself in the batch: without one, nothing to compare.
    let resends = writes.iter().any(|w| w.borrow().request.as_deref().is_some_and(|r| !r.first_send));
    let mut answers = Vec::with_capacity(writes.len());
    // Per sender, in order of appearance: the writes to look up.
    let mut asks: Vec<Asks<'_>> = Vec::new();
    for (w, write) in writes.iter().enumerate() {
        let Some(request) = write.borrow().request.as_deref() else {
            answers.push(Answer::Unmarked);
            continue;
        };
        let id = &request.id;
        if resends {
            if let Some(&first) = seen.get(id) {
                answers.push(Answer::SameAs(first));
                continue;
            }
            seen.insert(id, w);
        }
        answers.push(Answer::Run);
        if !request.first_send {
            match asks.iter_mut().find(|(origin, _)| **origin == id.origin) {
                Some((_, list)) => list.push((w, id.seq)),
                None => asks.push((&id.origin, vec![(w, id.seq)])),
            }
        }
    }
    for (origin, list) in asks {
        let seqs: Vec<u64> = list.iter().map(|&(_, seq)| seq).collect();
        let found = backend.recorded_many(origin, &seqs).map_err(Ended::Database)?;
        for ((w, _), recorded) in list.into_iter().zip(found) {
            if let Some(r) = recorded {
                answers[w] = Answer::Recorded(r);
            }
        }
    }
    Ok(answers)
}

/// The database rolled the transaction back after a rejected row, or the row may have left part
/// of its effect: start over without it.
struct Replay;

/// Runs every write of the batch not yet rejected, in order, in groups of one statement.
fn run_writes<B: Backend + ?Sized, W: Borrow<Write>>(
    backend: &mut B,
    writes: &[W],
    offsets: &[usize],
    skip: &[bool],
    rejected: &mut [bool],
    errors: &mut Vec<((usize, usize), WriteError)>,
    applied: &mut [Option<Applied>],
) -> Result<(), Ended<Replay>> {
    let mut start = 0;
    while start < writes.len() {
        let first = writes[start].borrow();
        let end = match first.rows {
            Rows::Many(_) => start + 1,
            Rows::One(_) => {
                start
                    + writes[start..]
                        .iter()
                        .take_while(|w| {
                            let w: &Write = (*w).borrow();
                            matches!(w.rows, Rows::One(_)) && w.sql == first.sql && w.names == first.names
                        })
                        .count()
            }
        };
        // The group's rows not yet rejected, and where each one came from.
        let mut places: Vec<(usize, usize)> = Vec::new();
        let mut slices: Vec<&[Value]> = Vec::new();
        for (w, write) in writes.iter().enumerate().take(end).skip(start) {
            if skip.get(w).copied().unwrap_or(false) {
                continue;
            }
            let rows: &[Vec<Value>] = match &write.borrow().rows {
                Rows::One(p) => std::slice::from_ref(p),
                Rows::Many(rows) => rows,
            };
            for (r, params) in rows.iter().enumerate() {
                if !rejected[offsets[w] + r] {
                    places.push((w, r));
                    slices.push(params);
                }
            }
        }
        if slices.is_empty() {
            // Every write of the group was answered from a marker.
            start = end;
            continue;
        }
        let mut stop = None;
        backend.execute_many(&first.sql, first.names.as_deref(), &slices, &mut |k, result, kept| {
            let (w, r) = places[k];
            match result {
                Ok(a) => {
                    applied[offsets[w] + r] = Some(a);
                    true
                }
                Err(e) if e.class == ErrorClass::Rejected => {
                    rejected[offsets[w] + r] = true;
                    errors.push(((w, r), WriteError::Backend(e)));
                    if kept {
                        true
                    } else {
                        stop = Some(Ended::Body(Replay));
                        false
                    }
                }
                Err(e) => {
                    stop = Some(Ended::Database(e));
                    false
                }
            }
        });
        if let Some(stop) = stop {
            return Err(stop);
        }
        start = end;
    }
    Ok(())
}

/// Why a transaction ended without committing.
pub(crate) enum Ended<E> {
    /// The database failed (`BEGIN`, a statement, `COMMIT`): a transient or fatal error.
    Database(BackendError),
    /// The body stopped for a reason of its own.
    Body(E),
}

/// Runs `body` in one transaction: `BEGIN`, the body, `COMMIT`; anything but success rolls back.
/// The one place where the write path begins, commits and abandons a transaction.
pub(crate) fn transaction<B: Backend + ?Sized, E>(
    backend: &mut B,
    body: impl FnOnce(&mut B) -> Result<(), Ended<E>>,
) -> Result<(), Ended<E>> {
    let ended = match backend.begin() {
        Ok(()) => body(backend).and_then(|()| backend.commit().map_err(Ended::Database)),
        Err(e) => Err(Ended::Database(e)),
    };
    if ended.is_err() {
        // The rollback's own failure changes nothing for the caller: the original error is
        // what happened, and the next `begin` reports a connection that is really broken.
        let _ = backend.rollback();
    }
    ended
}

impl BatchOutcome {
    /// The outcome of a transaction abandoned on `e`: retried when transient, failed otherwise.
    pub(crate) fn abandoned(e: BackendError) -> BatchOutcome {
        if e.class == ErrorClass::Transient { BatchOutcome::Transient(e) } else { BatchOutcome::Failed(e) }
    }
}

fn assemble<W: Borrow<Write>>(
    writes: &[W],
    offsets: &[usize],
    mut applied: Vec<Option<Applied>>,
    mut errors: Vec<((usize, usize), WriteError)>,
    skip: &[bool],
) -> Vec<WriteResult> {
    errors.sort_by_key(|(at, _)| *at);
    let mut errors = errors.into_iter().peekable();
    writes
        .iter()
        .enumerate()
        .map(|(w, write)| {
            let mut own = Vec::new();
            while let Some(((ew, _), _)) = errors.peek() {
                if *ew != w {
                    break;
                }
                let ((_, r), e) = errors.next().expect("peeked");
                own.push((r, e));
            }
            let done = &mut applied[offsets[w]..offsets[w + 1]];
            if skip.get(w).copied().unwrap_or(false) {
                // Answered from a marker by the caller; a placeholder until then.
                return WriteResult::Many { committed: 0, rejected: own };
            }
            match write.borrow().rows {
                Rows::One(_) => match (done[0].take(), own.pop()) {
                    (Some(a), _) => WriteResult::One(Ok(a)),
                    (None, Some((_, e))) => WriteResult::One(Err(e)),
                    (None, None) => unreachable!("a single write is either applied or rejected"),
                },
                Rows::Many(_) => {
                    WriteResult::Many { committed: done.iter().filter(|a| a.is_some()).count() as u64, rejected: own }
                }
            }
        })
        .collect()
}

/// Decides batch sizes: a base cap that doubles while a backlog remains after a take (up to a
/// ceiling) and halves back when batches come out small.
#[derive(Clone, Debug)]
pub struct Batcher {
    base_rows: usize,
    ceiling_rows: usize,
    limit: usize,
    linger: Duration,
    /// A slowly decaying peak of committed batch sizes: about how many producers wait on each
    /// commit.
    expected_rows: usize,
    /// How long the last commit took.
    last_commit: Duration,
    /// When it ended (host time).
    last_commit_end: Duration,
    /// Commits faster than this are not worth waiting for: take what is queued at once.
    group_commit_min: Duration,
}

/// The default [`Batcher::group_commit_min`]: what a host pays to wait out a linger (a timer, a
/// turn of its event loop) makes waiting for faster commits a loss.
pub const GROUP_COMMIT_MIN: Duration = Duration::from_micros(250);
/// The longest a batch waits for the writes its producers are about to send.
const GROUP_COMMIT_MAX_WAIT: Duration = Duration::from_millis(2);

impl Batcher {
    /// A batcher with a base cap, a ceiling for growth under load, and a linger time.
    pub fn new(base_rows: usize, ceiling_rows: usize, linger: Duration) -> Self {
        let base_rows = base_rows.max(1);
        Batcher {
            base_rows,
            ceiling_rows: ceiling_rows.max(base_rows),
            limit: base_rows,
            linger,
            expected_rows: 0,
            last_commit: Duration::ZERO,
            last_commit_end: Duration::ZERO,
            group_commit_min: GROUP_COMMIT_MIN,
        }
    }

    /// Waits for producers (group commit) only after commits at least this slow (default
    /// [`GROUP_COMMIT_MIN`]); a host that waits cheaply may set it lower.
    #[must_use]
    pub fn group_commit_min(mut self, min: Duration) -> Self {
        self.group_commit_min = min;
        self
    }

    /// Records a committed batch of `rows` rows that took `took` and ended at host time `now`,
    /// for group commit (see [`ready_at`](Self::ready_at)).
    pub fn on_committed(&mut self, rows: usize, took: Duration, now: Duration) {
        self.expected_rows = rows.max(self.expected_rows - self.expected_rows / 8);
        self.last_commit = took;
        self.last_commit_end = now;
    }

    /// Rows to take for the next batch.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Adapts after a take: grow while writes are left behind, shrink when batches are small.
    pub fn on_taken(&mut self, taken_rows: usize, left_rows: usize) {
        if left_rows > 0 {
            self.limit = (self.limit * 2).min(self.ceiling_rows);
        } else if taken_rows * 4 <= self.limit {
            self.limit = (self.limit / 2).max(self.base_rows);
        }
    }

    /// When the writer should take a batch, given what waits: `None` if nothing waits,
    /// otherwise the host time at which to take it (now, or when the linger ends).
    ///
    /// Without an explicit linger, a batch still waits briefly when commits are slow (an fsync
    /// under `synchronous=FULL`): producers whose writes were just acknowledged are about to
    /// send their next ones, so waiting up to half a commit (at most 2 ms) after the last
    /// commit for as many rows as recent batches had lets one commit carry them all (group
    /// commit). Fast commits, or a queue that already holds that many rows, go at once.
    pub fn ready_at(
        &self,
        queued_rows: usize,
        oldest_accepted_at: Option<Duration>,
        now: Duration,
    ) -> Option<Duration> {
        let oldest = oldest_accepted_at?;
        if queued_rows >= self.limit {
            return Some(now);
        }
        if !self.linger.is_zero() {
            return Some((oldest + self.linger).max(now));
        }
        if self.last_commit < self.group_commit_min || queued_rows >= self.expected_rows {
            return Some(now);
        }
        // Counted from the end of the last commit: that is when its producers were acked.
        let wait = (self.last_commit / 2).min(GROUP_COMMIT_MAX_WAIT);
        Some((oldest.max(self.last_commit_end) + wait).max(now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::{FakeBackend, Fault};
    use crate::params;

    fn ins(v: i64) -> Write {
        Write::one("INSERT", params![v])
    }

    #[test]
    fn a_rejected_write_leaves_the_rest_committed() {
        let mut db = FakeBackend::new();
        db.fail_value(3, Fault::Constraint);
        let writes: Vec<Write> = (1..=5).map(ins).collect();
        let BatchOutcome::Committed { results, replays } = apply(&mut db, &writes) else { panic!("batch must commit") };
        assert_eq!(replays, 0);
        assert_eq!(db.committed_values(), vec![1, 2, 4, 5]);
        assert!(matches!(&results[2], WriteResult::One(Err(e)) if e.code() == "Constraint"));
        assert_eq!(results.iter().filter(|r| matches!(r, WriteResult::One(Ok(_)))).count(), 4);
    }

    #[test]
    fn a_rolled_back_transaction_is_replayed_without_the_bad_write() {
        let mut db = FakeBackend::new();
        db.fail_value(2, Fault::ConstraintRollingBack);
        db.fail_value(4, Fault::ConstraintRollingBack);
        let writes: Vec<Write> = (1..=5).map(ins).collect();
        let BatchOutcome::Committed { results, replays } = apply(&mut db, &writes) else { panic!("batch must commit") };
        assert_eq!(replays, 2);
        assert_eq!(db.committed_values(), vec![1, 3, 5], "nothing applied twice");
        assert_eq!(results.iter().map(WriteResult::rejected_rows).sum::<u64>(), 2);
    }

    #[test]
    fn markers_commit_with_their_writes_through_replay_and_answer_a_resend() {
        use crate::request::RequestId;
        let mut db = FakeBackend::new();
        db.fail_value(2, Fault::ConstraintRollingBack);
        let id = |seq| RequestId::new("tab", seq);
        let writes: Vec<Write> = (1..=4).map(|v| ins(v).once(id(v as u64))).collect();
        let BatchOutcome::Committed { replays, .. } = apply_numbered(&mut db, &writes, 5, &[]) else {
            panic!("batch must commit")
        };
        assert_eq!(replays, 1);
        let ids: Vec<u64> = db.markers().keys().map(|k| k.seq).collect();
        assert_eq!(ids, vec![1, 3, 4], "one marker per committed write, none for the rejected one");
        // The same writes again, and one twice in the batch: nothing runs twice.
        let again: Vec<Write> = [1, 3, 3, 4, 5].iter().map(|&v| ins(v).once(id(v as u64))).collect();
        let BatchOutcome::Committed { results, .. } = apply_numbered(&mut db, &again, 6, &[]) else {
            panic!("batch must commit")
        };
        assert_eq!(db.committed_values(), vec![1, 3, 4, 5]);
        assert!(matches!(&results[0], WriteResult::Again(Recorded::One { batch: 5, .. })));
        assert!(matches!(&results[2], WriteResult::Again(Recorded::One { batch: 5, .. })));
        assert!(matches!(&results[4], WriteResult::One(Ok(_))));
        let forget = [Forget { origin: "tab".into(), below: 4 }];
        let BatchOutcome::Committed { .. } = apply_numbered(&mut db, &[ins(9)], 7, &forget) else { panic!() };
        assert_eq!(db.markers().keys().map(|k| k.seq).collect::<Vec<_>>(), vec![4, 5]);
    }

    #[test]
    fn write_many_reports_rejected_rows_by_index() {
        let mut db = FakeBackend::new();
        db.fail_value(12, Fault::Constraint);
        let rows = (10..15).map(|v| params![v]).collect();
        let BatchOutcome::Committed { results, .. } = apply(&mut db, &[Write::many("INSERT", rows)]) else {
            panic!("batch must commit")
        };
        let WriteResult::Many { committed, rejected } = &results[0] else { panic!("many result") };
        assert_eq!(*committed, 4);
        assert_eq!(rejected.len(), 1);
        assert_eq!(rejected[0].0, 2);
        assert_eq!(db.committed_values(), vec![10, 11, 13, 14]);
    }

    #[test]
    fn busy_rolls_back_everything() {
        let mut db = FakeBackend::new();
        db.fail_value(3, Fault::Busy);
        let writes: Vec<Write> = (1..=5).map(ins).collect();
        assert!(matches!(apply(&mut db, &writes), BatchOutcome::Transient(_)));
        assert!(db.committed_values().is_empty());
        assert!(!db.in_transaction());
    }

    #[test]
    fn pragma_and_explain_are_refused_before_sqlite_sees_them() {
        for sql in [
            "PRAGMA query_only = 1",
            "  pragma synchronous=OFF",
            "-- note\n/* x */ Pragma foo",
            "EXPLAIN PRAGMA x",
            "; PRAGMA query_only = 1",
        ] {
            let e = Write::one(sql, vec![]).check().unwrap_err();
            assert_eq!(e.code(), "InvalidInput", "{sql}");
            assert!(e.to_string().contains("cannot go through the write queue"), "{e}");
        }
        for sql in
            ["INSERT INTO pragmas VALUES (1)", "/* pragma */ INSERT INTO t VALUES (1)", "UPDATE t SET explain = 1"]
        {
            assert!(Write::one(sql, vec![]).check().is_ok(), "{sql}");
        }
        assert_eq!(leading_keyword("  -- only a comment"), "");
        assert_eq!(leading_keyword(" ;; /* x */ ; pragma query_only = 1"), "pragma", "empty statements are skipped");
        for sql in ["", "   ", "-- c", "/* c */", ";", " ; ;", "\0INSERT INTO t VALUES (1)"] {
            assert_eq!(Write::one(sql, vec![]).check().unwrap_err().code(), "InvalidInput", "{sql:?}");
        }
        let nul = Write::one("INSERT INTO t VALUES (1)\0; DROP TABLE t", vec![]).check().unwrap_err();
        assert!(nul.to_string().contains("NUL"), "{nul}");
        assert!(Write::many("", vec![params![1]]).check().is_err());
    }

    #[test]
    fn batcher_grows_under_backlog_and_shrinks_when_idle() {
        let mut b = Batcher::new(100, 800, Duration::ZERO);
        b.on_taken(100, 5000);
        b.on_taken(200, 5000);
        b.on_taken(400, 5000);
        b.on_taken(800, 5000);
        assert_eq!(b.limit(), 800);
        b.on_taken(10, 0);
        assert_eq!(b.limit(), 400);
        for _ in 0..10 {
            b.on_taken(1, 0);
        }
        assert_eq!(b.limit(), 100);
    }

    #[test]
    fn slow_commits_wait_briefly_for_the_producers_just_acked() {
        let us = Duration::from_micros;
        let mut b = Batcher::new(100, 100, Duration::ZERO);
        assert_eq!(b.ready_at(1, Some(us(0)), us(10)), Some(us(10)), "no history: go");
        b.on_committed(8, us(1000), us(5000));
        assert_eq!(b.ready_at(3, Some(us(4000)), us(5010)), Some(us(5500)), "wait half a commit after it for 8");
        assert_eq!(b.ready_at(8, Some(us(4000)), us(5010)), Some(us(5010)), "all 8 are here");
        b.on_committed(5, us(1000), us(7000));
        assert_eq!(
            b.ready_at(5, Some(us(7000)), us(7010)),
            Some(us(7500)),
            "the peak decays slowly: still waits for 7"
        );
        b.on_committed(8, us(100_000), us(200_000));
        assert_eq!(b.ready_at(3, Some(us(0)), us(200_010)), Some(us(202_000)), "never more than 2 ms");
        b.on_committed(8, us(50), us(300_000));
        assert_eq!(b.ready_at(3, Some(us(0)), us(300_010)), Some(us(300_010)), "fast commits go at once");
        b.on_committed(8, us(150), us(400_000));
        assert_eq!(b.ready_at(3, Some(us(0)), us(400_010)), Some(us(400_010)), "150 µs is fast by default");
        let mut cheap = Batcher::new(100, 100, Duration::ZERO).group_commit_min(us(100));
        cheap.on_committed(8, us(150), us(400_000));
        assert_eq!(cheap.ready_at(3, Some(us(0)), us(400_010)), Some(us(400_075)), "a host that waits cheaply waits");
    }

    #[test]
    fn linger_waits_for_more_unless_the_batch_is_full() {
        let ms = Duration::from_millis;
        let b = Batcher::new(10, 10, ms(5));
        assert_eq!(b.ready_at(0, None, ms(100)), None);
        assert_eq!(b.ready_at(3, Some(ms(98)), ms(100)), Some(ms(103)));
        assert_eq!(b.ready_at(3, Some(ms(90)), ms(100)), Some(ms(100)));
        assert_eq!(b.ready_at(10, Some(ms(100)), ms(100)), Some(ms(100)));
    }
}
