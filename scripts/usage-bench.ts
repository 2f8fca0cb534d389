// npm run bench:usage: what billing_track, the attached-limit triggers, billing_limit and
// billing_usage_state cost, each beside its baseline in the same run, on a database of
// its own (the same embedded PostgreSQL the tests use). Writes docs/usage-bench.md.
//
// 1. billing_track on one subject, 32 clients, 10% of calls a retry of the client's
//    previous key: through pgbench (-c 32 -j 2) and through PostgREST (32 concurrent
//    fetches), in rounds alternating with a naive `update … set used = used + $1` of one
//    row (through PostgREST: an RPC doing that update), beside pg_test_fsync's flush rate
//    of the disk the database is on. The totals are checked exactly afterwards.
// 2. One subject's single-row insert and 10,000-row `insert … select` into a table with
//    billing_attach_limit's triggers and into the same table without, alternately; and
//    billing_limit / billing_usage_state per call, as the entitlements bench measures a
//    call (a scan with the call minus the same scan without it).

import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { median } from './bench/stats.ts';
import { startThrowawayStack } from './stack/throwaway.ts';

const ROOT = path.resolve(import.meta.dirname, '..');
const SECONDS = Number(process.env['SECONDS_PER_RUN'] ?? 5);
const ROUNDS = Number(process.env['ROUNDS'] ?? 3);
const CLIENTS = 32;
const RUNS = Number(process.env['RUNS'] ?? 11);
const WARMUP = 6;
const CALLS = Number(process.env['CALLS'] ?? 10_000);
const BULK = 10_000;
const PGBENCH = process.env['PGBENCH'] ?? '/usr/bin/pgbench';
const PG_TEST_FSYNC = process.env['PG_TEST_FSYNC'] ?? '/usr/lib/postgresql/15/bin/pg_test_fsync';
const run = promisify(execFile);
// Appended to the doc as written; about the method, so it holds whatever the numbers.
const READING = [
  '## Reading',
  '',
  '- One subject and one meter is the worst case: every billing_track call adds to the one window row and holds its lock until commit, so that subject\'s calls run one at a time from that update through their commit\'s flush, as the naive update\'s do. What billing_track does besides runs before, without waiting for the others: the argument checks, the state, the meter\'s row and the window, and the key\'s read (a repeat answers there). Then the call queues on a transaction-scoped advisory lock for the subject and meter (one of 8 lanes, by backend), updates the window and inserts the key with its result, and commits. The naive update waits on the row itself, where each commit wakes every waiter to find the row taken again; a lane wakes its next call only, and at most 8 calls wait on the row. Other subjects\' calls do not wait for these.',
  '- billing_limit is billing_has_feature\'s read of the state and access decision plus one index read of billing_plan_limits; billing_usage_state adds the window and two reads of billing_usage_windows (this window\'s use; whether the one before it ended above the included amount: only then are the ended windows walked). The access rule and the window are SQL the planner inlines; each query run from PL/pgSQL costs a few µs here, which is what the difference is made of.',
  '- The clock figures include waiting for a CPU on the 2 shared cores, the load generators\' use of them included; the CPU columns are what the database backends spent. Where the two disagree, the CPU is the steadier measure of the code.',
  '',
].join('\n');

const spread = (values: number[], digits = 0) => `${Math.min(...values).toFixed(digits)}–${Math.max(...values).toFixed(digits)}`;
const us = (ms: number) => `${(ms * 1000).toFixed(1)} µs`;
const fmt = (ms: number) => `${ms.toFixed(3)} ms`;
const met = (ok: boolean) => (ok ? 'met' : '**missed**');

const own = await startThrowawayStack('usage-bench', { ownDatabase: true });
const databaseUrl = own.env['DATABASE_URL'] ?? '';
const supabaseUrl = own.env['SUPABASE_URL'] ?? '';
const serviceKey = own.env['SUPABASE_SERVICE_ROLE_KEY'] ?? '';
const client = new pg.Client({ connectionString: databaseUrl });
await client.connect();
const q = async <Row extends pg.QueryResultRow>(sql: string, params: unknown[] = []) => (await client.query<Row>(sql, params)).rows;

