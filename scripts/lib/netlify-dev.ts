// Runs `netlify dev` offline on a given port, the way Netlify serves the site and its
// functions, and stops it with everything it spawned (its own process group). It serves
// what `npm run build` writes (scripts/lib/build.ts), built here first: the functions as
// they ship, and the site with the example dashboard.

import { spawn } from 'node:child_process';
import { cp, mkdtemp, readdir, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { getFreePort, httpAnswers, OutputTail, registerKillOnExit, sleep, type LogFn } from '../stack/process.ts';
import { buildFunctions, buildSite, DASHBOARD_VARIABLE, watchFunctions } from './build.ts';

const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
const NETLIFY_CLI = fileURLToPath(new URL('../../node_modules/netlify-cli/bin/run.js', import.meta.url));

export interface NetlifyDev {
  url: string;
  stop(): Promise<void>;
}

export async function startNetlifyDev(opts: {
  port: number;
  env: Record<string, string>;
  log?: LogFn;
  /** Passes the CLI's output through unprefixed (for `npm run dev`). */
  inheritOutput?: boolean;
  timeoutMs?: number;
  /**
   * Serve the site from a temporary folder of symlinks to this checkout, so this
   * process builds its functions into a `.netlify/` of its own. Two `netlify dev` in one
   * checkout (two test files, or a test beside `npm run dev`) otherwise rebuild each
   * other's functions under `.netlify/functions-serve` while they serve them.
   */
  isolated?: boolean;
  /** Rebuild a function when its code changes (npm run dev). */
  watch?: boolean;
  /** Include the example dashboard in the site (default: yes). */
  dashboard?: boolean;
}): Promise<NetlifyDev> {
  const output = new OutputTail('netlify', opts.log, 60);
  const cwd = opts.isolated ? await siteCopy() : REPO_ROOT;
  const dashboard = opts.dashboard ?? true;
  await buildSite(cwd, dashboard);
  const say = (line: string, stream: 'out' | 'err') => (opts.inheritOutput ? (stream === 'err' ? console.error(line) : console.log(line)) : output.write(`${line}\n`, stream));
  const watcher = opts.watch
    ? await watchFunctions(cwd, (error) => (error ? say(`[build] rebuild failed: ${error}`, 'err') : say('[build] functions rebuilt', 'out')))
    : (await buildFunctions(cwd), undefined);
  // Its static server on a free port: by default every netlify dev takes 3999 if it looks
  // free, and two starting at once (two test files) both see it free; one then fails.
  const staticServerPort = await getFreePort();
  // process.execPath: the Node 22 that runs us, not whatever `node` is first on PATH.
  const child = spawn(
    process.execPath,
    [NETLIFY_CLI, 'dev', '--offline', '--internal-disable-edge-functions', '--no-open', '--port', String(opts.port), '--staticServerPort', String(staticServerPort)],
    {
      cwd,
      env: { ...process.env, ...opts.env, [DASHBOARD_VARIABLE]: dashboard ? '1' : '0', BROWSER: 'none', NETLIFY_TELEMETRY_DISABLED: '1' },
      stdio: ['ignore', opts.inheritOutput ? 'inherit' : 'pipe', opts.inheritOutput ? 'inherit' : 'pipe'],
      detached: true,
    },
  );
  child.stdout?.setEncoding('utf8').on('data', (chunk: string) => output.write(chunk, 'out'));
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => output.write(chunk, 'err'));
  const pid = child.pid;
  if (pid === undefined) throw new Error('netlify dev did not start');
  const unregister = registerKillOnExit(-pid, 'SIGKILL');
  let exited = false;
  const gone = new Promise<void>((resolve) => child.once('close', () => {
    exited = true;
    resolve();
  }));

  const removeSite = async () => {
    await watcher?.dispose();
    if (cwd !== REPO_ROOT) await rm(cwd, { recursive: true, force: true });
  };
  const stop = async (): Promise<void> => {
    unregister();
    if (exited) return removeSite();
    try {
      process.kill(-pid, 'SIGTERM');
    } catch {
      return;
    }
    const timer = setTimeout(() => {
      try {
        process.kill(-pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }, 5000);
    await gone;
    clearTimeout(timer);
    await removeSite();
  };

  const url = `http://localhost:${opts.port}`;
  // Ready when a function answers through the netlify.toml routing, not just the port.
  const deadline = Date.now() + (opts.timeoutMs ?? 90_000);
  while (!(await httpAnswers(`${url}/api/stripe/checkout`, { method: 'OPTIONS' }, (status) => status === 204))) {
    if (exited || Date.now() > deadline) {
      await stop();
      throw new Error(`netlify dev: ${exited ? 'exited during startup' : 'not ready in time'}${output.text()}`);
    }
    await sleep(250);
  }
  return { url, stop };
}

/**
 * A temporary folder standing in for the checkout: `netlify/` (the function entry
 * files) copied, `build/` left to this process's own build, everything else but
 * `.netlify/` and `.git/` symlinked. The built functions must really be inside the
 * folder: Netlify's bundler names a function's output after its entry's real path.
 */
export async function siteCopy(): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), 'netlify-site-'));
  for (const entry of await readdir(REPO_ROOT)) {
    if (entry === '.netlify' || entry === '.git' || entry === 'build') continue;
    if (entry === 'netlify') await cp(path.join(REPO_ROOT, entry), path.join(dir, entry), { recursive: true });
    else await symlink(path.join(REPO_ROOT, entry), path.join(dir, entry));
  }
  return dir;
}
