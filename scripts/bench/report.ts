// Turns one benchmark run into the tables of docs/benchmarks.md: the part between its
// markers (what the figures mean and the method are written by hand around them). The
// run's ratios are kept in a comment there, so that the next run can say how far each moved.

import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import os from 'node:os';
import { FUNCTION_NAMES, type BuildMode, type Shipped } from './build.ts';
import type { ColdRun, LoadTrace } from './cold.ts';
import { ENTRY_TARGETS, ZIP_EXTRA_TARGET, type EntryFunction, type EntryReport } from './entry.ts';
import { table, writeGenerated } from './markdown.ts';
import type { PairedMeasure, RoundTrip, WarmResult } from './protocol.ts';
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

interface Machine {
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
    cpu = /^model name\s*:\s*(.+)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1]?.trim() ?? cpu;
  } catch {
    // not Linux: os.cpus() it is
  }
  return { cpu, cores: os.availableParallelism(), memoryGiB: os.totalmem() / 2 ** 30, os: `${os.type()} ${os.release()} ${os.arch()}`, node: process.version, hostname: os.hostname() };
}

const describeMachine = (m: Machine) => `${m.cpu}, ${m.cores} cores, ${m.memoryGiB.toFixed(1)} GiB RAM, ${m.os}, Node ${m.node}`;

export async function previousResults(file: string): Promise<Previous | undefined> {
  const text = await readFile(file, 'utf8').catch(() => '');
  try {
    const json = /<!-- bench-results (\{.*\}) -->/s.exec(text)?.[1];
    return json === undefined ? undefined : (JSON.parse(json) as Previous);
  } catch {
    return undefined;
  }
}

/** The webhook needs no Stripe call to verify a signature: a tighter target. */
const coldTarget = (name: string) => (name === 'webhook' ? 1.5 : 2);
/** The issue's four first, then any other function found in netlify/functions. */
const ORDER = ['checkout', 'portal', 'status', 'webhook'];
const WARM_TARGET = 1.2;
const STABILITY = 0.1;

interface ColdFigures {
  entry: ColdEntry;
  first: Spread;
  importMs: Spread;
  /** median(first) / median(no-op first), the no-op of both builds pooled. */
  ratio: number;
  /** Per round: first / no-op first of the same round. */
  paired: Spread;
  /** median of `pick` / the no-op's. */
  vsNoop: (pick: (r: ColdRun) => number) => number;
  median: (pick: (r: ColdRun) => number) => number;
}

/**
 * The no-op imports nothing, so both builds of it are the same file: its runs in both
 * builds together are the baseline of every entry (twice the samples of one build).
 */
function coldFigures(cold: readonly ColdEntry[]): ColdFigures[] {
  const baselines = cold.filter((e) => e.kind === 'baseline');
  if (baselines.length === 0) throw new Error('no no-op baseline');
  const noopMedian = (pick: (r: ColdRun) => number) => median(baselines.flatMap((e) => e.runs).map(pick));
  // The baseline of round i: the mean of the no-op's runs in that round.
  const noopOfRound = (i: number) => {
    const runs = baselines.flatMap((e) => e.runs[i] ?? []);
    return runs.reduce((sum, r) => sum + r.firstAnsweredMs, 0) / runs.length;
  };
  return cold.map((entry) => {
    const first = spread(entry.runs.map((r) => r.firstAnsweredMs));
    const med = (pick: (r: ColdRun) => number) => median(entry.runs.map(pick));
    return {
      entry,
      first,
      importMs: spread(entry.runs.map((r) => r.importMs)),
      ratio: first.median / noopMedian((r) => r.firstAnsweredMs),
      paired: spread(entry.runs.map((r, i) => r.firstAnsweredMs / noopOfRound(i))),
      median: med,
      vsNoop: (pick) => med(pick) / noopMedian(pick),
    };
  });
}

