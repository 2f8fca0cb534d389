// Bundles each function two ways, plus a no-op function and import probes bundled the
// same way, into a temporary directory, for the module-only cold starts (no Netlify
// bootstrap; the entry-point figures in scripts/bench/entry.ts are what ships).
//
// netlify: what Netlify would pack from the source files alone, without `npm run build`.
//   A modern function (default export, runtime API v2) is always built by
//   zip-it-and-ship-it's NFT path, whatever `node_bundler` says (getBundlerName in
//   @netlify/zip-it-and-ship-it dist/runtimes/node/bundlers/index.js returns "nft" for
//   every v2 function unless the bundler is "none"). That path bundles the function file
//   and its local imports with esbuild, leaves every npm package external, and ships the
//   traced node_modules files next to it. The options below mirror transform() in
//   dist/runtimes/node/bundlers/nft/transformer.js (v16.2.3): bundle, packages:
//   'external', format esm, platform node, target node<NODE_VERSION>, the
//   createRequire/__filename/__dirname banner (esm_cjs_compat.js), no sourcemap. Packages
//   load from node_modules at run time (a node_modules link next to the bundle).
//
// esbuild: what ships: `npm run build`'s options (scripts/lib/build.ts), every package
//   inlined, minified. Netlify bundles that file again with nothing left to trace.

