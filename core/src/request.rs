//! Request ids: a write recorded under an id in the same transaction as the write, so that a
//! resend of the same write is answered from the record instead of being applied again.
//!
//! A write that carries a [`RequestId`] ([`Write::once`](crate::Write::once)) is looked up
//! inside its batch's transaction before it runs; when a marker for its id is there, the write
//! does not run and settles with the outcome recorded the first time
//! ([`WriteResult::Again`](crate::WriteResult::Again)). Otherwise it runs, and its marker (the
//! id and how it ended, a [`Recorded`]) is written by the batch executor right before `COMMIT`:
//! the marker commits if and only if the write does, through salvage and replay. A rejected
//! write leaves no marker. Markers are dropped with [`Backend::forget`](crate::Backend::forget)
//! once no resend can come.
//!
//! ```
//! use sqlweir_core::{Recorded, RequestId};
//! let id = RequestId::new("tab-1", 7);
//! let first = Recorded::One { changes: 1, last_rowid: 42, batch: 3 };
//! let blob = Recorded::encode_all(&[(id.seq, first.clone())]);
//! assert_eq!(Recorded::find(&blob, 7), Ok(Some(first)));
//! assert_eq!(Recorded::find(&blob, 8), Ok(None));
//! assert_eq!(id.to_string(), "tab-1#7");
//! ```

use std::fmt;
use std::sync::Arc;

use crate::error::{BackendError, ErrorClass, ErrorKind, WriteError};

/// Who sent a write (`origin`: a tab, a client) and its number there (`seq`). Unique per write
/// for as long as its marker is kept; markers of one origin are forgotten below a number.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId {
    /// The sender: a tab's id, a client's name (shared: one sender's writes carry one copy).
    pub origin: Arc<str>,
    /// The write's number at its sender (at most `i64::MAX`, SQLite's integer).
    pub seq: u64,
}

impl RequestId {
    /// The id of write `seq` of `origin`.
    pub fn new(origin: impl Into<Arc<str>>, seq: u64) -> Self {
        RequestId { origin: origin.into(), seq }
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{}", self.origin, self.seq)
    }
}

/// The id a write is recorded under, and whether a marker of it can exist already.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// The id.
    pub id: RequestId,
    /// The sender knows it never sent this id before (its first send): no marker can exist,
    /// so it is not looked up, only recorded. `false` (a resend, or not known) looks it up.
    pub first_send: bool,
}

/// How a recorded write ended: what its marker keeps, and what a resend is answered with. The
/// rows of a `RETURNING` clause are not kept.
#[derive(Clone, Debug, PartialEq)]
pub enum Recorded {
    /// A single write's receipt.
    One {
        /// Rows changed.
        changes: u64,
        /// The last inserted rowid after the statement.
        last_rowid: i64,
        /// The batch it committed in.
        batch: u64,
    },
    /// A `write_many`: rows committed and the rows rejected with their errors.
    Many {
        /// Rows committed.
        committed: u64,
        /// Rejected rows, by index, with their errors.
        rejected: Vec<(usize, WriteError)>,
        /// The batch it committed in.
        batch: u64,
    },
    /// A statement-list transaction: per statement, rows changed and the last rowid after it.
    Transaction {
        /// Per statement: changes and last rowid.
        results: Vec<(u64, i64)>,
        /// The batch it committed in.
        batch: u64,
    },
}

impl Recorded {
    /// The batch it committed in.
    pub fn batch(&self) -> u64 {
        match self {
            Recorded::One { batch, .. } | Recorded::Many { batch, .. } | Recorded::Transaction { batch, .. } => *batch,
        }
    }

