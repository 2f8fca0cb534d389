// npm run build: what ships, into build/ (netlify.toml's functions and publish folders).
// Netlify runs it as the build command; `npm run dev` and the tests run the same code.
//   build/functions/<name>.mjs  each function, npm packages bundled in (scripts/lib/build.ts)
//   build/site/                 the publish folder; the example dashboard only with
//                               BILLING_EXAMPLE_DASHBOARD=1

import path from 'node:path';
import { buildFunctions, buildSite, DASHBOARD_VARIABLE } from './lib/build.ts';

// The site being built: where npm runs the script (a copy of the checkout, for the
// artifact test and the bench, links scripts/ to this one).
const REPO_ROOT = process.cwd();
const started = performance.now();
const functions = await buildFunctions(REPO_ROOT);
const site = await buildSite(REPO_ROOT);
const kb = (bytes: number) => `${(bytes / 1024).toFixed(0)} KB`;
for (const fn of functions) {
  const packages = Object.entries(fn.packages).sort((a, b) => b[1] - a[1]).map(([name, bytes]) => `${name} ${kb(bytes)}`);
  console.log(`[build] ${path.relative(REPO_ROOT, fn.file)}  ${kb(fn.bytes)}${packages.length > 0 ? `  (${packages.join(', ')})` : ''}`);
}
console.log(
  `[build] ${path.relative(REPO_ROOT, site.dir)}  ${site.dashboard ? 'with the example dashboard' : `without the example dashboard (${DASHBOARD_VARIABLE}=1 adds it)`}`,
);
console.log(`[build] done in ${Math.round(performance.now() - started)} ms`);
