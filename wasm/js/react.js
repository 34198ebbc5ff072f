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
  const [state, setState] = useState(LOADING);
  const key = valueKey(params);
  useEffect(() => {
    setState(LOADING);
    if (!db) return undefined;
    let active = true;
    const stop = db.watch(sql, params, (rows) => active && setState({ rows, error: undefined, loading: false }), {
      onError: (error) => active && setState((s) => ({ ...s, error, loading: false })),
    });
    stop.ready.catch((error) => active && setState({ rows: undefined, error, loading: false }));
    return () => {
      active = false;
      stop();
    };
    // `params` is compared by its contents, through `key`.
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [db, sql, key]);
  return state;
}
