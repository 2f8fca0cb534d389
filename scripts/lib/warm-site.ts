// `npm run dev -- --warm`: the site of `npm run build` served on one port without
// netlify dev. netlify dev runs every function invocation in a new worker thread that
// loads the function afresh (netlify-cli, dist/lib/functions/runtimes/js: a cold start
// per request, ~150 ms even for a preflight here), so a burst of concurrent requests
// becomes as many cold starts at once. Here each built function (build/functions) is
// imported once and stays warm, as a warm Netlify instance does; netlify.toml's
// [[redirects]] route the API paths, build/site/_redirects and the static files serve
// the rest. Not a replacement for netlify dev's fidelity: the default `npm run dev`
// and the tests still use netlify dev.

import { readFile, stat } from 'node:fs/promises';
import type http from 'node:http';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { parse as parseToml } from 'smol-toml';
import { buildSite, FUNCTIONS_OUT, REPO_ROOT, SITE_OUT, watchFunctions } from './build.ts';
import { startFunctionServer, type Handler } from './function-server.ts';

export interface WarmSite {
  url: string;
  stop(): Promise<void>;
}

interface Redirect {
  from: string;
  to: string;
  status: number;
  force: boolean;
}

/** netlify.toml's redirects, then the site's _redirects (`from to status[!]` lines). */
async function redirects(root: string): Promise<Redirect[]> {
  const toml = parseToml(await readFile(path.join(root, 'netlify.toml'), 'utf8')) as { redirects?: Partial<Redirect>[] };
  const rules: Redirect[] = [];
  const file = await readFile(path.join(root, SITE_OUT, '_redirects'), 'utf8').catch(() => '');
  for (const line of file.split('\n')) {
    const [from, to, code] = line.trim().split(/\s+/);
    if (!from || !to || from.startsWith('#')) continue;
    rules.push({ from, to, status: Number.parseInt(code ?? '301', 10), force: code?.endsWith('!') ?? false });
  }
  for (const r of toml.redirects ?? []) rules.push({ from: r.from ?? '', to: r.to ?? '', status: r.status ?? 301, force: r.force ?? false });
  return rules;
}

function matches(rule: Redirect, pathname: string): boolean {
  if (rule.from.endsWith('/*')) return pathname.startsWith(rule.from.slice(0, -1));
  return pathname === rule.from || pathname === `${rule.from}/`;
}

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
};

/** A static file of the site, with Netlify's pretty URLs (/dashboard → dashboard/index.html). */
async function staticFile(siteDir: string, pathname: string): Promise<{ file: string; type: string } | undefined> {
  const base = path.resolve(siteDir, `.${decodeURIComponent(pathname)}`);
  if (!base.startsWith(siteDir)) return undefined;
  for (const candidate of [base, path.join(base, 'index.html'), `${base}.html`]) {
    const info = await stat(candidate).catch(() => undefined);
    if (info?.isFile()) return { file: candidate, type: TYPES[path.extname(candidate)] ?? 'application/octet-stream' };
  }
  return undefined;
}

export async function startWarmSite(opts: { port: number; root?: string; log?: (line: string) => void }): Promise<WarmSite> {
  const root = opts.root ?? REPO_ROOT;
  const log = opts.log ?? (() => {});
  const siteDir = path.join(root, SITE_OUT);
  await buildSite(root, true);
  const rules = await redirects(root);

  // Each function imported once, and again (a new URL) after a rebuild.
  const handlers = new Map<string, Handler>();
  let generation = 0;
  const load = async () => {
    generation += 1;
    const dir = path.join(root, FUNCTIONS_OUT);
    for (const name of ['stripe-checkout', 'stripe-portal', 'stripe-subscription', 'stripe-webhook', 'stripe-not-found']) {
      const mod = (await import(`${pathToFileURL(path.join(dir, `${name}.mjs`)).href}?v=${generation}`)) as { default: Handler };
      handlers.set(name, mod.default);
    }
  };
  const watcher = await watchFunctions(root, (error) => {
    if (error) log(`[build] rebuild failed: ${error}`);
    else void load().then(() => log('[build] functions rebuilt and reloaded'));
  });
  await load();

  const functionOf = (pathname: string): string | undefined => {
    const direct = /^\/\.netlify\/functions\/([\w-]+)$/.exec(pathname)?.[1];
    if (direct) return direct;
    const rule = rules.find((r) => r.status === 200 && r.to.startsWith('/.netlify/functions/') && matches(r, pathname));
    return rule?.to.slice('/.netlify/functions/'.length);
  };

  const server = await startFunctionServer({}, {
    port: opts.port,
    host: '::',
    resolve: (url) => {
      const fn = functionOf(url.pathname);
      return fn ? handlers.get(fn) : undefined;
    },
    fallback: async (url, outgoing: http.ServerResponse) => {
      const file = await staticFile(siteDir, url.pathname);
      const redirect = rules.find((r) => r.status !== 200 && matches(r, url.pathname) && (r.force || !file));
      if (redirect) {
        outgoing.writeHead(redirect.status, { location: redirect.to }).end();
        return;
      }
      if (file) {
        outgoing.writeHead(200, { 'content-type': file.type, 'cache-control': 'no-cache' }).end(await readFile(file.file));
        return;
      }
      outgoing.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' }).end('Not Found');
    },
  });
  return {
    url: server.url,
    stop: async () => {
      await watcher.dispose();
      await server.close();
    },
  };
}
