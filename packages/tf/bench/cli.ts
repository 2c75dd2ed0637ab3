/** Entry point of `nx run tf:bench`: see bench.ts for the options. */
import { runBench } from './bench.js';

runBench(process.argv.slice(2)).then(
  // Exit explicitly: a WebGPU device keeps the event loop alive after the work is done.
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`bench: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  },
);
