// npm run test:fuzz: Schemathesis against docs/openapi.yaml, served for real.
//   1. A Python venv in .local/fuzz-venv with scripts/fuzz/requirements.txt (exact
//      versions, hashes), made again whenever that file changes.
//   2. The spec is checked as OpenAPI 3.1 (openapi-spec-validator).
//   3. The local stack (PostgreSQL + PostgREST as Supabase, stripe-mock as Stripe) in a
//      temporary directory on free ports, and `netlify dev` in front of the functions.
//   4. Two users: a new one, and a subscriber (signed webhooks, via stripe:trigger).
//   5. `schemathesis run` with scripts/fuzz/schemathesis.toml and their access tokens.
//   6. Everything stopped; the exit code is Schemathesis's (non-zero on any failure).
//   7. test-results/fuzz.json: the cases Schemathesis counted ({generated, passed, failed,
//      skipped}, scripts/fuzz/summary.ts), for CI's last line; 1 failed when its summary
//      cannot be read. Written only once Schemathesis has run: no file means no fuzz.
// Arguments after `--` go to `schemathesis run`, e.g. `npm run test:fuzz -- --seed 42`.
// PYTHON picks the interpreter that makes the venv (default python3; 3.11 or newer);
// FUZZ_VERBOSE=1 shows the output of the stack and of netlify dev (the functions' logs).

import { spawn } from 'node:child_process';
import { createHash, randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { LOCAL_JWT_SECRET, LOCAL_STRIPE_ENV } from '../lib/local-defaults.ts';
import { startNetlifyDev, type NetlifyDev } from '../lib/netlify-dev.ts';
import { issuerFor, mintAccessToken } from '../lib/tokens.ts';
import { getFreePort, startLocalStack, type LocalStack } from '../stack/index.ts';
import { startStripeMockBridge, type StripeMockBridge } from '../stack/stripe-mock-bridge.ts';
import { parseTestCases } from './summary.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const at = (file: string) => path.join(ROOT, file);
const SPEC = at('docs/openapi.yaml');
const CONFIG = at('scripts/fuzz/schemathesis.toml');
const REQUIREMENTS = at('scripts/fuzz/requirements.txt');
const VENV = at('.local/fuzz-venv');
/** Schemathesis's working directory: its cache and Hypothesis's example database live here. */
const WORK = at('.local/fuzz');
const RESULTS = at('test-results/fuzz.json');
const bin = (name: string) => path.join(VENV, 'bin', name);
const say = (line: string) => console.log(`[fuzz] ${line}`);
const componentLog = process.env['FUZZ_VERBOSE'] ? (line: string) => console.log(line) : undefined;

/** Runs a command to its end. Never spawnSync: the gateway and the Stripe bridge run in
 *  this process, and a blocked event loop would leave the functions' calls hanging. */
function run(command: string, args: string[], what: string, env: NodeJS.ProcessEnv = process.env, stdout?: string[]): Promise<number> {
  const child = spawn(command, args, { stdio: ['inherit', stdout ? 'pipe' : 'inherit', 'inherit'], env, cwd: WORK });
  // Shown as it comes (uncolored: Schemathesis colors only a terminal), and kept for its summary.
  child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
    process.stdout.write(chunk);
    stdout?.push(chunk);
  });
  return new Promise((resolve, reject) => {
    child.once('error', (error) => reject(new Error(`${what}: ${error.message}`)));
    child.once('close', (code, signal) => resolve(code ?? (signal ? 1 : 0)));
  });
}

async function mustRun(command: string, args: string[], what: string): Promise<void> {
  const code = await run(command, args, what);
  if (code !== 0) throw new Error(`${what} failed (exit code ${code})`);
}

/** The venv, with exactly requirements.txt installed; rebuilt only when that file changed. */
async function ensureVenv(): Promise<void> {
  const wanted = createHash('sha256').update(readFileSync(REQUIREMENTS)).digest('hex');
  const stamp = path.join(VENV, '.requirements.sha256');
  if (existsSync(stamp) && readFileSync(stamp, 'utf8') === wanted && existsSync(bin('schemathesis'))) return;
  const python = process.env['PYTHON'] ?? 'python3';
  say(`creating ${path.relative(ROOT, VENV)} with ${python} and installing ${path.relative(ROOT, REQUIREMENTS)}…`);
  rmSync(VENV, { recursive: true, force: true });
  await mustRun(python, ['-m', 'venv', VENV], `${python} -m venv (on Debian/Ubuntu: apt-get install python3-venv)`);
  await mustRun(bin('python'), ['-m', 'pip', 'install', '--quiet', '--disable-pip-version-check', '--require-hashes', '--no-deps', '-r', REQUIREMENTS], 'pip install');
  writeFileSync(stamp, wanted);
}

/**
 * Other `netlify dev`s in this checkout (npm run dev, the netlify-dev test, the bench):
 * they all bundle into .netlify/functions-serve and delete each other's bundles, which
 * then answer 500 "Cannot find module …/___netlify-entry-point.mjs".
 */
