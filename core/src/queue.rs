//! The bounded write queue: where accepted writes wait for the writer, in acceptance order.

use std::collections::VecDeque;
use std::time::Duration;

/// One accepted entry and its bookkeeping.
#[derive(Debug)]
pub struct Queued<T> {
    /// The host's entry (the write and whatever resolves its ticket).
    pub item: T,
    /// Parameter rows it carries: its weight against the capacity.
    pub rows: usize,
    /// Host time at acceptance, for ack latency and linger.
    pub accepted_at: Duration,
}

/// Why an entry was not accepted. The entry goes back to its owner: nothing is dropped.
#[derive(Debug, PartialEq, Eq)]
pub enum PushError<T> {
    /// Accepting it would exceed the capacity.
    Full(T),
    /// The queue was closed.
    Closed(T),
}

/// A FIFO bounded by the number of parameter rows it holds.
///
/// An entry heavier than the whole capacity (a large `write_many`) is admitted when the queue is
/// empty, so it can always make progress; memory stays bounded by `max(capacity, one entry)`.
#[derive(Debug)]
pub struct WriteQueue<T> {
    items: VecDeque<Queued<T>>,
    rows: usize,
    capacity: usize,
    accepted: u64,
    closed: bool,
}

impl<T> WriteQueue<T> {
    /// An empty queue holding at most `capacity` rows (at least 1).
    pub fn new(capacity: usize) -> Self {
        WriteQueue { items: VecDeque::new(), rows: 0, capacity: capacity.max(1), accepted: 0, closed: false }
    }

    /// Accepts an entry of `rows` rows, or hands it back.
    pub fn push(&mut self, item: T, rows: usize, now: Duration) -> Result<(), PushError<T>> {
        if self.closed {
            return Err(PushError::Closed(item));
        }
        if !self.has_room_for(rows) {
            return Err(PushError::Full(item));
        }
        self.rows += rows;
        self.accepted += rows as u64;
        self.items.push_back(Queued { item, rows, accepted_at: now });
        Ok(())
    }

    /// Accepts an entry past the capacity; refuses only when closed. For an entry that must not
    /// be lost although its owner can no longer wait for room (a dropped waiting ticket).
    pub fn push_overflowing(&mut self, item: T, rows: usize, now: Duration) -> Result<(), PushError<T>> {
        if self.closed {
            return Err(PushError::Closed(item));
        }
        self.rows += rows;
        self.accepted += rows as u64;
        self.items.push_back(Queued { item, rows, accepted_at: now });
        Ok(())
    }

    /// Makes room in memory for `entries` more entries at once (one allocation, not one per
    /// doubling), up to what the queue can hold.
    pub fn reserve(&mut self, entries: usize) {
        let room = self.capacity.saturating_sub(self.rows);
        self.items.reserve(entries.min(room));
    }

    /// Whether an entry of `rows` rows would be accepted now.
    pub fn has_room_for(&self, rows: usize) -> bool {
        // A zero-row entry (a flush marker) always fits: it holds no parameters.
        rows == 0 || self.items.is_empty() || self.rows + rows <= self.capacity
    }

    /// Takes entries from the front, in order, until at least `max_rows` rows are taken or the
    /// queue is empty. Takes at least one entry when there is one.
    pub fn take(&mut self, max_rows: usize) -> Vec<Queued<T>> {
        self.take_until(max_rows, |_| false)
    }

    /// Like [`take`](Self::take), but an entry for which `alone` is true (a transaction) goes in
    /// a batch of its own: it ends the batch before it, and is taken alone when it is first.
    pub fn take_until(&mut self, max_rows: usize, alone: impl Fn(&T) -> bool) -> Vec<Queued<T>> {
        let mut taken = Vec::new();
        let mut rows = 0;
        while let Some(front) = self.items.front() {
            let single = alone(&front.item);
            if !taken.is_empty() && (single || rows + front.rows > max_rows) {
                break;
            }
            let entry = self.items.pop_front().expect("front was just seen");
            rows += entry.rows;
            self.rows -= entry.rows;
            taken.push(entry);
            if single || rows >= max_rows {
                break;
            }
        }
        taken
    }

