/**
 * GPU check: runs the op conformance suite on a backend (default WebGPU) against the cpu backend,
 * then the tf:bench benchmark with PyTorch as the peer, and prints both as markdown. pack.sh bundles
 * this file (esbuild) with everything it needs, so it runs with a bare Node binary and no node_modules.
 *
 * usage: runner [--backend webgpu] [--conformance-only | --bench-only] [--json FILE] [bench options…]
 * Unknown options go to the benchmark (e.g. --quick, --min-time 0.5, --torch-script PATH).
 */
import { writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import {
  CONFORMANCE_OPS,
  attention,
  availableBackends,
  conv3dFast,
  makeCaseInputs,
  patchify3d,
  probeBackend,
  runConformanceCase,
  tf,
  unpatchify3d,
  useBackend,
  type BackendName,
  type CaseResult,
  type ConformanceCase,
  type HostValue,
} from '@goe/tf';
import { runBench, type BenchReport } from '../../packages/tf/bench/bench.js';
import './bundled-webgpu.js';

/** The fast ops of @goe/tf, as conformance cases (the shared table covers tfjs' own ops). */
const FAST_OP_CASES: ConformanceCase[] = [
  ...(['slices', 'gather', 'native'] as const).map(
    (method): ConformanceCase => ({
      name: `conv3dFast ${method} k3 s1 same`,
      inputs: [{ shape: [1, 6, 8, 8, 2] }, { shape: [3, 3, 3, 2, 4] }],
      fn: ([x, w]) => conv3dFast(x as tf.Tensor, w as tf.Tensor, 1, 'same', { method }),
      tol: 1e-4,
      grad: { tol: 1e-4 },
    }),
  ),
  {
    name: 'conv3dFast slices k3 s2 same',
    inputs: [{ shape: [1, 7, 8, 6, 2] }, { shape: [3, 3, 3, 2, 3] }],
    fn: ([x, w]) => conv3dFast(x as tf.Tensor, w as tf.Tensor, 2, 'same', { method: 'slices' }),
    tol: 1e-4,
    grad: { tol: 1e-4 },
  },
  {
    name: 'conv3dFast patch k=s=4',
    inputs: [{ shape: [1, 8, 8, 8, 1] }, { shape: [4, 4, 4, 1, 8] }],
    fn: ([x, w]) => conv3dFast(x as tf.Tensor, w as tf.Tensor, 4, 'valid', { method: 'patch' }),
    tol: 1e-4,
    grad: { tol: 1e-4 },
  },
  ...(['gather', 'transpose'] as const).map(
    (method): ConformanceCase => ({
      name: `patchify3d/unpatchify3d ${method}`,
      inputs: [{ shape: [2, 4, 6, 8, 3] }],
      fn: ([x]) => {
        const t = patchify3d(x as tf.Tensor, [2, 3, 4], { method });
        return [t, unpatchify3d(tf.mul(t, 2), [2, 3, 4], [4, 6, 8], { method })];
      },
      tol: 0,
      grad: { tol: 1e-6 },
    }),
  ),
  {
    name: 'attention causal',
    inputs: [{ shape: [2, 2, 9, 8] }, { shape: [2, 2, 9, 8] }, { shape: [2, 2, 9, 8] }],
    fn: ([q, k, v]) => attention(q as tf.Tensor, k as tf.Tensor, v as tf.Tensor, { causal: true }),
    tol: 1e-4,
    grad: { tol: 1e-4 },
  },
];

interface ConformanceRow {
  name: string;
  forward?: number;
  forwardTol: number;
  gradient?: number;
  gradientTol?: number;
  ok: boolean;
  error?: string;
}

/** Max abs error of `got` vs `want`, and whether it is within tol * max(1, max |want|) (exact for ints). */
function compare(got: HostValue, want: HostValue, tol: number): { err: number; ok: boolean } {
  if (got.shape.join() !== want.shape.join() || got.dtype !== want.dtype || got.data.length !== want.data.length) {
    return { err: Infinity, ok: false };
  }
  let err = 0;
  let scale = 1;
  for (let i = 0; i < want.data.length; i++) {
    const d = Math.abs((got.data[i] as number) - (want.data[i] as number));
    if (!(d <= err)) err = d;
    scale = Math.max(scale, Math.abs(want.data[i] as number));
  }
  const limit = want.dtype === 'float32' ? tol * scale : 0;
  return { err, ok: err <= limit };
}

async function onBackend<T>(name: BackendName, f: () => Promise<T>): Promise<T> {
  await useBackend(name);
  return f();
}

async function runConformance(backend: BackendName): Promise<ConformanceRow[]> {
  const rows: ConformanceRow[] = [];
  for (const c of [...CONFORMANCE_OPS, ...FAST_OP_CASES]) {
    const row: ConformanceRow = { name: c.name, forwardTol: c.tol, ok: true };
    try {
      const inputs = makeCaseInputs(c);
      const gradients = !!c.grad;
      let want: CaseResult;
      try {
        want = await onBackend('cpu', () => runConformanceCase(c, inputs, { gradients }));
      } catch (err) {
        // Not a backend discrepancy: the reference itself could not be computed.
        throw new Error(`on the cpu reference: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
      }
      const before = tf.memory().numTensors;
      const got: CaseResult = await onBackend(backend, () => runConformanceCase(c, inputs, { gradients }));
      if (tf.memory().numTensors !== before) throw new Error(`leaked ${tf.memory().numTensors - before} tensor(s)`);
      row.forward = 0;
      got.outputs.forEach((o, k) => {
        const r = compare(o, want.outputs[k] as HostValue, c.tol);
        row.forward = Math.max(row.forward as number, r.err);
        row.ok &&= r.ok;
      });
      if (c.grad) {
        row.gradientTol = c.grad.tol;
        row.gradient = 0;
        (got.grads ?? []).forEach((g, k) => {
          const r = compare(g, (want.grads as HostValue[])[k] as HostValue, (c.grad as { tol: number }).tol);
          row.gradient = Math.max(row.gradient as number, r.err);
          row.ok &&= r.ok;
        });
        if ((got.grads ?? []).length !== (want.grads ?? []).length) row.ok = false;
      }
    } catch (err) {
      row.ok = false;
      row.error = (err instanceof Error ? err.message : String(err)).split('\n')[0]?.slice(0, 160) ?? 'error';
    }
    rows.push(row);
    process.stderr.write(`[conformance] ${backend} ${c.name}: ${row.ok ? 'ok' : `FAIL${row.error ? ` (${row.error})` : ''}`}\n`);
  }
  return rows;
}

function formatConformance(backend: string, rows: ConformanceRow[]): string {
  const failed = rows.filter((r) => !r.ok);
  const e = (v: number | undefined) => (v === undefined ? '—' : v === 0 ? '0' : v.toExponential(1));
  const lines = [
    `Conformance, ${backend} vs cpu: ${rows.length - failed.length}/${rows.length} cases pass ` +
      `(${CONFORMANCE_OPS.length} from CONFORMANCE_OPS, ${FAST_OP_CASES.length} fast ops; forward values and gradients; ` +
      'error = max |backend - cpu|, tolerance relative to max(1, max |cpu|))',
    '',
    '| case | forward error | tol | gradient error | tol | result |',
    '| --- | ---: | ---: | ---: | ---: | --- |',
  ];
  for (const r of rows) {
    lines.push(
      `| ${r.name} | ${e(r.forward)} | ${e(r.forwardTol)} | ${e(r.gradient)} | ${e(r.gradientTol)} | ${r.ok ? 'ok' : `**FAIL**${r.error ? `: ${r.error}` : ''}`} |`,
    );
  }
  return lines.join('\n');
}

async function main(argv: string[]): Promise<number> {
  let backend = 'webgpu';
  let json: string | undefined;
  let doConformance = true;
  let doBench = true;
  const benchArgs: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] as string;
    if (a === '--backend') backend = argv[++i] ?? backend;
    else if (a.startsWith('--backend=')) backend = a.slice('--backend='.length);
    else if (a === '--json') json = argv[++i];
    else if (a.startsWith('--json=')) json = a.slice('--json='.length);
    else if (a === '--conformance-only') doBench = false;
    else if (a === '--bench-only') doConformance = false;
    else benchArgs.push(a);
  }
  const avail = await availableBackends();
  const probe = await probeBackend(backend as BackendName);
  if (!avail.includes(backend as BackendName)) {
    process.stdout.write(`Backend ${backend} is not available: ${probe.reason}\nAvailable: ${avail.join(', ')}\n`);
    return 2;
  }
  process.stdout.write(`Backend ${backend}: ${probe.reason}\n\n`);
  let conformance: ConformanceRow[] | undefined;
  if (doConformance) {
    conformance = await runConformance(backend as BackendName);
    process.stdout.write(`${formatConformance(backend, conformance)}\n\n`);
  }
  let bench: BenchReport | undefined;
  if (doBench) {
    // runBench prints its own table (formatReport) to stdout.
    bench = await runBench(['--backends', backend, ...benchArgs]);
  }
  if (json) {
    writeFileSync(resolve(json), `${JSON.stringify({ backend, reason: probe.reason, conformance, bench }, null, 2)}\n`);
  }
  return conformance && conformance.some((r) => !r.ok) ? 1 : 0;
}

main(process.argv.slice(2)).then(
  // Exit explicitly: a WebGPU device keeps the event loop alive after the work is done.
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`gpu-check: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  },
);
