// What an acked write survives, in real headless Chromium on a real on-disk profile (OPFS of an
// incognito context lives in memory): the built package, its worker on the OPFS pool, writes
// streaming from a page while it is reloaded, its worker terminated, the page closed or crashed,
// the browser closed or killed. Node records which writes were issued and which were acked
// (reported by the page through an exposed function, outside the page), and after each
// interruption a new page reopens the database and checks that every acked write is there
// exactly once, with its contents, that nothing is there twice, and that
// `PRAGMA integrity_check` is ok. Each scenario runs in every journal and synchronous mode the
// package offers. See README.md, "Durability". Asserts counts and contents, never timing.

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { setTimeout as sleep } from "node:timers/promises";
import { chromium } from "playwright-core";
import { CHROMIUM, CHROMIUM_ARGS } from "./chromium.js";
import { serve } from "./server.js";

const ROOT = dirname(dirname(fileURLToPath(import.meta.url)));
// Fixed, and not another test file's: OPFS belongs to the origin, and the origin includes the
// port, so every restart must come back to this one.
const PORT = Number(process.env.SQLWEIR_DURABILITY_PORT ?? 47_819);
const PAGE = `http://127.0.0.1:${PORT}/test/page.html`;

// No key on purpose: a write applied twice shows as a duplicate row.
const MIGRATIONS = ["CREATE TABLE log(id INTEGER NOT NULL, payload TEXT NOT NULL)"];
/** Interrupt once this many writes were acked: with 2 KiB rows, past WAL's first checkpoint. */
const ACKED_BEFORE_INTERRUPT = 6_000;
/** Bytes of each row's payload: its id, 8 digits, this many times. */
const PAYLOAD_REPEAT = 256;
/** SQLite's autocheckpoint, in pages (`PRAGMA wal_autocheckpoint`'s default). */
const AUTOCHECKPOINT_PAGES = 1_000;

/** Every mode `open` offers: the default first. */
const MODES = [
  { journal: "wal", synchronous: "normal" },
  { journal: "wal", synchronous: "full" },
  { journal: "delete", synchronous: "normal" },
  { journal: "delete", synchronous: "full" },
];
const label = (m) => `${m.journal}/${m.synchronous}`;

let server;
let profile;
let context;
const pageErrors = [];

/** What Node saw of the current stream: ids issued, ids acked, writes that failed. */
let seen = { issued: new Set(), acked: new Set(), errors: [] };
/** Runs, at most once, when a write is issued after `ACKED_BEFORE_INTERRUPT` acks. */
let onIssuedAfterThreshold = null;

function report(kind, ids) {
  if (kind === "error") {
    seen.errors.push(ids);
    return;
  }
  const set = kind === "issued" ? seen.issued : seen.acked;
  for (const id of ids) set.add(id);
  // Ids reported as issued were handed to `write` after this report was sent, so they cannot
  // have been acked yet: interrupting now interrupts writes in flight.
  if (kind === "issued" && onIssuedAfterThreshold && seen.acked.size >= ACKED_BEFORE_INTERRUPT) {
    const go = onIssuedAfterThreshold;
    onIssuedAfterThreshold = null;
    go({ issued: seen.issued.size, acked: seen.acked.size });
  }
}

/** Chromium on the test's one profile directory, with the page-side hooks installed. */
async function launch() {
  context = await chromium.launchPersistentContext(profile, { executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS });
  await context.exposeFunction("sqlweirReport", report);
  // Keeps the workers the page starts, so that a test can terminate sqlweir's.
  await context.addInitScript(() => {
    const Native = globalThis.Worker;
    globalThis.sqlweirWorkers = [];
    globalThis.Worker = class extends Native {
      constructor(...args) {
        super(...args);
        globalThis.sqlweirWorkers.push(this);
      }
    };
  });
  for (const page of context.pages()) await page.close();
}

/**
 * A page of the test's origin. Pages left by an earlier test are closed first: one of them
 * could still lead (hold the database in its worker) and answer for the new page.
 */
async function newPage() {
  for (const old of context.pages()) await old.close();
  const page = await context.newPage();
  page.on("pageerror", (e) => pageErrors.push(e.message));
  await page.goto(PAGE);
  return page;
}

before(async () => {
  server = await serve(ROOT, PORT);
  profile = await mkdtemp(join(tmpdir(), "sqlweir-durability-"));
  await launch();
});

after(async () => {
  await context?.close().catch(() => {});
  await new Promise((resolve) => (server ? server.close(resolve) : resolve()));
  if (profile) await rm(profile, { recursive: true, force: true });
});

/**
 * Opens `name` in `page` and starts streaming writes from id `from` on: 8 producers keep 64
 * writes in flight each, forever (until `window.stopStream()`); ids are reported as issued before
 * `write` is called and as acked when each write's promise resolves. Resolves once open did.
 */
