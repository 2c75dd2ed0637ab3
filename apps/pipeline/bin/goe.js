#!/usr/bin/env node
// The `goe` command. Loads the TypeScript sources directly (tsx) with workspace packages resolved
// through the `@goe/source` condition, then hands over to the CLI in src/cli.ts.
import { register } from 'node:module';
import { register as registerTsx } from 'tsx/esm/api';

registerTsx();
register('./source-hooks.js', import.meta.url);
const { main } = await import('../src/cli.ts');
const code = await main(process.argv.slice(2));
// Exit explicitly: a WebGPU device keeps the event loop alive after the work is done.
process.exit(code);
