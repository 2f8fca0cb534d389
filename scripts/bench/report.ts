// Turns one benchmark run into docs/benchmarks.md (tables, targets, method) and
// docs/benchmarks.svg (the chart). The ratios of the run are kept in a comment at the
// end of the markdown, so that the next run can say how far each one moved.

import { ENTRY_TARGETS, ZIP_EXTRA_TARGET, type EntryReport } from './entry.ts';
import { readFileSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { FUNCTION_NAMES, type BuildMode, type Shipped } from './build.ts';
import type { ColdRun, LoadTrace } from './cold.ts';
import type { RoundTrip, WarmResult } from './protocol.ts';
import { fmt, median, ratio, spread, type Spread } from './stats.ts';

export interface ColdEntry {
  name: string;
  kind: 'function' | 'baseline' | 'probe';
  mode: BuildMode;
  bytes: number;
  packageInputBytes: number;
  runs: ColdRun[];
  trace: { import: LoadTrace; total: LoadTrace };
}

export interface Machine {
  cpu: string;
  cores: number;
  memoryGiB: number;
  os: string;
  node: string;
  hostname: string;
}

export interface Report {
  date: string;
  machine: Machine;
  knobs: { runs: number; rounds: number; batch: Record<string, number>; probes: boolean };
  /** The zips through Netlify's entry point: what ships. */
  entry: EntryReport;
  cold: ColdEntry[];
  /** zip-it-and-ship-it's own build, if it is installed. */
  shipped: Shipped[] | undefined;
  warm: WarmResult;
  totalSeconds: number;
  /** os.loadavg() at the start and at the end of the run: other work on the machine. */
  load: { start: number[]; end: number[] };
}

interface Previous {
  date: string;
  machine: string;
  ratios: Record<string, number>;
}

export function machine(): Machine {
  let cpu = os.cpus()[0]?.model ?? 'unknown CPU';
  try {
    const info = readFileSync('/proc/cpuinfo', 'utf8');
    cpu = /^model name\s*:\s*(.+)$/m.exec(info)?.[1]?.trim() ?? cpu;
  } catch {
    // not Linux: os.cpus() it is
  }
  return {
    cpu,
    cores: os.availableParallelism(),
    memoryGiB: os.totalmem() / 2 ** 30,
    os: `${os.type()} ${os.release()} ${os.arch()}`,
    node: process.version,
    hostname: os.hostname(),
  };
}

const describeMachine = (m: Machine) =>
  `${m.cpu}, ${m.cores} cores, ${m.memoryGiB.toFixed(1)} GiB RAM, ${m.os}, Node ${m.node}`;

export async function previousResults(file: string): Promise<Previous | undefined> {
  const text = await readFile(file, 'utf8').catch(() => undefined);
  const match = text === undefined ? null : /<!-- bench-results (\{.*\}) -->/s.exec(text);
  if (!match?.[1]) return undefined;
  try {
    return JSON.parse(match[1]) as Previous;
  } catch {
    return undefined;
  }
}

// Figures ----------------------------------------------------------------------------------

/** The webhook needs no Stripe call to verify a signature: a tighter target. */
const coldTarget = (name: string) => (name === 'webhook' ? 1.5 : 2);
/** The issue's four first, then any other function found in netlify/functions. */
const ORDER = ['checkout', 'portal', 'status', 'webhook'];
const functionNames = (cold: readonly ColdEntry[]) =>
  [...new Set(cold.filter((e) => e.kind === 'function').map((e) => e.name))].sort(
    (a, b) => (ORDER.indexOf(a) + 1 || 99) - (ORDER.indexOf(b) + 1 || 99) || a.localeCompare(b),
  );
const WARM_TARGET = 1.2;
const STABILITY = 0.1;

interface ColdFigures {
  entry: ColdEntry;
  first: Spread;
  options: Spread;
  importMs: Spread;
  firstRequest: Spread;
  wall: Spread;
  ready: Spread;
  cpu: Spread;
  /** median(CPU to first answer) / the no-op's. */
  cpuRatio: number;
  /** median(first) / median(no-op first), the no-op of both builds pooled. */
  ratio: number;
  /** Per round: first / no-op first of the same round. */
  paired: Spread;
  wallRatio: number;
  optionsRatio: number;
}

/**
 * The no-op imports nothing, so both builds of it are the same file: its runs in both
 * builds together are the baseline of every entry (twice the samples of one build).
 */
function coldFigures(cold: readonly ColdEntry[]): ColdFigures[] {
  const baselines = cold.filter((e) => e.kind === 'baseline');
  if (baselines.length === 0) throw new Error('no no-op baseline');
  const noopRuns = baselines.flatMap((e) => e.runs);
  const noopMedian = (f: (r: ColdRun) => number) => median(noopRuns.map(f));
  // The baseline of round i: the mean of the no-op's runs in that round.
  const noopOfRound = (i: number) => {
    const runs = baselines.flatMap((e) => e.runs[i] ?? []);
    return runs.reduce((sum, r) => sum + r.firstAnsweredMs, 0) / runs.length;
  };
  return cold.map((entry) => {
    const pick = (f: (r: ColdRun) => number) => spread(entry.runs.map(f));
    const first = pick((r) => r.firstAnsweredMs);
    const paired = spread(entry.runs.map((r, i) => r.firstAnsweredMs / noopOfRound(i)));
    return {
      entry,
      first,
      options: pick((r) => r.optionsAnsweredMs),
      importMs: pick((r) => r.importMs),
      firstRequest: pick((r) => r.firstRequestMs),
      wall: pick((r) => r.wallMs),
      ready: pick((r) => r.readyMs),
      cpu: pick((r) => r.cpuMs),
      cpuRatio: median(entry.runs.map((r) => r.cpuMs)) / noopMedian((r) => r.cpuMs),
      ratio: first.median / noopMedian((r) => r.firstAnsweredMs),
      paired,
      wallRatio: median(entry.runs.map((r) => r.wallMs)) / noopMedian((r) => r.wallMs),
      optionsRatio: median(entry.runs.map((r) => r.optionsAnsweredMs)) / noopMedian((r) => r.optionsAnsweredMs),
    };
  });
}

/** The no-op's figures, both builds pooled. */
function noopFigures(figures: readonly ColdFigures[]): { first: Spread; importMs: number } {
  const runs = figures.filter((f) => f.entry.kind === 'baseline').flatMap((f) => f.entry.runs);
  return { first: spread(runs.map((r) => r.firstAnsweredMs)), importMs: median(runs.map((r) => r.importMs)) };
}

const mb = (bytes: number) => `${(bytes / 2 ** 20).toFixed(1)} MB`;
const kb = (bytes: number) => `${(bytes / 1024).toFixed(bytes < 10_240 ? 1 : 0)} KB`;
const ms = (value: number) => `${fmt(value)} ms`;
const signedMs = (value: number) => `${value >= 0 ? '+' : '−'}${fmt(Math.abs(value))} ms`;
const range = (s: Spread, f: (v: number) => string = (v) => fmt(v)) => `${f(s.p25)}–${f(s.p75)}`;
const ratioRange = (s: Spread) => `${s.min.toFixed(2)}–${s.max.toFixed(2)}`;
const ratioIqr = (s: Spread) => `${s.p25.toFixed(2)}–${s.p75.toFixed(2)}`;

function topPackages(trace: LoadTrace, n = 4): string {
  const list = Object.entries(trace.byPackage).sort((a, b) => b[1] - a[1]);
  if (list.length === 0) return 'none';
  const shown = list.slice(0, n).map(([pkg, bytes]) => `${pkg} ${kb(bytes)}`);
  return list.length > n ? `${shown.join(', ')}, +${list.length - n} more` : shown.join(', ');
}

function ratiosOf(report: Report, figures: readonly ColdFigures[]): Record<string, number> {
  const ratios: Record<string, number> = {};
  // Functions only: the package probes are for reading, not targets.
  for (const f of figures) if (f.entry.kind === 'function') ratios[`cold ${f.entry.mode} ${f.entry.name}`] = f.ratio;
  for (const m of report.warm.warm) {
    ratios[`warm ${m.endpoint} c=${m.concurrency} p50`] = m.p50Ratio.median;
    ratios[`warm ${m.endpoint} c=${m.concurrency} throughput`] = m.throughputRatio.median;
  }
  for (const m of report.warm.webhook) {
    ratios[`warm webhook c=${m.concurrency} p50`] = m.p50Ratio.median;
    ratios[`warm webhook c=${m.concurrency} throughput`] = m.throughputRatio.median;
  }
  return ratios;
}

// Markdown ---------------------------------------------------------------------------------

function table(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const line = (cells: readonly string[]) => `| ${cells.join(' | ')} |`;
  return [line(header), line(header.map(() => '---')), ...rows.map(line)].join('\n');
}

const verdict = (value: number, target: number) =>
  value <= target ? 'met' : `**missed** by ${((value / target - 1) * 100).toFixed(1)}% (${value.toFixed(2)}× vs ≤ ${target}×)`;

function callList(calls: readonly string[]): string {
  if (calls.length === 0) return '0';
  const counts = new Map<string, number>();
  for (const call of calls) counts.set(call, (counts.get(call) ?? 0) + 1);
  return `${calls.length}: ${[...counts].map(([call, n]) => (n > 1 ? `${n}× \`${call}\`` : `\`${call}\``)).join(', ')}`;
}

function markdown(report: Report, previous: Previous | undefined, svgName: string): { text: string; ratios: Record<string, number> } {
  const figures = coldFigures(report.cold);
  const ratios = ratiosOf(report, figures);
  const byName = (mode: BuildMode, name: string) => figures.find((f) => f.entry.mode === mode && f.entry.name === name);
  const out: string[] = [];
  const date = report.date.replace('T', ' ').replace(/\.\d+Z$/, ' UTC');

  out.push('# Benchmarks', '');
  out.push(
    `Written by \`npm run bench\` on ${date}, in ${Math.round(report.totalSeconds)} s. Every figure stands beside its baseline from the same run. ` +
      'Do not edit by hand: rerun the benchmark (method at the end).',
    '',
  );
  const loads = (l: number[]) => l.map((v) => v.toFixed(1)).join(' / ');
  out.push(
    `**Machine:** ${describeMachine(report.machine)} (host \`${report.machine.hostname}\`). ` +
      `Load average (1 / 5 / 15 min) ${loads(report.load.start)} at the start, ${loads(report.load.end)} at the end ` +
      '(the benchmark itself keeps up to two cores busy; more than that is other work, which widens the spreads).',
    '',
  );
  out.push(
    `**Settings:** ${report.knobs.runs} cold starts per function and build, round-robin with the no-op; ` +
      `${report.knobs.rounds} interleaved rounds per warm figure, batches of ${Object.entries(report.knobs.batch).map(([c, n]) => `${n} at concurrency ${c}`).join(', ')}.`,
    '',
  );
  out.push(`![Cold starts against the no-op, warm overhead, webhook throughput](${svgName})`, '');

  // Targets.
  out.push('## Targets', '');
  const rows: string[][] = [];
  const noop = noopFigures(figures);
  const names = functionNames(report.cold);
  const entryNoop = report.entry.noop;
  for (const f of report.entry.functions) {
    const target = ENTRY_TARGETS[f.name] ?? 1;
    const allowed = entryNoop.answer.median * target;
    rows.push([
      `Through the entry point, ${f.name}'s full 200 ≤ ${target}× the no-op`,
      `${ratio(f.ratio)} (${ms(f.first.median)} vs ${ms(entryNoop.answer.median)}; paired IQR ${ratioIqr(f.paired)})` +
        ((u) => (u ? `; without npm run build ${ratio(u.ratio)}` : ''))(report.entry.unbundled.find((u) => u.name === f.name)),
      f.ratio <= target
        ? 'met'
        : `**missed** by ${ms(f.first.median - allowed)}: where the time goes is under "What ships"; a function that makes one database call and nothing else is ${ratio(report.entry.oneCall.ratio)}`,
    ]);
  }
  for (const f of report.entry.functions) {
    const extra = f.zipBytes - entryNoop.zipBytes;
    rows.push([`${f.name}'s zip ≤ the no-op's + ${kb(ZIP_EXTRA_TARGET)}`, `${kb(f.zipBytes)} (+${kb(extra)} over ${kb(entryNoop.zipBytes)})`, extra <= ZIP_EXTRA_TARGET ? 'met' : '**missed**']);
  }
  for (const name of names) {
    const f = byName('esbuild', name);
    const target = coldTarget(name);
    if (!f) continue;
    const allowed = noop.first.median * target;
    const loads = f.entry.trace.import;
    const unbundled = byName('netlify', name);
    rows.push([
      `Module only (no bootstrap): cold start of ${name} ≤ ${target}× the no-op`,
      `${ratio(f.ratio)} (${ms(f.first.median)} vs ${ms(noop.first.median)}; paired IQR ${ratioIqr(f.paired)})` +
        (unbundled ? `; npm packages external (without npm run build) ${ratio(unbundled.ratio)}` : ''),
      f.ratio <= target
        ? 'met'
        : `**missed** by ${ms(f.first.median - allowed)} (${ratio(f.ratio / target)} the allowed ${ms(allowed)}): ` +
          `its import takes ${ms(f.importMs.median)} (the no-op’s ${ms(noop.importMs)}), loading ${kb(loads.packageBytes)} of npm code in ${loads.packageFiles} files ` +
          `(${topPackages(loads, 3)}), and the first request ${ms(f.firstRequest.median)}`,
    ]);
  }
  const warmAll = [...report.warm.warm, ...report.warm.webhook.filter((m) => m.concurrency <= 10)];
  for (const m of warmAll) {
    const worst = Math.max(m.p50Ratio.median, m.throughputRatio.median);
    rows.push([
      `Warm overhead of ${m.endpoint} at concurrency ${m.concurrency} ≤ ${WARM_TARGET}×`,
      `p50 ${ratio(m.p50Ratio.median)}, throughput ${ratio(m.throughputRatio.median)}`,
      verdict(worst, WARM_TARGET),
    ]);
  }
  const trip = (scenario: string) => report.warm.roundTrips.find((t) => t.scenario === scenario);
  const returning = trip('checkout: returning user');
  if (returning) {
    const ok = returning.dbCalls.length === 1 && returning.stripeCalls.length === 1;
    rows.push(['Checkout of a returning user: 1 database read, 1 Stripe call', `${returning.dbCalls.length} database, ${returning.stripeCalls.length} Stripe`, ok ? 'met' : '**missed**']);
  }
  const webhookTrips = report.warm.roundTrips.filter((t) => t.scenario.startsWith('webhook: ') && !/not handled|duplicate|bad signature/.test(t.scenario));
  if (webhookTrips.length > 0) {
    const counts = [...new Set(webhookTrips.map((t) => t.dbCalls.length))];
    const stripeCalls = webhookTrips.reduce((s, t) => s + t.stripeCalls.length, 0);
    const ok = counts.length === 1 && counts[0] === 1 && stripeCalls === 0;
    rows.push([
      'Webhook: 1 database round trip per event (billing_apply_event), no Stripe call',
      `${counts.join(' or ')} per event over ${webhookTrips.length} handled types, ${stripeCalls} Stripe calls`,
      ok ? 'met' : '**missed**',
    ]);
  }
  if (previous) {
    const changes = Object.entries(ratios).flatMap(([key, value]) => {
      const before = previous.ratios[key];
      return before === undefined ? [] : [{ key, change: value / before - 1 }];
    });
    const worst = changes.reduce((w, c) => (Math.abs(c.change) > Math.abs(w.change) ? c : w), { key: '', change: 0 });
    const outside = changes.filter((c) => Math.abs(c.change) > STABILITY).length;
    rows.push([
      'A rerun gives the same ratios within 10%',
      `vs the previous run (${previous.date.slice(0, 16).replace('T', ' ')}): ${changes.length} ratios, largest change ${(worst.change * 100).toFixed(1)}% (${worst.key})`,
      outside === 0 ? 'met' : `**missed**: ${outside} of ${changes.length} moved more than 10% (see Stability)`,
    ]);
  } else {
    rows.push(['A rerun gives the same ratios within 10%', 'no earlier run in this file', 'run `npm run bench` again to check']);
  }
  out.push(table(['Target', 'Measured', 'Verdict'], rows), '');

  // What ships.
  out.push('## What ships: cold starts through Netlify\'s entry point', '');
  out.push(
    `\`netlify build --offline\` (which runs \`npm run build\`) in a copy of the site with two functions added, built and zipped the same way: a no-op, and a floor that makes one database call and nothing else (${fmt(report.entry.buildSeconds)} s). ` +
      'Each zip is unpacked into the temporary folder (no node_modules above it); every run is a fresh `node` that stubs Lambda\'s `awslambda` global, imports the zip\'s `___netlify-entry-point.mjs` ' +
      'and invokes its handler once with the event Netlify\'s gateway sends, the full 200 request against the local stack (checkout of a returning user, portal and status of a subscribed user, a new signed `customer.subscription.updated`), as the no-op is invoked once. ' +
      'Times are from process start until the 200 is answered; runs are round-robin with the no-op, so each round pairs them. (The preflight, 401, 405 and 400 of each zip are checked by `test/artifact.test.ts`.) ' +
      'The last column is the baseline: the same source zipped by a second `netlify build --offline` with netlify.toml as before `npm run build` (functions from `netlify/functions`, no build command), so Netlify bundles our code and ships the npm packages beside it as loose files.',
    '',
  );
  out.push(
    table(
      ['Function', 'Zip', 'Entry point import', 'The request alone', 'Full 200 answered (IQR)', '× no-op (paired IQR)', 'Target', 'CPU to the 200 (× no-op)', 'Without npm run build: zip, × no-op'],
      [
        ['no-op', kb(entryNoop.zipBytes), ms(entryNoop.importMs.median), ms(entryNoop.request.median), `${ms(entryNoop.answer.median)} (${range(entryNoop.answer)})`, '1.00×', '', ms(entryNoop.cpu.median), ''],
        ((f) => [
          'one database call (floor)',
          `${kb(f.zipBytes)} (+${kb(f.zipBytes - entryNoop.zipBytes)})`,
          ms(f.importMs.median),
          ms(f.request.median),
          `${ms(f.first.median)} (${range(f.first)})`,
          `${ratio(f.ratio)} (${ratioIqr(f.paired)})`,
          '',
          `${ms(f.cpu.median)} (${ratio(f.cpu.median / entryNoop.cpu.median)})`,
          '',
        ])(report.entry.oneCall),
        ...report.entry.functions.map((f) => [
          f.name,
          `${kb(f.zipBytes)} (+${kb(f.zipBytes - entryNoop.zipBytes)})`,
          ms(f.importMs.median),
          ms(f.request.median),
          `**${ms(f.first.median)}** (${range(f.first)})`,
          `**${ratio(f.ratio)}** (${ratioIqr(f.paired)})`,
          `≤ ${ENTRY_TARGETS[f.name] ?? 1}×`,
          `${ms(f.cpu.median)} (${ratio(f.cpu.median / entryNoop.cpu.median)})`,
          ((u) => (u ? `${kb(u.zipBytes)}, ${ratio(u.ratio)} (${ms(u.first.median)})` : 'n/a'))(report.entry.unbundled.find((u) => u.name === f.name)),
        ]),
      ],
    ),
    '',
  );
  // Where a function's time over the no-op goes, from figures of this same run.
  const over = report.entry.functions.map((f) => {
    const moduleOnly = byName('esbuild', f.name);
    const warmDirect = report.warm.warm.find((m) => m.endpoint === f.name && m.concurrency === 1) ?? report.warm.webhook.find((m) => m.endpoint === f.name && m.concurrency === 1);
    const calls = f.name === 'webhook' ? '1 database call' : f.name.endsWith('status') ? '1 database read' : '1 database read, 1 Stripe call';
    const allowed = entryNoop.answer.median * (ENTRY_TARGETS[f.name] ?? 1) - entryNoop.answer.median;
    return [
      f.name,
      ms(f.first.median - entryNoop.answer.median),
      ms(allowed),
      moduleOnly ? ms(moduleOnly.importMs.median - noop.importMs) : 'n/a',
      moduleOnly ? ms(moduleOnly.firstRequest.median) : 'n/a',
      warmDirect ? `${calls}: ${ms(warmDirect.direct.p50)} warm` : calls,
    ];
  });
  out.push(
    '**Where the time over the no-op goes** (same run). A function differs from the no-op in two things only: loading its bundle, and the work of its request, ' +
      'which waits for the database (and Stripe) over fresh connections. The module-only runs below time the two apart; the warm direct script makes the same calls on open connections, the floor of that wait. ' +
      `The "one database call" function of the table above (a zip of the same build: one POST to PostgREST over \`node:http\`, a one-row read, and no other work) is the floor of a cold call: ${ms(report.entry.oneCall.first.median - entryNoop.answer.median)} over the no-op, ${ratio(report.entry.oneCall.ratio)}.`,
    '',
  );
  out.push(
    table(['Function', 'Over the no-op, through the entry point', 'Allowed by the target', 'Loading the bundle (over the no-op\'s)', 'The first request, module only', 'Calls it waits for (direct p50, warm)'], over),
    '',
  );
  out.push(
    `Node is ready ${ms(entryNoop.ready.median)} after process start, and importing Netlify's bootstrap takes ${ms(entryNoop.importMs.median)}: every function pays both, the no-op included. ` +
      'The bootstrap imports the function file on the first invocation, so "the request alone" holds loading the bundle and answering; the module-only figures below split the two.',
    '',
  );

  // Cold start.
  out.push('## 1. Cold start, module only', '');
  out.push(
    'A fresh `node` per run imports the bundle, answers an OPTIONS preflight (start-up and load cost only), then the first real request ' +
      'against the local stack: checkout of a returning user, the portal and the status of a subscribed user, a signed ' +
      '`customer.subscription.updated` delivery (a new event each run). Times are from process start (`performance.timeOrigin`). ' +
      'The ratio is the median first answer over the no-op’s (its runs in both builds pooled: it imports nothing, so both builds are ' +
      'the same file); "paired" is the IQR (25th–75th percentile) of the per-round ratios. CPU to first answer is the process’s user + ' +
      'system time until then: it barely moves when other work shares the machine, so it checks the wall-time ratio.',
    '',
  );
  for (const mode of ['netlify', 'esbuild'] as const) {
    out.push(
      mode === 'netlify'
        ? '**npm packages external**: what Netlify would pack from the source files without `npm run build` (local code bundled, npm packages loaded from `node_modules` at run time), for comparison.'
        : '**As `npm run build` ships it** (the module-only targets are judged here): one minified file per function, every package inlined.',
      '',
    );
    const list = [...names, 'noop'].flatMap((name) => byName(mode, name) ?? []);
    const shippedOf = (name: string) => report.shipped?.find((s) => (FUNCTION_NAMES[s.file] ?? s.file) === name);
    out.push(
      table(
        ['Function', 'Bundle', mode === 'netlify' ? 'npm code loaded at import' : 'npm code inlined', 'Node + Request ready', 'Import', 'Preflight answered', 'First request answered (IQR)', '× no-op (paired IQR)', 'First request alone', 'CPU to first answer (× no-op)', 'Spawn → exit (× no-op)'],
        list.map((f) => [
          f.entry.kind === 'baseline' ? 'no-op' : f.entry.name,
          mode === 'netlify' && shippedOf(f.entry.name)
            ? `${kb(f.entry.bytes)}; ships ${mb(shippedOf(f.entry.name)?.bytes ?? 0)} in ${shippedOf(f.entry.name)?.files ?? 0} files`
            : kb(f.entry.bytes),
          mode === 'netlify'
            ? `${kb(f.entry.trace.import.packageBytes)} in ${f.entry.trace.import.packageFiles} files` +
              (f.entry.trace.total.packageFiles > f.entry.trace.import.packageFiles ? `; +${f.entry.trace.total.packageFiles - f.entry.trace.import.packageFiles} files on the request` : '')
            : kb(f.entry.packageInputBytes),
          ms(f.ready.median),
          ms(f.importMs.median),
          ms(f.options.median),
          `**${ms(f.first.median)}** (${range(f.first)})`,
          f.entry.kind === 'baseline' ? '1 (pooled)' : `**${ratio(f.ratio)}** (${ratioIqr(f.paired)})`,
          ms(f.firstRequest.median),
          `${ms(f.cpu.median)} (${ratio(f.cpuRatio)})`,
          `${ms(f.wall.median)} (${ratio(f.wallRatio)})`,
        ]),
      ),
      '',
    );
  }
  out.push('What each function loads at import (traced run, netlify build, bytes of npm package files):', '');
  for (const name of names) {
    const f = byName('netlify', name);
    if (f) out.push(`- **${name}**: ${topPackages(f.entry.trace.import)}`);
  }
  out.push('');

  const probes = figures.filter((f) => f.entry.kind === 'probe');
  if (probes.length > 0) {
    out.push('### Import cost of each package alone', '');
    out.push('A no-op that imports one package, bundled and cold-started like the functions: its load cost on this machine.', '');
    const names = [...new Set(probes.map((p) => p.entry.name))];
    out.push(
      table(
        ['Probe', 'Import, netlify build', 'Import, esbuild build', 'First answer vs no-op (netlify)', 'Code loaded (netlify)', 'esbuild bundle'],
        names.map((name) => {
          const n = byName('netlify', name);
          const e = byName('esbuild', name);
          return [
            `\`${name}\``,
            n ? `${ms(n.importMs.median)} (${range(n.importMs)})` : 'n/a',
            e ? `${ms(e.importMs.median)} (${range(e.importMs)})` : 'n/a',
            n ? signedMs(n.first.median - noop.first.median) : 'n/a',
            n ? `${kb(n.entry.trace.import.packageBytes)} in ${n.entry.trace.import.packageFiles} files` : 'n/a',
            e ? kb(e.entry.bytes) : 'n/a',
          ];
        }),
      ),
      '',
    );
  }

  // Warm.
  out.push('## 2. Warm overhead', '');
  out.push(
    'Each endpoint’s default export, called in process with its dependencies built and connections open, against a "direct" script ' +
      'making the same calls with the same clients (`createStore`, `createStripe`) and no handler around them: the database read and ' +
      'the Stripe request (checkout of a returning user, portal), the read (status), the `billing_apply_event` call (webhook: ' +
      'the handler also reads the body, verifies the signature and parses the event). Batches alternate handler/direct, the order ' +
      'flipping every round; ratios are per round, median (min–max). Throughput ratio = direct req/s ÷ handler req/s.',
    '',
  );
  out.push(
    table(
      ['Endpoint', 'Concurrency', 'Handler p50 / p99', 'Direct p50 / p99', 'Handler req/s', 'Direct req/s', 'p50 ratio', 'p99 ratio', 'Throughput ratio'],
      warmAll.map((m) => [
        m.endpoint,
        String(m.concurrency),
        `${ms(m.handler.p50)} / ${ms(m.handler.p99)}`,
        `${ms(m.direct.p50)} / ${ms(m.direct.p99)}`,
        fmt(m.handler.throughput, 0),
        fmt(m.direct.throughput, 0),
        `**${ratio(m.p50Ratio.median)}** (${ratioRange(m.p50Ratio)})`,
        ratio(m.p99Ratio),
        `**${ratio(m.throughputRatio.median)}** (${ratioRange(m.throughputRatio)})`,
      ]),
    ),
    '',
  );
  const errors = warmAll.reduce((s, m) => s + m.handler.errors + m.direct.errors, 0) + report.warm.webhook.reduce((s, m) => s + m.handler.errors + m.direct.errors, 0);
  if (errors > 0) out.push(`**${errors} requests failed** during the warm batches; their latencies are left out.`, '');

  // Round trips.
  out.push('## 3. Round trips per request', '');
  out.push(
    'Database calls are the PostgREST requests the store sent (counted at `http.request`); Stripe calls are the requests the stripe-mock bridge recorded. ' +
      'Counted one request at a time, in the same warm process.',
    '',
  );
  out.push(
    table(
      ['Request', 'Status', 'Database calls', 'Stripe calls', 'Direct baseline'],
      report.warm.roundTrips.map((t: RoundTrip) => [
        t.scenario,
        String(t.status),
        callList(t.dbCalls),
        callList(t.stripeCalls),
        t.direct ? `${t.direct.dbCalls.length} database, ${t.direct.stripeCalls.length} Stripe${sameCalls(t) ? '' : ' (**differs**)'}` : '',
      ]),
    ),
    '',
  );

  // Webhook throughput.
  out.push('## 4. Webhook throughput', '');
  out.push(
    'Signed deliveries of new customers’ first events (`checkout.session.completed`, `customer.subscription.created`, `invoice.paid`, ' +
      '`customer.subscription.updated`; every event id new), through the webhook’s default export, against the floor: the same ' +
      '`billing_apply_event` calls made directly through `createStore`, at the same concurrency.',
    '',
  );
  out.push(
    table(
      ['Concurrency', 'Webhook events/s', 'Webhook p50 / p99', 'Floor events/s', 'Floor p50 / p99', 'Throughput ratio', 'p99 ratio'],
      report.warm.webhook.map((m) => [
        String(m.concurrency),
        `${fmt(m.handler.throughput, 0)} (${range(m.handler.throughputSpread, (v) => fmt(v, 0))})`,
        `${ms(m.handler.p50)} / ${ms(m.handler.p99)}`,
        `${fmt(m.direct.throughput, 0)} (${range(m.direct.throughputSpread, (v) => fmt(v, 0))})`,
        `${ms(m.direct.p50)} / ${ms(m.direct.p99)}`,
        `**${ratio(m.throughputRatio.median)}** (${ratioRange(m.throughputRatio)})`,
        ratio(m.p99Ratio),
      ]),
    ),
    '',
  );

  // Stability.
  out.push('## Stability', '');
  out.push(
    'Within this run: the paired spreads above (cold starts: IQR of the per-round ratios; warm: min–max of the rounds). ' +
      'Against the previous run recorded in this file (its ratios are kept in a comment at the end), a change beyond 10% is in bold:',
    '',
  );
  if (previous) {
    out.push(`Previous run: ${previous.date} on ${previous.machine}.`, '');
    out.push(
      table(
        ['Ratio', 'Previous', 'This run', 'Change'],
        Object.entries(ratios).map(([key, value]) => {
          const before = previous.ratios[key];
          if (before === undefined) return [key, 'n/a', value.toFixed(2), ''];
          const change = value / before - 1;
          const text = `${change >= 0 ? '+' : ''}${(change * 100).toFixed(1)}%`;
          return [key, before.toFixed(2), value.toFixed(2), Math.abs(change) > STABILITY ? `**${text}**` : text];
        }),
      ),
      '',
    );
  } else {
    out.push('None yet: the next run compares itself with this one.', '');
  }

  // Method.
  out.push('## Method', '');
  out.push(
    [
      '- One process tree: `scripts/bench/index.ts` starts the local stack (PostgreSQL, PostgREST behind the `/rest/v1` gateway, stripe-mock behind the recording bridge; free ports, a temporary database), seeds users, builds the bundles, runs the cold starts one at a time, then hands the warm work to a child process (`scripts/bench/warm.ts`) so the gateway and bridge, which run in the parent, do not share its thread. Everything is stopped at the end.',
      '- **What ships** (`scripts/bench/entry.ts`, `scripts/lib/netlify-artifact.ts`): the real zips of `netlify build --offline`, run through their own entry point with Lambda\u2019s `awslambda.streamifyResponse` and `HttpResponseStream.from` stubbed; the no-op is one more function in the same build, and so is the one-database-call floor. These figures include Netlify\u2019s bootstrap, so they are the ones a user waits for.',
      '- **Module only** (`scripts/bench/build.ts`): the function module alone, without Netlify\u2019s bootstrap. The *esbuild* build is what `npm run build` ships (its options, from `scripts/lib/build.ts`); the *netlify* build mirrors what zip-it-and-ship-it\u2019s NFT path would make of the source files alone (`bundle`, `packages: "external"`, `format: "esm"`, `platform: "node"`, `target: "node22"`, the `createRequire` banner), with packages resolved from the repository\u2019s `node_modules`: the difference is what bundling the npm packages at build time saves.',
      shippedNote(report.shipped),
      '- **Cold start**: `process.execPath` on a small `.mjs` runner with no `NODE_OPTIONS` and no compile cache; the runner builds the `Request` objects, then imports the bundle. The no-op is bundled the same way and takes part in every round. The operating system’s file cache is warm (Lambda’s may not be), so these are lower bounds of a real cold start.',
      '- **Warm**: the functions’ log lines are built as in production but written nowhere (`console.log`/`warn`/`error` are no-ops in the warm process): on Netlify a line goes to stdout and the platform ships it, and a terminal here would measure the terminal. A database call counter wraps `http.request` (the store talks to PostgREST over node:http) for the handler and the baseline alike.',
      '- The local Stripe is stripe-mock: about a millisecond per call, where real Stripe takes 100–300 ms. Warm ratios here are therefore an upper bound of the overhead in production, where the network dominates.',
      '- Knobs: `BENCH_RUNS` (cold starts, default 20), `BENCH_ROUNDS` (default 20), `BENCH_SCALE` (batch sizes), `BENCH_PROBES=0` (skip the package probes), `BENCH_OUT`, `BENCH_VERBOSE=1`.',
    ].join('\n'),
    '',
  );
  out.push(`<!-- bench-results ${JSON.stringify({ date: report.date, machine: describeMachine(report.machine), ratios })} -->`, '');
  return { text: out.join('\n'), ratios };
}