function startStream(page, name, mode, from) {
  return page.evaluate(
    async ({ name, mode, from, migrations, repeat }) => {
      const { open } = await import("sqlweir");
      const db = await open(name, { migrations, ...mode });
      window.db = db;
      const payload = (id) => String(id).padStart(8, "0").repeat(repeat); // 2 KiB
      const sql = "INSERT INTO log(id, payload) VALUES (?, ?)";
      let next = from;
      let stop = false;
      let acked = [];
      const flush = () => {
        const ids = acked;
        acked = [];
        window.sqlweirReport("acked", ids);
      };
      const producer = async () => {
        while (!stop) {
          const ids = [];
          for (let k = 0; k < 64; k++) ids.push(next++);
          window.sqlweirReport("issued", ids);
          await Promise.all(
            ids.map((id) =>
              db.write(sql, [id, payload(id)]).then(
                () => {
                  if (acked.length === 0) queueMicrotask(flush);
                  acked.push(id);
                },
                (e) => window.sqlweirReport("error", `${id}: ${e.code}: ${e.message}`),
              ),
            ),
          );
        }
      };
      const producers = Array.from({ length: 8 }, producer);
      window.stopStream = async () => {
        stop = true;
        await Promise.all(producers);
      };
      const [{ page_size: pageSize }] = await db.query("PRAGMA page_size");
      return { journalMode: (await db.metrics()).journalMode, pageSize };
    },
    { name, mode, from, migrations: MIGRATIONS, repeat: PAYLOAD_REPEAT },
  );
}

/**
 * Streams into `name` until `ACKED_BEFORE_INTERRUPT` writes were acked, then, while writes are in
 * flight, runs `interrupt()`. Returns what Node saw.
 */
async function streamThenInterrupt(page, name, mode, from, interrupt) {
  seen = { issued: new Set(), acked: new Set(), errors: [] };
  let atInterrupt;
  const interrupted = new Promise((resolve, reject) => {
    onIssuedAfterThreshold = (counts) => {
      atInterrupt = counts;
      interrupt().then(resolve, reject);
    };
  });
  const started = await startStream(page, name, mode, from);
  assert.equal(started.journalMode, mode.journal);
  // The premise of "past the first checkpoint": the acked rows alone fill more WAL pages than
  // the autocheckpoint lets pile up.
  assert.ok(ACKED_BEFORE_INTERRUPT * 8 * PAYLOAD_REPEAT > AUTOCHECKPOINT_PAGES * started.pageSize, `page size ${started.pageSize}`);
  await interrupted;
  assert.deepEqual(seen.errors, [], "no write failed before the interruption");
  assert.ok(atInterrupt.issued > atInterrupt.acked, `writes were in flight: ${atInterrupt.issued} issued, ${atInterrupt.acked} acked`);
  return { acked: new Set(seen.acked), issued: seen.issued.size };
}

/**
 * Opens `name` in a fresh page and checks it against the acked ids: each present exactly once
 * with its contents, no id twice, integrity ok, the journal mode asked for, and a new write
 * taken. Returns the ids found.
 */
async function verify(name, mode, acked) {
  const page = await newPage();
  const found = await page
    .evaluate(
    async ({ name, mode, migrations, repeat }) => {
      const { open } = await import("sqlweir");
      const db = await open(name, { migrations, ...mode });
      const [{ integrity_check: integrity }] = await db.query("PRAGMA integrity_check");
      const ids = (await db.query("SELECT id FROM log ORDER BY id")).map((r) => r.id);
      // Each row's payload is its id, 8 digits, `repeat` times.
      const [{ wrong }] = await db.query(
        "SELECT count(*) AS wrong FROM log WHERE payload <> replace(printf('%.*c', ?, 'x'), 'x', printf('%08d', id))",
        [repeat],
      );
      const [{ sample }] = await db.query("SELECT payload AS sample FROM log ORDER BY id LIMIT 1");
      const journalMode = (await db.metrics()).journalMode;
      const receipt = await db.write("INSERT INTO log(id, payload) VALUES (?, ?)", [-1, "after reopening"]);
      await db.write("DELETE FROM log WHERE id = -1");
      await db.close();
      return { integrity, ids, wrong, sample, journalMode, changes: receipt.changes };
    },
    { name, mode, migrations: MIGRATIONS, repeat: PAYLOAD_REPEAT },
    )
    .finally(() => page.close());
  assert.equal(found.integrity, "ok");
  assert.equal(found.journalMode, mode.journal);
  assert.equal(found.changes, 1, "the reopened store takes writes");
  assert.equal(found.wrong, 0, "every row has its own payload");
  if (found.ids.length) assert.equal(found.sample, String(found.ids[0]).padStart(8, "0").repeat(PAYLOAD_REPEAT));
  const ids = new Set(found.ids);
  assert.equal(ids.size, found.ids.length, "no write is there twice");
  const missing = [...acked].filter((id) => !ids.has(id));
  assert.deepEqual(missing.slice(0, 10), [], `${missing.length} of ${acked.size} acked writes are missing`);
  assert.ok(acked.size > 0, "the check had acked writes to look for");
  return ids;
}

