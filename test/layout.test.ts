// The source layout a newcomer reads from the folder names: every file of src/ lives in a
// capability folder whose README.md says what it owns and what it may import, and no
// import runs back up: the folders' allowed imports form layers (no cycle).

import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

const SRC = path.resolve(import.meta.dirname, '../src');
const folders = readdirSync(SRC, { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => e.name).sort();

function allowedImports(folder: string): string[] {
  const readme = readFileSync(path.join(SRC, folder, 'README.md'), 'utf8');
  const line = /^May import: (.+)$/m.exec(readme)?.[1];
  if (line === undefined) throw new Error(`src/${folder}/README.md has no "May import:" line`);
  return line === 'nothing of ours.' ? [] : line.replace(/\.$/, '').split(', ');
}

/** The source files of a capability folder, its subfolders' included, relative to it. */
function sourceFiles(folder: string): string[] {
  return readdirSync(path.join(SRC, folder), { recursive: true, encoding: 'utf8' })
    .filter((file) => /\.[cm]?[jt]sx?$/.test(file))
    .sort();
}

/** A relative import's path in quotes of any kind: `from '…'`, `from "…"`, `import('…')`,
 *  `` import(`…`) ``, `import '…'` (side effects only), `require('…')`. */
const RELATIVE_IMPORT = /(?:\bfrom|\bimport|\brequire)\s*\(?\s*(['"`])(\.[^'"`]*)\1/g;

/** The src/ folders a file's imports reach, other than its own; a path built at run time
 *  (`${…}` in a template) cannot be checked, and is reported as such. */
function importedFolders(folder: string, file: string): string[] {
  const text = readFileSync(path.join(SRC, folder, file), 'utf8');
  const specs = [...text.matchAll(RELATIVE_IMPORT)].map((m) => m[2] ?? '');
  return specs
    .map((spec) => (spec.includes('${') ? `unresolvable:${spec}` : path.relative(SRC, path.resolve(SRC, folder, path.dirname(file), spec)).split(path.sep).join('/')))
    .map((target) => {
      if (target.startsWith('unresolvable:')) return target;
      const parts = target.split('/');
      return parts[0] === '..' || parts.length < 2 ? `outside:${target}` : parts[0] ?? '';
    })
    .filter((target) => target !== folder);
}

describe('src/ by capability', () => {
  it('has no file outside a capability folder', () => {
    const loose = readdirSync(SRC, { withFileTypes: true }).filter((e) => e.isFile()).map((e) => e.name);
    expect(loose).toEqual([]);
    expect(folders.length).toBeGreaterThanOrEqual(8);
  });

  it.each(folders)('src/%s says what it owns and imports only what its README allows', (folder) => {
    const readme = readFileSync(path.join(SRC, folder, 'README.md'), 'utf8');
    expect(readme).toMatch(/^Owns .{20,}/m);
    const allowed = allowedImports(folder);
    for (const name of allowed) expect(folders, `src/${folder} may import ${name}`).toContain(name);
    const files = sourceFiles(folder);
    expect(files.length).toBeGreaterThan(0);
    for (const file of files) {
      for (const target of importedFolders(folder, file)) {
        expect(allowed, `src/${folder}/${file} imports src/${target}`).toContain(target);
      }
    }
  });

  it('reads every kind of relative import, from a file in a subfolder too', () => {
    expect([...`import a from "../core/log.ts"; import b from '../core/errors.ts'; const c = await import(\`../database/store.ts\`);
      const d = await import(\`../\${name}/x.ts\`); export * from "./own.ts"; import '../http/x.ts'; const e = require('../usage/view.ts');`
      .matchAll(RELATIVE_IMPORT)].map((m) => m[2])).toEqual(['../core/log.ts', '../core/errors.ts', '../database/store.ts', '../${name}/x.ts', './own.ts', '../http/x.ts', '../usage/view.ts']);
  });

  it('layers: no folder reaches itself through what it may import', () => {
    const reach = (from: string, seen: Set<string>): Set<string> => {
      for (const next of allowedImports(from)) {
        if (!seen.has(next)) {
          seen.add(next);
          reach(next, seen);
        }
      }
      return seen;
    };
    for (const folder of folders) expect([...reach(folder, new Set())], `src/${folder}`).not.toContain(folder);
  });
});