    /// The markers of one sender's writes of one batch (`entries`: each write's number and how
    /// it ended, all of batch `entries[0]`'s) as one compact blob: the batch, then per write
    /// its number (as the difference from the one before) and outcome, in varints. A plain
    /// write that changed one row takes about three bytes.
    pub fn encode_all(entries: &[(u64, Recorded)]) -> Vec<u8> {
        let mut out = Vec::with_capacity(4 + entries.len() * 4);
        put(&mut out, entries.first().map_or(0, |(_, r)| r.batch()));
        let (mut seq, mut rowid) = (0u64, 0i64);
        for (n, r) in entries {
            put(&mut out, zigzag(n.wrapping_sub(seq) as i64));
            seq = *n;
            match r {
                Recorded::One { changes: 1, last_rowid, .. } => {
                    out.push(0);
                    put(&mut out, zigzag(last_rowid.wrapping_sub(rowid)));
                    rowid = *last_rowid;
                }
                Recorded::One { changes, last_rowid, .. } => {
                    out.push(1);
                    put(&mut out, *changes);
                    put(&mut out, zigzag(last_rowid.wrapping_sub(rowid)));
                    rowid = *last_rowid;
                }
                Recorded::Many { committed, rejected, .. } => {
                    out.push(2);
                    put(&mut out, *committed);
                    put(&mut out, rejected.len() as u64);
                    for (index, e) in rejected {
                        put(&mut out, *index as u64);
                        put_text(&mut out, e.kind().map_or("-", ErrorKind::code));
                        put(&mut out, e.sqlite_code().map_or(0, |c| zigzag(i64::from(c)) + 1));
                        let message = match e {
                            WriteError::Backend(b) => b.message.clone(),
                            WriteError::InvalidInput { message } => message.clone(),
                            other => other.to_string(),
                        };
                        put_text(&mut out, &message);
                    }
                }
                Recorded::Transaction { results, .. } => {
                    out.push(3);
                    put(&mut out, results.len() as u64);
                    for (changes, rowid) in results {
                        put(&mut out, *changes);
                        put(&mut out, zigzag(*rowid));
                    }
                }
            }
        }
        out
    }

    /// The marker of write `seq` in a blob [`encode_all`](Self::encode_all) wrote: `Ok(None)`
    /// when it is not there, [`Unreadable`] when the blob is not one it wrote.
    pub fn find(all: &[u8], seq: u64) -> Result<Option<Recorded>, Unreadable> {
        let mut found = None;
        walk(all, &mut |n, r| {
            if n == seq {
                found = Some(r);
                false
            } else {
                true
            }
        })?;
        Ok(found)
    }

    /// Every write's number and outcome in a blob [`encode_all`](Self::encode_all) wrote.
    pub fn decode_all(all: &[u8]) -> Result<Vec<(u64, Recorded)>, Unreadable> {
        let mut out = Vec::new();
        walk(all, &mut |n, r| {
            out.push((n, r));
            true
        })?;
        Ok(out)
    }

    /// The numbers of the writes in a blob [`encode_all`](Self::encode_all) wrote.
    pub fn seqs(all: &[u8]) -> Result<Vec<u64>, Unreadable> {
        let mut out = Vec::new();
        walk(all, &mut |n, _| {
            out.push(n);
            true
        })?;
        Ok(out)
    }

    /// Rows this recorded write committed (a transaction counts as one).
    pub fn committed_rows(&self) -> u64 {
        match self {
            Recorded::One { .. } | Recorded::Transaction { .. } => 1,
            Recorded::Many { committed, .. } => *committed,
        }
    }

    /// Rows of this recorded write that were rejected.
    pub fn rejected_rows(&self) -> u64 {
        match self {
            Recorded::One { .. } | Recorded::Transaction { .. } => 0,
            Recorded::Many { rejected, .. } => rejected.len() as u64,
        }
    }
}

/// Reads every entry of a blob [`Recorded::encode_all`] wrote, until `each` says stop.
fn walk(all: &[u8], each: &mut dyn FnMut(u64, Recorded) -> bool) -> Result<(), Unreadable> {
    let mut at = 0;
    let rest = &mut at;
    let batch = get(all, rest)?;
    let (mut seq, mut rowid) = (0u64, 0i64);
    while *rest < all.len() {
        seq = seq.wrapping_add(unzigzag(get(all, rest)?) as u64);
        let tag = *all.get(*rest).ok_or(Unreadable)?;
        *rest += 1;
        let r = match tag {
            0 | 1 => {
                let changes = if tag == 0 { 1 } else { get(all, rest)? };
                rowid = rowid.wrapping_add(unzigzag(get(all, rest)?));
                Recorded::One { changes, last_rowid: rowid, batch }
            }
            2 => {
                let committed = get(all, rest)?;
                let n = get(all, rest)?;
                let mut rejected = Vec::new();
                for _ in 0..n {
                    let index = usize::try_from(get(all, rest)?).map_err(|_| Unreadable)?;
                    let kind = ErrorKind::from_code(get_text(all, rest)?).ok_or(Unreadable)?;
                    let code = match get(all, rest)? {
                        0 => None,
                        c => Some(i32::try_from(unzigzag(c - 1)).map_err(|_| Unreadable)?),
                    };
                    let message = get_text(all, rest)?.to_owned();
                    let error = if kind == ErrorKind::InvalidInput && code.is_none() {
                        WriteError::InvalidInput { message }
                    } else {
                        WriteError::Backend(BackendError::new(kind, ErrorClass::Rejected, code, message))
                    };
                    rejected.push((index, error));
                }
                Recorded::Many { committed, rejected, batch }
            }
            3 => {
                let n = get(all, rest)?;
                let mut results = Vec::new();
                for _ in 0..n {
                    let changes = get(all, rest)?;
                    results.push((changes, unzigzag(get(all, rest)?)));
                }
                Recorded::Transaction { results, batch }
            }
            _ => return Err(Unreadable),
        };
        if !each(seq, r) {
            return Ok(());
        }
    }
    Ok(())
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// Appends `v` as a LEB128 varint.
fn put(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn get(all: &[u8], at: &mut usize) -> Result<u64, Unreadable> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *all.get(*at).ok_or(Unreadable)?;
        *at += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(Unreadable)
}

fn put_text(out: &mut Vec<u8>, text: &str) {
    put(out, text.len() as u64);
    out.extend_from_slice(text.as_bytes());
}

fn get_text<'a>(all: &'a [u8], at: &mut usize) -> Result<&'a str, Unreadable> {
    let len = usize::try_from(get(all, at)?).map_err(|_| Unreadable)?;
    let bytes = all.get(*at..at.checked_add(len).ok_or(Unreadable)?).ok_or(Unreadable)?;
    *at += len;
    std::str::from_utf8(bytes).map_err(|_| Unreadable)
}

