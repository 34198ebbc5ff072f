// What every store in the peers benchmark is given: the same table, the same ~100-byte rows, the
// same statements (PostgreSQL's spelling for PGlite). Shared by the page and the workers.

export const PAYLOAD = `{"kind":"price","item":"sku-000042","value":1234.5,"pad":"${"p".repeat(48)}"}`; // ~100 bytes

/** Row `i` of producer `p`: the parameters of INSERT, in its order. */
export const row = (i, p) => [i, `producer-${p}`, PAYLOAD];

export const SQLITE = {
  schema: "CREATE TABLE events(id INTEGER PRIMARY KEY, ts INTEGER, source TEXT, payload TEXT)",
  insert: "INSERT INTO events(ts, source, payload) VALUES (?, ?, ?)",
  count: "SELECT count(*) AS n FROM events",
  last100: "SELECT id, ts, source, payload FROM events ORDER BY id DESC LIMIT 100",
};

export const POSTGRES = {
  schema: "CREATE TABLE events(id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, ts bigint, source text, payload text)",
  insert: "INSERT INTO events(ts, source, payload) VALUES ($1, $2, $3)",
  // Many rows in one statement, the Postgres idiom for a bulk insert with parameters.
  insertArrays: "INSERT INTO events(ts, source, payload) SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[])",
  count: "SELECT count(*)::int AS n FROM events",
  last100: "SELECT id, ts, source, payload FROM events ORDER BY id DESC LIMIT 100",
};