    /// Refuses further pushes; entries already queued stay to be drained.
    pub fn close(&mut self) {
        self.closed = true;
    }

    /// Whether [`close`](Self::close) was called.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Rows waiting.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Entries waiting.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Capacity in rows.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Rows accepted since the queue was made.
    pub fn accepted(&self) -> u64 {
        self.accepted
    }

    /// When the oldest waiting entry was accepted.
    pub fn oldest_accepted_at(&self) -> Option<Duration> {
        self.items.front().map(|q| q.accepted_at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: Duration = Duration::ZERO;

    #[test]
    fn full_queue_hands_the_entry_back() {
        let mut q = WriteQueue::new(2);
        q.push("a", 1, T0).unwrap();
        q.push("b", 1, T0).unwrap();
        assert_eq!(q.push("c", 1, T0), Err(PushError::Full("c")));
        assert_eq!(q.rows(), 2);
        assert_eq!(q.accepted(), 2);
    }

    #[test]
    fn heavy_entry_is_admitted_only_into_an_empty_queue() {
        let mut q = WriteQueue::new(10);
        q.push("small", 1, T0).unwrap();
        assert_eq!(q.push("big", 50, T0), Err(PushError::Full("big")));
        assert_eq!(q.take(100).len(), 1);
        q.push("big", 50, T0).unwrap();
        assert_eq!(q.rows(), 50);
    }

    #[test]
    fn take_keeps_order_and_respects_the_row_limit() {
        let mut q = WriteQueue::new(100);
        for i in 0..10 {
            q.push(i, 1, T0).unwrap();
        }
        let first: Vec<i32> = q.take(4).into_iter().map(|e| e.item).collect();
        assert_eq!(first, vec![0, 1, 2, 3]);
        let rest: Vec<i32> = q.take(100).into_iter().map(|e| e.item).collect();
        assert_eq!(rest, vec![4, 5, 6, 7, 8, 9]);
        assert!(q.is_empty());
        assert!(q.take(10).is_empty());
    }

    #[test]
    fn take_does_not_split_but_stops_before_an_entry_that_overflows() {
        let mut q = WriteQueue::new(100);
        q.push("a", 3, T0).unwrap();
        q.push("b", 30, T0).unwrap();
        let batch = q.take(10);
        assert_eq!(batch.len(), 1);
        assert_eq!(q.take(10).len(), 1, "an oversized entry still goes alone");
    }

    #[test]
    fn overflowing_push_ignores_the_capacity_but_not_close() {
        let mut q = WriteQueue::new(1);
        q.push("a", 1, T0).unwrap();
        q.push_overflowing("b", 1, T0).unwrap();
        assert_eq!((q.rows(), q.accepted()), (2, 2));
        q.close();
        assert_eq!(q.push_overflowing("c", 1, T0), Err(PushError::Closed("c")));
    }

    #[test]
    fn an_entry_that_goes_alone_splits_the_batch() {
        let mut q = WriteQueue::new(100);
        for item in ["a", "b", "TX", "c"] {
            q.push(item, 1, T0).unwrap();
        }
        fn names(b: Vec<Queued<&'static str>>) -> Vec<&'static str> {
            b.into_iter().map(|q| q.item).collect()
        }
        assert_eq!(names(q.take_until(10, |i| *i == "TX")), ["a", "b"]);
        assert_eq!(names(q.take_until(10, |i| *i == "TX")), ["TX"]);
        assert_eq!(names(q.take_until(10, |i| *i == "TX")), ["c"]);
    }

    #[test]
    fn closed_queue_refuses_but_drains() {
        let mut q = WriteQueue::new(10);
        q.push(1, 1, T0).unwrap();
        q.close();
        assert_eq!(q.push(2, 1, T0), Err(PushError::Closed(2)));
        assert_eq!(q.take(10).len(), 1);
    }
}
