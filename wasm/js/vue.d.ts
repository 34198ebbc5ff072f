// sqlweir/vue: a Vue composable over `db.watch`. See README.md, "React and Vue".

import type { MaybeRefOrGetter, Ref } from "vue";
import type { Database, Row, SqlValue, SqlweirError } from "./index.js";

/** What `useQuery` returns: `rows` is `undefined` until the first result. */
export interface QueryRefs<T = Row> {
  rows: Readonly<Ref<T[] | undefined>>;
  /** The query's error (the first run's, or a later run's); cleared by the next result. */
  error: Readonly<Ref<SqlweirError | undefined>>;
  /** True until the first result or error of the current (db, sql, params). */
  loading: Readonly<Ref<boolean>>;
}

/**
 * A live query in a component or effect scope. Each argument may be a value, a ref or a getter;
 * a change (the params by their contents) watches the query anew. Stops when the scope is
 * disposed. A null `db` (still opening) stays loading. `T` describes the rows; it is not checked.
 */
export function useQuery<T = Row>(
  db: MaybeRefOrGetter<Database | null | undefined>,
  sql: MaybeRefOrGetter<string>,
  params?: MaybeRefOrGetter<SqlValue[]>,
): QueryRefs<T>;