const mb = (bytes: number) => `${(bytes / 2 ** 20).toFixed(1)} MB`;
const kb = (bytes: number) => `${(bytes / 1024).toFixed(bytes < 10_240 ? 1 : 0)} KB`;
const ms = (value: number) => `${fmt(value)} ms`;
const signedMs = (value: number) => `${value >= 0 ? '+' : '−'}${fmt(Math.abs(value))} ms`;
const iqr = (s: Spread, f: (v: number) => string = (v) => fmt(v)) => `${f(s.p25)}–${f(s.p75)}`;
const ratioIqr = (s: Spread) => `${s.p25.toFixed(2)}–${s.p75.toFixed(2)}`;
/** A ratio over rounds: its median (min–max). */
const rounds = (s: Spread) => `**${ratio(s.median)}** (${s.min.toFixed(2)}–${s.max.toFixed(2)})`;
const verdict = (ok: boolean, missed = '**missed**') => (ok ? 'met' : missed);

function topPackages(trace: LoadTrace, n = 4): string {
  const list = Object.entries(trace.byPackage).sort((a, b) => b[1] - a[1]);
  if (list.length === 0) return 'none';
  const shown = list.slice(0, n).map(([pkg, bytes]) => `${pkg} ${kb(bytes)}`);
  return list.length > n ? `${shown.join(', ')}, +${list.length - n} more` : shown.join(', ');
}

