// What Netlify deploys, built and run as Netlify does: `netlify build --offline` in a
// copy of the site (it runs netlify.toml's build command, then packs
// .netlify/functions/<name>.zip), each zip unpacked into a folder with no node_modules
// above it, and invoked through the zip's own ___netlify-entry-point.mjs in a fresh
// Node process, with the `awslambda` global that Lambda's runtime provides stubbed. The
// artifact test (test/artifact.test.ts) and the bench (npm run bench) both use it.

import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { cp, mkdir, mkdtemp, readdir, readFile, realpath, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { unzipSync } from 'fflate';
import { siteCopy } from './netlify-dev.ts';

const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
const NETLIFY_CLI = fileURLToPath(new URL('../../node_modules/netlify-cli/bin/run.js', import.meta.url));

export const ENTRY_POINT = '___netlify-entry-point.mjs';

export interface BuiltZip {
  /** The function's name, e.g. "stripe-checkout". */
  name: string;
  zip: string;
  zipBytes: number;
}

export interface NetlifyBuild {
  /** The copy of the site the build ran in. */
  site: string;
  zips: BuiltZip[];
  /** The build's own output, for a failure message. */
  output: string;
}

/**
 * `netlify build --offline` in a fresh copy of this checkout (so the build writes a
 * .netlify/ and build/ of its own). extraFunctions: more entry files for
 * netlify/functions/ in the copy only (the bench's no-op), built the same way.
 */
export async function netlifyBuild(
  opts: {
    extraFunctions?: Record<string, string>;
    env?: Record<string, string>;
    /** Rewrites netlify.toml in the copy (the bench's build without `npm run build`). */
    editToml?: (toml: string) => string;
    /**
     * A real node_modules in the copy (hard links) instead of the link to this
     * checkout's: Netlify traces npm packages by their real path and leaves out any
     * outside the site, so a build that ships packages (the bench's baseline) needs it.
     */
    ownNodeModules?: boolean;
  } = {},
): Promise<NetlifyBuild> {
  const site = await siteCopy();
  if (opts.ownNodeModules) {
    const target = path.join(site, 'node_modules');
    await rm(target);
    // Its real path: in a git worktree node_modules may itself be a link.
    const source = await realpath(path.join(REPO_ROOT, 'node_modules'));
    const linked = spawnSync('cp', ['-al', source, target]);
    if (linked.status !== 0) await cp(source, target, { recursive: true, verbatimSymlinks: true });
  }
  for (const [file, source] of Object.entries(opts.extraFunctions ?? {})) await writeFile(path.join(site, 'netlify/functions', file), source);
  if (opts.editToml) {
    const toml = path.join(site, 'netlify.toml');
    const edited = opts.editToml(await readFile(toml, 'utf8'));
    await rm(toml);
    await writeFile(toml, edited);
  }
  const env: Record<string, string | undefined> = { ...process.env, NETLIFY_TELEMETRY_DISABLED: '1', ...opts.env };
  // As on Netlify: nothing of npm run dev's or the tests' says to include the dashboard.
  if (opts.env?.['BILLING_EXAMPLE_DASHBOARD'] === undefined) delete env['BILLING_EXAMPLE_DASHBOARD'];
  const child = spawn(process.execPath, [NETLIFY_CLI, 'build', '--offline'], { cwd: site, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
  const code = await new Promise<number | null>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', resolve);
  });
  if (code !== 0) {
    await rm(site, { recursive: true, force: true });
    throw new Error(`netlify build --offline exited with ${String(code)}:\n${output.slice(-4000)}`);
  }
  const dir = path.join(site, '.netlify/functions');
  const zips: BuiltZip[] = [];
  for (const file of (await readdir(dir)).filter((f) => f.endsWith('.zip')).sort()) {
    const zip = path.join(dir, file);
    zips.push({ name: file.replace(/\.zip$/, ''), zip, zipBytes: (await stat(zip)).size });
  }
  return { site, zips, output };
}

/** The folders above dir that hold a node_modules (none, for an honest unpacked function). */
export function nodeModulesAbove(dir: string): string[] {
  const found: string[] = [];
  for (let at = path.dirname(path.resolve(dir)); ; at = path.dirname(at)) {
    if (existsSync(path.join(at, 'node_modules'))) found.push(at);
    if (path.dirname(at) === at) return found;
  }
}

export interface Unpacked {
  dir: string;
  /** Paths inside the zip, with their unpacked sizes. */
  files: Record<string, number>;
}

/** Unpacks a zip into dir (created); refuses entries that would land outside it. */
export async function unpack(zip: string, dir: string): Promise<Unpacked> {
  const entries = unzipSync(new Uint8Array(await readFile(zip)));
  const files: Record<string, number> = {};
  for (const [name, bytes] of Object.entries(entries)) {
    const target = path.resolve(dir, name);
    if (!target.startsWith(path.resolve(dir) + path.sep)) throw new Error(`${zip}: entry ${name} points outside`);
    if (name.endsWith('/')) continue;
    await mkdir(path.dirname(target), { recursive: true });
    await writeFile(target, bytes);
    files[name] = bytes.byteLength;
  }
  return { dir, files };
}

/** A folder in the temporary directory for unpacked functions and the runner. */
export async function unpackRoot(prefix = 'billing-artifact-'): Promise<string> {
  return mkdtemp(path.join(tmpdir(), prefix));
}

/** A request as plain data; the runner turns it into the event Netlify's gateway sends. */
export interface LambdaRequest {
  url: string;
  method: string;
  headers: Record<string, string>;
  body?: string;
}

export interface LambdaAnswer {
  status: number;
  headers: Record<string, string>;
  body: string;
  /** This request alone. */
  ms: number;
  /** Since the process started (performance.timeOrigin), when this answer was complete. */
  atMs: number;
}

export interface LambdaRun {
  /** Since process start, when the runner had built its events (Node itself is up). */
  readyMs: number;
  /** Importing ___netlify-entry-point.mjs (Netlify's bootstrap; the function file is
   *  imported on the first invocation). */
  importMs: number;
  answers: LambdaAnswer[];
  /** CPU time (user + system) of the process until the last answer. */
  cpuMs: number;
  /** From spawn until the child exited, measured by the parent. */
  wallMs: number;
  /** What the function logged. */
  stdout: string;
  stderr: string;
}

/**
 * Plain JavaScript, written beside the unpacked folders: the child loads Node, this and
 * the zip's files, nothing else. The stub is what Lambda's Node runtime gives a
 * streaming handler: awslambda.streamifyResponse(handler) and HttpResponseStream.from.
 */
const RUNNER = `// Written by scripts/lib/netlify-artifact.ts: invokes one unpacked Netlify function.
import { Writable } from 'node:stream';
const spec = JSON.parse(process.env.LAMBDA_SPEC);
globalThis.awslambda = {
  streamifyResponse: (handler) => handler,
  HttpResponseStream: { from(stream, metadata) { stream.metadata = metadata; return stream; } },
};
const events = spec.requests.map((r) => ({
  rawUrl: r.url, httpMethod: r.method, headers: r.headers, body: r.body ?? '', isBase64Encoded: false, flags: {},
}));
const readyMs = performance.now();
const { handler } = await import(spec.entry);
const importMs = performance.now() - readyMs;
const answers = [];
let n = 0;
for (const event of events) {
  const start = performance.now();
  const chunks = [];
  const stream = new Writable({ write(chunk, _encoding, done) { chunks.push(Buffer.from(chunk)); done(); } });
  const finished = new Promise((resolve, reject) => { stream.once('finish', resolve); stream.once('error', reject); });
  n += 1;
  const context = { awsRequestId: 'local-' + n, functionName: spec.name, getRemainingTimeInMillis: () => 10000, clientContext: {}, callbackWaitsForEmptyEventLoop: true };
  await handler(event, stream, context);
  await finished;
  const headers = {};
  for (const [name, values] of Object.entries(stream.metadata?.multiValueHeaders ?? stream.metadata?.headers ?? {})) headers[name.toLowerCase()] = [].concat(values).join(', ');
  const atMs = performance.now();
  answers.push({ status: stream.metadata?.statusCode ?? 0, headers, body: Buffer.concat(chunks).toString('utf8'), ms: atMs - start, atMs });
}
const cpu = process.cpuUsage();
process.stdout.write('\\nLAMBDA_RESULT ' + JSON.stringify({ readyMs, importMs, answers, cpuMs: (cpu.user + cpu.system) / 1000 }) + '\\n', () => process.exit(0));
`;

/** Writes the runner into root (beside the unpacked functions) and returns its path. */
export async function writeRunner(root: string): Promise<string> {
  const file = path.join(root, 'invoke-entry-point.mjs');
  await writeFile(file, RUNNER);
  return file;
}

/**
 * One cold start: a new Node process in the unpacked folder (as Lambda's task root)
 * imports its entry point and answers the requests in order. env: the function's
 * variables only (and PATH), as on Netlify.
 */
export async function invoke(opts: { runner: string; dir: string; name: string; requests: LambdaRequest[]; env: Record<string, string> }): Promise<LambdaRun> {
  const entry = path.join(opts.dir, ENTRY_POINT);
  const spec = JSON.stringify({ entry: new URL(`file://${entry}`).href, name: opts.name, requests: opts.requests });
  const env = { PATH: process.env['PATH'] ?? '', ...opts.env, LAMBDA_TASK_ROOT: opts.dir, LAMBDA_SPEC: spec };
  const started = performance.now();
  const child = spawn(process.execPath, [opts.runner], { cwd: opts.dir, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const code = await new Promise<number | null>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', resolve);
  });
  const wallMs = performance.now() - started;
  const marker = stdout.lastIndexOf('\nLAMBDA_RESULT ');
  if (code !== 0 || marker < 0) {
    throw new Error(`${opts.name}: the entry point exited with ${String(code)}:\n${stderr.slice(-3000)}\n${stdout.slice(-1000)}`);
  }
  const line = stdout.slice(marker + '\nLAMBDA_RESULT '.length).split('\n')[0] ?? '';
  const result = JSON.parse(line) as Omit<LambdaRun, 'wallMs' | 'stdout' | 'stderr'>;
  return { ...result, wallMs, stdout: stdout.slice(0, marker), stderr };
}
