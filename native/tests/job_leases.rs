//! Job locks across OS processes: two processes on one SQLite file, and (feature `postgres`,
//! under `scripts/test-postgres`) two on one PostgreSQL database. The second process is this
//! test binary itself, started with `SQLWEIR_LEASE_CHILD` set, running `lease_child_process`.
//!
//! Proved here: one holder at a time over 1,000 contended grants, with fencing tokens that grow
//! by one per grant; a killed holder's lock taken once its lease expired, and its run recorded
//! as ended by expiry; a stalled holder (SIGSTOP past its lease) refused by `check`, by its
//! release and by a write fenced on its token; the history as both processes wrote it. Nothing
//! is timed: a test waits for an expiry by waiting for the lock.

use std::io::{BufRead, BufReader, Write as _};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::Duration;

use sqlweir::{CloseError, ErrorKind, JobOutcome, LockError, Options, Store, Wait, params};

/// How long the leases of these tests last: short, so that expiries come soon.
const LEASE: Duration = Duration::from_secs(1);
const GRANTS_PER_PROCESS: usize = 500;
/// The contended grants run in this many rounds, both processes starting each one together.
const ROUNDS: usize = 10;

/// Which database both processes use, as passed to the child.
#[derive(Clone, Debug)]
enum Db {
    Sqlite(std::path::PathBuf),
    #[cfg(feature = "postgres")]
    Postgres(String),
}

impl Db {
    fn encode(&self) -> String {
        match self {
            Db::Sqlite(p) => format!("sqlite:{}", p.display()),
            #[cfg(feature = "postgres")]
            Db::Postgres(url) => format!("postgres:{url}"),
        }
    }

    fn decode(text: &str) -> Db {
        if let Some(path) = text.strip_prefix("sqlite:") {
            return Db::Sqlite(path.into());
        }
        #[cfg(feature = "postgres")]
        if let Some(url) = text.strip_prefix("postgres:") {
            return Db::Postgres(url.into());
        }
        panic!("unknown database {text}")
    }

    fn open(&self) -> Store {
        let options = Options::default().job_lease(LEASE);
        match self {
            Db::Sqlite(path) => Store::open(
                path,
                options.migrations(&[
                    "CREATE TABLE grants(id INTEGER PRIMARY KEY, token INTEGER, pid INTEGER, event TEXT)",
                    "CREATE TABLE fenced(who TEXT)",
                ]),
            ),
            #[cfg(feature = "postgres")]
            Db::Postgres(url) => Store::open_postgres(
                url,
                options.migrations(&[
                    "CREATE TABLE grants(id bigserial PRIMARY KEY, token bigint, pid bigint, event text)",
                    "CREATE TABLE fenced(who text)",
                ]),
            ),
        }
        .expect("open")
    }

    /// Waits until no lease transaction of a stopped child is left open (a SIGSTOP can land in
    /// the middle of one, and it would block everyone); `resume` and `stop` nudge the child.
    fn settle_stopped(&self, child: u32) {
        loop {
            let open = match self {
                Db::Sqlite(path) => {
                    let conn = rusqlite::Connection::open(path).expect("probe");
                    conn.busy_timeout(Duration::from_millis(200)).expect("busy timeout");
                    conn.execute_batch("BEGIN IMMEDIATE; ROLLBACK").is_err()
                }
                #[cfg(feature = "postgres")]
                Db::Postgres(url) => {
                    let mut c = postgres::Client::connect(url, postgres::NoTls).expect("probe");
                    let n: i64 = c
                        .query_one(
                            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'sqlweir-jobs' \
                             AND datname = current_database() AND state LIKE 'idle in transaction%'",
                            &[],
                        )
                        .expect("activity")
                        .get(0);
                    n > 0
                }
            };
            if !open {
                return;
            }
            signal("CONT", child);
            std::thread::sleep(Duration::from_millis(20));
            signal("STOP", child);
        }
    }
}

fn signal(which: &str, pid: u32) {
    let status = Command::new("kill").args([&format!("-{which}"), &pid.to_string()]).status().expect("kill");
    assert!(status.success(), "kill -{which} {pid}");
}

