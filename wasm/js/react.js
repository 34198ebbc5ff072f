// sqlweir/react: `useQuery`, a React hook over `db.watch`. A separate entry point: the main
// entry (index.js) imports nothing from here, so apps without React bundle none of it.

import { useEffect, useState } from "react";
import { valueKey } from "./pack.js";

const LOADING = { rows: undefined, error: undefined, loading: true };

/**
 * A live query in a component: `{ rows, error, loading }`, re-rendered once per new result of
 * `db.watch(sql, params)` (rows stay `undefined` until the first one). Subscribes again when
 * `db`, `sql` or the params' contents change, and stops the watch on unmount. `db` may be null
 * or undefined while the database opens: the hook then stays loading.
 */
export function useQuery(db, sql, params = []) {
  const key = valueKey(params);
  // The state remembers which (db, sql, params) it answers: on the render where one of them
  // changed, before the effect subscribes anew, the old rows are not this query's and the hook
  // says loading instead.
  const [state, setState] = useState(null);
  useEffect(() => {
    if (!db) return undefined;
    let active = true;
    const answer = (s) => active && setState({ db, sql, key, ...s });
    const stop = db.watch(sql, params, (rows) => answer({ rows, error: undefined, loading: false }), {
      // A later run's error keeps this query's last rows.
      onError: (error) => active && setState((s) => ({ db, sql, key, rows: answers(s, db, sql, key) ? s.rows : undefined, error, loading: false })),
    });
    stop.ready.catch((error) => answer({ rows: undefined, error, loading: false }));
    return () => {
      active = false;
      stop();
    };
    // `params` is compared by its contents, through `key`.
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [db, sql, key]);
  if (!answers(state, db, sql, key)) return LOADING;
  return { rows: state.rows, error: state.error, loading: state.loading };
}

/** Whether `state` is the answer to (db, sql, key), not to an earlier query of the component. */
function answers(state, db, sql, key) {
  return state !== null && state.db === db && state.sql === sql && state.key === key;
}
