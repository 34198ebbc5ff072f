// sqlweir/react: a React hook over `db.watch`. See README.md, "React and Vue".

import type { Database, Row, SqlValue, SqlweirError } from "./index.js";

/** What `useQuery` returns: `rows` is `undefined` until the first result. */
export interface QueryState<T = Row> {
  rows: T[] | undefined;
  /** The query's error (the first run's, or a later run's); cleared by the next result. */
  error: SqlweirError | undefined;
  /** True until the first result or error of the current (db, sql, params). */
  loading: boolean;
}

/**
 * A live query in a component: re-renders once per new result of `db.watch(sql, params)`.
 * Subscribes again when `db`, `sql` or the params' contents change; stops on unmount. A null or
 * undefined `db` (still opening) stays loading. `T` describes the rows; it is not checked.
 */
export function useQuery<T = Row>(db: Database | null | undefined, sql: string, params?: SqlValue[]): QueryState<T>;