/// The second process: does what `SQLWEIR_LEASE_CHILD` says and prints `LEASE ...` lines.
#[test]
fn lease_child_process() {
    let Ok(role) = std::env::var("SQLWEIR_LEASE_CHILD") else { return };
    let db = Db::decode(&std::env::var("SQLWEIR_LEASE_DB").expect("database"));
    let store = db.open();
    let pid = i64::from(std::process::id());
    match role.as_str() {
        "contend" => {
            // Both children contend from the same moment, ROUNDS times: each round starts when the
            // parent says GO to both. Without this, a child that started late (or whose busy
            // handler slept through) on a loaded machine could find the other one finished, and
            // nothing contended.
            println!("LEASE READY");
            for round in 0..ROUNDS {
                let mut go = String::new();
                std::io::stdin().read_line(&mut go).expect("stdin");
                for _ in 0..GRANTS_PER_PROCESS / ROUNDS {
                    let guard = store
                        .lock_as("contended", &format!("child {pid}"), Wait::Timeout(Duration::from_secs(120)))
                        .expect("lock");
                    let token = guard.token() as i64;
                    for event in ["enter", "exit"] {
                        store
                            .write(
                                "INSERT INTO grants(token, pid, event) VALUES (?1, ?2, ?3)",
                                params![token, pid, event],
                            )
                            .wait()
                            .expect("log");
                    }
                    guard.succeed();
                }
                println!("LEASE ROUND {round}");
            }
            println!("LEASE DONE {GRANTS_PER_PROCESS}");
        }
        "hold" => {
            let guard = store.lock_as("nightly", "holder child", Wait::FailFast).expect("lock");
            println!("LEASE GRANTED {}", guard.token());
            let mut line = String::new();
            std::io::stdin().read_line(&mut line).expect("stdin");
            let lost = |r: &Result<(), LockError>| match r {
                Ok(()) => "ok",
                Err(LockError::Lost { .. }) => "lost",
                Err(_) => "error",
            };
            println!("LEASE CHECK {}", lost(&guard.check()));
            println!("LEASE FENCED {}", fenced_write(&store, "child", guard.token()));
            println!("LEASE FINISH {}", lost(&guard.finish(JobOutcome::Succeeded)));
        }
        other => panic!("unknown role {other}"),
    }
    // The other process may still be using the file (its last writes, its lease renewals), and
    // then the final checkpoint cannot finish: `close` says so with `Checkpoint` (busy), as
    // documented, and the data is safe in the WAL. A CI run met exactly that; anything else
    // is a failure.
    match store.close() {
        Ok(()) => {}
        Err(CloseError::Checkpoint(e)) if e.kind == ErrorKind::Busy => {}
        Err(e) => panic!("close: {e:?}"),
    }
}

/// A write that applies only while `token` is the latest grant of the job `nightly`.
fn fenced_write(store: &Store, who: &str, token: u64) -> u64 {
    store
        .write(
            "INSERT INTO fenced(who) SELECT ?1 WHERE EXISTS \
             (SELECT 1 FROM _sqlweir_jobs WHERE name = ?2 AND token = ?3 AND holder IS NOT NULL)",
            params![who, "nightly", token as i64],
        )
        .wait()
        .expect("fenced write")
        .changes
}

/// A child process in `role`, with its stdout's `LEASE` lines readable.
struct ChildProcess {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: std::io::Lines<BufReader<std::process::ChildStdout>>,
}

impl ChildProcess {
    fn start(role: &str, db: &Db) -> ChildProcess {
        let mut child = Command::new(std::env::current_exe().expect("test binary"))
            .args(["lease_child_process", "--exact", "--nocapture", "--test-threads=1"])
            .env("SQLWEIR_LEASE_CHILD", role)
            .env("SQLWEIR_LEASE_DB", db.encode())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn the second process");
        let stdin = child.stdin.take();
        let lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        ChildProcess { child, stdin, lines }
    }

    /// The next `LEASE` line, without its prefix.
    fn next(&mut self) -> String {
        for line in self.lines.by_ref() {
            let line = line.expect("child output");
            // libtest prints `test lease_child_process ... ` without a newline before the first.
            if let Some(at) = line.find("LEASE ") {
                return line[at + "LEASE ".len()..].to_owned();
            }
        }
        panic!("the child ended without saying more: {:?}", self.child.wait())
    }

    fn say(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin");
        writeln!(stdin, "{line}").expect("tell the child");
        stdin.flush().expect("flush");
    }

    fn succeeded(mut self) {
        drop(self.stdin.take());
        let status = self.child.wait().expect("wait");
        assert!(status.success(), "the child failed: {status}");
    }
}

