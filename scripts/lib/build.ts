// The one build of what ships: `npm run build` (Netlify runs it as the build command),
// `npm run dev`, the netlify dev tests and the bench all use it.
//
// Functions: each netlify/functions/<name>.mts and everything it imports, npm packages
// included, bundled by esbuild into one minified build/functions/<name>.mjs. Netlify then
// packs that file (zip-it-and-ship-it re-bundles a modern function with npm packages
// external; there are none left, so nothing is traced into node_modules). Only what the
// function imports is in it: Stripe's ESM build, not its CommonJS copy, and no loose files.
//
// Site: build/site, the publish folder. public/ without the example dashboard, unless
// BILLING_EXAMPLE_DASHBOARD=1 (npm run dev and the tests set it): the dashboard's sign-in
// talks to the local stack, so a production deploy leaves it out and `/` is a plain page.

import { cp, mkdir, readdir, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { build, context, type BuildOptions, type Metafile, type Plugin } from 'esbuild';

export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));

/** Where the build writes, relative to the site's root (netlify.toml points here). */
export const FUNCTIONS_OUT = 'build/functions';
export const SITE_OUT = 'build/site';

/** The variable that puts the example dashboard into the site. Off unless exactly "1". */
export const DASHBOARD_VARIABLE = 'BILLING_EXAMPLE_DASHBOARD';

/** netlify.toml sets NODE_VERSION = "22". */
export const NODE_TARGET = 'node22';

/**
 * CommonJS packages (jsonwebtoken and its dependencies) call require() for Node's
 * built-ins; an ESM bundle has no require of its own. esbuild renames this binding if the
 * file is bundled again (Netlify's packer adds its own `require` banner).
 */
const REQUIRE_BANNER = 'import { createRequire as __billingCreateRequire } from "node:module"; const require = __billingCreateRequire(import.meta.url);';

/**
 * jsonwebtoken asks semver, at import, whether this Node has three crypto features; each
 * of these files is one `semver.satisfies(process.version, <range>)`. The same answer
 * from process.versions, without loading semver (6 ms of a cold start, measured:
 * jsonwebtoken's bundled import 13 ms with it, 7 ms without). The build fails if a file
 * no longer reads as expected.
 */
const JSONWEBTOKEN_NODE_CHECKS: Record<string, { range: string; atLeast: [number, number, number] }> = {
  'psSupported.js': { range: '^6.12.0 || >=8.0.0', atLeast: [8, 0, 0] },
  'asymmetricKeyDetailsSupported.js': { range: '>=15.7.0', atLeast: [15, 7, 0] },
  'rsaPssKeyDetailsSupported.js': { range: '>=16.9.0', atLeast: [16, 9, 0] },
};

const jsonwebtokenWithoutSemver: Plugin = {
  name: 'jsonwebtoken-without-semver',
  setup(b) {
    b.onLoad({ filter: /[\\/]jsonwebtoken[\\/]lib[\\/]\w+Supported\.js$/ }, async (args) => {
      const check = JSONWEBTOKEN_NODE_CHECKS[path.basename(args.path)];
      const source = await readFile(args.path, 'utf8');
      if (!check || !source.includes(`semver.satisfies(process.version, '${check.range}')`)) {
        return { errors: [{ text: `${args.path} is not the version check this build replaces (scripts/lib/build.ts)` }] };
      }
      const [major, minor, patch] = check.atLeast;
      return {
        loader: 'js',
        contents: `// ${path.basename(args.path)} without semver: process.version satisfies '${check.range}' (npm run build)
const [major, minor, patch] = process.versions.node.split('.').map(Number);
module.exports = major !== ${major} ? major > ${major} : minor !== ${minor} ? minor > ${minor} : patch >= ${patch};
`,
      };
    });
  },
};

export function functionBuildOptions(entryPoints: string[], outdir: string, root = REPO_ROOT): BuildOptions {
  return {
    absWorkingDir: root,
    entryPoints,
    outdir,
    outExtension: { '.js': '.mjs' },
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: [NODE_TARGET],
    minify: true,
    legalComments: 'none',
    sourcemap: false,
    banner: { js: REQUIRE_BANNER },
    plugins: [jsonwebtokenWithoutSemver],
    metafile: true,
    logLevel: 'error',
  };
}

