import { describe, expect, it } from 'vitest';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { haltingByClass, tokenClassesFromLabels, writeHaltingPng } from './halting.js';

describe('halting depth per token class', () => {
  const grid = { dims: [1, 1, 2] as [number, number, number], cell: [2, 2, 2] as [number, number, number], inputShape: [2, 2, 4] as [number, number, number] };

  it('classes tokens by the labels under their cells (ink over papyrus over air)', () => {
    // Batch 2, tokens of 2x2x2 voxels: x 0-1 is token 0, x 2-3 token 1.
    const ink = new Uint8Array(2 * 16);
    const papyrus = new Uint8Array(2 * 16);
    const at = (b: number, z: number, y: number, x: number) => ((b * 2 + z) * 2 + y) * 4 + x;
    for (const [z, y] of [[0, 0], [0, 1], [1, 0], [1, 1]]) papyrus[at(0, z!, y!, 2)] = papyrus[at(0, z!, y!, 3)] = 1; // b0 token 1 all papyrus
    papyrus[at(1, 0, 0, 0)] = papyrus[at(1, 0, 0, 1)] = papyrus[at(1, 0, 1, 0)] = 1; // b1 token 0: 3 of 8, air
    ink[at(1, 1, 1, 3)] = 1; // b1 token 1: 1 of 8 ink >= 10%
    const c = tokenClassesFromLabels(grid, 2, { ink, papyrus });
    expect(c.names).toEqual(['air', 'papyrus', 'ink']);
    expect([...c.classes]).toEqual([0, 1, 0, 2]);
    const noPap = tokenClassesFromLabels(grid, 2, { ink });
    expect(noPap.names).toEqual(['other', 'ink']);
    expect([...noPap.classes]).toEqual([0, 0, 0, 1]);
  });

  it('counts cycles per class from haltedAt, skipping padding, as computed by hand', () => {
    const r = haltingByClass(
      { cycles: 3, haltedAt: Int32Array.from([1, 3, 3, 2, 0, 1]) },
      { names: ['air', 'papyrus', 'ink'], classes: Uint8Array.from([0, 2, 2, 1, 1, 0]) },
    );
    expect(r['air']).toEqual({ tokens: 2, meanCycles: 1, share: [1, 0, 0] });
    expect(r['papyrus']).toEqual({ tokens: 1, meanCycles: 2, share: [0, 1, 0] }); // the padding token (0) is not counted
    expect(r['ink']).toEqual({ tokens: 2, meanCycles: 3, share: [0, 0, 1] });
    expect(() => haltingByClass({ cycles: 2, haltedAt: Int32Array.from([1, 2]) }, { names: ['a'], classes: new Uint8Array(3) })).toThrow(/3 labels for 2 routed tokens/);
  });

  it('draws the shares as a picture', async () => {
    const path = join(mkdtempSync(join(tmpdir(), 'goe-halting-')), 'halting.png');
    await writeHaltingPng(path, { air: { tokens: 4, meanCycles: 1.5, share: [0.5, 0.5] }, ink: { tokens: 0, meanCycles: NaN, share: [0, 0] } });
    const meta = await sharp(path).metadata();
    expect(meta.format).toBe('png');
    expect(meta.width).toBeGreaterThan(100);
  });
});