fn one_holder_at_a_time_over_a_thousand_contended_grants(db: &Db) {
    let store = db.open(); // runs the migrations before the children start
    let mut children: Vec<ChildProcess> = (0..2).map(|_| ChildProcess::start("contend", db)).collect();
    for child in &mut children {
        assert_eq!(child.next(), "READY");
    }
    for round in 0..ROUNDS {
        for child in &mut children {
            child.say("GO");
        }
        for child in &mut children {
            assert_eq!(child.next(), format!("ROUND {round}"));
        }
    }
    let mut pids = Vec::new();
    for mut child in children {
        assert_eq!(child.next(), format!("DONE {GRANTS_PER_PROCESS}"));
        pids.push(i64::from(child.child.id()));
        child.succeeded();
    }
    let log: Vec<(i64, i64, String)> =
        store.query_as("SELECT token, pid, event FROM grants ORDER BY id", &[]).expect("log");
    assert_eq!(log.len(), 4 * GRANTS_PER_PROCESS);
    let mut switches = 0;
    for (i, pair) in log.chunks(2).enumerate() {
        let [(t_in, p_in, enter), (t_out, p_out, exit)] = pair else { unreachable!("chunks of two") };
        assert_eq!((enter.as_str(), exit.as_str()), ("enter", "exit"), "grant {i}: another holder came in between");
        assert_eq!((t_in, p_in), (t_out, p_out), "grant {i}: one holder enters and leaves");
        assert_eq!(*t_in, i as i64 + 1, "fencing tokens grow by one per grant");
        if i > 0 && log[2 * i - 1].1 != *p_in {
            switches += 1;
        }
    }
    for pid in &pids {
        let n = log.iter().filter(|(_, p, e)| p == pid && e == "enter").count();
        assert_eq!(n, GRANTS_PER_PROCESS, "process {pid}");
    }
    // Each round's grants, both processes', come before the next round's: both contended from
    // the round's start, so each round holds at least one hand-over. How many more depends on
    // SQLite's busy handler (it sleeps, so a waiter can miss its turn: 1 hand-over in 1,000
    // happened on a loaded machine before the rounds), so only the sure ones are counted.
    let per_round = 4 * GRANTS_PER_PROCESS / ROUNDS;
    for (round, rows) in log.chunks(per_round).enumerate() {
        for pid in &pids {
            let n = rows.iter().filter(|(_, p, e)| p == pid && e == "enter").count();
            assert_eq!(n, GRANTS_PER_PROCESS / ROUNDS, "round {round}: process {pid}'s grants");
        }
    }
    assert!(switches >= ROUNDS, "the two processes contended and took turns: {switches} hand-overs");
    let history = store.job_history("contended");
    assert_eq!(history.len(), 20, "the last 20 runs");
    assert!(history.iter().all(|r| r.outcome == JobOutcome::Succeeded && r.holder.starts_with("child ")));
    let last: Vec<i64> =
        store.query_as("SELECT pid FROM grants WHERE event = 'exit' ORDER BY id DESC LIMIT 1", &[]).expect("last");
    assert_eq!(history[19].holder, format!("child {}", last[0]), "the newest run is the last grant's");
    assert_eq!(store.job_status("contended"), None);
    store.close().expect("close");
}

fn a_killed_holders_lock_is_taken_after_its_lease_expires(db: &Db) {
    let store = db.open();
    let mut child = ChildProcess::start("hold", db);
    let granted: u64 = child.next().strip_prefix("GRANTED ").expect("granted").parse().expect("token");
    assert_eq!(store.job_status("nightly").expect("held by the child").holder, "holder child");
    match store.lock_as("nightly", "parent", Wait::FailFast) {
        Err(LockError::InProgress { holder, .. }) => assert_eq!(holder, "holder child"),
        other => panic!("expected InProgress, got {:?}", other.map(|g| g.token())),
    }
    child.child.kill().expect("SIGKILL the holder");
    child.child.wait().expect("reap");
    let guard = store.lock_as("nightly", "parent", Wait::Timeout(Duration::from_secs(60))).expect("taken after expiry");
    assert_eq!(guard.token(), granted + 1);
    assert_eq!(store.job_status("nightly").expect("held").holder, "parent");
    guard.check().expect("the new holder holds it");
    guard.succeed();
    let history = store.job_history("nightly");
    assert_eq!(history.len(), 2, "{history:?}");
    assert_eq!(history[0].holder, "holder child");
    assert_eq!(history[0].outcome, JobOutcome::Failed(sqlweir_core_expired()));
    assert!(history[0].duration_ms >= LEASE.as_millis() as u64, "its run lasted until its lease ran out: {history:?}");
    assert_eq!((history[1].holder.as_str(), &history[1].outcome), ("parent", &JobOutcome::Succeeded));
    store.close().expect("close");
}