function otherNetlifyDevs(): number[] {
  if (!existsSync('/proc')) return [];
  return readdirSync('/proc')
    .filter((entry) => /^\d+$/.test(entry) && Number(entry) !== process.pid)
    .filter((pid) => {
      try {
        const args = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
        return args.some((a) => a.endsWith('netlify-cli/bin/run.js')) && args.includes('dev') && path.resolve(readlinkSync(`/proc/${pid}/cwd`)) === path.resolve(ROOT);
      } catch {
        return false;
      }
    })
    .map(Number);
}

let stack: LocalStack | undefined;
let bridge: StripeMockBridge | undefined;
let netlify: NetlifyDev | undefined;
let dataDir: string | undefined;

async function stopAll(): Promise<void> {
  await netlify?.stop().catch(() => {});
  await bridge?.close().catch(() => {});
  await stack?.stop().catch((error: unknown) => console.error(error));
  if (dataDir) await rm(dataDir, { recursive: true, force: true });
  netlify = bridge = stack = dataDir = undefined;
}

async function schemathesis(url: string, tokens: Record<string, string>, extraArgs: string[]): Promise<number> {
  const args = ['--config-file', CONFIG, 'run', SPEC, '--url', url, ...extraArgs];
  say(`schemathesis --config-file ${path.relative(ROOT, CONFIG)} run ${path.relative(ROOT, SPEC)} --url ${url} ${extraArgs.join(' ')}`);
  const output: string[] = [];
  // Tokens reach Schemathesis through the environment (the config reads them), not argv.
  // Unbuffered: into a pipe Python would otherwise write in 8 KB blocks, not as it goes.
  const code = await run(bin('schemathesis'), args, 'schemathesis', { ...process.env, ...tokens, PYTHONUNBUFFERED: '1' }, output);
  const counts = parseTestCases(output.join(''));
  if (!counts) say('no "Test cases:" summary in Schemathesis\'s output: counted as 1 failed');
  mkdirSync(path.dirname(RESULTS), { recursive: true });
  writeFileSync(RESULTS, JSON.stringify(counts ?? { generated: 0, passed: 0, failed: 1, skipped: 0 }) + '\n');
  return code;
}

async function main(): Promise<number> {
  const started = performance.now();
  rmSync(RESULTS, { force: true }); // a file from an earlier run would speak for this one
  mkdirSync(WORK, { recursive: true });
  await ensureVenv();
  await mustRun(bin('openapi-spec-validator'), [SPEC], 'openapi-spec-validator');

  const others = otherNetlifyDevs();
  if (others.length > 0) {
    say(`warning: another netlify dev runs in this checkout (pid ${others.join(', ')}); both share .netlify/functions-serve,`);
    say('so either may answer 500 "Cannot find module …___netlify-entry-point.mjs" while the other rebuilds');
  }
  say('starting PostgreSQL, PostgREST and stripe-mock…');
  dataDir = await mkdtemp(path.join(tmpdir(), 'billing-fuzz-db-'));
  stack = await startLocalStack({
    dataDir,
    ports: { postgres: 0, gateway: 0, postgrest: 0, stripeMock: 0 },
    jwtSecret: LOCAL_JWT_SECRET,
    migrationsDir: at('supabase/migrations'),
    ...(componentLog && { log: componentLog }),
  });
  bridge = await startStripeMockBridge(stack.env.STRIPE_API_BASE);
  const port = await getFreePort();
  say('starting netlify dev…');
  netlify = await startNetlifyDev({
    port,
    env: {
      ...stack.env,
      STRIPE_API_BASE: bridge.url,
      ...LOCAL_STRIPE_ENV,
      URL: `http://localhost:${port}`,
    },
    ...(componentLog && { log: componentLog }),
  });

  // Two users: a new one (checkout answers 200), and a subscriber whose last renewal
  // failed (the portal answers 200, the subscription has every field filled in).
  const issuer = issuerFor(stack.env.SUPABASE_URL);
  const issue = (email: string) => mintAccessToken({ sub: randomUUID(), email, secret: LOCAL_JWT_SECRET, issuer, expiresIn: 3600 });
  const newcomer = issue('fuzz-new@example.com');
  const subscriber = issue('fuzz-subscriber@example.com');
  for (const flow of ['subscribe', 'payment-failed']) {
    await mustRun(
      process.execPath,
      [at('scripts/stripe-trigger.ts'), flow, '--token', subscriber, '--url', `${netlify.url}/api/stripe/webhook`, '--database-url', stack.env.DATABASE_URL],
      `stripe:trigger ${flow}`,
    );
  }
  const code = await schemathesis(netlify.url, { FUZZ_ACCESS_TOKEN: newcomer, FUZZ_SUBSCRIBER_TOKEN: subscriber }, process.argv.slice(2));
  await stopAll();
  say(`${code === 0 ? 'passed' : `failed (exit code ${code})`} in ${Math.round((performance.now() - started) / 1000)} s`);
  return code;
}

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    void stopAll().finally(() => process.exit(130));
  });
}

try {
  process.exitCode = await main();
} catch (error) {
  console.error(`[fuzz] ${error instanceof Error ? error.message : String(error)}`);
  await stopAll();
  process.exitCode = 1;
}