export async function functionEntries(root = REPO_ROOT): Promise<string[]> {
  const dir = path.join(root, 'netlify/functions');
  return (await readdir(dir)).filter((file) => file.endsWith('.mts')).sort().map((file) => path.join(dir, file));
}

export interface BuiltFunction {
  name: string;
  file: string;
  bytes: number;
  /** npm packages bundled in, by input bytes. */
  packages: Record<string, number>;
}

function describe(metafile: Metafile, root: string): BuiltFunction[] {
  return Object.entries(metafile.outputs).map(([out, output]) => {
    const packages: Record<string, number> = {};
    for (const [input, { bytesInOutput }] of Object.entries(output.inputs)) {
      const match = /node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(input);
      if (match?.[1]) packages[match[1]] = (packages[match[1]] ?? 0) + bytesInOutput;
    }
    const file = path.resolve(root, out);
    return { name: path.basename(file, '.mjs'), file, bytes: output.bytes, packages };
  });
}

/** Bundles every function of the site at root into root/build/functions. */
export async function buildFunctions(root = REPO_ROOT): Promise<BuiltFunction[]> {
  const outdir = path.join(root, FUNCTIONS_OUT);
  await rm(outdir, { recursive: true, force: true });
  const result = await build(functionBuildOptions(await functionEntries(root), outdir, root));
  return describe(result.metafile ?? { inputs: {}, outputs: {} }, root);
}

/** Builds once, then again on every change to a function or what it imports (npm run dev). */
export async function watchFunctions(root = REPO_ROOT, onRebuild: (error?: string) => void = () => {}): Promise<{ dispose(): Promise<void> }> {
  const outdir = path.join(root, FUNCTIONS_OUT);
  await rm(outdir, { recursive: true, force: true });
  // watch() builds once, then again on each change: the first build is not a rebuild.
  let built = false;
  let firstBuilt: (errors: string[]) => void = () => {};
  const first = new Promise<string[]>((resolve) => (firstBuilt = resolve));
  const options = functionBuildOptions(await functionEntries(root), outdir, root);
  const ctx = await context({
    ...options,
    plugins: [
      ...(options.plugins ?? []),
      {
        name: 'report',
        setup(b) {
          b.onEnd((result) => {
            const errors = result.errors.map((e) => e.text);
            if (!built) {
              built = true;
              firstBuilt(errors);
            } else onRebuild(errors.length > 0 ? errors.join('; ') : undefined);
          });
        },
      },
    ],
  });
  await ctx.watch();
  const errors = await first;
  if (errors.length > 0) {
    await ctx.dispose();
    throw new Error(`building the functions failed: ${errors.join('; ')}`);
  }
  return { dispose: () => ctx.dispose() };
}

const PRODUCTION_INDEX = `<!doctype html>
<html lang="en">
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Billing API</title>
<body style="font: 16px/1.5 system-ui, sans-serif; margin: 2rem; max-width: 40rem">
<h1>Billing API</h1>
<p>This site serves a billing API under <code>/api/stripe/</code>: <code>checkout</code>, <code>portal</code>,
<code>subscription</code> and <code>webhook</code>. It has no pages of its own.</p>
</body>
</html>
`;

export interface BuiltSite {
  dir: string;
  dashboard: boolean;
}

/**
 * Writes root/build/site. With the dashboard: public/ linked (an edit shows on reload),
 * and `/` sent to /dashboard (a _redirects file, which netlify dev and Netlify both
 * read). Without: public/ copied less the dashboard, and a front page that points nowhere.
 */
export async function buildSite(root = REPO_ROOT, dashboard = process.env[DASHBOARD_VARIABLE] === '1'): Promise<BuiltSite> {
  const dir = path.join(root, SITE_OUT);
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true });
  const publicDir = path.join(root, 'public');
  for (const entry of await readdir(publicDir)) {
    if (entry === 'dashboard' && !dashboard) continue;
    if (dashboard) await symlink(path.join(publicDir, entry), path.join(dir, entry));
    else await cp(path.join(publicDir, entry), path.join(dir, entry), { recursive: true });
  }
  if (dashboard) await writeFile(path.join(dir, '_redirects'), '/  /dashboard  302!\n');
  else if (!(await stat(path.join(dir, 'index.html')).catch(() => undefined))) await writeFile(path.join(dir, 'index.html'), PRODUCTION_INDEX);
  return { dir, dashboard };
}