fn sqlweir_core_expired() -> String {
    "lease expired: the holder stopped renewing it (it died or lost the database)".into()
}

fn a_stalled_holders_stale_token_is_refused(db: &Db) {
    let store = db.open();
    let mut child = ChildProcess::start("hold", db);
    let stale: u64 = child.next().strip_prefix("GRANTED ").expect("granted").parse().expect("token");
    let pid = child.child.id();
    signal("STOP", pid);
    db.settle_stopped(pid);
    // The child cannot renew: its lease expires, and this process takes the job.
    let guard = store.lock_as("nightly", "parent", Wait::Timeout(Duration::from_secs(60))).expect("taken");
    assert_eq!(guard.token(), stale + 1);
    assert_eq!(fenced_write(&store, "parent", guard.token()), 1, "the latest token passes the fence");
    signal("CONT", pid);
    child.say("check");
    assert_eq!(child.next(), "CHECK lost", "the stalled holder learns it lost the job");
    assert_eq!(child.next(), "FENCED 0", "its fenced write is refused");
    assert_eq!(child.next(), "FINISH lost", "its release is refused");
    child.succeeded();
    guard.check().expect("the new holder still holds it");
    guard.succeed();
    let who: Vec<String> = store.query_as("SELECT who FROM fenced", &[]).expect("fenced");
    assert_eq!(who, vec!["parent".to_owned()]);
    let history = store.job_history("nightly");
    let runs: Vec<(&str, &JobOutcome)> = history.iter().map(|r| (r.holder.as_str(), &r.outcome)).collect();
    assert_eq!(
        runs,
        vec![("holder child", &JobOutcome::Failed(sqlweir_core_expired())), ("parent", &JobOutcome::Succeeded)],
        "the stale holder's run is recorded once, as expired, and its late release changed nothing"
    );
    store.close().expect("close");
}

mod sqlite {
    use super::*;

    fn db() -> (tempfile::TempDir, Db) {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("jobs.db");
        (dir, Db::Sqlite(path))
    }

    #[test]
    fn one_holder_at_a_time_over_a_thousand_contended_grants() {
        let (_dir, db) = db();
        super::one_holder_at_a_time_over_a_thousand_contended_grants(&db);
    }

    #[test]
    fn a_killed_holders_lock_is_taken_after_its_lease_expires() {
        let (_dir, db) = db();
        super::a_killed_holders_lock_is_taken_after_its_lease_expires(&db);
    }

    #[test]
    fn a_stalled_holders_stale_token_is_refused() {
        let (_dir, db) = db();
        super::a_stalled_holders_stale_token_is_refused(&db);
    }

    #[test]
    fn an_in_memory_store_keeps_its_locks_and_tokens_to_itself() {
        let store = Store::open_in_memory(Options::default()).expect("open");
        let first = store.lock("job", Wait::FailFast).expect("lock");
        assert_eq!(first.token(), 1);
        assert!(matches!(store.lock("job", Wait::FailFast), Err(LockError::InProgress { .. })));
        first.succeed();
        let second = store.lock("job", Wait::FailFast).expect("free again");
        assert_eq!(second.token(), 2, "tokens grow with every grant");
        second.check().expect("held");
    }
}

#[cfg(feature = "postgres")]
mod postgres_db {
    use super::*;

    fn db() -> Db {
        use std::sync::atomic::{AtomicU64, Ordering};
        static DATABASES: AtomicU64 = AtomicU64::new(0);
        let server = std::env::var("SQLWEIR_PG").expect("SQLWEIR_PG must name a server: run scripts/test-postgres");
        let name = format!("leases_{}_{}", std::process::id(), DATABASES.fetch_add(1, Ordering::Relaxed));
        let mut admin = postgres::Client::connect(&server, postgres::NoTls).expect("admin connection");
        admin.batch_execute(&format!("CREATE DATABASE {name}")).expect("create database");
        Db::Postgres(format!("{} dbname={name}", server.replace("dbname=postgres", "")))
    }

    #[test]
    fn one_holder_at_a_time_over_a_thousand_contended_grants() {
        super::one_holder_at_a_time_over_a_thousand_contended_grants(&db());
    }

    #[test]
    fn a_killed_holders_lock_is_taken_after_its_lease_expires() {
        super::a_killed_holders_lock_is_taken_after_its_lease_expires(&db());
    }

    #[test]
    fn a_stalled_holders_stale_token_is_refused() {
        super::a_stalled_holders_stale_token_is_refused(&db());
    }
}
