//! `sqlweir`: load big JSONL, JSON array or CSV files into SQLite through one batching writer, look inside a
//! database, and run the many-collectors demo.
//!
//! ```text
//! sqlweir ingest events.jsonl --db app.db --table events --create --rejects rejects.jsonl
//! sqlweir stats app.db --integrity
//! sqlweir demo --collectors 8 --seconds 3
//! ```
//!
//! Exit codes: 0 when everything landed, 1 when some records were malformed or rejected (each
//! reported with its line number), 2 on a usage error or a fatal one.

mod demo;
mod ingest;
mod record;
mod stats;
mod types;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Many writers, one SQLite database: bulk ingest, stats and the collectors demo.
#[derive(Parser, Debug)]
#[command(name = "sqlweir", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Stream a JSONL, JSON array or CSV file (or stdin) into a table, in batches, with progress.
    Ingest(ingest::IngestArgs),
    /// Show a database's tables with row counts, journal mode, page size and SQLite version.
    Stats {
        /// The database file (opened read-only).
        db: PathBuf,
        /// Also run `PRAGMA integrity_check`.
        #[arg(long)]
        integrity: bool,
    },
    /// Concurrent collectors writing through sqlweir vs one commit per event, side by side.
    Demo(demo::DemoArgs),
}

/// Exit code for usage and fatal errors (clap uses it for usage errors too).
const EXIT_FATAL: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Ingest(args) => ingest::run(&args),
        Command::Stats { db, integrity } => stats::run(&db, integrity).map(|()| ExitCode::SUCCESS),
        Command::Demo(args) => demo::run(&args).map(|()| ExitCode::SUCCESS),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            let mut source = std::error::Error::source(&*e);
            while let Some(s) = source {
                eprintln!("  caused by: {s}");
                source = s.source();
            }
            ExitCode::from(EXIT_FATAL)
        }
    }
}

/// A fatal error of any command: printed with its causes, exit code 2.
type Fatal = Box<dyn std::error::Error + Send + Sync>;