function shippedNote(shipped: Shipped[] | undefined): string {
  if (!shipped) return '- zip-it-and-ship-it is not installed, so the netlify build was not compared with Netlify’s own and shipped sizes are not shown.';
  const differ = shipped.filter((s) => !s.sameAsMirror).map((s) => s.file);
  const bundlers = [...new Set(shipped.map((s) => s.bundler))].join(', ');
  return (
    `- Checked in this run with Netlify’s own zip-it-and-ship-it (from netlify-cli): it chose the ${bundlers} bundler for every function, and ` +
    (differ.length === 0
      ? 'its bundle of each function file is byte for byte our netlify build.'
      : `its bundle differs from our netlify build for ${differ.join(', ')}: **the cold-start figures may not match production**.`) +
    ' "Ships" is the size of its unzipped output, Netlify’s bootstrap (about 1.1 MB) included.'
  );
}

function sameCalls(t: RoundTrip): boolean {
  if (!t.direct) return true;
  const key = (calls: readonly string[]) => [...calls].sort().join('\n');
  return key(t.dbCalls) === key(t.direct.dbCalls) && key(t.stripeCalls) === key(t.direct.stripeCalls);
}

// Chart ------------------------------------------------------------------------------------

const esc = (text: string) => text.replaceAll('&', '&amp;').replaceAll('<', '&lt;').replaceAll('>', '&gt;');

