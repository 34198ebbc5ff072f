//! Errors of the write path: what a backend reports, and what a write's owner receives.

use std::fmt;
use std::time::Duration;

/// How the write path must react to a backend failure. Backends classify by error code, never
/// by message text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorClass {
    /// Lock contention (SQLITE_BUSY, SQLITE_LOCKED and their extended codes): roll the batch
    /// back, wait, retry it whole.
    Transient,
    /// The write itself is at fault (constraint, bad SQL, bad parameter, too big, disk full for
    /// this write): reject it alone; the rest of the batch goes on.
    Rejected,
    /// The database is at fault (I/O, corruption, read-only file): the batch fails.
    Fatal,
}

/// What went wrong, stable across backends. [`ErrorKind::code`] is the string JavaScript sees.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The database stayed locked.
    Busy,
    /// A UNIQUE, NOT NULL, CHECK, FOREIGN KEY or PRIMARY KEY constraint failed.
    Constraint,
    /// A parameter or statement the store cannot run as given (wrong parameter count, NaN,
    /// value too big, a statement that returns rows).
    InvalidInput,
    /// The SQL is wrong: syntax error, unknown table or column.
    Sql,
    /// The database or the disk is full.
    DiskFull,
    /// The database file cannot be written.
    ReadOnly,
    /// An I/O failure or a corrupt file.
    Io,
    /// The database cannot do what the write asks (a request id on a backend without request
    /// markers).
    Unsupported,
}

impl ErrorKind {
    /// The stable name, as used for the JavaScript `code` property.
    pub fn code(self) -> &'static str {
        match self {
            ErrorKind::Busy => "Busy",
            ErrorKind::Constraint => "Constraint",
            ErrorKind::InvalidInput => "InvalidInput",
            ErrorKind::Sql => "Sql",
            ErrorKind::DiskFull => "DiskFull",
            ErrorKind::ReadOnly => "ReadOnly",
            ErrorKind::Io => "Io",
            ErrorKind::Unsupported => "Unsupported",
        }
    }

    /// The kind whose [`code`](Self::code) is `code`.
    pub fn from_code(code: &str) -> Option<ErrorKind> {
        [
            ErrorKind::Busy,
            ErrorKind::Constraint,
            ErrorKind::InvalidInput,
            ErrorKind::Sql,
            ErrorKind::DiskFull,
            ErrorKind::ReadOnly,
            ErrorKind::Io,
            ErrorKind::Unsupported,
        ]
        .into_iter()
        .find(|k| k.code() == code)
    }
}

/// A backend failure, classified at the backend's edge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackendError {
    /// What kind of failure.
    pub kind: ErrorKind,
    /// How the write path reacts.
    pub class: ErrorClass,
    /// The backend's (extended) error code, when it has one.
    pub code: Option<i32>,
    /// The backend's message.
    pub message: String,
}

impl BackendError {
    /// A failure with a kind and class.
    pub fn new(kind: ErrorKind, class: ErrorClass, code: Option<i32>, message: impl Into<String>) -> Self {
        BackendError { kind, class, code, message: message.into() }
    }
}