import { mkdir, readdir, readFile, stat, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { build } from 'esbuild';
import { functionBuildOptions } from '../lib/build.ts';

export type BuildMode = 'netlify' | 'esbuild';
export const BUILD_MODES: readonly BuildMode[] = ['netlify', 'esbuild'];

/** netlify.toml sets NODE_VERSION = "22"; zip-it-and-ship-it maps it to this target. */
export const NODE_TARGET = 'node22';

/** esm_cjs_compat.js in zip-it-and-ship-it, verbatim. */
const CJS_SHIM = `
import {createRequire as ___nfyCreateRequire} from "module";
import {fileURLToPath as ___nfyFileURLToPath} from "url";
import {dirname as ___nfyPathDirname} from "path";
let __filename=___nfyFileURLToPath(import.meta.url);
let __dirname=___nfyPathDirname(___nfyFileURLToPath(import.meta.url));
let require=___nfyCreateRequire(import.meta.url);
`;

/** The baseline: a function that answers without doing anything, shaped like ours. */
const NOOP_SOURCE = `// A no-op Netlify function: the cold-start baseline.
export default async (_req: Request): Promise<Response> =>
  new Response(JSON.stringify({ ok: true }), { status: 200, headers: { 'Content-Type': 'application/json' } });
`;

/** One package imported and touched, answering like the no-op: its load cost alone. */
function probeSource(specifier: string): string {
  return `import * as probed from '${specifier}';
export default async (_req: Request): Promise<Response> =>
  new Response(JSON.stringify({ ok: Object.keys(probed).length > 0 }), { status: 200, headers: { 'Content-Type': 'application/json' } });
`;
}

export interface Entry {
  /** e.g. "checkout", "noop", "import stripe". */
  name: string;
  kind: 'function' | 'baseline' | 'probe';
  source: string;
}

export interface Built {
  entry: Entry;
  mode: BuildMode;
  file: string;
  /** The bundle file itself. */
  bytes: number;
  /** Bytes of npm package source bundled in (esbuild build; 0 for the netlify build). */
  packageInputBytes: number;
}

export const FUNCTION_NAMES: Record<string, string> = {
  'stripe-checkout': 'checkout',
  'stripe-portal': 'portal',
  'stripe-subscription': 'status',
  'stripe-webhook': 'webhook',
  'stripe-not-found': 'not-found',
};

export const PROBED_PACKAGES = ['stripe', '@supabase/supabase-js', '@supabase/postgrest-js', 'jsonwebtoken'] as const;

export async function entries(repoRoot: string, workDir: string, withProbes: boolean): Promise<Entry[]> {
  const functionsDir = path.join(repoRoot, 'netlify/functions');
  // The functions the bench drives (FUNCTION_NAMES); sync, plans and the scheduled jobs
  // are not measured here (test/artifact.test.ts runs every zip).
  const files = (await readdir(functionsDir)).filter((f) => f.endsWith('.mts') && f.replace(/\.mts$/, '') in FUNCTION_NAMES).sort();
  const list: Entry[] = files.map((file) => {
    const base = file.replace(/\.mts$/, '');
    return { name: FUNCTION_NAMES[base] ?? base, kind: 'function', source: path.join(functionsDir, file) };
  });
  // The no-op and the probes are written to the work folder; their bare imports resolve
  // through nodePaths (esbuild build) or the node_modules link (netlify build).
  const srcDir = path.join(workDir, 'src');
  await mkdir(srcDir, { recursive: true });
  const noop = path.join(srcDir, 'noop.mts');
  await writeFile(noop, NOOP_SOURCE);
  list.push({ name: 'noop', kind: 'baseline', source: noop });
  if (withProbes) {
    for (const pkg of PROBED_PACKAGES) {
      const file = path.join(srcDir, `probe-${pkg.replaceAll(/[@/]/g, '_')}.mts`);
      await writeFile(file, probeSource(pkg));
      list.push({ name: `import ${pkg}`, kind: 'probe', source: file });
    }
  }
  return list;
}

/**
 * Builds every entry in both modes under workDir/<mode>/. workDir/netlify/node_modules
 * links to the repository's node_modules, so the external packages of the netlify build
 * resolve as in the deployed function; the esbuild build has no node_modules in reach,
 * so a package it failed to bundle would fail loudly.
 */
export async function buildAll(repoRoot: string, workDir: string, list: readonly Entry[]): Promise<Built[]> {
  const nodeModules = path.join(repoRoot, 'node_modules');
  const built: Built[] = [];
  for (const mode of BUILD_MODES) {
    const outDir = path.join(workDir, mode);
    await mkdir(outDir, { recursive: true });
    if (mode === 'netlify') await symlink(nodeModules, path.join(outDir, 'node_modules'), 'dir');
    for (const entry of list) {
      const outfile = path.join(outDir, `${entry.name.replaceAll(/[^a-z0-9-]+/gi, '_')}.mjs`);
      const shipped = functionBuildOptions([entry.source], outDir, repoRoot);
      delete shipped.outdir;
      delete shipped.outExtension;
      const result = await build(
        mode === 'netlify'
          ? {
              packages: 'external',
              absWorkingDir: repoRoot,
              banner: { js: CJS_SHIM },
              bundle: true,
              entryPoints: [entry.source],
              format: 'esm',
              logLevel: 'error',
              metafile: true,
              outfile,
              platform: 'node',
              sourcemap: false,
              target: [NODE_TARGET],
            }
          : { ...shipped, outfile, nodePaths: [nodeModules] },
      );
      const packageInputBytes = Object.entries(result.metafile?.inputs ?? {})
        .filter(([input]) => input.includes('node_modules/'))
        .reduce((sum, [, input]) => sum + input.bytes, 0);
      built.push({ entry, mode, file: outfile, bytes: (await stat(outfile)).size, packageInputBytes });
    }
  }
  return built;
}

export interface Shipped {
  /** The function's name in netlify/functions, e.g. "stripe-checkout". */
  file: string;
  bundler: string;
  files: number;
  bytes: number;
  /** Whether zip-it-and-ship-it's bundle of the function file equals our netlify build. */
  sameAsMirror: boolean;
}

interface ZisiResult {
  name: string;
  path: string;
  bundler?: string;
}

interface ZisiModule {
  zipFunctions(srcFolders: string[], destFolder: string, opts: Record<string, unknown>): Promise<ZisiResult[]>;
}

async function folderSize(dir: string): Promise<{ files: number; bytes: number }> {
  let files = 0;
  let bytes = 0;
  for (const entry of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (!entry.isFile()) continue;
    files += 1;
    bytes += (await stat(path.join(entry.parentPath, entry.name))).size;
  }
  return { files, bytes };
}

/**
 * What Netlify would upload, built by Netlify's own zip-it-and-ship-it (installed with
 * netlify-cli) as an unzipped folder per function: its size, and whether its bundle of
 * the function file is byte for byte our netlify build. Undefined if it is not installed.
 */
export async function shippedByNetlify(repoRoot: string, workDir: string, built: readonly Built[]): Promise<Shipped[] | undefined> {
  let zisi: ZisiModule;
  try {
    // A variable specifier: a transitive dependency, optional, and untyped here.
    const specifier = '@netlify/zip-it-and-ship-it';
    zisi = (await import(specifier)) as ZisiModule;
  } catch {
    return undefined;
  }
  const out = path.join(workDir, 'zisi');
  await mkdir(out, { recursive: true });
  const results = await zisi.zipFunctions([path.join(repoRoot, 'netlify/functions')], out, {
    archiveFormat: 'none',
    basePath: repoRoot,
    repositoryRoot: repoRoot,
    // netlify.toml: node_bundler = "esbuild", NODE_VERSION = "22".
    config: { '*': { nodeBundler: 'esbuild', nodeVersion: '22' } },
  });
  const shipped: Shipped[] = [];
  for (const result of results) {
    const name = FUNCTION_NAMES[result.name] ?? result.name;
    const mirror = built.find((b) => b.mode === 'netlify' && b.entry.kind === 'function' && b.entry.name === name);
    // The entry point names the function file; where it lies depends on what was traced.
    const entryPoint = await readFile(path.join(result.path, '___netlify-entry-point.mjs'), 'utf8').catch(() => '');
    const main = /getLambdaHandler\('([^']+)'\)/.exec(entryPoint)?.[1];
    const theirs = main ? await readFile(path.join(result.path, main), 'utf8').catch(() => undefined) : undefined;
    const ours = mirror ? await readFile(mirror.file, 'utf8') : undefined;
    shipped.push({ file: result.name, bundler: result.bundler ?? 'unknown', ...(await folderSize(result.path)), sameAsMirror: theirs !== undefined && theirs === ours });
  }
  return shipped;
}
