// Chromium for the browser tests (test/browser.test.ts, test/browser-usage.test.ts):
// the system's, or else the one the @sparticuz/chromium package ships, driven by
// playwright-core; and Stripe's hosts stubbed, since there is no network here.

import { existsSync } from 'node:fs';
import type { BrowserContext } from 'playwright-core';

const SYSTEM_CHROMIUM = ['/usr/bin/chromium', '/usr/bin/chromium-browser', '/usr/bin/google-chrome'];
const LOOPBACK = new Set(['localhost', '127.0.0.1', '[::1]']);

const COMMON_ARGS = ['--no-sandbox', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-gpu'];

/**
 * Flags of @sparticuz/chromium's that the browser tests cannot take: they check CORS (web security
 * on), open several contexts in one browser (one process would close with the first), and
 * playwright-core sets the headless mode itself.
 */
const REFUSED_PACKAGED_ARGS = new Set(['--disable-web-security', '--allow-running-insecure-content', '--single-process', "--headless='shell'"]);

/**
 * CHROMIUM_PATH, else a system Chromium, else the build @sparticuz/chromium ships (an npm
 * devDependency, so `npm install` brings it: unpacked to the temporary folder on first use,
 * with the flags it needs there, less those above).
 */
export async function chromiumToLaunch(): Promise<{ executablePath: string; args: string[] }> {
  const chosen = process.env['CHROMIUM_PATH'];
  if (chosen) {
    if (!existsSync(chosen)) throw new Error(`CHROMIUM_PATH=${chosen}: no such file`);
    return { executablePath: chosen, args: COMMON_ARGS };
  }
  const system = SYSTEM_CHROMIUM.find((file) => existsSync(file));
  if (system) return { executablePath: system, args: COMMON_ARGS };
  const { default: packaged } = await import('@sparticuz/chromium');
  const executablePath = await packaged.executablePath();
  const args = packaged.args.filter((arg) => !REFUSED_PACKAGED_ARGS.has(arg));
  return { executablePath, args: [...new Set([...args, ...COMMON_ARGS])] };
}

/** Stripe's hosts are not reachable (no network here): a stub page stands in, and we note the visit. */
export async function stubStripe(context: BrowserContext): Promise<string[]> {
  const visited: string[] = [];
  await context.route(
    (url) => !LOOPBACK.has(url.hostname),
    async (route) => {
      const request = route.request();
      if (!request.isNavigationRequest()) return route.abort();
      visited.push(request.url());
      const host = new URL(request.url()).hostname;
      return route.fulfill({
        status: 200,
        contentType: 'text/html; charset=utf-8',
        body: `<!doctype html><html lang="en"><title>Stripe (stub)</title><body style="font:16px system-ui;margin:2rem">
          <h1>Stripe stand-in</h1><p>The browser test reached <strong>${host}</strong>; Stripe's page would be here.</p></body></html>`,
      });
    },
  );
  return visited;
}