impl fmt::Display for BackendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.code {
            Some(code) => write!(f, "{} (code {code})", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for BackendError {}

/// Why a write was not committed. Each write gets its own; nothing is dropped silently.
///
/// `Display` is one lowercase phrase without a trailing period that includes SQLite's message
/// and ends with what to do; there is no `source()` repeating it.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq)]
pub enum WriteError {
    /// The queue was full and the store is set to fail fast.
    QueueFull {
        /// The queue's capacity in rows.
        capacity: usize,
    },
    /// The store was closed before the write was accepted.
    Closed,
    /// The database stayed locked past the retry budget; the write was not applied.
    Busy {
        /// Attempts made for the write's batch.
        attempts: u32,
        /// Time spent waiting between attempts.
        waited: Duration,
        /// The last SQLite (extended) code seen.
        code: Option<i32>,
    },
    /// The backend refused this write, or the database failed while committing it.
    Backend(BackendError),
    /// The write was refused before it reached the database.
    InvalidInput {
        /// What is wrong with it.
        message: String,
    },
}

impl WriteError {
    /// The stable kind of this error (`"Busy"`, `"Constraint"`, `"QueueFull"`, ...).
    pub fn code(&self) -> &'static str {
        match self {
            WriteError::QueueFull { .. } => "QueueFull",
            WriteError::Closed => "Closed",
            WriteError::Busy { .. } => "Busy",
            WriteError::Backend(e) => e.kind.code(),
            WriteError::InvalidInput { .. } => "InvalidInput",
        }
    }

    /// The kind, for errors that came from the database or from input checks.
    pub fn kind(&self) -> Option<ErrorKind> {
        match self {
            WriteError::Busy { .. } => Some(ErrorKind::Busy),
            WriteError::Backend(e) => Some(e.kind),
            WriteError::InvalidInput { .. } => Some(ErrorKind::InvalidInput),
            WriteError::QueueFull { .. } | WriteError::Closed => None,
        }
    }

    /// The SQLite (extended) result code, where there is one.
    pub fn sqlite_code(&self) -> Option<i32> {
        match self {
            WriteError::Busy { code, .. } => *code,
            WriteError::Backend(e) => e.code,
            _ => None,
        }
    }

    /// True when trying the same write again later can succeed unchanged.
    pub fn is_transient(&self) -> bool {
        matches!(self, WriteError::QueueFull { .. } | WriteError::Busy { .. })
    }
}

impl fmt::Display for WriteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WriteError::QueueFull { capacity } => write!(
                f,
                "queue full: {capacity} writes waiting; raise Options::queue_capacity or use Backpressure::Wait"
            ),
            WriteError::Closed => f.write_str("store is closed: open it again to write"),
            WriteError::Busy { attempts, waited, .. } => write!(
                f,
                "database stayed locked through {attempts} attempts over {waited:?}; another connection holds a long write \
                 transaction: shorten it or raise the retry budget"
            ),
            WriteError::Backend(e) => {
                let hint = match e.kind {
                    ErrorKind::Constraint => "this write alone was rejected; fix its values",
                    ErrorKind::Sql => "check the statement",
                    ErrorKind::InvalidInput => "check the parameters",
                    ErrorKind::DiskFull => "free disk space or raise the page limit",
                    ErrorKind::ReadOnly => "check the file's permissions",
                    ErrorKind::Io | ErrorKind::Busy => "check the disk and the database file",
                    ErrorKind::Unsupported => "use a plain write here",
                };
                write!(f, "{}: {e}; {hint}", kind_phrase(e.kind))
            }
            WriteError::InvalidInput { message } => write!(f, "invalid input: {message}"),
        }
    }
}

fn kind_phrase(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::Busy => "database is locked",
        ErrorKind::Constraint => "constraint failed",
        ErrorKind::InvalidInput => "invalid input",
        ErrorKind::Sql => "sql error",
        ErrorKind::DiskFull => "database or disk is full",
        ErrorKind::ReadOnly => "database is read-only",
        ErrorKind::Io => "database i/o failure",
        ErrorKind::Unsupported => "unsupported",
    }
}

/// No `source()`: a write's `Display` already carries SQLite's message (a rejected write is
/// usually logged alone, one line each), and a chain printer (anyhow's `{:#}`) would show it
/// twice. The [`BackendError`] stays reachable by matching [`WriteError::Backend`].
impl std::error::Error for WriteError {}

impl From<BackendError> for WriteError {
    fn from(e: BackendError) -> Self {
        WriteError::Backend(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_say_what_to_do() {
        let full = WriteError::QueueFull { capacity: 10 }.to_string();
        assert_eq!(full, "queue full: 10 writes waiting; raise Options::queue_capacity or use Backpressure::Wait");
        let c = WriteError::from(BackendError::new(
            ErrorKind::Constraint,
            ErrorClass::Rejected,
            Some(2067),
            "UNIQUE constraint failed: t.id",
        ));
        assert_eq!(c.code(), "Constraint");
        assert_eq!(c.sqlite_code(), Some(2067));
        assert!(c.to_string().starts_with("constraint failed: UNIQUE constraint failed: t.id (code 2067)"));
        assert!(!c.is_transient());
        assert!(std::error::Error::source(&c).is_none(), "the message is in Display, not repeated by a source");
    }
}
