// The size check's app for sql.js (size.mjs): its documented browser use, the wasm fetched by URL.
// sql.js keeps the database in memory (no OPFS); an app saves it by exporting the bytes.
import initSqlJs from "sql.js";
import wasmUrl from "sql.js/dist/sql-wasm-browser.wasm?url";

globalThis.store = async () => {
  const SQL = await initSqlJs({ locateFile: () => wasmUrl });
  const db = new SQL.Database();
  db.run("CREATE TABLE events(id INTEGER PRIMARY KEY, payload TEXT)");
  db.run("INSERT INTO events(payload) VALUES (?)", ["hello"]);
  return db.exec("SELECT count(*) FROM events")[0].values[0][0];
};
