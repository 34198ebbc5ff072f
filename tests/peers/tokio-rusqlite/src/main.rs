//! Peer benchmark: tokio-rusqlite, 8 tasks sharing one connection, one INSERT per call.
//! Also measures its own one-transaction limit in the same run, for the ratio.
//! Prints one JSON line: `{"key":..., "rows":..., "rows_per_s":..., "limit_rows_per_s":...}`.

use std::time::Instant;

use tokio_rusqlite::Connection;

const SCHEMA: &str = "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; \
    CREATE TABLE events(id INTEGER PRIMARY KEY, ts INTEGER, source TEXT, payload TEXT);";
const INSERT: &str = "INSERT INTO events(ts, source, payload) VALUES (?1, ?2, ?3)";

fn payload() -> String {
    format!("{{\"kind\":\"price\",\"item\":\"sku-000042\",\"value\":1234.5,\"pad\":\"{}\"}}", "p".repeat(48))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let rows: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(200_000);
    let dir = std::env::temp_dir().join(format!("sqlweir-peer-tokio-rusqlite-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;

    let limit_conn = Connection::open(dir.join("limit.db")).await?;
    let started = Instant::now();
    limit_conn
        .call(move |c| {
            c.execute_batch(SCHEMA)?;
            let p = payload();
            let tx = c.transaction()?;
            {
                let mut stmt = tx.prepare(INSERT)?;
                for i in 0..rows {
                    stmt.execute(tokio_rusqlite::rusqlite::params![i as i64, "collector", p])?;
                }
            }
            tx.commit()?;
            Ok::<_, tokio_rusqlite::rusqlite::Error>(())
        })
        .await?;
    let limit = rows as f64 / started.elapsed().as_secs_f64();

    let conn = Connection::open(dir.join("peer.db")).await?;
    conn.call(|c| c.execute_batch(SCHEMA)).await?;
    let started = Instant::now();
    let tasks: Vec<_> = (0..8)
        .map(|t| {
            let conn = conn.clone();
            let n = rows / 8 + usize::from(t < rows % 8);
            tokio::spawn(async move {
                for i in 0..n {
                    let p = payload();
                    conn.call(move |c| c.execute(INSERT, tokio_rusqlite::rusqlite::params![i as i64, "collector", p]))
                        .await?;
                }
                Ok::<_, tokio_rusqlite::Error<tokio_rusqlite::rusqlite::Error>>(())
            })
        })
        .collect();
    for t in tasks {
        t.await??;
    }
    let rate = rows as f64 / started.elapsed().as_secs_f64();
    let landed: i64 = conn.call(|c| c.query_row("SELECT count(*) FROM events", [], |r| r.get(0))).await?;
    std::fs::remove_dir_all(&dir)?;
    if landed as usize != rows {
        return Err(format!("{landed} rows landed, {rows} expected").into());
    }
    println!(
        "{{\"key\":\"tokio_rusqlite\",\"name\":\"(5) tokio-rusqlite, 8 tasks, 1 connection, 1 row per call\",\"rows\":{rows},\"rows_per_s\":{rate:.0},\"limit_rows_per_s\":{limit:.0}}}"
    );
    Ok(())
}
