//! Peer benchmark: sqlx (SQLite) with a pool of 8 connections, one INSERT per row from 8 tasks.
//! Also measures its own one-transaction limit in the same run, for the ratio.
//! Prints one JSON line: `{"key":..., "rows":..., "rows_per_s":..., "limit_rows_per_s":...}`.

use std::str::FromStr;
use std::time::{Duration, Instant};

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

const SCHEMA: &str = "CREATE TABLE events(id INTEGER PRIMARY KEY, ts INTEGER, source TEXT, payload TEXT)";
const INSERT: &str = "INSERT INTO events(ts, source, payload) VALUES (?1, ?2, ?3)";

fn payload() -> String {
    format!("{{\"kind\":\"price\",\"item\":\"sku-000042\",\"value\":1234.5,\"pad\":\"{}\"}}", "p".repeat(48))
}

async fn pool(path: &std::path::Path, size: u32) -> Result<sqlx::SqlitePool, sqlx::Error> {
    let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(Duration::from_secs(30));
    SqlitePoolOptions::new().max_connections(size).connect_with(options).await
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let rows: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let dir = std::env::temp_dir().join(format!("sqlweir-peer-sqlx-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;

    let limit_pool = pool(&dir.join("limit.db"), 1).await?;
    sqlx::query(SCHEMA).execute(&limit_pool).await?;
    let p = payload();
    let started = Instant::now();
    let mut tx = limit_pool.begin().await?;
    for i in 0..rows {
        sqlx::query(INSERT).bind(i as i64).bind("collector").bind(&p).execute(&mut *tx).await?;
    }
    tx.commit().await?;
    let limit = rows as f64 / started.elapsed().as_secs_f64();

    let pool = pool(&dir.join("peer.db"), 8).await?;
    sqlx::query(SCHEMA).execute(&pool).await?;
    let started = Instant::now();
    let tasks: Vec<_> = (0..8)
        .map(|t| {
            let pool = pool.clone();
            let n = rows / 8 + usize::from(t < rows % 8);
            tokio::spawn(async move {
                let p = payload();
                for i in 0..n {
                    sqlx::query(INSERT).bind(i as i64).bind("collector").bind(&p).execute(&pool).await?;
                }
                Ok::<_, sqlx::Error>(())
            })
        })
        .collect();
    for t in tasks {
        t.await??;
    }
    let rate = rows as f64 / started.elapsed().as_secs_f64();
    let (landed,): (i64,) = sqlx::query_as("SELECT count(*) FROM events").fetch_one(&pool).await?;
    pool.close().await;
    std::fs::remove_dir_all(&dir)?;
    if landed as usize != rows {
        return Err(format!("{landed} rows landed, {rows} expected").into());
    }
    println!(
        "{{\"key\":\"sqlx\",\"name\":\"(5) sqlx, pool of 8, 1 INSERT per row\",\"rows\":{rows},\"rows_per_s\":{rate:.0},\"limit_rows_per_s\":{limit:.0}}}"
    );
    Ok(())
}
