// sqlweir/vue: `useQuery`, a Vue composable over `db.watch`. A separate entry point: the main
// entry (index.js) imports nothing from here, so apps without Vue bundle none of it.

import { getCurrentScope, onScopeDispose, shallowRef, toRaw, toValue, watch } from "vue";
import { valueKey } from "./pack.js";

/**
 * A live query in a component or effect scope: refs `{ rows, error, loading }`, set on each new
 * result of `db.watch(sql, params)` (`rows` stays `undefined` until the first one). Each argument
 * may be a plain value, a ref or a getter; when one changes (the params by their contents) the
 * query is watched anew. The watch stops when the scope is disposed (the component unmounts).
 * A null `db` (still opening) keeps it loading.
 */
export function useQuery(db, sql, params = []) {
  const rows = shallowRef(undefined);
  const error = shallowRef(undefined);
  const loading = shallowRef(true);
  let stop = null;
  const unsubscribe = () => {
    stop?.();
    stop = null;
  };
  const subscribe = (database, text, values) => {
    unsubscribe();
    rows.value = undefined;
    error.value = undefined;
    loading.value = true;
    if (!database) return;
    const current = database.watch(
      text,
      values,
      (result) => {
        rows.value = result;
        error.value = undefined;
        loading.value = false;
      },
      {
        onError: (e) => {
          error.value = e;
          loading.value = false;
        },
      },
    );
    current.ready.catch((e) => {
      if (stop !== current) return;
      rows.value = undefined;
      error.value = e;
      loading.value = false;
    });
    stop = current;
  };
  // toRaw: a Database in a deep ref would be a proxy, and its private fields refuse proxies.
  const sources = [() => toRaw(toValue(db)), () => toValue(sql), () => valueKey(toValue(params) ?? [])];
  const stopWatcher = watch(sources, ([database, text]) => subscribe(database, text, toValue(params) ?? []), { immediate: true });
  if (getCurrentScope()) {
    onScopeDispose(() => {
      stopWatcher();
      unsubscribe();
    });
  }
  return { rows, error, loading };
}
