//! `sqlweir ingest`: streams records into a table through the store, `--batch` rows per
//! `write_many`, a few batches in flight, so memory stays bounded whatever the input's size.

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io::{self, BufWriter, IsTerminal, Read, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use sqlweir::{ManyOutcome, Options, Store, Ticket, Value, WriteError};

use crate::Fatal;
use crate::record::{Format, Item, Record, Records, to_value};
use crate::types::{self, ColumnType, Field, Guess, Probe};

/// Batches queued ahead of the one being committed: reading and parsing overlap the commits,
/// and at most this many batches (plus the one being filled) are in memory.
const IN_FLIGHT: usize = 4;

/// Arguments of `sqlweir ingest`.
// Each bool is an independent command-line flag.
#[allow(clippy::struct_excessive_bools)]
#[derive(clap::Args, Debug)]
pub struct IngestArgs {
    /// The input file, or `-` for standard input.
    input: PathBuf,
    /// The SQLite database (created if missing, switched to WAL).
    #[arg(long)]
    db: PathBuf,
    /// The table to insert into.
    #[arg(long)]
    table: String,
    /// Input format; by default `csv` for a `.csv` file and `jsonl` otherwise (stdin too).
    #[arg(long, value_enum)]
    format: Option<Format>,
    /// Rows per `write_many` (one queue entry).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    batch: u32,
    /// Create the table if it does not exist: columns from the CSV header or the keys of the
    /// JSON objects, typed INTEGER, REAL or TEXT from the values of the first --detect-rows rows
    /// (a column is INTEGER or REAL only if none of those values would lose anything, so
    /// `00501` keeps its column TEXT). Empty CSV fields are NULL in INTEGER and REAL columns.
    #[arg(long)]
    create: bool,
    /// With --create, how many rows (lines, elements) are read ahead to detect column types
    /// (and JSON keys); they are held in memory. A later value that does not fit its column is
    /// stored as it is when SQLite keeps it (`N/A` in an INTEGER column), and rejected with its
    /// line otherwise (`00501` there would become 501).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    detect_rows: u32,
    /// With --create, make every column TEXT and store CSV fields as text, exactly as written.
    #[arg(long)]
    no_detect_types: bool,
    /// Write rejected and malformed records here as JSONL: {"line":N,"error":"...","record":...}.
    #[arg(long)]
    rejects: Option<PathBuf>,
    /// Stop at the first malformed line or array element, exit code 2, instead of skipping it.
    /// The rows before it stay committed (batches commit as they fill); nothing after it is
    /// written. Rows SQLite rejects (constraints) are still reported and skipped.
    #[arg(long)]
    strict: bool,
    /// Print this process's peak resident memory (`VmHWM`) to stderr at the end (for tests).
    #[arg(long, hide = true)]
    report_peak_rss: bool,
}

/// Quotes an SQL identifier: `"name"` with inner double quotes doubled.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// One `write_many` in flight: its ticket and, per row, the line and the record as read.
struct Chunk {
    ticket: Ticket<ManyOutcome>,
    lines: Vec<u64>,
    records: Vec<Record>,
}

/// Counts for the progress bar and the summary.
#[derive(Default)]
struct Counts {
    committed: u64,
    rejected: u64,
    malformed: u64,
}

/// Where rejected and malformed records go: the `--rejects` file, or stderr.
struct Rejects {
    file: Option<BufWriter<File>>,
    header: Vec<String>,
}

impl Rejects {
    fn record(&mut self, pb: &ProgressBar, line: u64, error: &str, record: &serde_json::Value) -> io::Result<()> {
        if let Some(f) = &mut self.file {
            let entry = serde_json::json!({ "line": line, "error": error, "record": record });
            serde_json::to_writer(&mut *f, &entry)?;
            f.write_all(b"\n")
        } else {
            pb.suspend(|| eprintln!("line {line}: rejected: {error}"));
            Ok(())
        }
    }
}

/// Runs the command; the exit code says whether every record landed.
pub fn run(args: &IngestArgs) -> Result<ExitCode, Fatal> {
    let stdin = args.input.as_os_str() == "-";
    let format = args.format.unwrap_or(if !stdin && args.input.extension().is_some_and(|e| e == "csv") {
        Format::Csv
    } else {
        Format::Jsonl
    });
    let (input, size): (Box<dyn Read>, Option<u64>) = if stdin {
        (Box::new(io::stdin().lock()), None)
    } else {
        let file = File::open(&args.input).map_err(|e| format!("cannot open {}: {e}", args.input.display()))?;
        let size = file.metadata().ok().filter(std::fs::Metadata::is_file).map(|m| m.len());
        (Box::new(file), size)
    };
    let pb = progress_bar(size);
    let mut records =
        Records::new(pb.wrap_read(input), format).map_err(|e| format!("cannot read {}: {e}", args.input.display()))?;

    let batch = args.batch as usize;
    // Room for every batch in flight, so `write_many` never waits on the queue's capacity.
    let options = Options::default().queue_capacity(batch * (IN_FLIGHT + 1));
    let store = Store::open(&args.db, options).map_err(|e| format!("cannot open {}: {e}", args.db.display()))?;

    let mut rejects = Rejects {
        file: match &args.rejects {
            Some(p) => {
                Some(BufWriter::new(File::create(p).map_err(|e| format!("cannot create {}: {e}", p.display()))?))
            }
            None => None,
        },
        header: records.header().to_vec(),
    };
    let mut counts = Counts::default();
    let started = Instant::now();

    let (target, mut ahead) = prepare(args, format, &mut records, &store)?;

    let mut pump = Pump {
        store: &store,
        target: &target,
        pb: &pb,
        rejects: &mut rejects,
        counts: &mut counts,
        in_flight: VecDeque::new(),
        pending: Pending::with_capacity(batch),
        batch,
        started,
    };
    let mut fatal: Option<Fatal> = None;
    loop {
        let item = match ahead.pop_front() {
            Some(item) => Some(item),
            None => records.next_item()?,
        };
        let Some(item) = item else { break };
        if let Err(e) = pump.take(item, args.strict) {
            fatal = Some(e);
            break;
        }
    }
    if let Err(e) = pump.finish() {
        fatal.get_or_insert(e);
    }
    show(&pb, &store, &counts, started);
    let metrics = store.metrics();
    store.close().map_err(|e| format!("closing {}: {e}", args.db.display()))?;
    if let Some(f) = &mut rejects.file {
        f.flush()?;
    }
    pb.finish_and_clear();

    let elapsed = started.elapsed();
    println!(
        "ingested {} rows into {} in {:.2} s ({:.0} rows/s, {} read); {} malformed, {} rejected, {} retries",
        counts.committed,
        args.table,
        elapsed.as_secs_f64(),
        counts.committed as f64 / elapsed.as_secs_f64().max(1e-9),
        indicatif::HumanBytes(pb.position()),
        counts.malformed,
        counts.rejected,
        metrics.retries,
    );
    if args.report_peak_rss {
        report_peak_rss();
    }
    if let Some(e) = fatal {
        return Err(e);
    }
    Ok(if counts.malformed + counts.rejected == 0 { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// Creates the table if asked (and missing) and reads its columns. Returns the insert target
/// and the items read ahead to name and type the columns of a created table.
fn prepare<R: Read>(
    args: &IngestArgs,
    format: Format,
    records: &mut Records<R>,
    store: &Store,
) -> Result<(Target, VecDeque<Item>), Fatal> {
    let table = &args.table;
    let mut ahead = VecDeque::new();
    let create = args.create && table_columns(store, table)?.is_empty();
    if create {
        let window = if format == Format::Csv && args.no_detect_types { 0 } else { args.detect_rows as usize };
        let mut ended = false;
        while ahead.len() < window {
            let Some(item) = records.next_item()? else {
                ended = true;
                break;
            };
            ahead.push_back(item);
        }
        let (names, guesses) = detect(records.header(), &ahead);
        if names.is_empty() {
            return Err(nothing_to_create(args, records, &ahead, ended).into());
        }
        let column_types: Vec<ColumnType> = if args.no_detect_types {
            vec![ColumnType::Text; names.len()]
        } else {
            guesses.iter().map(|g| g.column_type()).collect()
        };
        create_table(store, table, &names, &column_types)?;
    }
    let columns = table_columns(store, table)?;
    if columns.is_empty() {
        return Err(format!("no table named {table}: create it first, or pass --create").into());
    }
    Ok((Target::new(table, &columns, records.header(), create, args.detect_rows)?, ahead))
}

/// The columns of a created table, from the CSV header or the keys of the JSON objects read
/// ahead (in the order they first appear), with what their values say about their types.
fn detect(header: &[String], ahead: &VecDeque<Item>) -> (Vec<String>, Vec<Guess>) {
    let mut names: Vec<String> = header.to_vec();
    let mut guesses = vec![Guess::default(); names.len()];
    // SQLite's names are case-insensitive: the first spelling of a key names its column.
    let mut index: HashMap<String, usize> = HashMap::new();
    for item in ahead {
        let Item::Record { record, .. } = item else { continue };
        match record {
            Record::Csv(fields) => fields.iter().zip(&mut guesses).for_each(|(f, g)| g.csv(f)),
            Record::Json { object, .. } => {
                for (key, value) in object {
                    let i = *index.entry(key.to_ascii_lowercase()).or_insert_with(|| {
                        names.push(key.clone());
                        guesses.push(Guess::default());
                        names.len() - 1
                    });
                    guesses[i].json(value);
                }
            }
        }
    }
    (names, guesses)
}

/// Why `--create` found no columns: an empty input, or no JSON object in the rows read ahead.
fn nothing_to_create<R: Read>(args: &IngestArgs, records: &Records<R>, ahead: &VecDeque<Item>, ended: bool) -> String {
    let (input, table) = (args.input.display(), &args.table);
    match ahead.front() {
        Some(Item::Malformed { line, error, .. }) => {
            let among = if ended { String::new() } else { format!(" in its first {} rows", ahead.len()) };
            format!(
                "cannot create table {table}: {input} has no JSON object{among} to take the columns from; \
                 line {line} is malformed: {error}"
            )
        }
        _ if records.is_array() => {
            format!("cannot create table {table}: {input} is an empty JSON array, there are no columns to take")
        }
        _ => format!(
            "cannot create table {table}: {input} is empty (a CSV file starts with its header row, JSON with an object)"
        ),
    }
}

/// The batch being filled: per row, its parameters, its line and the record as read.
struct Pending {
    rows: Vec<Vec<Value>>,
    lines: Vec<u64>,
    records: Vec<Record>,
}

impl Pending {
    fn with_capacity(n: usize) -> Self {
        Pending { rows: Vec::with_capacity(n), lines: Vec::with_capacity(n), records: Vec::with_capacity(n) }
    }
}

/// Moves items into batches, batches into the store, and settles the oldest batch when too
/// many are in flight.
struct Pump<'a> {
    store: &'a Store,
    target: &'a Target,
    pb: &'a ProgressBar,
    rejects: &'a mut Rejects,
    counts: &'a mut Counts,
    in_flight: VecDeque<Chunk>,
    pending: Pending,
    batch: usize,
    started: Instant,
}

impl Pump<'_> {
    /// Takes one item; an error stops the run (`--strict` on a malformed line, a failed batch,
    /// the rejects file not writable).
    fn take(&mut self, item: Item, strict: bool) -> Result<(), Fatal> {
        match item {
            Item::Malformed { line, error, raw } => {
                self.counts.malformed += 1;
                let action = if strict { "stopping" } else { "skipped" };
                self.pb.suspend(|| eprintln!("line {line}: malformed, {action}: {error}"));
                if self.rejects.file.is_some() {
                    self.rejects.record(self.pb, line, &format!("malformed: {error}"), &raw)?;
                }
                if strict {
                    return Err(format!(
                        "line {line} is malformed and --strict was given: the rows before it are committed, \
                         none after it are written"
                    )
                    .into());
                }
            }
            Item::Record { line, mut record } => match self.target.row(&mut record) {
                Ok(row) => {
                    self.pending.rows.push(row);
                    self.pending.lines.push(line);
                    self.pending.records.push(record);
                }
                Err(error) => {
                    self.counts.rejected += 1;
                    let json = record.to_json(&self.rejects.header);
                    self.rejects.record(self.pb, line, &error, &json)?;
                }
            },
        }
        if self.pending.rows.len() == self.batch {
            self.send();
            if self.in_flight.len() > IN_FLIGHT {
                let chunk = self.in_flight.pop_front().expect("in_flight holds more than IN_FLIGHT chunks");
                settle(chunk, self.counts, self.rejects, self.pb)?;
                show(self.pb, self.store, self.counts, self.started);
            }
        }
        Ok(())
    }

    fn send(&mut self) {
        let Pending { rows, lines, records } = std::mem::replace(&mut self.pending, Pending::with_capacity(self.batch));
        let ticket = self.store.write_many(&self.target.insert, rows);
        self.in_flight.push_back(Chunk { ticket, lines, records });
    }

    /// Sends the last partial batch (what was read before a stop too) and settles every batch in flight,
    /// even after a fatal error, so each row is counted and reported.
    fn finish(mut self) -> Result<(), Fatal> {
        if !self.pending.rows.is_empty() {
            self.send();
        }
        let mut first_error = None;
        for chunk in std::mem::take(&mut self.in_flight) {
            if let Err(e) = settle(chunk, self.counts, self.rejects, self.pb) {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// Waits for one batch and accounts for it; each rejected row goes to the rejects with its line.
/// A batch that failed whole (the database kept failing past the retry budget) is fatal, after
/// its rows were reported.
fn settle(chunk: Chunk, counts: &mut Counts, rejects: &mut Rejects, pb: &ProgressBar) -> Result<(), Fatal> {
    match chunk.ticket.wait() {
        Ok(outcome) => {
            counts.committed += outcome.committed;
            counts.rejected += outcome.rejected.len() as u64;
            for (i, error) in outcome.rejected {
                let record = chunk.records[i].to_json(&rejects.header);
                rejects.record(pb, chunk.lines[i], &error.to_string(), &record)?;
            }
            Ok(())
        }
        Err(error) => {
            counts.rejected += chunk.lines.len() as u64;
            for (line, record) in chunk.lines.iter().zip(&chunk.records) {
                let json = record.to_json(&rejects.header);
                rejects.record(pb, *line, &error.to_string(), &json)?;
            }
            Err(batch_failed(&error))
        }
    }
}

fn batch_failed(error: &WriteError) -> Fatal {
    format!("a batch failed as a whole, stopping: {error}").into()
}

/// Creates `table` with typed columns if it does not exist.
fn create_table(store: &Store, table: &str, names: &[String], column_types: &[ColumnType]) -> Result<(), Fatal> {
    let columns: Vec<String> =
        names.iter().zip(column_types).map(|(c, t)| format!("{} {}", quote_ident(c), t.sql())).collect();
    let sql = format!("CREATE TABLE IF NOT EXISTS {}({})", quote_ident(table), columns.join(","));
    store.write(&sql, Vec::new()).wait().map_err(|e| format!("cannot create table {table}: {e}"))?;
    Ok(())
}

/// The table's columns, in order, with their declared types; empty if there is no such table.
fn table_columns(store: &Store, table: &str) -> Result<Vec<(String, String)>, Fatal> {
    let columns: Vec<(String, String)> = store
        .query_as("SELECT name, type FROM pragma_table_info(?1)", &[Value::Text(table.to_owned())])
        .map_err(|e| format!("cannot read the columns of {table}: {e}"))?;
    Ok(columns)
}

/// How a column's values are bound.
#[derive(Clone, Copy, Debug)]
enum Bind {
    /// A column this run created with that type: CSV fields become numbers where they fit, and
    /// a value that does not fit is checked against SQLite's affinity before it is stored.
    Created(ColumnType),
    /// A column of an existing table: values go as read and SQLite applies the declared type's
    /// affinity; an empty CSV field is NULL where that affinity is numeric.
    Existing { numeric: bool },
}

/// The insert statement and how a record's fields map to its parameters.
struct Target {
    insert: String,
    /// Lowercased column name to parameter index (SQLite's names are case-insensitive).
    by_name: HashMap<String, usize>,
    /// Per parameter, its column's name and how its values bind.
    columns: Vec<(String, Bind)>,
    /// Set when this run created typed columns.
    probe: Option<Probe>,
    detect_rows: u32,
}

impl Target {
    /// JSON records insert into every column (missing keys are NULL); CSV records into the
    /// header's columns, which must all exist (the others keep their defaults).
    fn new(
        table: &str,
        columns: &[(String, String)],
        header: &[String],
        created: bool,
        detect_rows: u32,
    ) -> Result<Self, Fatal> {
        let bind = |declared: &str| {
            let created_type = match declared.to_ascii_uppercase().as_str() {
                "INTEGER" => Some(ColumnType::Integer),
                "REAL" => Some(ColumnType::Real),
                "TEXT" => Some(ColumnType::Text),
                _ => None,
            };
            match created_type {
                Some(t) if created => Bind::Created(t),
                _ => Bind::Existing { numeric: types::numeric_affinity(declared) },
            }
        };
        let columns: Vec<(String, Bind)> = if header.is_empty() {
            columns.iter().map(|(name, declared)| (name.clone(), bind(declared))).collect()
        } else {
            let known: HashMap<String, &str> =
                columns.iter().map(|(name, declared)| (name.to_ascii_lowercase(), declared.as_str())).collect();
            let mut chosen = Vec::with_capacity(header.len());
            for h in header {
                let Some(declared) = known.get(&h.to_ascii_lowercase()) else {
                    return Err(format!("the CSV header names column {h:?}, which table {table} does not have").into());
                };
                chosen.push((h.clone(), bind(declared)));
            }
            chosen
        };
        let typed = columns.iter().any(|(_, b)| matches!(b, Bind::Created(ColumnType::Integer | ColumnType::Real)));
        let probe =
            if typed { Some(Probe::new().map_err(|e| format!("cannot check column types: {e}"))?) } else { None };
        let quoted: Vec<String> = columns.iter().map(|(c, _)| quote_ident(c)).collect();
        let params: Vec<String> = (1..=columns.len()).map(|i| format!("?{i}")).collect();
        let insert = format!("INSERT INTO {}({}) VALUES ({})", quote_ident(table), quoted.join(","), params.join(","));
        let by_name = columns.iter().enumerate().map(|(i, (c, _))| (c.to_ascii_lowercase(), i)).collect();
        Ok(Target { insert, by_name, columns, probe, detect_rows })
    }

    /// The record's parameters; an error names a key that is not a column, or a value that
    /// its created column would not keep as written. A JSON record's object is taken (its
    /// text stays, for the rejects).
    fn row(&self, record: &mut Record) -> Result<Vec<Value>, String> {
        match record {
            Record::Csv(fields) => {
                fields.iter().zip(&self.columns).map(|(f, (name, bind))| self.csv_value(name, *bind, f)).collect()
            }
            Record::Json { object, .. } => {
                let mut row = vec![Value::Null; self.columns.len()];
                for (key, json) in std::mem::take(object) {
                    let Some(&i) = self.by_name.get(&key.to_ascii_lowercase()) else {
                        return Err(format!("no column named {key:?} in the table"));
                    };
                    let (name, bind) = &self.columns[i];
                    row[i] = self.json_value(name, *bind, to_value(json))?;
                }
                Ok(row)
            }
        }
    }

    fn csv_value(&self, name: &str, bind: Bind, f: &str) -> Result<Value, String> {
        match bind {
            Bind::Created(ColumnType::Text) | Bind::Existing { numeric: false } => Ok(Value::Text(f.to_owned())),
            Bind::Existing { numeric: true } => Ok(if f.is_empty() { Value::Null } else { Value::Text(f.to_owned()) }),
            Bind::Created(t) => match (t, types::field(f)) {
                (_, Field::Empty) => Ok(Value::Null),
                (ColumnType::Integer, Field::Integer(i)) => Ok(Value::Integer(i)),
                (ColumnType::Real, Field::Integer(i)) if types::exact_in_f64(i) => Ok(Value::Real(i as f64)),
                // A real past the window stays a real in an INTEGER column too (SQLite keeps 2.5).
                (_, Field::Real(r)) => Ok(Value::Real(r)),
                _ => self.misfit(name, t, f.to_owned()),
            },
        }
    }

    fn json_value(&self, name: &str, bind: Bind, value: Value) -> Result<Value, String> {
        match (bind, value) {
            (Bind::Created(ColumnType::Real), Value::Integer(i)) if types::exact_in_f64(i) => Ok(Value::Real(i as f64)),
            (Bind::Created(ColumnType::Real), Value::Integer(i)) => self.misfit(name, ColumnType::Real, i.to_string()),
            (Bind::Created(t @ (ColumnType::Integer | ColumnType::Real)), Value::Text(s)) => self.misfit(name, t, s),
            (_, value) => Ok(value),
        }
    }

    /// A value past the detection window that is not of its column's type: stored as TEXT if
    /// SQLite keeps it so, refused otherwise (rather than stored changed).
    fn misfit(&self, name: &str, column_type: ColumnType, text: String) -> Result<Value, String> {
        if self.probe.as_ref().is_some_and(|p| p.keeps(column_type, &text)) {
            return Ok(Value::Text(text));
        }
        Err(format!(
            "column {name:?} was created {} from the first {} rows, and {text:?} would not be stored as written \
             in it: pass a larger --detect-rows, or --no-detect-types",
            column_type.sql(),
            self.detect_rows
        ))
    }
}

fn progress_bar(size: Option<u64>) -> ProgressBar {
    if !io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let (pb, template) = match size {
        Some(len) => (
            ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr()),
            "{spinner} [{bar:20}] {bytes}/{total_bytes} eta {eta} {msg}",
        ),
        None => (
            ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()),
            "{spinner} {elapsed} {bytes} read, {msg}",
        ),
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        pb.set_style(style.progress_chars("=> "));
    }
    pb.enable_steady_tick(Duration::from_millis(200));
    pb
}

fn show(pb: &ProgressBar, store: &Store, counts: &Counts, started: Instant) {
    if pb.is_hidden() {
        return;
    }
    let m = store.metrics();
    let rate = counts.committed as f64 / started.elapsed().as_secs_f64().max(1e-9);
    pb.set_message(format!(
        "{} rows {rate:.0}/s, {} retries, {} rejected",
        counts.committed,
        m.retries,
        counts.rejected + counts.malformed
    ));
}

/// Prints the kernel's high-water mark of this process's resident memory (`VmHWM`).
fn report_peak_rss() {
    match std::fs::read_to_string(Path::new("/proc/self/status")) {
        Ok(status) => {
            if let Some(line) = status.lines().find(|l| l.starts_with("VmHWM:")) {
                eprintln!("peak rss: {}", line.trim_start_matches("VmHWM:").trim());
            }
        }
        Err(e) => eprintln!("peak rss: unknown ({e})"),
    }
}
