// The useQuery cases sqlweir/react's and sqlweir/vue's tests share: both test apps (a Vite build
// each) expose the same `window.app` (start, write, writeOther, setMin, unmount, settle, state), so
// one set of tests drives either. Asserts counts and contents, never timing.

import { test } from "node:test";
import assert from "node:assert/strict";
import { isDeepStrictEqual as valueEqual } from "node:util";

/**
 * Registers the four useQuery tests against the app `browser` serves on `port`. `paramsTitle`
 * names the "new params" test in the framework's words; `newParams(s, before)` adds that test's
 * framework-specific assertions.
 */
export function useQueryCases(browser, { port, paramsTitle, newParams }) {
  const page = () => browser.page;
  const state = () => page().evaluate(() => window.app.state());
  const domHas = (name) => page().waitForFunction((n) => [...document.querySelectorAll("#list li")].some((li) => li.textContent === n), name, { timeout: 60_000 });

  /**
   * After writes that should render nothing: waits until `commits` commits reached the page, then
   * until the watch runs they caused (if any) were answered: their queries went first on the same
   * path. A render with new rows needs such a run (the hook sets state only in watch's callback,
   * after a query), so counting the watch's queries shows whether one could come.
   */
  async function settleAfterCommit(commits) {
    await page().waitForFunction((n) => window.app.state().commits >= n, commits, { timeout: 60_000 });
    await page().evaluate(() => window.app.settle());
  }

  test("first render is loading, the next shows the rows; a bad query's error is typed", async () => {
    await page().goto(`http://127.0.0.1:${port}/`);
    await page().waitForFunction(() => window.appReady === true || null, null, { timeout: 30_000 });
    await page().evaluate(() => window.app.start(["apple", "banana", "cherry"]));
    await domHas("cherry");
    await page().waitForFunction(() => document.getElementById("broken")?.textContent !== "loading", null, { timeout: 60_000 });
    await page().waitForFunction(() => document.querySelectorAll("#filtered li").length === 2, null, { timeout: 60_000 });
    const s = await state();
    assert.deepEqual(s.list, ["apple", "banana", "cherry"]);
    assert.deepEqual(s.results.list, [null, ["apple", "banana", "cherry"]]);
    assert.equal(s.renders.list, 2, "one loading render, one with the rows");
    assert.deepEqual(s.filtered, ["banana", "cherry"]);
    assert.deepEqual(s.results.filtered, [null, ["banana", "cherry"]]);
    assert.equal(s.broken, "SqlweirError:Sql:true");
    assert.equal(s.renders.broken, 2, "one loading render, one with the error");
    // The app's onCommit and the two live watches (the failed one stopped itself).
    assert.equal(s.commitListeners, 3);
    assert.deepEqual(browser.pageErrors, []);
  });

  test("each committed write to items shows in the DOM in exactly one new render; another table's renders nothing", async () => {
    let before = await state();
    for (const name of ["damson", "elder"]) {
      await page().evaluate((n) => window.app.write(n), name);
      await domHas(name);
    }
    await page().waitForFunction(() => document.querySelectorAll("#filtered li").length === 4, null, { timeout: 60_000 });
    let s = await state();
    assert.deepEqual(s.list, ["apple", "banana", "cherry", "damson", "elder"]);
    assert.deepEqual(s.results.list.slice(before.results.list.length), [
      ["apple", "banana", "cherry", "damson"],
      ["apple", "banana", "cherry", "damson", "elder"],
    ]);
    assert.equal(s.renders.list, before.renders.list + 2, "one render per write");
    assert.deepEqual(s.filtered, ["banana", "cherry", "damson", "elder"]);
    assert.equal(s.renders.broken, before.renders.broken, "the failed query re-renders never");

    // Unrelated writes: committed and seen, but no watch reruns and nothing renders.
    before = s;
    for (const x of [1, 2, 3]) {
      await page().evaluate((v) => window.app.writeOther(v), x);
      await settleAfterCommit(before.commits + x);
    }
    s = await state();
    assert.equal(s.commits, before.commits + 3);
    assert.equal(s.watchQueries, before.watchQueries, "no watch ran for the other table");
    assert.deepEqual(s.renders, before.renders, "no component rendered");
    assert.deepEqual(s.results, before.results);
    assert.deepEqual(browser.pageErrors, []);
  });

  test(paramsTitle, async () => {
    const before = await state();
    await page().evaluate(() => window.app.setMin(3));
    await page().waitForFunction(
      () => document.getElementById("filtered").dataset.min === "3" && document.getElementById("filtered").dataset.loading === "false",
      null,
      { timeout: 60_000 },
    );
    const s = await state();
    assert.deepEqual(s.filtered, ["damson", "elder"]);
    assert.deepEqual(s.results.filtered.at(-1), ["damson", "elder"]);
    newParams?.(s, before);
    // No render with the new params shows the old params' rows as if they were its own: each
    // is loading without rows, or has the new rows.
    const views = s.views.slice(before.views.length).filter(([min]) => min === 3);
    assert.ok(views.length >= 1);
    for (const view of views) assert.ok(view[1] === true ? view[2] === null : valueEqual(view[2], ["damson", "elder"]), `render ${JSON.stringify(view)}`);
    assert.deepEqual(views.at(-1), [3, false, ["damson", "elder"]]);
    assert.equal(s.commitListeners, before.commitListeners, "one watch stopped, one started");
    assert.deepEqual(s.list, before.list, "the other component kept its rows");
    assert.deepEqual(s.results.list, before.results.list);
  });

  test("unmounting stops the watches: later writes run no query and render nothing", async () => {
    await page().evaluate(() => window.app.unmount());
    const before = await state();
    assert.equal(before.root, "", "unmounted");
    assert.equal(before.commitListeners, 1, "only the app's own onCommit is left");
    for (const name of ["fig", "grape"]) await page().evaluate((n) => window.app.write(n), name);
    await settleAfterCommit(before.commits + 2);
    const s = await state();
    assert.equal(s.commits, before.commits + 2, "the writes committed and were announced");
    assert.equal(s.watchQueries, before.watchQueries, "no watch ran");
    assert.deepEqual(s.renders, before.renders);
    assert.deepEqual(s.results, before.results);
    assert.deepEqual(browser.pageErrors, []);
  });
}
