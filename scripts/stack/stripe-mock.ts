// stripe-mock (github.com/stripe/stripe-mock), Stripe's API simulator: built from
// source with `go install` into <repo>/.local/bin on first use, or an already running
// one named by STRIPE_MOCK_URL.

import { existsSync } from 'node:fs';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { httpAnswers, spawnManaged, waitUntilServing, type LogFn, type ManagedProcess } from './process.ts';

/** The stripe-mock release the stack builds; changing it rebuilds on the next start. */
export const STRIPE_MOCK_VERSION = 'v0.197.0';
const MODULE = 'github.com/stripe/stripe-mock';

/** Any request with a test key; stripe-mock answers even a 400 only once it is serving. */
const PROBE: RequestInit = { headers: { Authorization: 'Bearer sk_test_123' } };

/** Checks that the stripe-mock at `url` answers; returns the URL without a trailing slash. */
export async function checkExternalStripeMock(url: string): Promise<string> {
  const base = url.replace(/\/+$/, '');
  if (!(await httpAnswers(`${base}/v1/customers`, PROBE))) {
    throw new Error(`stripe-mock: STRIPE_MOCK_URL=${url} does not answer (tried GET ${base}/v1/customers)`);
  }
  return base;
}

/** The stripe-mock binary for STRIPE_MOCK_VERSION, built if missing or of another version. */
export async function ensureStripeMockBinary(repoRoot: string, log: LogFn | undefined): Promise<string> {
  const binDir = join(repoRoot, '.local', 'bin');
  const bin = join(binDir, process.platform === 'win32' ? 'stripe-mock.exe' : 'stripe-mock');
  // The binary reports its version as "master" when built with go install, hence a stamp.
  const stamp = join(binDir, 'stripe-mock.version');
  const built = existsSync(bin) ? await readFile(stamp, 'utf8').then((s) => s.trim(), () => '') : '';
  if (built === STRIPE_MOCK_VERSION) return bin;

  const install = `GOBIN=${binDir} go install ${MODULE}@${STRIPE_MOCK_VERSION}`;
  const go = spawnManaged('go', 'go', ['version'], { log });
  if ((await go.exited) !== 'exit code 0') {
    throw new Error(
      `stripe-mock ${STRIPE_MOCK_VERSION} is not built yet, and building it needs Go, which is not on PATH. ` +
        `Either install Go (>= 1.22, https://go.dev/dl/) and start the stack again, which runs:\n  ${install}\n` +
        `or start a stripe-mock ${STRIPE_MOCK_VERSION} yourself (e.g. docker run --rm -p 12111-12112:12111-12112 stripe/stripe-mock) ` +
        `and set STRIPE_MOCK_URL=http://127.0.0.1:12111.`,
    );
  }

  log?.(`[stack] building stripe-mock ${STRIPE_MOCK_VERSION}: ${install}`);
  await mkdir(binDir, { recursive: true });
  await rm(stamp, { force: true });
  const build = spawnManaged('go install', 'go', ['install', `${MODULE}@${STRIPE_MOCK_VERSION}`], {
    log,
    env: { ...process.env, GOBIN: binDir },
  });
  const how = await build.exited;
  if (how !== 'exit code 0' || !existsSync(bin)) {
    throw new Error(`stripe-mock: \`${install}\` failed (${how})${build.output.text()}`);
  }
  await writeFile(stamp, `${STRIPE_MOCK_VERSION}\n`);
  return bin;
}

export async function startStripeMock(bin: string, port: number, log: LogFn | undefined): Promise<ManagedProcess> {
  // Without an HTTPS address stripe-mock also listens for HTTPS on *:12112, which
  // collides as soon as two run; ":0"-style empty port lets the system choose.
  const proc = spawnManaged('stripe-mock', bin, ['-http-addr', `127.0.0.1:${port}`, '-https-addr', '127.0.0.1:'], { log });
  await waitUntilServing(proc, `http://127.0.0.1:${port}/v1/customers`, () => true, PROBE);
  return proc;
}
