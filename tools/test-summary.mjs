#!/usr/bin/env node
// Sums the "Tests  N passed | M failed | K skipped" lines that vitest prints per package in an
// `npm test` log and prints one closing line, `tests: N passed, M failed, K skipped`.
import { readFileSync } from 'node:fs';

const log = readFileSync(process.argv[2] ?? 0, 'utf8').replace(/\x1b\[[0-9;]*m/g, '');
let passed = 0;
let failed = 0;
let skipped = 0;
let suites = 0;
for (const line of log.split('\n')) {
  const m = /^\s*Tests\s+(.*)\(\d+\)\s*$/.exec(line);
  if (!m) continue;
  suites++;
  for (const part of m[1].split('|')) {
    const p = /(\d+)\s+(passed|failed|skipped|todo|expected fail)/.exec(part);
    if (!p) continue;
    const n = Number(p[1]);
    if (p[2] === 'passed' || p[2] === 'expected fail') passed += n;
    else if (p[2] === 'failed') failed += n;
    else skipped += n;
  }
}
console.log(`${suites} test suites run`);
console.log(`tests: ${passed} passed, ${failed} failed, ${skipped} skipped`);