interface Bar {
  value: number;
  color: string;
  label: string;
}

interface Row {
  label: string;
  bars: Bar[];
  /** A target tick on the value axis. */
  target?: number;
}

/** A round axis step: 1, 2, 2.5 or 5 times a power of ten, about a fifth of `max`. */
function niceStep(max: number): number {
  const raw = max / 5;
  const power = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * power).find((s) => s >= raw) ?? raw;
  return step;
}

function barPanel(x: number, y: number, width: number, height: number, title: string, rows: readonly Row[], unit: string, maxValue: number, reference?: { value: number }): string {
  const parts: string[] = [];
  const labelWidth = 110;
  const plotX = x + labelWidth;
  // Room on the right for the longest value label (about 6.2 px a character at 11 px).
  const longest = Math.max(0, ...rows.flatMap((r) => r.bars.map((b) => b.label.length)));
  const plotWidth = width - labelWidth - Math.max(60, longest * 6.2 + 12);
  const top = y + 34;
  const rowHeight = (height - 60) / Math.max(1, rows.length);
  const step = niceStep(maxValue);
  const ticks = Math.ceil(maxValue / step);
  const max = step * ticks;
  const scale = (v: number) => plotX + (Math.min(v, max) / max) * plotWidth;
  const bottom = top + rows.length * rowHeight;
  parts.push(`<text x="${x}" y="${y + 16}" class="title">${esc(title)}</text>`);
  for (let t = 0; t <= ticks; t += 1) {
    const v = step * t;
    const gx = scale(v);
    parts.push(`<line x1="${gx}" y1="${top}" x2="${gx}" y2="${bottom}" class="grid"/>`);
    parts.push(`<text x="${gx}" y="${bottom + 16}" class="axis" text-anchor="middle">${Number(v.toPrecision(3))}${unit}</text>`);
  }
  if (reference) {
    const rx = scale(reference.value);
    parts.push(`<line x1="${rx}" y1="${top - 4}" x2="${rx}" y2="${bottom}" class="reference"/>`);
  }
  rows.forEach((row, i) => {
    const ry = top + i * rowHeight;
    const barHeight = Math.min(18, (rowHeight - 8) / Math.max(1, row.bars.length));
    parts.push(`<text x="${plotX - 8}" y="${ry + rowHeight / 2 + 4}" class="label" text-anchor="end">${esc(row.label)}</text>`);
    const barY = (j: number) => ry + (rowHeight - barHeight * row.bars.length) / 2 + j * barHeight;
    row.bars.forEach((bar, j) => {
      parts.push(`<rect x="${plotX}" y="${barY(j)}" width="${Math.max(1, scale(bar.value) - plotX)}" height="${barHeight - 2}" fill="${bar.color}"/>`);
    });
    // The target over the bars, the labels (with a white halo) over the target.
    if (row.target !== undefined) {
      const tx = scale(row.target);
      parts.push(`<line x1="${tx}" y1="${ry + 2}" x2="${tx}" y2="${ry + rowHeight - 2}" class="target"/>`);
    }
    row.bars.forEach((bar, j) => {
      parts.push(`<text x="${scale(bar.value) + 4}" y="${barY(j) + barHeight - 5}" class="value">${esc(bar.label)}</text>`);
    });
  });
  return parts.join('\n');
}

