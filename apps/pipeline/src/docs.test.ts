import { describe, expect, it } from 'vitest';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { findProjectRoot, projectDocumentation, readTextFiles } from './docs.js';
import { ConfigError } from './errors.js';

describe('the project documentation as training text', () => {
  it('is the root README, then packages/*/README.md and apps/*/README.md, sorted, found from any folder inside', async () => {
    const root = mkdtempSync(join(tmpdir(), 'goe-docs-'));
    writeFileSync(join(root, 'nx.json'), '{}');
    writeFileSync(join(root, 'README.md'), '# root\n');
    for (const [group, name, readme] of [
      ['packages', 'zeta', true],
      ['packages', 'alpha', true],
      ['packages', 'nodoc', false],
      ['apps', 'pipeline', true],
    ] as const) {
      mkdirSync(join(root, group, name, 'src'), { recursive: true });
      if (readme) writeFileSync(join(root, group, name, 'README.md'), `# ${name}\n`);
    }
    expect(findProjectRoot(join(root, 'packages', 'zeta', 'src'))).toBe(root);
    expect(projectDocumentation(root)).toEqual([
      join(root, 'README.md'),
      join(root, 'packages', 'alpha', 'README.md'),
      join(root, 'packages', 'zeta', 'README.md'),
      join(root, 'apps', 'pipeline', 'README.md'),
    ]);
    const texts = await readTextFiles(projectDocumentation(root));
    expect(new TextDecoder().decode(texts[1]!.bytes)).toBe('# alpha\n');
  });

  it('this repository has documentation to train on, starting with its README', () => {
    const files = projectDocumentation();
    expect(files[0]).toMatch(/README\.md$/);
    expect(files.some((f) => /packages[/\\]core[/\\]README\.md$/.test(f))).toBe(true);
  });

  it('a folder without README files, or an empty or missing file, is a config error naming data.text.files', async () => {
    const root = mkdtempSync(join(tmpdir(), 'goe-docs-'));
    expect(() => projectDocumentation(root)).toThrow(ConfigError);
    expect(() => projectDocumentation(root)).toThrow(/^data\.text\.files: is empty and .* has no README\.md files/);
    writeFileSync(join(root, 'empty.txt'), '');
    await expect(readTextFiles([join(root, 'empty.txt')])).rejects.toThrow(/^data\.text\.files: .*empty\.txt is empty/);
    await expect(readTextFiles([join(root, 'gone.txt')])).rejects.toThrow(/^data\.text\.files: cannot read .*gone\.txt/);
  });
});