/** Pids of the processes running on the test's profile; `main` is the browser process. */
async function browserProcesses() {
  const found = [];
  for (const entry of await readdir("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    const args = await readFile(`/proc/${entry}/cmdline`, "utf8").then((s) => s.split("\0"), () => []);
    if (args.includes(`--user-data-dir=${profile}`)) found.push({ pid: Number(entry), main: !args.some((a) => a.startsWith("--type=")) });
  }
  return found;
}

/** Waits (bounded) until no process of the profile is left, so a relaunch finds it free. */
async function profileReleased() {
  for (let i = 0; i < 200; i++) {
    if ((await browserProcesses()).length === 0) return;
    await sleep(50);
  }
  assert.fail("the browser's processes did not exit");
}

const db = (scenario, mode) => `${scenario}-${mode.journal}-${mode.synchronous}.db`;

for (const mode of MODES) {
  test(`${label(mode)}: a clean close and reopen keeps every write once`, async () => {
    const name = db("close", mode);
    const page = await newPage();
    seen = { issued: new Set(), acked: new Set(), errors: [] };
    assert.equal((await startStream(page, name, mode, 0)).journalMode, mode.journal);
    // Let a few thousand writes land, then stop issuing and close: close settles the rest.
    while (seen.acked.size < 3_000) await page.evaluate(() => window.db.flush());
    await page.evaluate(async () => {
      await window.stopStream();
      await window.db.close();
    });
    assert.deepEqual(seen.errors, []);
    assert.equal(seen.acked.size, seen.issued.size, "close waited for every accepted write");
    await page.close();
    const ids = await verify(name, mode, seen.acked);
    assert.equal(ids.size, seen.acked.size, "exactly the acked writes");
  });

  test(`${label(mode)}: a reload mid-stream loses no acked write`, async () => {
    const name = db("reload", mode);
    const page = await newPage();
    const { acked } = await streamThenInterrupt(page, name, mode, 0, () => page.reload());
    await page.close();
    await verify(name, mode, acked);
  });

  test(`${label(mode)}: the worker terminated mid-stream loses no acked write`, async () => {
    const name = db("terminate", mode);
    const page = await newPage();
    const { acked } = await streamThenInterrupt(page, name, mode, 0, () =>
      page.evaluate(() => {
        const workers = globalThis.sqlweirWorkers;
        for (const w of workers) w.terminate();
        return workers.length;
      }).then((n) => assert.equal(n, 1, "the page ran one worker")),
    );
    await page.close();
    await verify(name, mode, acked);
  });

  test(`${label(mode)}: the page closed mid-stream loses no acked write`, async () => {
    const name = db("close-page", mode);
    const page = await newPage();
    const { acked } = await streamThenInterrupt(page, name, mode, 0, () => page.close());
    await verify(name, mode, acked);
  });

  test(`${label(mode)}: the page crashed mid-stream (CDP Page.crash) loses no acked write`, async () => {
    const name = db("crash", mode);
    const page = await newPage();
    const cdp = await context.newCDPSession(page);
    const { acked } = await streamThenInterrupt(page, name, mode, 0, async () => {
      const crashed = page.waitForEvent("crash");
      cdp.send("Page.crash").catch(() => {}); // never answers: the renderer is gone
      await crashed;
    });
    await page.close();
    await verify(name, mode, acked);
  });

  test(`${label(mode)}: the browser closed mid-stream and restarted on its profile loses no acked write`, async () => {
    const name = db("restart", mode);
    const page = await newPage();
    const { acked } = await streamThenInterrupt(page, name, mode, 0, () => context.close());
    await profileReleased();
    await launch();
    await verify(name, mode, acked);
  });

  test(`${label(mode)}: the browser killed (SIGKILL) mid-stream and restarted loses no acked write`, async () => {
    const name = db("kill", mode);
    const page = await newPage();
    const { acked } = await streamThenInterrupt(page, name, mode, 0, async () => {
      const main = (await browserProcesses()).filter((p) => p.main);
      assert.equal(main.length, 1, "one browser process runs on the profile");
      process.kill(main[0].pid, "SIGKILL");
      await profileReleased();
    });
    await context.close().catch(() => {}); // already gone
    await launch();
    await verify(name, mode, acked);
  });
}

test("a DELETE database crashed mid-stream opens as WAL, and a WAL one as DELETE, with every acked write", async () => {
  const name = "convert.db";
  const rollback = { journal: "delete", synchronous: "normal" };
  const wal = { journal: "wal", synchronous: "normal" };
  const crash = (page) => async () => {
    const cdp = await context.newCDPSession(page);
    const crashed = page.waitForEvent("crash");
    cdp.send("Page.crash").catch(() => {});
    await crashed;
  };

  let page = await newPage();
  const first = await streamThenInterrupt(page, name, rollback, 0, crash(page));
  await page.close();
  const afterFirst = await verify(name, wal, first.acked);

  page = await newPage();
  const second = await streamThenInterrupt(page, name, wal, 1_000_000, crash(page));
  await page.close();
  const all = new Set([...first.acked, ...second.acked]);
  const afterSecond = await verify(name, rollback, all);
  for (const id of afterFirst) assert.ok(afterSecond.has(id), `row ${id} kept through both conversions`);

  // And back to WAL once more, cleanly.
  const final = await verify(name, wal, all);
  assert.equal(final.size, afterSecond.size);
  assert.deepEqual(pageErrors, []);
});