function legend(x: number, y: number, items: readonly [string, string][]): string {
  let cx = x;
  return items
    .map(([color, text]) => {
      const part = `<rect x="${cx}" y="${y - 10}" width="12" height="12" fill="${color}"/><text x="${cx + 16}" y="${y}" class="axis">${esc(text)}</text>`;
      cx += 28 + text.length * 6.6;
      return part;
    })
    .join('\n');
}

const BLUE = '#3b6ea5';
const ORANGE = '#e08a2c';
const GREY = '#9aa3ad';

function chart(report: Report): string {
  const figures = coldFigures(report.cold);
  const get = (mode: BuildMode, name: string) => figures.find((f) => f.entry.mode === mode && f.entry.name === name);
  const noop = noopFigures(figures);
  const names = functionNames(report.cold);
  const coldRows: Row[] = [
    { label: 'no-op', bars: [{ value: noop.first.median, color: GREY, label: `${fmt(noop.first.median, 0)} ms (both builds)` }] },
    ...names.map((name) => {
      const bar = (f: ColdFigures | undefined, color: string): Bar => ({
        value: f?.first.median ?? 0,
        color,
        label: f ? `${fmt(f.first.median, 0)} ms · ${f.ratio.toFixed(1)}×` : '',
      });
      return { label: name, bars: [bar(get('netlify', name), BLUE), bar(get('esbuild', name), ORANGE)], target: noop.first.median * coldTarget(name) };
    }),
  ];
  const coldMax = Math.max(...coldRows.flatMap((r) => [...r.bars.map((b) => b.value), r.target ?? 0])) * 1.1;

  const warmRows: Row[] = [...report.warm.warm, ...report.warm.webhook.filter((m) => m.concurrency <= 10)]
    .sort((a, b) => ORDER.indexOf(a.endpoint) - ORDER.indexOf(b.endpoint) || a.concurrency - b.concurrency)
    .map((m) => ({
      label: `${m.endpoint} ×${m.concurrency}`,
      bars: [
        { value: m.p50Ratio.median, color: BLUE, label: `${m.p50Ratio.median.toFixed(2)}×` },
        { value: m.throughputRatio.median, color: ORANGE, label: `${m.throughputRatio.median.toFixed(2)}×` },
      ],
    }));
  const warmMax = Math.max(1.5, ...warmRows.flatMap((r) => r.bars.map((b) => b.value))) * 1.05;

  const hookRows: Row[] = report.warm.webhook.map((m) => ({
    label: `concurrency ${m.concurrency}`,
    bars: [
      { value: m.handler.throughput, color: BLUE, label: `${fmt(m.handler.throughput, 0)}/s · p99 ${fmt(m.handler.p99, 0)} ms · ${m.throughputRatio.median.toFixed(2)}× the floor` },
      { value: m.direct.throughput, color: GREY, label: `${fmt(m.direct.throughput, 0)}/s · p99 ${fmt(m.direct.p99, 0)} ms` },
    ],
  }));
  const hookMax = Math.max(...hookRows.flatMap((r) => r.bars.map((b) => b.value))) * 1.1;

  const date = report.date.slice(0, 10);
  return `<svg xmlns="http://www.w3.org/2000/svg" width="1000" height="700" viewBox="0 0 1000 700" font-family="system-ui, -apple-system, Segoe UI, Roboto, sans-serif">
<style>
.title { font-size: 15px; font-weight: 600; fill: #1f2933; }
.label { font-size: 12px; fill: #1f2933; }
.value { font-size: 11px; fill: #1f2933; paint-order: stroke; stroke: #ffffff; stroke-width: 3px; }
.axis { font-size: 11px; fill: #52606d; }
.grid { stroke: #e4e7eb; stroke-width: 1; }
.reference { stroke: #c0392b; stroke-width: 1.5; stroke-dasharray: 5 3; }
.target { stroke: #c0392b; stroke-width: 2.5; }
</style>
<rect width="1000" height="700" fill="#ffffff"/>
<text x="20" y="28" style="font-size:18px;font-weight:700;fill:#1f2933">Billing functions: npm run bench, ${esc(date)}</text>
<text x="20" y="46" class="axis">${esc(describeMachine(report.machine))}</text>
${barPanel(20, 62, 480, 330, 'Cold start: first request answered (median)', coldRows, ' ms', coldMax)}
${legend(130, 400, [[BLUE, 'npm packages external'], [ORANGE, 'as npm run build ships it']])}
<text x="130" y="418" class="axis">module only; red tick: 2× the no-op (1.5× for the webhook)</text>
${barPanel(520, 62, 470, 330, `Warm: handler ÷ direct calls (dashed: target ${WARM_TARGET}×)`, warmRows, '×', warmMax, { value: WARM_TARGET })}
${legend(630, 400, [[BLUE, 'p50 latency ratio'], [ORANGE, 'throughput ratio']])}
${barPanel(20, 440, 960, 230, 'Webhook throughput: signed deliveries vs the same database writes made directly', hookRows, '/s', hookMax)}
${legend(130, 690, [[BLUE, 'webhook function'], [GREY, 'direct billing_apply_event (floor)']])}
</svg>
`;
}

export async function writeReport(file: string, report: Report, previous: Previous | undefined): Promise<{ markdown: string; svg: string }> {
  const svgFile = file.replace(/\.md$/, '') + '.svg';
  const { text } = markdown(report, previous, path.basename(svgFile));
  await mkdir(path.dirname(file), { recursive: true });
  await writeFile(file, text);
  await writeFile(svgFile, chart(report));
  return { markdown: file, svg: svgFile };
}
