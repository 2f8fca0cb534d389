// Cold starts: for every run a fresh `node` process loads one bundle and answers its
// first requests. The runner is plain JavaScript, written next to the bundles, so that
// the child loads nothing but Node, the runner and the bundle (a .ts runner would load
// Node's type stripper first).

import { spawn } from 'node:child_process';
import { stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Built } from './build.ts';

/** The requests one run sends, as plain data (the child builds the Request objects). */
export interface RequestSpec {
  url: string;
  method: string;
  headers: Record<string, string>;
  body?: string;
}

export interface ColdRun {
  /** From process start (performance.timeOrigin) to the runner's first line. */
  bootMs: number;
  /** From process start until the runner has built its Request objects (Node's fetch
   *  classes loaded): the floor every entry shares. */
  readyMs: number;
  /** Loading the bundle: `await import()` alone. */
  importMs: number;
  /** From process start until an OPTIONS preflight is answered: start-up and load cost. */
  optionsAnsweredMs: number;
  /** From process start until the first real request is answered (body read). */
  firstAnsweredMs: number;
  /** The first real request alone (after the preflight). */
  firstRequestMs: number;
  /** CPU time (user + system) the process used until the first answer: less sensitive
   *  than wall time to other work on the machine. */
  cpuMs: number;
  /** From spawn to the exit of the child, measured by the parent. */
  wallMs: number;
  status: number;
}

export interface LoadTrace {
  files: number;
  bytes: number;
  packageFiles: number;
  packageBytes: number;
  /** Bytes loaded per npm package. */
  byPackage: Record<string, number>;
}

const RUNNER = `// Written by scripts/bench/cold.ts: one cold start, reported as one JSON line.
const bootMs = performance.now();
const spec = JSON.parse(process.env.BENCH_COLD_SPEC);
const loaded = [];
if (process.env.BENCH_TRACE === '1') {
  const { registerHooks } = await import('node:module');
  registerHooks({ load(url, context, next) { if (url.startsWith('file:')) loaded.push(url); return next(url, context); } });
}
const toRequest = (r) => new Request(r.url, { method: r.method, headers: r.headers, ...(r.body === undefined ? {} : { body: r.body }) });
const preflight = toRequest(spec.options);
const first = toRequest(spec.first);
const ready = performance.now();
const mod = await import(spec.bundle);
const imported = performance.now();
const loadedAtImport = loaded.slice();
const optionsResponse = await mod.default(preflight, {});
await optionsResponse.arrayBuffer();
const optionsAnswered = performance.now();
const response = await mod.default(first, {});
const body = await response.text();
const firstAnswered = performance.now();
const cpu = process.cpuUsage();
const result = {
  bootMs, readyMs: ready, importMs: imported - ready, optionsAnsweredMs: optionsAnswered, firstAnsweredMs: firstAnswered,
  firstRequestMs: firstAnswered - optionsAnswered, cpuMs: (cpu.user + cpu.system) / 1000, status: response.status, optionsStatus: optionsResponse.status,
  body: body.slice(0, 300), loaded, loadedAtImport,
};
process.stdout.write('BENCH_RESULT ' + JSON.stringify(result) + '\\n', () => process.exit(0));
`;

export async function writeRunner(workDir: string): Promise<string> {
  const file = path.join(workDir, 'cold-runner.mjs');
  await writeFile(file, RUNNER);
  return file;
}

interface RunnerResult extends Omit<ColdRun, 'wallMs'> {
  optionsStatus: number;
  body: string;
  loaded: string[];
  loadedAtImport: string[];
}

export interface ColdChildOptions {
  runner: string;
  built: Built;
  options: RequestSpec;
  first: RequestSpec;
  /** The status the first request must get (any other fails the run); undefined: any below 500. */
  expectStatus: number | undefined;
  env: Record<string, string>;
  trace?: boolean;
}

/** Spawns one cold start and returns its timings (and, with trace, the files it loaded). */
export async function coldStart(opts: ColdChildOptions): Promise<ColdRun & { loaded: string[]; loadedAtImport: string[]; body: string }> {
  const spec = JSON.stringify({ bundle: pathToFileUrl(opts.built.file), options: opts.options, first: opts.first });
  // No compile cache and no inherited NODE_OPTIONS: every run starts as cold as Lambda's.
  const env: Record<string, string> = { PATH: process.env['PATH'] ?? '', ...opts.env, BENCH_COLD_SPEC: spec, ...(opts.trace && { BENCH_TRACE: '1' }) };
  const started = performance.now();
  const child = spawn(process.execPath, [opts.runner], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const code = await new Promise<number | null>((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (exitCode) => resolve(exitCode));
  });
  const wallMs = performance.now() - started;
  const line = stdout.split('\n').find((l) => l.startsWith('BENCH_RESULT '));
  if (code !== 0 || !line) {
    throw new Error(`cold start of ${opts.built.entry.name} (${opts.built.mode}) failed with exit code ${String(code)}:\n${stderr.slice(-2000)}${stdout.slice(-1000)}`);
  }
  const result = JSON.parse(line.slice('BENCH_RESULT '.length)) as RunnerResult;
  if (result.optionsStatus !== 204 && opts.built.entry.kind === 'function') {
    throw new Error(`${opts.built.entry.name}: OPTIONS answered ${result.optionsStatus}`);
  }
  if (opts.expectStatus === undefined ? result.status >= 500 : result.status !== opts.expectStatus) {
    throw new Error(`${opts.built.entry.name} (${opts.built.mode}): first request answered ${result.status} ${result.body}`);
  }
  const { optionsStatus: _s, ...run } = result;
  return { ...run, wallMs };
}

function pathToFileUrl(file: string): string {
  return new URL(`file://${path.resolve(file)}`).href;
}

/** Sizes of the files a traced run loaded, grouped by npm package. */
export async function summarizeTrace(loaded: readonly string[]): Promise<LoadTrace> {
  const trace: LoadTrace = { files: 0, bytes: 0, packageFiles: 0, packageBytes: 0, byPackage: {} };
  for (const url of new Set(loaded)) {
    const file = decodeURIComponent(new URL(url).pathname);
    const bytes = (await stat(file).catch(() => undefined))?.size ?? 0;
    trace.files += 1;
    trace.bytes += bytes;
    const match = /node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(file);
    if (match?.[1]) {
      trace.packageFiles += 1;
      trace.packageBytes += bytes;
      trace.byPackage[match[1]] = (trace.byPackage[match[1]] ?? 0) + bytes;
    }
  }
  return trace;
}
