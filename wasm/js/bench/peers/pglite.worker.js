// PGlite's own worker pattern (@electric-sql/pglite/worker): the database lives here, on OPFS
// through the opfs-ahp file system (sync access handles, so only in a worker), and the page talks
// to it through PGliteWorker, which has PGlite's API.

import { PGlite } from "@electric-sql/pglite";
import { worker } from "@electric-sql/pglite/worker";

worker({
  async init(options) {
    return new PGlite({ dataDir: options.dataDir, relaxedDurability: options.relaxedDurability });
  },
});