/// A marker text that [`Recorded::encode_all`] did not write (was the table changed by hand?).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Unreadable;

impl fmt::Display for Unreadable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a request marker is not in the form sqlweir writes; was _sqlweir_requests changed by hand?")
    }
}

impl std::error::Error for Unreadable {}

/// Markers no resend can come for any more: those of `origin` numbered below `below`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Forget {
    /// The sender.
    pub origin: String,
    /// Markers numbered below this are dropped (`u64::MAX`: all of the sender's).
    pub below: u64,
}

/// The error a backend without request markers gives for a write that carries a request id.
pub fn unsupported(what: &str) -> BackendError {
    BackendError::new(
        ErrorKind::Unsupported,
        ErrorClass::Rejected,
        None,
        format!("{what} is not supported by this database: writes with a request id need SQLite"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_of_outcome_reads_back_as_written() {
        let rejected = vec![
            (
                1,
                WriteError::Backend(BackendError::new(
                    ErrorKind::Constraint,
                    ErrorClass::Rejected,
                    Some(1555),
                    "UNIQUE constraint failed: t.k",
                )),
            ),
            (4, WriteError::InvalidInput { message: "parameter 2: a: b 3:4".into() }),
            (5, WriteError::Backend(BackendError::new(ErrorKind::Sql, ErrorClass::Rejected, Some(-3), ""))),
        ];
        let b = 12;
        let entries: Vec<(u64, Recorded)> = vec![
            (7, Recorded::One { changes: 1, last_rowid: 42, batch: b }),
            (3, Recorded::One { changes: 0, last_rowid: -9, batch: b }),
            (u64::MAX, Recorded::One { changes: u64::MAX, last_rowid: i64::MIN, batch: b }),
            (8, Recorded::Many { committed: 0, rejected: Vec::new(), batch: b }),
            (9, Recorded::Many { committed: 7, rejected, batch: b }),
            (10, Recorded::Transaction { results: vec![], batch: b }),
            (11, Recorded::Transaction { results: vec![(1, 2), (0, -3)], batch: b }),
            (12, Recorded::One { changes: 1, last_rowid: 43, batch: b }),
        ];
        let all = Recorded::encode_all(&entries);
        for (seq, r) in &entries {
            assert_eq!(Recorded::find(&all, *seq), Ok(Some(r.clone())), "{seq}");
        }
        assert_eq!(Recorded::find(&all, 4), Ok(None));
        assert_eq!(Recorded::seqs(&all), Ok(entries.iter().map(|(s, _)| *s).collect()));
        let plain: Vec<(u64, Recorded)> =
            (100..200).map(|n| (n, Recorded::One { changes: 1, last_rowid: n as i64 * 2, batch: 3 })).collect();
        // The first write's number and rowid take two bytes each; each next one three bytes in all.
        assert_eq!(Recorded::encode_all(&plain).len(), 1 + 5 + 3 * 99, "three bytes a plain write");
        for bad in [&[][..], &[1, 1, 9][..], &[1, 1, 0][..], &[1, 1, 2, 0, 1, 0, 1, b'-', 0, 0][..]] {
            assert!(Recorded::find(bad, 99).is_err() || bad.is_empty(), "{bad:?}");
        }
    }
}