function callList(calls: readonly string[]): string {
  if (calls.length === 0) return '0';
  const counts = new Map<string, number>();
  for (const call of calls) counts.set(call, (counts.get(call) ?? 0) + 1);
  return `${calls.length}: ${[...counts].map(([call, n]) => (n > 1 ? `${n}× \`${call}\`` : `\`${call}\``)).join(', ')}`;
}

function sameCalls(t: RoundTrip): boolean {
  if (!t.direct) return true;
  const key = (calls: readonly string[]) => [...calls].sort().join('\n');
  return key(t.dbCalls) === key(t.direct.dbCalls) && key(t.stripeCalls) === key(t.direct.stripeCalls);
}

function ratiosOf(report: Report, figures: readonly ColdFigures[]): Record<string, number> {
  const ratios: Record<string, number> = {};
  // Functions only: the package probes are for reading, not targets.
  for (const f of figures) if (f.entry.kind === 'function') ratios[`cold ${f.entry.mode} ${f.entry.name}`] = f.ratio;
  for (const m of [...report.warm.warm, ...report.warm.webhook]) {
    ratios[`warm ${m.endpoint} c=${m.concurrency} p50`] = m.p50Ratio.median;
    ratios[`warm ${m.endpoint} c=${m.concurrency} throughput`] = m.throughputRatio.median;
  }
  return ratios;
}

function markdown(report: Report, previous: Previous | undefined): string {
  const figures = coldFigures(report.cold);
  const ratios = ratiosOf(report, figures);
  const byName = (mode: BuildMode, name: string) => figures.find((f) => f.entry.mode === mode && f.entry.name === name);
  const names = [...new Set(report.cold.filter((e) => e.kind === 'function').map((e) => e.name))].sort(
    (a, b) => (ORDER.indexOf(a) + 1 || 99) - (ORDER.indexOf(b) + 1 || 99) || a.localeCompare(b),
  );
  const noopRuns = figures.filter((f) => f.entry.kind === 'baseline').flatMap((f) => f.entry.runs);
  const noop = { first: spread(noopRuns.map((r) => r.firstAnsweredMs)), importMs: median(noopRuns.map((r) => r.importMs)) };
  const { entry } = report;
  const entryNoop = entry.noop;
  const unbundled = (name: string) => entry.unbundled.find((u) => u.name === name);
  const warmAll = [...report.warm.warm, ...report.warm.webhook.filter((m) => m.concurrency <= 10)];
  const loads = (l: number[]) => l.map((v) => v.toFixed(1)).join(' / ');
  const out: string[] = [];

  out.push(
    `Run of ${report.date.replace('T', ' ').replace(/\.\d+Z$/, ' UTC')}, ${Math.round(report.totalSeconds)} s, on ${describeMachine(report.machine)} (host \`${report.machine.hostname}\`); ` +
      `load average (1 / 5 / 15 min) ${loads(report.load.start)} at the start, ${loads(report.load.end)} at the end. ` +
      `${report.knobs.runs} cold starts per function and build; ${report.knobs.rounds} warm rounds, batches of ${Object.entries(report.knobs.batch).map(([c, n]) => `${n} at concurrency ${c}`).join(', ')}.`,
    '',
  );

  // Targets: [target, measured, verdict].
  const targets: string[][] = [];
  for (const f of entry.functions) {
    const target = ENTRY_TARGETS[f.name] ?? 1;
    const u = unbundled(f.name);
    targets.push([
      `Through the entry point, ${f.name}'s full 200 ≤ ${target}× the no-op`,
      `${ratio(f.ratio)} (${ms(f.first.median)} vs ${ms(entryNoop.answer.median)}; paired IQR ${ratioIqr(f.paired)})${u ? `; without npm run build ${ratio(u.ratio)}` : ''}`,
      verdict(f.ratio <= target, `**missed** by ${ms(f.first.median - entryNoop.answer.median * target)}; one database call and nothing else is ${ratio(entry.oneCall.ratio)}`),
    ]);
  }
  for (const f of entry.functions) {
    const extra = f.zipBytes - entryNoop.zipBytes;
    targets.push([`${f.name}'s zip ≤ the no-op's + ${kb(ZIP_EXTRA_TARGET)}`, `${kb(f.zipBytes)} (+${kb(extra)} over ${kb(entryNoop.zipBytes)})`, verdict(extra <= ZIP_EXTRA_TARGET)]);
  }
  for (const name of names) {
    const f = byName('esbuild', name);
    if (!f) continue;
    const target = coldTarget(name);
    const external = byName('netlify', name);
    targets.push([
      `Module only (no bootstrap): cold start of ${name} ≤ ${target}× the no-op`,
      `${ratio(f.ratio)} (${ms(f.first.median)} vs ${ms(noop.first.median)}; paired IQR ${ratioIqr(f.paired)})${external ? `; npm packages external ${ratio(external.ratio)}` : ''}`,
      verdict(f.ratio <= target, `**missed** by ${ms(f.first.median - noop.first.median * target)}: import ${ms(f.importMs.median)} (the no-op's ${ms(noop.importMs)}), first request ${ms(f.median((r) => r.firstRequestMs))}`),
    ]);
  }
  for (const m of warmAll) {
    const worst = Math.max(m.p50Ratio.median, m.throughputRatio.median);
    targets.push([
      `Warm overhead of ${m.endpoint} at concurrency ${m.concurrency} ≤ ${WARM_TARGET}×`,
      `p50 ${ratio(m.p50Ratio.median)}, throughput ${ratio(m.throughputRatio.median)}`,
      verdict(worst <= WARM_TARGET, `**missed** by ${((worst / WARM_TARGET - 1) * 100).toFixed(1)}%`),
    ]);
  }
  const returning = report.warm.roundTrips.find((t) => t.scenario === 'checkout: returning user');
  if (returning) {
    targets.push([
      'Checkout of a returning user: 1 database read, 1 Stripe call',
      `${returning.dbCalls.length} database, ${returning.stripeCalls.length} Stripe`,
      verdict(returning.dbCalls.length === 1 && returning.stripeCalls.length === 1),
    ]);
  }
  const webhookTrips = report.warm.roundTrips.filter((t) => t.scenario.startsWith('webhook: ') && !/not handled|duplicate|bad signature/.test(t.scenario));
  if (webhookTrips.length > 0) {
    const counts = [...new Set(webhookTrips.map((t) => t.dbCalls.length))];
    const stripeCalls = webhookTrips.reduce((s, t) => s + t.stripeCalls.length, 0);
    targets.push([
      'Webhook: 1 database round trip per event, no Stripe call',
      `${counts.join(' or ')} per event over ${webhookTrips.length} handled types, ${stripeCalls} Stripe calls`,
      verdict(counts.length === 1 && counts[0] === 1 && stripeCalls === 0),
    ]);
  }
  const changes = Object.entries(ratios).flatMap(([key, value]) => {
    const before = previous?.ratios[key];
    return before === undefined ? [] : [{ key, before, value, change: value / before - 1 }];
  });
  if (previous) {
    const worst = changes.reduce((w, c) => (Math.abs(c.change) > Math.abs(w.change) ? c : w), { key: '', change: 0 });
    const outside = changes.filter((c) => Math.abs(c.change) > STABILITY).length;
    targets.push([
      'A rerun gives the same ratios within 10%',
      `vs the previous run (${previous.date.slice(0, 16).replace('T', ' ')}): ${changes.length} ratios, largest change ${(worst.change * 100).toFixed(1)}% (${worst.key})`,
      verdict(outside === 0, `**missed**: ${outside} of ${changes.length} moved more than 10%`),
    ]);
  } else {
    targets.push(['A rerun gives the same ratios within 10%', 'no earlier run in this file', 'run `npm run bench` again to check']);
  }
  out.push('## Targets', '', table(targets, { Target: (r) => r[0] ?? '', Measured: (r) => r[1] ?? '', Verdict: (r) => r[2] ?? '' }), '');

  // What ships: the no-op's row first, each ratio against it.
  const shipsRows: (Omit<EntryFunction, 'ratio' | 'paired'> & { ratio?: number; paired?: Spread; target?: number })[] = [
    { ...entryNoop, name: 'no-op', first: entryNoop.answer },
    { ...entry.oneCall, name: 'one database call (floor)' },
    ...entry.functions.map((f) => ({ ...f, target: ENTRY_TARGETS[f.name] ?? 1 })),
  ];
  out.push(
    '## What ships: cold starts through Netlify\'s entry point',
    '',
    `netlify build --offline took ${fmt(entry.buildSeconds)} s. Node is ready ${ms(entryNoop.ready.median)} after process start in every run, the no-op's included.`,
    '',
    table(shipsRows, {
      Function: (f) => f.name,
      Zip: (f) => (f.ratio === undefined ? kb(f.zipBytes) : `${kb(f.zipBytes)} (+${kb(f.zipBytes - entryNoop.zipBytes)})`),
      'Entry point import': (f) => ms(f.importMs.median),
      'The request alone': (f) => ms(f.request.median),
      'Full 200 answered (IQR)': (f) => `**${ms(f.first.median)}** (${iqr(f.first)})`,
      '× no-op (paired IQR)': (f) => (f.ratio === undefined || !f.paired ? '1.00×' : `**${ratio(f.ratio)}** (${ratioIqr(f.paired)})`),
      Target: (f) => (f.target === undefined ? '' : `≤ ${f.target}×`),
      'CPU to the 200 (× no-op)': (f) => `${ms(f.cpu.median)} (${ratio(f.cpu.median / entryNoop.cpu.median)})`,
      'Without npm run build: zip, × no-op': (f) => ((u) => (u ? `${kb(u.zipBytes)}, ${ratio(u.ratio)} (${ms(u.first.median)})` : f.target === undefined ? '' : 'n/a'))(unbundled(f.name)),
    }),
    '',
    'Where the time over the no-op goes (same run):',
    '',
    table(entry.functions, {
      Function: (f) => f.name,
      'Over the no-op': (f) => ms(f.first.median - entryNoop.answer.median),
      'Allowed by the target': (f) => ms(entryNoop.answer.median * ((ENTRY_TARGETS[f.name] ?? 1) - 1)),
      'Loading the bundle, module only (over the no-op\'s)': (f) => ((m) => (m ? ms(m.importMs.median - noop.importMs) : 'n/a'))(byName('esbuild', f.name)),
      'The first request, module only': (f) => ((m) => (m ? ms(m.median((r) => r.firstRequestMs)) : 'n/a'))(byName('esbuild', f.name)),
      'Its calls made directly, warm p50': (f) => ((m) => (m ? ms(m.direct.p50) : 'n/a'))(warmAll.find((m) => m.endpoint === f.name && m.concurrency === 1)),
    }),
    '',
  );

  // Cold start, module only.
  out.push('## 1. Cold start, module only', '');
  const shippedOf = (name: string) => report.shipped?.find((s) => (FUNCTION_NAMES[s.file] ?? s.file) === name);
  for (const mode of ['netlify', 'esbuild'] as const) {
    out.push(mode === 'netlify' ? '**npm packages external** (without `npm run build`):' : '**As `npm run build` ships it** (the module-only targets are judged here):', '');
    out.push(
      table([...names, 'noop'].flatMap((name) => byName(mode, name) ?? []), {
        Function: (f) => (f.entry.kind === 'baseline' ? 'no-op' : f.entry.name),
        Bundle: (f) => ((s) => (mode === 'netlify' && s ? `${kb(f.entry.bytes)}; ships ${mb(s.bytes)} in ${s.files} files` : kb(f.entry.bytes)))(shippedOf(f.entry.name)),
        [mode === 'netlify' ? 'npm code loaded at import' : 'npm code inlined']: (f) =>
          mode === 'esbuild'
            ? kb(f.entry.packageInputBytes)
            : `${kb(f.entry.trace.import.packageBytes)} in ${f.entry.trace.import.packageFiles} files` +
              (f.entry.trace.total.packageFiles > f.entry.trace.import.packageFiles ? `; +${f.entry.trace.total.packageFiles - f.entry.trace.import.packageFiles} files on the request` : ''),
        'Node + Request ready': (f) => ms(f.median((r) => r.readyMs)),
        Import: (f) => ms(f.importMs.median),
        'Preflight answered': (f) => ms(f.median((r) => r.optionsAnsweredMs)),
        'First request answered (IQR)': (f) => `**${ms(f.first.median)}** (${iqr(f.first)})`,
        '× no-op (paired IQR)': (f) => (f.entry.kind === 'baseline' ? '1 (pooled)' : `**${ratio(f.ratio)}** (${ratioIqr(f.paired)})`),
        'First request alone': (f) => ms(f.median((r) => r.firstRequestMs)),
        'CPU to first answer (× no-op)': (f) => `${ms(f.median((r) => r.cpuMs))} (${ratio(f.vsNoop((r) => r.cpuMs))})`,
        'Spawn → exit (× no-op)': (f) => `${ms(f.median((r) => r.wallMs))} (${ratio(f.vsNoop((r) => r.wallMs))})`,
      }),
      '',
    );
  }
  out.push('What each function loads at import (traced run, npm packages external):', '');
  for (const name of names) {
    const f = byName('netlify', name);
    if (f) out.push(`- **${name}**: ${topPackages(f.entry.trace.import)}`);
  }
  out.push('');
  const probes = [...new Set(figures.filter((f) => f.entry.kind === 'probe').map((p) => p.entry.name))];
  if (probes.length > 0) {
    out.push(
      '### Import cost of each package alone',
      '',
      table(probes, {
        Probe: (name) => `\`${name}\``,
        'Import, netlify build': (name) => ((n) => (n ? `${ms(n.importMs.median)} (${iqr(n.importMs)})` : 'n/a'))(byName('netlify', name)),
        'Import, esbuild build': (name) => ((e) => (e ? `${ms(e.importMs.median)} (${iqr(e.importMs)})` : 'n/a'))(byName('esbuild', name)),
        'First answer vs no-op (netlify)': (name) => ((n) => (n ? signedMs(n.first.median - noop.first.median) : 'n/a'))(byName('netlify', name)),
        'Code loaded (netlify)': (name) => ((n) => (n ? `${kb(n.entry.trace.import.packageBytes)} in ${n.entry.trace.import.packageFiles} files` : 'n/a'))(byName('netlify', name)),
        'esbuild bundle': (name) => ((e) => (e ? kb(e.entry.bytes) : 'n/a'))(byName('esbuild', name)),
      }),
      '',
    );
  }

  // Warm.
  out.push(
    '## 2. Warm overhead',
    '',
    table(warmAll, {
      Endpoint: (m) => m.endpoint,
      Concurrency: (m) => String(m.concurrency),
      'Handler p50 / p99': (m) => `${ms(m.handler.p50)} / ${ms(m.handler.p99)}`,
      'Direct p50 / p99': (m) => `${ms(m.direct.p50)} / ${ms(m.direct.p99)}`,
      'Handler req/s': (m) => fmt(m.handler.throughput, 0),
      'Direct req/s': (m) => fmt(m.direct.throughput, 0),
      'p50 ratio': (m) => rounds(m.p50Ratio),
      'p99 ratio': (m) => ratio(m.p99Ratio),
      'Throughput ratio': (m) => rounds(m.throughputRatio),
    }),
    '',
  );
  const errors = [...report.warm.warm, ...report.warm.webhook].reduce((s, m) => s + m.handler.errors + m.direct.errors, 0);
  if (errors > 0) out.push(`**${errors} requests failed** during the warm batches; their latencies are left out.`, '');

  // Round trips.
  out.push(
    '## 3. Round trips per request',
    '',
    table(report.warm.roundTrips, {
      Request: (t) => t.scenario,
      Status: (t) => String(t.status),
      'Database calls': (t) => callList(t.dbCalls),
      'Stripe calls': (t) => callList(t.stripeCalls),
      'Direct baseline': (t) => (t.direct ? `${t.direct.dbCalls.length} database, ${t.direct.stripeCalls.length} Stripe${sameCalls(t) ? '' : ' (**differs**)'}` : ''),
    }),
    '',
  );

  // Webhook throughput.
  const perSecond = (side: PairedMeasure['handler']) => `${fmt(side.throughput, 0)} (${iqr(side.throughputSpread, (v) => fmt(v, 0))})`;
  out.push(
    '## 4. Webhook throughput',
    '',
    table(report.warm.webhook, {
      Concurrency: (m) => String(m.concurrency),
      'Webhook events/s': (m) => perSecond(m.handler),
      'Webhook p50 / p99': (m) => `${ms(m.handler.p50)} / ${ms(m.handler.p99)}`,
      'Floor events/s': (m) => perSecond(m.direct),
      'Floor p50 / p99': (m) => `${ms(m.direct.p50)} / ${ms(m.direct.p99)}`,
      'Throughput ratio': (m) => rounds(m.throughputRatio),
      'p99 ratio': (m) => ratio(m.p99Ratio),
    }),
    '',
  );

  // Stability.
  out.push('## Stability', '');
  if (previous) {
    out.push(
      `Against the previous run, ${previous.date} on ${previous.machine}; a change beyond 10% is in bold:`,
      '',
      table(changes, {
        Ratio: (c) => c.key,
        Previous: (c) => c.before.toFixed(2),
        'This run': (c) => c.value.toFixed(2),
        Change: (c) => ((text) => (Math.abs(c.change) > STABILITY ? `**${text}**` : text))(`${c.change >= 0 ? '+' : ''}${(c.change * 100).toFixed(1)}%`),
      }),
      '',
    );
  } else {
    out.push('None yet: the next run compares itself with this one.', '');
  }
  out.push(`Netlify's own build: ${shippedNote(report.shipped)}`, '');
  out.push(`<!-- bench-results ${JSON.stringify({ date: report.date, machine: describeMachine(report.machine), ratios })} -->`);
  return out.join('\n');
}

function shippedNote(shipped: Shipped[] | undefined): string {
  if (!shipped) return 'zip-it-and-ship-it is not installed, so the netlify build was not compared with it and shipped sizes are not shown.';
  const differ = shipped.filter((s) => !s.sameAsMirror).map((s) => s.file);
  return (
    `zip-it-and-ship-it (from netlify-cli) chose the ${[...new Set(shipped.map((s) => s.bundler))].join(', ')} bundler for every function; ` +
    (differ.length === 0
      ? 'its bundle of each function file is byte for byte our netlify build.'
      : `its bundle differs from our netlify build for ${differ.join(', ')}: **the module-only figures of those may not match production**.`)
  );
}

export async function writeReport(file: string, report: Report, previous: Previous | undefined): Promise<void> {
  await writeGenerated(file, markdown(report, previous));
}