// CPU in clock ticks (100 a second on Linux) from /proc/<pid>/stat: utime, stime and, for
// the postmaster, its exited children's (the pgbench backends, which exit with pgbench).
const TICK_MS = 10;
function statTicks(pid: number, children: boolean): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /, '').split(' ').map(Number);
  // After "(comm) ": fields[11] utime, [12] stime, [13] cutime, [14] cstime.
  return (fields[11] ?? 0) + (fields[12] ?? 0) + (children ? (fields[13] ?? 0) + (fields[14] ?? 0) : 0);
}
const backendPid = (await q<{ pid: number }>('select pg_backend_pid() as pid'))[0]?.pid ?? 0;
const postmasterPid = Number(readFileSync(`/proc/${backendPid}/stat`, 'utf8').replace(/^.*\) /, '').split(' ')[1]);
// This session's backend CPU in ms (schedstat, nanoseconds), for the single statements.
const cpuMs = () => Number(readFileSync(`/proc/${backendPid}/schedstat`, 'utf8').split(' ')[0] ?? 'NaN') / 1e6;

try {
  const started = new Date();
  const load = loadavg()[0] ?? Number.NaN;
  // A plan whose limit and meter never refuse here but are checked on every call.
  await q('select billing_sync_catalog($1)', [JSON.stringify({
    plans: [{ plan: 'bench', product_id: 'prod_usage_bench', name: 'Bench', features: ['api'],
      limits: { sites: 1_000_000_000 }, usage: { pageviews: { included: 1_000_000_000_000, overage: 'block' }, clicks: { included: 100, overage: 'allow' } } }],
    prices: [{ price_id: 'price_usage_bench_m', plan: 'bench', lookup_key: 'usage_bench_m', interval: 'month', amount: 900, currency: 'eur' }],
    free: { limits: { sites: 1 }, usage: { pageviews: { included: 100, overage: 'block' } } },
  })]);
  const subject = randomUUID();
  const member = randomUUID();
  await q(`insert into billing_customers (user_id, stripe_customer_id) values ($1, 'cus_usage_bench')`, [subject]);
  await q(
    `insert into billing_subscriptions (stripe_subscription_id, stripe_customer_id, user_id, status, price_id, product_id, for_this_product,
       cancel_at_period_end, current_period_start, current_period_end, stripe_created_at, state_event_created, state_event_id)
     values ('sub_usage_bench', 'cus_usage_bench', $1, 'active', 'price_usage_bench_m', 'prod_usage_bench', true, false,
       now() - interval '3 days', now() + interval '27 days', now(), now(), 'evt_usage_bench')`,
    [subject],
  );
  await q(`insert into billing_team_members (team_id, user_id, role) values ($1, $2, 'owner')`, [subject, member]);

  // 1. billing_track under contention ------------------------------------------------------
  await q('create table bench_counter (id integer primary key, used bigint not null)');
  await q('insert into bench_counter values (1, 0)');
  await q('grant select, update on bench_counter to service_role');
  // The naive update as PostgREST would call it: one RPC, one statement.
  await q(`create function bench_naive(p_amount bigint) returns void language sql as $$
    update public.bench_counter set used = used + p_amount where id = 1 $$`);
  await q('grant execute on function bench_naive(bigint) to service_role');
  await q(`notify pgrst, 'reload schema'`);

  const scripts = await mkdtemp(path.join(tmpdir(), 'usage-bench-'));
  // pgbench keeps a client's variables between its transactions: n counts the client's
  // keys, and one call in ten repeats the previous key (and its amount) instead.
  const trackScript = path.join(scripts, 'track.sql');
  await writeFile(trackScript, [
    '\\set r random(1, 10)',
    '\\if :r > 1',
    '\\set n :n + 1',
    '\\endif',
    '\\set amount 1 + :n % 5',
    `select billing_track('${subject}', 'pageviews', :amount, 'pg:' || :round || ':' || :client_id || ':' || :n);`,
    '',
  ].join('\n'));
  const naiveScript = path.join(scripts, 'naive.sql');
  await writeFile(naiveScript, 'update bench_counter set used = used + 1 where id = 1;\n');

  interface Rate { perSecond: number; calls: number; failed: number; cpuMsPerCall: number }
  async function pgbench(script: string, round: number, clients = CLIENTS): Promise<Rate> {
    const before = statTicks(postmasterPid, true);
    // As service_role, the only role billing_track admits (the connection's superuser may
    // set it at start-up).
    const { stdout } = await run(PGBENCH, ['-n', '-M', 'prepared', '-c', String(clients), '-j', String(Math.min(2, clients)), '-T', String(SECONDS), '-D', 'n=0', '-D', `round=${round}`, '-f', script, databaseUrl], {
      env: { ...process.env, PGOPTIONS: '-c role=service_role' },
    });
    await new Promise((resolve) => setTimeout(resolve, 200)); // the postmaster reaps its exited backends
    const cpu = (statTicks(postmasterPid, true) - before) * TICK_MS;
    const calls = Number(/number of transactions actually processed: (\d+)/.exec(stdout)?.[1] ?? NaN);
    const failed = Number(/number of failed transactions: (\d+)/.exec(stdout)?.[1] ?? 0);
    const perSecond = Number(/tps = ([\d.]+) \(without initial connection time\)/.exec(stdout)?.[1] ?? NaN);
    return { perSecond, calls, failed, cpuMsPerCall: cpu / calls };
  }

  // PostgREST's connections and their backends' CPU (they stay open between requests).
  const restBackends = async () => (await q<{ pid: number }>(`select pid from pg_stat_activity where usename = 'authenticator'`)).map((r) => r.pid);
  const restTicks = (pids: number[]) => pids.reduce((sum, pid) => {
    try { return sum + statTicks(pid, false); } catch { return sum; }
  }, 0);
  const restKeys = new Map<string, number>(); // every key that PostgREST answered 200, with its amount
  let restNaiveSum = 0; // what the naive RPC calls answered 200 added
  let restMismatches = 0; // a retry not answered as a duplicate, or a first call answered as one
  async function rest(kind: 'track' | 'naive', round: number): Promise<Rate> {
    const rpc = kind === 'track' ? 'billing_track' : 'bench_naive';
    const headers = { apikey: serviceKey, authorization: `Bearer ${serviceKey}`, 'content-type': 'application/json' };
    const pids = await restBackends();
    const before = restTicks(pids);
    let calls = 0;
    let failed = 0;
    const t0 = performance.now();
    const end = t0 + SECONDS * 1000;
    await Promise.all(Array.from({ length: CLIENTS }, async (_, worker) => {
      let n = 0;
      while (performance.now() < end) {
        const retry = n > 0 && Math.random() < 0.1;
        if (!retry) n += 1;
        const amount = 1 + (n % 5);
        const key = `rest:${round}:${worker}:${n}`;
        const body = kind === 'track' ? { p_subject: subject, p_meter: 'pageviews', p_amount: amount, p_key: key } : { p_amount: amount };
        const response = await fetch(`${supabaseUrl}/rest/v1/rpc/${rpc}`, { method: 'POST', headers, body: JSON.stringify(body) });
        const text = await response.text();
        calls += 1;
        if (!response.ok) {
          failed += 1;
          continue;
        }
        if (kind === 'naive') restNaiveSum += amount;
        else {
          const duplicate = (JSON.parse(text) as { duplicate: boolean }).duplicate;
          if (duplicate !== restKeys.has(key)) restMismatches += 1;
          restKeys.set(key, amount);
        }
      }
    }));
    const seconds = (performance.now() - t0) / 1000;
    const cpu = (restTicks(pids) - before) * TICK_MS;
    return { perSecond: calls / seconds, calls, failed, cpuMsPerCall: cpu / calls };
  }

  const rates = { pgTrack: [] as Rate[], pgNaive: [] as Rate[], restTrack: [] as Rate[], restNaive: [] as Rate[] };
  // A short untimed PostgREST round first: its pool opens its connections then.
  await rest('naive', -1);
  for (let round = 0; round < ROUNDS; round += 1) {
    rates.pgNaive.push(await pgbench(naiveScript, round));
    rates.pgTrack.push(await pgbench(trackScript, round));
    rates.restNaive.push(await rest('naive', round));
    rates.restTrack.push(await rest('track', round));
    console.error(`round ${round}: pgbench naive ${rates.pgNaive.at(-1)?.perSecond.toFixed(0)}/s, track ${rates.pgTrack.at(-1)?.perSecond.toFixed(0)}/s; PostgREST naive ${rates.restNaive.at(-1)?.perSecond.toFixed(0)}/s, track ${rates.restTrack.at(-1)?.perSecond.toFixed(0)}/s`);
  }

  // One client, once: what a call costs without anyone waiting on the lock.
  const serial = { naive: await pgbench(naiveScript, 100, 1), track: await pgbench(trackScript, 100, 1) };
  console.error(`one client: naive ${serial.naive.perSecond.toFixed(0)}/s, track ${serial.track.perSecond.toFixed(0)}/s`);

  // The totals. Each pgbench client's keys must be 0 or 1 up to its last without a gap
  // (no call lost), PostgREST's exactly those it was answered for; the window, the hours
  // and billing_usage must each equal the sum of the distinct keys' amounts.
  const [pgKeys] = await q<{ keys: string; gaps: string; amount: string }>(`
    with k as (
      select split_part(key, ':', 2) || ':' || split_part(key, ':', 3) as client, split_part(key, ':', 4)::bigint as n
      from billing_usage_keys where subject_id = $1 and meter = 'pageviews' and key like 'pg:%'),
    per as (select client, count(*) as keys, max(n) - min(n) + 1 as span, min(n) as low from k group by client)
    select (select count(*) from k) as keys,
           (select count(*) from per where keys <> span or low > 1) as gaps,
           (select coalesce(sum(1 + n % 5), 0) from k) as amount`, [subject]);
  const [stored] = await q<{ rest_keys: string; window: string; hours: string; usage: string }>(`
    select (select count(*) from billing_usage_keys where subject_id = $1 and key like 'rest:%') as rest_keys,
           (select coalesce(sum(used), 0) from billing_usage_windows where subject_id = $1 and meter = 'pageviews') as window,
           (select coalesce(sum(amount), 0) from billing_usage_hourly where subject_id = $1 and meter = 'pageviews') as hours,
           billing_usage($1, 'pageviews') as usage`, [subject]);
  const restAmount = [...restKeys.values()].reduce((a, b) => a + b, 0);
  const expected = Number(pgKeys?.amount) + restAmount;
  const pgCalls = rates.pgTrack.reduce((s, r) => s + r.calls, 0) + serial.track.calls;
  const restCalls = rates.restTrack.reduce((s, r) => s + r.calls - r.failed, 0);
  const naiveUsed = Number((await q<{ used: string }>('select used from bench_counter'))[0]?.used);
  const naiveCalls = rates.pgNaive.reduce((s, r) => s + r.calls, 0) + serial.naive.calls;
  const totals = {
    pgKeys: Number(pgKeys?.keys), pgGaps: Number(pgKeys?.gaps), pgCalls,
    restKeys: Number(stored?.rest_keys), restKeysAnswered: restKeys.size, restCalls,
    window: Number(stored?.window), hours: Number(stored?.hours), usage: Number(stored?.usage), expected,
  };
  const exact = totals.pgGaps === 0 && totals.restKeys === totals.restKeysAnswered && restMismatches === 0
    && totals.window === expected && totals.hours === expected && totals.usage === expected;
  console.error(`totals: ${JSON.stringify(totals)}, mismatches ${restMismatches}, exact ${exact}`);

  // The disk's flush rate, on the file system the database is on.
  const { rows: [dataDir] } = await client.query<{ setting: string }>(`select setting from pg_settings where name = 'data_directory'`);
  const { rows: [syncMethod] } = await client.query<{ setting: string }>(`select setting from pg_settings where name = 'wal_sync_method'`);
  const fsyncDir = await mkdtemp(path.join(path.dirname(dataDir?.setting ?? tmpdir()), 'usage-bench-fsync-'));
  let fsyncOut = '';
  try {
    fsyncOut = (await run(PG_TEST_FSYNC, ['-s', '2', '-f', path.join(fsyncDir, 'test')])).stdout;
  } finally {
    await rm(fsyncDir, { recursive: true, force: true });
  }
  // The first "one 8kB write" section lists the sync methods; wal_sync_method's line is
  // what a commit waits for.
  const method = syncMethod?.setting ?? 'fdatasync';
  const section = fsyncOut.split(/\n\s*\n/).find((s) => /one 8kB write/.test(s)) ?? fsyncOut;
  const flushPerSecond = Number(new RegExp(`${method}\\s+([\\d.]+) ops/sec`).exec(section)?.[1] ?? NaN);
  console.error(`pg_test_fsync: ${method} ${flushPerSecond} ops/s`);

  // 2. The triggers and the bare calls ------------------------------------------------------
  await q(`create table bench_sites (id bigint generated always as identity primary key, team_id uuid, name text not null default 'site')`);
  await q('create table bench_plain (like bench_sites including all)');
  await q(`select billing_attach_limit('public.bench_sites', 'sites', 'team_id')`);

  type As = { userId: string } | 'service_role' | null;
  interface Once { ms: number; cpu: number }
  /** One EXPLAIN ANALYZE of `sql` in a transaction of its own, committed: its execution
   *  time (after-statement triggers included) and the backend's CPU for it. */
  async function once(sql: string, as: As): Promise<Once> {
    await client.query('begin');
    if (as === 'service_role') await client.query('set local role service_role');
    else if (as) {
      await client.query(`select set_config('request.jwt.claims', $1, true)`, [JSON.stringify({ sub: as.userId, role: 'authenticated' })]);
      await client.query('set local role authenticated');
    }
    const before = cpuMs();
    const { rows } = await client.query<{ 'QUERY PLAN': [{ 'Execution Time': number }] }>(`explain (analyze, timing off, format json) ${sql}`);
    const cpu = cpuMs() - before;
    await client.query('commit');
    return { ms: rows[0]?.['QUERY PLAN'][0]['Execution Time'] ?? Number.NaN, cpu };
  }
  interface Compared { base: number; with: number; diff: number; diffs: number[]; baseCpu: number; withCpu: number; cpuDiff: number }
  /** `base` and `sql` alternately, RUNS times after WARMUP: medians, and the per-run differences. */
  async function compare(base: string, sql: string, as: As, runs = RUNS): Promise<Compared> {
    const a: Once[] = [];
    const b: Once[] = [];
    for (let i = -WARMUP; i < runs; i += 1) {
      const x = await once(base, as);
      const y = await once(sql, as);
      if (i >= 0) {
        a.push(x);
        b.push(y);
      }
    }
    const diffs = b.map((y, i) => y.ms - (a[i]?.ms ?? Number.NaN));
    return {
      base: median(a.map((x) => x.ms)), with: median(b.map((y) => y.ms)), diff: median(diffs), diffs,
      baseCpu: median(a.map((x) => x.cpu)), withCpu: median(b.map((y) => y.cpu)), cpuDiff: median(b.map((y, i) => y.cpu - (a[i]?.cpu ?? Number.NaN))),
    };
  }
  const single = await compare(`insert into bench_plain (team_id) values ('${subject}')`, `insert into bench_sites (team_id) values ('${subject}')`, null, 31);
  console.error(`single-row insert: ${fmt(single.base)} → ${fmt(single.with)}`);
  const bulk = await compare(
    `insert into bench_plain (team_id) select '${subject}'::uuid from generate_series(1, ${BULK})`,
    `insert into bench_sites (team_id) select '${subject}'::uuid from generate_series(1, ${BULK})`, null);
  console.error(`bulk insert: ${fmt(bulk.base)} → ${fmt(bulk.with)}`);
  const [counted] = await q<{ count: string; rows: string }>(
    `select (select count from billing_limit_counts where subject_id = $1 and key = 'sites') as count, (select count(*) from bench_sites) as rows`, [subject]);

  // A row per call naming the subject; the filter reads the row, so the call runs per row
  // (a filter without one would run once, as a one-time filter).
  await q(`create table bench_calls as select $1::uuid as subject from generate_series(1, ${CALLS})`, [subject]);
  await q('analyze bench_calls');
  await q('grant select on bench_calls to authenticated, service_role');
  const scan = 'select count(*) from bench_calls where subject is not null';
  // clicks in warning (95 of 100): an answer other than 'ok', which billing_usage_state
  // gives a member only after reading the membership.
  await q(`select billing_track($1, 'clicks', 95, 'bench:clicks')`, [subject]);
  const callCases = [
    { name: 'billing_limit, as service_role', sql: `select count(*) from bench_calls where billing_limit(subject, 'sites') is not null`, as: 'service_role' as As },
    { name: 'billing_limit, as a member of the team', sql: `select count(*) from bench_calls where billing_limit(subject, 'sites') is not null`, as: { userId: member } as As },
    { name: 'billing_usage_state, as service_role', sql: `select count(*) from bench_calls where billing_usage_state(subject, 'pageviews') is not null`, as: 'service_role' as As },
    { name: 'billing_usage_state, as a member of the team', sql: `select count(*) from bench_calls where billing_usage_state(subject, 'pageviews') is not null`, as: { userId: member } as As },
  ];
  // A part, the teams issue's reference (billing_has_feature on a feature the plan grants:
  // one read of the state and the access decision), an empty function of the same shape
  // (plpgsql, security definer, its own search_path), to show where a call's time goes;
  // and billing_usage_state's answer that needs the caller's membership.
  await q(`create function bench_empty(p_subject uuid) returns boolean language plpgsql stable security definer set search_path = '' as $$
    begin return p_subject is not null; end $$`);
  const parts = [
    { name: 'part: billing_may_ask, as service_role', sql: `select count(*) from bench_calls where billing_may_ask(subject)`, as: 'service_role' as As },
    { name: 'reference: billing_has_feature, as service_role', sql: `select count(*) from bench_calls where billing_has_feature(subject, 'api')`, as: 'service_role' as As },
    { name: 'reference: billing_has_feature, as a member of the team', sql: `select count(*) from bench_calls where billing_has_feature(subject, 'api')`, as: { userId: member } as As },
    { name: 'shape: an empty plpgsql security definer function with set search_path (as the owner)', sql: `select count(*) from bench_calls where bench_empty(subject)`, as: null },
    { name: 'other case: billing_usage_state as a member of the team on a meter in warning (clicks), the membership read', sql: `select count(*) from bench_calls where billing_usage_state(subject, 'clicks') is not null`, as: { userId: member } as As },
  ];
  callCases.push(...parts);
  const callResults: (Compared & { name: string })[] = [];
  for (const c of callCases) {
    const result = await compare(scan, c.sql, c.as, 7);
    callResults.push({ name: c.name, ...result });
    console.error(`${c.name}: ${us(result.diff / CALLS)} a call`);
  }

  // The doc --------------------------------------------------------------------------------
  const { rows: [version] } = await client.query<{ server_version: string }>('show server_version');
  const pgbenchVersion = (await run(PGBENCH, ['--version'])).stdout.trim();
  const med = (rs: Rate[]) => median(rs.map((r) => r.perSecond));
  const row = (name: string, rs: Rate[], base: Rate[]) =>
    `| ${name} | ${med(rs).toFixed(0)} | ${spread(rs.map((r) => r.perSecond))} | ${(med(rs) / med(base)).toFixed(2)}× | ${(flushPerSecond ? med(rs) / flushPerSecond : NaN).toFixed(2)}× | ${us(median(rs.map((r) => r.cpuMsPerCall)))} | ${rs.reduce((s, r) => s + r.calls, 0).toLocaleString('en')} | ${rs.reduce((s, r) => s + r.failed, 0)} |`;
  const pgRatio = med(rates.pgTrack) / med(rates.pgNaive);
  const restRatio = med(rates.restTrack) / med(rates.restNaive);
  // The worst case of each targeted function (its two callers), by the clock and of CPU.
  const worst = (fn: string) => {
    const rs = callResults.filter((r) => r.name.startsWith(`${fn},`));
    return { clock: Math.max(...rs.map((r) => r.diff / CALLS)), cpu: Math.max(...rs.map((r) => r.cpuDiff / CALLS)) };
  };
  const roundRatios = (track: Rate[], naive: Rate[]) => track.map((r, i) => `${(r.perSecond / (naive[i]?.perSecond ?? NaN)).toFixed(2)}×`).join(', ');
  const bareTarget = (fn: string) => {
    const w = worst(fn);
    return `${fn} at most ${us(w.clock)} by the clock (${met(w.clock <= 0.02)}), ${us(w.cpu)} of CPU (${met(w.cpu <= 0.02)})`;
  };
  const bulkRatio = bulk.with / bulk.base;
  const bulkCpuRatio = bulk.withCpu / bulk.baseCpu;
  const dupShare = (calls: number, keys: number) => `${(((calls - keys) / calls) * 100).toFixed(1)} %`;
  const lines = [
    '# Limits and usage: what they cost',
    '',
    `\`npm run bench:usage\` (scripts/usage-bench.ts): PostgreSQL ${version?.server_version ?? '?'} (embedded, the test stack's, default settings: \`synchronous_commit\` on, \`wal_sync_method\` ${method}), ${pgbenchVersion}, Node ${process.version}, ${started.toISOString().slice(0, 10)}. A database of its own with one plan whose limit (\`sites\`, 10⁹) and meter (\`pageviews\`, 10¹² included, \`overage: block\`) are checked on every call but never refuse, and a second meter (\`clicks\`, 100 included) the subject has used 95 of; one subject, a team with an active subscription to it. Every case runs beside its baseline in the same run, alternately. The machine has 2 cores shared with other work (load average ${load.toFixed(1)} at the start), and the load generators (pgbench, Node) run on them too: wall-clock rates are noisy, so the spreads are given, and the database backends' own CPU time (\`/proc\`) where it can be had.`,
    '',
    `## billing_track on one subject, ${CLIENTS} clients`,
    '',
    `${ROUNDS} rounds of ${SECONDS} s each, in this order per round: pgbench naive, pgbench billing_track, PostgREST naive, PostgREST billing_track. pgbench: \`-c ${CLIENTS} -j 2 -M prepared -T ${SECONDS}\`, connected as \`service_role\` (\`PGOPTIONS=-c role=service_role\`), one call a transaction. PostgREST: ${CLIENTS} concurrent \`fetch\` loops from one Node process, \`POST /rest/v1/rpc/…\` with the service-role key, through the stack's gateway; PostgREST's pool has its default 10 connections. In both, one call in ten repeats the client's previous key (and amount). The naive baseline is \`update bench_counter set used = used + $1 where id = 1\` (through PostgREST, an RPC doing that update). Backend CPU per call: for pgbench, the CPU of the backends that served it (they exit with it, into the postmaster's children's time); connection start-up included; for PostgREST, of its pooled backends; 10 ms ticks.`,
    '',
    `The flush rate: \`pg_test_fsync -s 2\` on the file system the database is on, \`${method}\` (wal_sync_method) of one 8 kB write: **${flushPerSecond.toFixed(0)} flushes/s**.`,
    '',
    '| | calls/s (median) | spread | × naive | × flush rate | backend CPU per call | calls | failed |',
    '| --- | --- | --- | --- | --- | --- | --- | --- |',
    row('pgbench: naive update', rates.pgNaive, rates.pgNaive),
    row('pgbench: billing_track', rates.pgTrack, rates.pgNaive),
    row('PostgREST: naive update (RPC)', rates.restNaive, rates.restNaive),
    row('PostgREST: billing_track', rates.restTrack, rates.restNaive),
    row('pgbench, 1 client (one run, not a target): naive update', [serial.naive], [serial.naive]),
    row('pgbench, 1 client (one run, not a target): billing_track', [serial.track], [serial.naive]),
    '',
    `Totals, checked exactly after the runs: pgbench made ${pgCalls.toLocaleString('en')} calls (the 1-client run's included) with ${totals.pgKeys.toLocaleString('en')} distinct keys (${dupShare(pgCalls, totals.pgKeys)} repeats), every client's keys without a gap (${totals.pgGaps} clients with one); PostgREST was answered for ${restCalls.toLocaleString('en')} calls with ${totals.restKeysAnswered.toLocaleString('en')} distinct keys (${dupShare(restCalls, totals.restKeysAnswered)} repeats), ${totals.restKeys.toLocaleString('en')} stored, ${restMismatches} answers whose \`duplicate\` disagreed with whether the key was a repeat. The distinct keys' amounts sum to ${expected.toLocaleString('en')}; the usage window holds ${totals.window.toLocaleString('en')}, the hourly totals (\`billing_usage_hourly\`) ${totals.hours.toLocaleString('en')}, \`billing_usage\` answers ${totals.usage.toLocaleString('en')}: **${exact ? 'exact' : 'NOT exact'}**. The naive counter holds ${naiveUsed.toLocaleString('en')}: pgbench's ${naiveCalls.toLocaleString('en')} updates of 1 (the 1-client run's included) and PostgREST's ${restNaiveSum.toLocaleString('en')}, ${naiveUsed === naiveCalls + restNaiveSum ? 'exact' : '**not exact**'}.`,
    '',
    `## billing_attach_limit's triggers`,
    '',
    `One subject's inserts into a table with the triggers (\`billing_attach_limit('public.bench_sites', 'sites', 'team_id')\`) and into the same table without, alternately, each a committed transaction of its own; \`explain (analyze, timing off)\` execution time, which includes the after-statement triggers, and the backend's CPU time for the statement (schedstat, planning included). ${31} runs of the single-row insert, ${RUNS} of the ${BULK.toLocaleString('en')}-row \`insert … select\`, after ${WARMUP} untimed runs each. Afterwards the count says ${Number(counted?.count).toLocaleString('en')} for the table's ${Number(counted?.rows).toLocaleString('en')} rows.`,
    '',
    '| | without (median) | with (median) | added (median of per-run differences) | differences, spread | backend CPU without → with |',
    '| --- | --- | --- | --- | --- | --- |',
    `| single-row insert | ${fmt(single.base)} | ${fmt(single.with)} | ${fmt(single.diff)} | ${spread(single.diffs, 3)} ms | ${fmt(single.baseCpu)} → ${fmt(single.withCpu)} |`,
    `| ${BULK.toLocaleString('en')}-row insert … select | ${fmt(bulk.base)} | ${fmt(bulk.with)} (${bulkRatio.toFixed(2)}×) | ${fmt(bulk.diff)} | ${spread(bulk.diffs, 1)} ms | ${fmt(bulk.baseCpu)} → ${fmt(bulk.withCpu)} (${bulkCpuRatio.toFixed(2)}×) |`,
    '',
    '## billing_limit and billing_usage_state, a bare call',
    '',
    `\`select count(*) from bench_calls where f(subject, …) is not null\` over ${CALLS.toLocaleString('en')} rows naming the subject, minus the same scan without the call (alternately, 7 runs after ${WARMUP}), per row. The rows marked part, reference, shape and other case are not targets: a part of the calls, billing_has_feature (the teams issue's ≤ 20 µs) beside them, an empty function of their shape, and billing_usage_state's answer other than 'ok' to a member, which is the one that reads the membership (anyone else gets 'ok', so an 'ok' is answered without it).`,
    '',
    '| Call | per call (median) | per call, spread | per call, backend CPU |',
    '| --- | --- | --- | --- |',
    ...callResults.map((r) => `| ${r.name} | ${us(r.diff / CALLS)} | ${us(Math.min(...r.diffs) / CALLS)}–${us(Math.max(...r.diffs) / CALLS)} | ${us(r.cpuDiff / CALLS)} |`),
    '',
    '## Against the targets',
    '',
    `- billing_track ≥ 0.7× the naive update at concurrency ${CLIENTS}: through pgbench ${pgRatio.toFixed(2)}× (${met(pgRatio >= 0.7)}; round by round ${roundRatios(rates.pgTrack, rates.pgNaive)}), through PostgREST ${restRatio.toFixed(2)}× (${met(restRatio >= 0.7)}; ${roundRatios(rates.restTrack, rates.restNaive)}); totals exact (${met(exact)}).${pgRatio < 0.7 || restRatio < 0.7 ? ` Missed by ${(0.7 - Math.min(pgRatio, restRatio)).toFixed(2)}×: ${med(rates.pgNaive) < flushPerSecond ? 'the rates were bound by the shared CPU, not the disk\'s flushes (both under its flush rate), and ' : ''}a billing_track call costs ${(serial.track.cpuMsPerCall / serial.naive.cpuMsPerCall).toFixed(1)}× the naive update's backend CPU on one client (below).` : ''}`,
    `- The triggers add ≤ 0.5 ms to a single-row insert: ${fmt(single.diff)} (${met(single.diff <= 0.5)}).`,
    `- ≤ 2× a ${BULK.toLocaleString('en')}-row insert … select: ${bulkRatio.toFixed(2)}× by the clock (${met(bulkRatio <= 2)}), ${bulkCpuRatio.toFixed(2)}× of CPU (${met(bulkCpuRatio <= 2)}).`,
    `- billing_limit and billing_usage_state ≤ 20 µs a bare call: ${bareTarget('billing_limit')}; ${bareTarget('billing_usage_state')}.${Math.max(worst('billing_limit').cpu, worst('billing_usage_state').cpu) > 0.02 ? ' Where missed, by what the call does beyond billing_has_feature (the reference rows): below.' : ''}`,
    '',
    READING,
    // About this run's numbers, so computed.
    `- On one client, a billing_track call cost ${us(serial.track.cpuMsPerCall)} of backend CPU against the naive update's ${us(serial.naive.cpuMsPerCall)}: it reads the state and the limit, and writes the key's row besides the window's.${med(rates.pgNaive) < flushPerSecond ? ' In this run both stayed under the disk\'s flush rate: the 2 shared cores, which the 32 backends and the load generators share, bounded them, so what a call costs in CPU counts more than how long it holds the row.' : ''}`,
    `- A call holds its locks until its commit is flushed, so one subject's calls cannot outrun the disk's flushes (pg_test_fsync: ${flushPerSecond.toFixed(0)}/s in this run; the disk is shared and its rate varies from run to run).${med(rates.pgNaive) > flushPerSecond ? ' The naive update, serialized the same way on its row lock, passed that rate: the WAL\'s flushes cost less than pg_test_fsync\'s, so it is a rough bound only.' : ''}${med(rates.pgTrack) < flushPerSecond / 2 ? ' billing_track stayed well under it: its own work, not the disk, set its rate here.' : ''}`,
    '',
  ];
  await writeFile(path.join(ROOT, 'docs/usage-bench.md'), lines.join('\n'));
  console.log(lines.join('\n'));
  await rm(scripts, { recursive: true, force: true });
} finally {
  await client.end();
  await own.stop();
}
