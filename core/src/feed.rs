//! The commit feed: after each committed batch, the tables it changed, for subscribers that each
//! read at their own pace.
//!
//! The feed keeps the last `capacity` commits in a ring. A subscriber is only a cursor into it,
//! so publishing costs the same with one subscriber or a thousand and never waits for any: a
//! subscriber that falls more than `capacity` commits behind reads [`FeedItem::Lagged`] (with
//! how many it missed) and goes on from the oldest commit still kept. I/O-free: the host puts
//! the feed behind its own lock and wakes its subscribers after [`Feed::publish`].

use std::collections::VecDeque;
use std::sync::Arc;

/// One committed batch, as the feed tells it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Commit {
    /// The batch id, as in the receipts of its writes.
    pub batch: u64,
    /// The tables it changed, written directly or by its triggers and foreign-key actions:
    /// sorted, each once, never empty (a batch that changed nothing is not published).
    pub tables: Vec<String>,
}

impl Commit {
    /// Whether the batch changed any of `tables` (names compared as SQLite does, ASCII case
    /// folded).
    pub fn touches<S: AsRef<str>>(&self, tables: &[S]) -> bool {
        self.tables.iter().any(|t| tables.iter().any(|w| t.eq_ignore_ascii_case(w.as_ref())))
    }
}

/// What a subscriber reads next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FeedItem {
    /// The next committed batch.
    Commit(Arc<Commit>),
    /// The subscriber fell behind and `missed` commits are gone: whatever it derives from the
    /// database, it should derive again (re-run its queries) and go on reading.
    Lagged {
        /// Commits it will never see.
        missed: u64,
    },
}

/// The ring of recent commits.
#[derive(Debug)]
pub struct Feed {
    ring: VecDeque<Arc<Commit>>,
    /// The sequence number of `ring[0]`.
    first: u64,
    capacity: usize,
}

/// How many commits a feed keeps for slow subscribers unless told otherwise.
pub const DEFAULT_FEED_CAPACITY: usize = 256;

impl Feed {
    /// A feed keeping the last `capacity` commits (at least one).
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Feed { ring: VecDeque::with_capacity(capacity), first: 0, capacity }
    }

    /// Publishes a committed batch; one that changed no table is not published (returns false).
    pub fn publish(&mut self, batch: u64, mut tables: Vec<String>) -> bool {
        if tables.is_empty() {
            return false;
        }
        tables.sort_unstable();
        tables.dedup();
        if self.ring.len() == self.capacity {
            self.ring.pop_front();
            self.first += 1;
        }
        self.ring.push_back(Arc::new(Commit { batch, tables }));
        true
    }

    /// The cursor of a subscriber that starts now: it reads the commits published from now on.
    pub fn head(&self) -> u64 {
        self.first + self.ring.len() as u64
    }

    /// The next item for the subscriber at `cursor`, advancing it; `None` when it has read
    /// everything published so far.
    pub fn read(&self, cursor: &mut u64) -> Option<FeedItem> {
        if *cursor < self.first {
            let missed = self.first - *cursor;
            *cursor = self.first;
            return Some(FeedItem::Lagged { missed });
        }
        let at = usize::try_from(*cursor - self.first).ok()?;
        let commit = self.ring.get(at)?.clone();
        *cursor += 1;
        Some(FeedItem::Commit(commit))
    }
}

impl Default for Feed {
    fn default() -> Self {
        Feed::new(DEFAULT_FEED_CAPACITY)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tables(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| (*s).to_owned()).collect()
    }

    fn batches(feed: &Feed, cursor: &mut u64) -> Vec<Result<u64, u64>> {
        std::iter::from_fn(|| feed.read(cursor))
            .map(|item| match item {
                FeedItem::Commit(c) => Ok(c.batch),
                FeedItem::Lagged { missed } => Err(missed),
            })
            .collect()
    }

    #[test]
    fn a_subscriber_reads_what_was_published_after_it_started_in_order() {
        let mut feed = Feed::new(8);
        assert!(feed.publish(1, tables(&["a"])));
        let mut cursor = feed.head();
        assert!(feed.publish(2, tables(&["b", "a", "b"])));
        assert!(feed.publish(3, tables(&["c"])));
        assert_eq!(batches(&feed, &mut cursor), vec![Ok(2), Ok(3)]);
        assert_eq!(feed.read(&mut cursor), None, "nothing new");
        let mut again = 0;
        let Some(FeedItem::Commit(first)) = feed.read(&mut again) else { panic!("the oldest commit is kept") };
        assert_eq!(first.tables, tables(&["a"]));
        let Some(FeedItem::Commit(second)) = feed.read(&mut again) else { panic!("the second commit is kept") };
        assert_eq!(second.tables, tables(&["a", "b"]), "sorted, each once");
    }

    #[test]
    fn a_batch_that_changed_nothing_is_not_published() {
        let mut feed = Feed::new(4);
        let mut cursor = feed.head();
        assert!(!feed.publish(1, Vec::new()));
        assert_eq!(feed.read(&mut cursor), None);
    }

    #[test]
    fn a_slow_subscriber_is_told_how_many_it_missed_and_goes_on_from_the_oldest_kept() {
        let mut feed = Feed::new(3);
        let mut slow = feed.head();
        for batch in 1..=10 {
            feed.publish(batch, tables(&["t"]));
        }
        assert_eq!(batches(&feed, &mut slow), vec![Err(7), Ok(8), Ok(9), Ok(10)]);
        feed.publish(11, tables(&["t"]));
        assert_eq!(batches(&feed, &mut slow), vec![Ok(11)], "caught up: no second lag");
    }

    #[test]
    fn touches_compares_table_names_as_sqlite_does() {
        let commit = Commit { batch: 1, tables: tables(&["Events", "jobs"]) };
        assert!(commit.touches(&["events"]));
        assert!(commit.touches(&["other", "JOBS"]));
        assert!(!commit.touches(&["event"]));
        assert!(!commit.touches::<&str>(&[]));
    }
}
