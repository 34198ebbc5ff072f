//! The commit feed of a store ([`Store::subscribe`](crate::Store::subscribe)): the core's
//! [`Feed`] ring behind a lock, a condition variable for blocking readers and wakers for async
//! ones. The writer publishes once per committed batch and never waits for a subscriber.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use futures_core::Stream;
use sqlweir_core::{Feed, FeedItem};

use crate::mutex::lock;

pub(crate) struct FeedHub {
    state: Mutex<HubState>,
    published: Condvar,
    next_id: AtomicU64,
}

struct HubState {
    feed: Feed,
    /// Async subscribers waiting for the next commit, by subscription id.
    wakers: Vec<(u64, Waker)>,
    /// The store stopped writing: nothing more will be published.
    closed: bool,
}

impl FeedHub {
    /// A hub keeping the last `capacity` commits; `closed` for a store that publishes none.
    pub(crate) fn new(capacity: usize, closed: bool) -> Self {
        FeedHub {
            state: Mutex::new(HubState { feed: Feed::new(capacity), wakers: Vec::new(), closed }),
            published: Condvar::new(),
            next_id: AtomicU64::new(0),
        }
    }

    /// Publishes a committed batch's changed tables and wakes whoever waits.
    pub(crate) fn publish(&self, batch: u64, tables: Vec<String>) {
        let wakers = {
            let mut s = lock(&self.state);
            if !s.feed.publish(batch, tables) {
                return;
            }
            std::mem::take(&mut s.wakers)
        };
        self.published.notify_all();
        for (_, w) in wakers {
            w.wake();
        }
    }

    /// Ends every subscription once it has read what was published.
    pub(crate) fn close(&self) {
        let wakers = {
            let mut s = lock(&self.state);
            s.closed = true;
            std::mem::take(&mut s.wakers)
        };
        self.published.notify_all();
        for (_, w) in wakers {
            w.wake();
        }
    }

    pub(crate) fn subscribe(self: &Arc<Self>) -> Subscription {
        let cursor = lock(&self.state).feed.head();
        Subscription { hub: self.clone(), cursor, id: self.next_id.fetch_add(1, Ordering::Relaxed) }
    }
}

/// A store's commit feed, read from the moment of [`Store::subscribe`](crate::Store::subscribe):
/// one [`FeedItem::Commit`] per committed batch that changed rows (its batch id and the tables
/// it changed, those of its triggers and foreign-key actions included), in commit order, or
/// [`FeedItem::Lagged`] when this subscriber fell more than the feed's capacity
/// ([`Options::feed_capacity`](crate::Options::feed_capacity)) behind; then it goes on from
/// the oldest commit still kept.
///
/// Read it blocking ([`wait_next`](Self::wait_next), [`next_timeout`](Self::next_timeout),
/// [`try_next`](Self::try_next), or `for item in subscription`) or from async code (it is a
/// [`futures_core::Stream`]: `subscription.next().await` with `StreamExt`). It ends
/// (`None`) once the store is closed and everything published has been read. A subscriber
/// never slows the writer: a slow one misses commits, it never holds them up.
pub struct Subscription {
    hub: Arc<FeedHub>,
    cursor: u64,
    id: u64,
}

impl Subscription {
    /// The next item if one is there now, without waiting.
    pub fn try_next(&mut self) -> Option<FeedItem> {
        lock(&self.hub.state).feed.read(&mut self.cursor)
    }

    /// The next item, waiting at most `timeout`; `None` when none came by then or the store
    /// is closed and everything was read.
    pub fn next_timeout(&mut self, timeout: Duration) -> Option<FeedItem> {
        let deadline = Instant::now() + timeout;
        let mut s = lock(&self.hub.state);
        loop {
            if let Some(item) = s.feed.read(&mut self.cursor) {
                return Some(item);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if s.closed || left.is_zero() {
                return None;
            }
            s = self.hub.published.wait_timeout(s, left).map_or_else(|e| e.into_inner().0, |(g, _)| g);
        }
    }
}

impl Subscription {
    /// Waits for the next item; `None` once the store is closed and everything was read.
    pub fn wait_next(&mut self) -> Option<FeedItem> {
        let mut s = lock(&self.hub.state);
        loop {
            if let Some(item) = s.feed.read(&mut self.cursor) {
                return Some(item);
            }
            if s.closed {
                return None;
            }
            s = self.hub.published.wait(s).unwrap_or_else(std::sync::PoisonError::into_inner);
        }
    }
}

/// The feed as a blocking iterator ([`Subscription::wait_next`] until the store closes).
pub struct Blocking(Subscription);

impl Iterator for Blocking {
    type Item = FeedItem;

    fn next(&mut self) -> Option<FeedItem> {
        self.0.wait_next()
    }
}

impl IntoIterator for Subscription {
    type Item = FeedItem;
    type IntoIter = Blocking;

    /// Reads the feed blocking, item by item, until the store closes.
    fn into_iter(self) -> Blocking {
        Blocking(self)
    }
}

impl Stream for Subscription {
    type Item = FeedItem;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<FeedItem>> {
        let this = self.get_mut();
        let mut s = lock(&this.hub.state);
        if let Some(item) = s.feed.read(&mut this.cursor) {
            return Poll::Ready(Some(item));
        }
        if s.closed {
            return Poll::Ready(None);
        }
        let id = this.id;
        match s.wakers.iter_mut().find(|(i, _)| *i == id) {
            Some((_, w)) => w.clone_from(cx.waker()),
            None => s.wakers.push((id, cx.waker().clone())),
        }
        Poll::Pending
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let id = self.id;
        lock(&self.hub.state).wakers.retain(|(i, _)| *i != id);
    }
}
