//! Live queries ([`Store::watch`]): a query run again after each committed batch that changed a
//! table it reads, over the commit feed.

use std::time::{Duration, Instant};

use sqlweir_core::{FeedItem, Value};

use crate::error::QueryError;
use crate::feed::Subscription;
use crate::read::Rows;
use crate::store::Store;

impl Store {
    /// A live query: `sql` with `params`, run now and again after each committed batch that
    /// changed a table it reads ([`Store::tables_read`]). Read it as a blocking iterator: the
    /// first item is the current result, each later one a result that differs from the one
    /// before, and it ends once the store is closed. Runs are coalesced: the commits that
    /// arrived while the caller was busy cause one run, not one each. A run never sees a
    /// half-applied batch. A lagged feed (the caller fell behind by more than
    /// [`Options::feed_capacity`](crate::Options::feed_capacity) commits) makes it run once, in
    /// case it missed one of its tables.
    ///
    /// Fails at once, with the error that says why, for a query that does not prepare; on a
    /// PostgreSQL store, which publishes no commit feed yet, with `InvalidInput`.
    ///
    /// ```
    /// use sqlweir::{params, Options, Store, Value};
    /// let store = Store::open_in_memory(Options::default().migrations(&["CREATE TABLE t(x)"]))?;
    /// let mut counts = store.watch("SELECT count(*) FROM t", &[])?;
    /// assert_eq!(counts.wait_next().unwrap()?.rows, vec![vec![Value::Integer(0)]]);
    /// store.write("INSERT INTO t(x) VALUES (?1)", params![1]).wait()?;
    /// assert_eq!(counts.wait_next().unwrap()?.rows, vec![vec![Value::Integer(1)]]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn watch(&self, sql: &str, params: &[Value]) -> Result<Watch, QueryError> {
        // Subscribed before the first run: a batch committing in between causes one more run.
        let feed = self.subscribe();
        let tables = self.tables_read(sql)?;
        Ok(Watch {
            store: self.clone(),
            sql: sql.to_owned(),
            params: params.to_vec(),
            tables,
            feed,
            last: None,
            started: false,
        })
    }
}

/// A live query from [`Store::watch`]. Each item is the query's result, delivered only when it
/// changed; the iterator ends once the store is closed. Dropping it stops it.
///
/// It holds a handle to the store (a clone of the [`Store`]), so the store stays open while a
/// watch lives, even after every other handle is dropped: call [`Store::close`] to end it, or
/// drop the watch.
pub struct Watch {
    store: Store,
    sql: String,
    params: Vec<Value>,
    tables: Vec<String>,
    feed: Subscription,
    /// The last result delivered; `None` before the first.
    last: Option<Rows>,
    /// The first run happened (it may have failed).
    started: bool,
}

impl Watch {
    /// The tables the query reads: a batch that changed one of them runs it again.
    pub fn tables(&self) -> &[String] {
        &self.tables
    }

    /// The next result that differs from the last one delivered (the first call: the current
    /// result), blocking until a batch changes it; `None` once the store is closed. A failed run
    /// is returned as its error, and the next commit runs the query again.
    pub fn wait_next(&mut self) -> Option<Result<Rows, QueryError>> {
        self.next_before(None)
    }

    /// [`Watch::wait_next`], waiting at most `timeout` for a change; `None` when none came in
    /// time or the store is closed.
    pub fn next_timeout(&mut self, timeout: Duration) -> Option<Result<Rows, QueryError>> {
        self.next_before(Some(Instant::now() + timeout))
    }

    fn next_before(&mut self, deadline: Option<Instant>) -> Option<Result<Rows, QueryError>> {
        let mut due = !self.started;
        loop {
            if due {
                // Everything already published is covered by the run about to start.
                while self.feed.try_next().is_some() {}
                self.started = true;
                match self.store.query(&self.sql, &self.params) {
                    Ok(rows) if self.last.as_ref() == Some(&rows) => {}
                    Ok(rows) => {
                        self.last = Some(rows.clone());
                        return Some(Ok(rows));
                    }
                    Err(QueryError::Closed) => return None,
                    Err(e) => return Some(Err(e)),
                }
            }
            let item = match deadline {
                None => self.feed.wait_next()?,
                Some(at) => self.feed.next_timeout(at.saturating_duration_since(Instant::now()))?,
            };
            due = match item {
                FeedItem::Commit(commit) => commit.touches(&self.tables),
                FeedItem::Lagged { .. } => true,
            };
        }
    }
}

impl Iterator for Watch {
    type Item = Result<Rows, QueryError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.wait_next()
    }
}
