// Cold starts of what ships: the zips `netlify build --offline` makes, unpacked and run
// through Netlify's ___netlify-entry-point.mjs in a fresh Node process per run
// (scripts/lib/netlify-artifact.ts), beside a no-op function built and zipped by the same
// build in the same copy of the site, round-robin in one run.

import { readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { invoke, netlifyBuild, unpack, unpackRoot, writeRunner, type LambdaRequest, type LambdaRun } from '../lib/netlify-artifact.ts';
import { median, spread, type Spread } from './stats.ts';

/** The no-op, as a function file of the site: netlify build bundles and zips it like ours. */
export const NOOP_FUNCTION = `// A no-op Netlify function: the cold-start baseline (the bench adds it to a copy of the site).
export default async (_req: Request): Promise<Response> =>
  new Response(JSON.stringify({ ok: true }), { status: 200, headers: { 'Content-Type': 'application/json' } });
`;
const NOOP_NAME = 'bench-noop';

/** The floor of a function that must hear from the database before it answers: one
 *  POST to PostgREST over node:http (as our store sends it), and nothing else. The
 *  difference between it and the no-op is what one cold database call costs. */
export const ONE_CALL_FUNCTION = `// One database call and nothing else: a cold-start floor (the bench adds it to a copy of the site).
import http from 'node:http';

export default async (req: Request): Promise<Response> => {
  const body = await req.text();
  const key = process.env['SUPABASE_SERVICE_ROLE_KEY'] ?? '';
  const url = new URL('/rest/v1/rpc/billing_events_known', process.env['SUPABASE_URL']);
  const headers = { apikey: key, authorization: \`Bearer \${key}\`, 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)) };
  const status = await new Promise<number>((resolve, reject) => {
    const call = http.request(url, { method: 'POST', headers }, (res) => {
      res.resume();
      res.once('end', () => resolve(res.statusCode ?? 0));
    });
    call.once('error', reject);
    call.end(body);
  });
  return new Response(JSON.stringify({ status }), { status: status === 200 ? 200 : 502, headers: { 'Content-Type': 'application/json' } });
};
`;
const ONE_CALL_NAME = 'bench-one-call';

/** Targets through the entry point, full 200 path, × the no-op (issue #12). */
export const ENTRY_TARGETS: Record<string, number> = { checkout: 1.6, portal: 1.6, status: 1.3, webhook: 1.1, 'team checkout': 1.6, 'team status': 1.3 };
/** At most this much larger than the no-op's zip. */
export const ZIP_EXTRA_TARGET = 300 * 1024;

export interface EntryFunction {
  name: string;
  zipBytes: number;
  /** The full 200 answered, from process start (the process's first request). */
  first: Spread;
  /** The request alone, after the entry point was imported. */
  request: Spread;
  /** Importing the entry point (Netlify's bootstrap). */
  importMs: Spread;
  cpu: Spread;
  /** median(first) / median(the no-op's answer). */
  ratio: number;
  /** Per round: first / the no-op's answer in that round. */
  paired: Spread;
}

export interface EntryReport {
  noop: { zipBytes: number; answer: Spread; request: Spread; importMs: Spread; ready: Spread; cpu: Spread };
  /** ONE_CALL_FUNCTION: the floor of any function that answers after one database call. */
  oneCall: EntryFunction;
  functions: EntryFunction[];
  /** The same functions as Netlify packs the source files without `npm run build`
   *  (netlify.toml pointed at netlify/functions, no build command): the baseline. */
  unbundled: EntryFunction[];
  buildSeconds: number;
}

/** netlify.toml as it was before `npm run build`: Netlify packs netlify/functions itself. */
function withoutBuildStep(toml: string): string {
  return toml.replace(/^\s*command = "npm run build"\n/m, '').replace('functions = "build/functions"', 'functions = "netlify/functions"');
}

export interface EntryRequests {
  /** The real request of a run (a fresh event for the webhook, a seeded user otherwise). */
  full(name: string, run: number): { request: LambdaRequest; expect: number };
}

const FUNCTION_OF: Record<string, string> = {
  checkout: 'stripe-checkout',
  portal: 'stripe-portal',
  status: 'stripe-subscription',
  webhook: 'stripe-webhook',
  // The same functions for a team: the caller's role and the team's account in the same
  // one database call (issue #17: a team request costs what a personal one does).
  'team checkout': 'stripe-checkout',
  'team status': 'stripe-subscription',
};
/** Also measured as Netlify packs the sources without npm run build (issue #12's baseline). */
const UNBUNDLED = ['checkout', 'portal', 'status', 'webhook'];

export async function entryPointColdStarts(opts: {
  runs: number;
  env: Record<string, string>;
  requests: EntryRequests;
  progress: (line: string) => void;
}): Promise<EntryReport> {
  const started = performance.now();
  const built = await netlifyBuild({ extraFunctions: { [`${NOOP_NAME}.mts`]: NOOP_FUNCTION, [`${ONE_CALL_NAME}.mts`]: ONE_CALL_FUNCTION } });
  const buildSeconds = (performance.now() - started) / 1000;
  const before = await netlifyBuild({ editToml: withoutBuildStep, ownNodeModules: true });
  const root = await unpackRoot('billing-bench-zips-');
  try {
    const runner = await writeRunner(root);
    const dirs = new Map<string, string>();
    const zipBytes = new Map<string, number>();
    for (const zip of built.zips) {
      dirs.set(zip.name, (await unpack(zip.zip, path.join(root, zip.name))).dir);
      zipBytes.set(zip.name, zip.zipBytes);
    }
    for (const zip of before.zips) {
      if (!(await readFile(path.join(before.site, 'netlify.toml'), 'utf8')).includes('functions = "netlify/functions"')) throw new Error('the baseline build did not use netlify/functions');
      dirs.set(`unbundled ${zip.name}`, (await unpack(zip.zip, path.join(root, `unbundled-${zip.name}`))).dir);
      zipBytes.set(`unbundled ${zip.name}`, zip.zipBytes);
    }
    const entries = [...Object.keys(FUNCTION_OF), ...UNBUNDLED.map((n) => `unbundled ${n}`), 'one-call', 'noop'];
    const runs = new Map<string, LambdaRun[]>(entries.map((e) => [e, []]));
    for (let run = 0; run < opts.runs; run += 1) {
      opts.progress(`entry-point cold starts: round ${run + 1}/${opts.runs}`);
      for (let k = 0; k < entries.length; k += 1) {
        const name = entries[(k + run) % entries.length] ?? 'noop';
        const plain = name.replace(/^unbundled /, '');
        const fn = name === 'noop' ? NOOP_NAME : name === 'one-call' ? ONE_CALL_NAME : `${name.startsWith('unbundled ') ? 'unbundled ' : ''}${FUNCTION_OF[plain] ?? plain}`;
        const dir = dirs.get(fn);
        if (!dir) throw new Error(`netlify build made no ${fn}.zip`);
        const full =
          name === 'noop'
            ? { request: { url: 'https://bench.example/noop', method: 'POST', headers: {}, body: '{}' }, expect: 200 }
            : name === 'one-call'
              ? { request: { url: 'https://bench.example/one-call', method: 'POST', headers: {}, body: JSON.stringify({ p_event_ids: [`evt_bench_floor_${run}`] }) }, expect: 200 }
              : opts.requests.full(plain, run);
        // The full 200 is the cold process's first request, as the no-op's is.
        const requests = [full.request];
        const result = await invoke({ runner, dir, name: fn, requests, env: opts.env });
        const last = result.answers.at(-1);
        if (last?.status !== full.expect) throw new Error(`${name} through the entry point answered ${String(last?.status)} ${last?.body ?? ''}\n${result.stderr.slice(-2000)}`);
        runs.get(name)?.push(result);
      }
    }
    const noopRuns = runs.get('noop') ?? [];
    const answerAt = (r: LambdaRun) => r.answers.at(-1)?.atMs ?? Number.NaN;
    const noopMedian = median(noopRuns.map(answerAt));
    const figures = (name: string, prefix: string): EntryFunction => {
      const list = runs.get(`${prefix}${name}`) ?? [];
      const first = spread(list.map(answerAt));
      return {
        name,
        zipBytes: zipBytes.get(`${prefix}${FUNCTION_OF[name] ?? ONE_CALL_NAME}`) ?? 0,
        first,
        request: spread(list.map((r) => r.answers[0]?.ms ?? Number.NaN)),
        importMs: spread(list.map((r) => r.importMs)),
        cpu: spread(list.map((r) => r.cpuMs)),
        ratio: first.median / noopMedian,
        paired: spread(list.map((r, i) => answerAt(r) / answerAt(noopRuns[i] ?? r))),
      };
    };
    const functions = Object.keys(FUNCTION_OF).map((name) => figures(name, ''));
    const unbundled = UNBUNDLED.map((name) => figures(name, 'unbundled '));
    return {
      noop: {
        zipBytes: zipBytes.get(NOOP_NAME) ?? 0,
        answer: spread(noopRuns.map(answerAt)),
        request: spread(noopRuns.map((r) => r.answers[0]?.ms ?? Number.NaN)),
        importMs: spread(noopRuns.map((r) => r.importMs)),
        ready: spread(noopRuns.map((r) => r.readyMs)),
        cpu: spread(noopRuns.map((r) => r.cpuMs)),
      },
      oneCall: figures('one-call', ''),
      functions,
      unbundled,
      buildSeconds,
    };
  } finally {
    await rm(root, { recursive: true, force: true });
    await rm(built.site, { recursive: true, force: true });
    await rm(before.site, { recursive: true, force: true });
  }
}
