// npm run bench:entitlements: what the entitlement functions cost in row-level-security
// policies on large tables, each case beside its baseline in the same run, on a fresh
// local database (the same embedded PostgreSQL the tests use). Writes
// docs/entitlements-bench.md.
//
// 1. Personal rows: ROWS rows of one product table over USERS users; the signed-in user
//    is a Business subscriber (api_access) and owns ROWS / USERS of them. Each variant
//    is a policy on a copy of the table:
//      baseline     using (user_id = (select auth.uid()))                              own rows only
//      wrapped      ... and (select billing_has_feature(auth.uid(), 'api_access'))     once per query
//      bare         ... and billing_has_feature(auth.uid(), 'api_access')              once per row
//      any          using (user_id = any ((select billing_subjects_with_feature('api_access'))::uuid[]))
//      full scan    using ((select billing_has_feature(auth.uid(), 'api_access')))     every row visible
//    (The bare call on a full scan is left out: ROWS calls per query.)
// 2. One call: CALLS rows naming a subject, `where billing_has_feature(subject, …)`, as
//    the signed-in user; minus the same scan without the call, divided by CALLS. For the
//    user's own id, a team of theirs, a team not theirs, as the service role, and the
//    previous definition (security invoker, reading the billing_accounts view).
// 3. Team rows: TEAM_ROWS rows over TEAMS teams (each with a subscription and five
//    members); the signed-in user is in three: two on Business, one on Pro. One table,
//    its policy swapped between variants, beside the same query without a policy.
// 4. Writes: what the triggers that keep billing_subject_state cost billing_apply_event,
//    beside the same writes with them disabled.
//
// Each figure is the median of RUNS runs of EXPLAIN (ANALYZE, TIMING OFF) of
// `select count(*)`, each in a transaction of its own (as a PostgREST request is), after
// WARMUP untimed ones: the execution time, planning excluded.

import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { loadavg } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { median } from './bench/stats.ts';
import { startThrowawayStack } from './stack/throwaway.ts';

const ROWS = Number(process.env['ROWS'] ?? 200_000);
const USERS = 1_000;
const CALLS = Number(process.env['CALLS'] ?? 20_000);
// The previous definition costs about 2 ms a call: fewer rows for it.
const VIEW_CALLS = 500;
const TEAM_ROWS = Number(process.env['TEAM_ROWS'] ?? 1_000_000);
const TEAMS = 1_000;
const RUNS = Number(process.env['RUNS'] ?? 11);
const WRITE_SUBJECTS = 300;
// Untimed runs first: PostgreSQL plans a function's statements for their parameters the
// first five times in a session, then keeps a generic plan; a pooled connection (PostgREST)
// is long past that.
const WARMUP = 6;
const ROOT = path.resolve(import.meta.dirname, '..');

interface Measured {
  medianMs: number;
  minMs: number;
  /** The backend's own CPU time for the statement (planning included), median. */
  cpuMs: number;
  rows: number;
  scan: string;
}

interface PlanNode {
  'Node Type': string;
  'Relation Name'?: string;
  'Index Name'?: string;
  'Actual Rows': number;
  Plans?: PlanNode[];
}

/** The scans of a plan, e.g. "Bitmap Index Scan (bench_team_rows_team_id_idx)". */
function scans(node: PlanNode): string[] {
  const own = /Scan/.test(node['Node Type']) ? [`${node['Node Type']}${node['Index Name'] ? ` (${node['Index Name']})` : node['Relation Name'] ? ` (${node['Relation Name']})` : ''}`] : [];
  return [...own, ...(node.Plans ?? []).flatMap(scans)];
}

const own = await startThrowawayStack('entitlements-bench', { ownDatabase: true });
const client = new pg.Client({ connectionString: own.env['DATABASE_URL'] });
await client.connect();
// The server runs here: its backend's CPU time (Linux schedstat, nanoseconds) is what a
// statement cost whatever else the machine runs, where the wall clock also counts the
// time other processes held the CPU.
const backendPid = (await client.query<{ pid: number }>('select pg_backend_pid() as pid')).rows[0]?.pid;
const cpuMs = () => Number((readFileSync(`/proc/${backendPid}/schedstat`, 'utf8').split(' ')[0] ?? 'NaN')) / 1e6;

type As = { userId: string } | { role: string } | null;

/** One run of `sql` in a transaction of its own: as the signed-in `userId`, as `role` with
 *  no user, or (null) as the table owner, outside row-level security. */
async function once(sql: string, as: As): Promise<Measured> {
  await client.query('begin');
  if (as && 'userId' in as) {
    await client.query(`select set_config('request.jwt.claims', $1, true)`, [JSON.stringify({ sub: as.userId, role: 'authenticated' })]);
    await client.query('set local role authenticated');
  } else if (as) {
    await client.query(`select set_config('request.jwt.claims', $1, true)`, [JSON.stringify({ role: as.role })]);
    await client.query(`set local role ${as.role}`);
  }
  const cpuBefore = cpuMs();
  const explained = await client.query<{ 'QUERY PLAN': [{ 'Execution Time': number; Plan: PlanNode }] }>(`explain (analyze, timing off, format json) ${sql}`);
  const cpu = cpuMs() - cpuBefore;
  const [{ 'Execution Time': ms, Plan: top }] = explained.rows[0]?.['QUERY PLAN'] ?? [{ 'Execution Time': Number.NaN, Plan: { 'Node Type': '?', 'Actual Rows': 0 } }];
  const rows = Number((await client.query<{ count: string }>(sql)).rows[0]?.count ?? 0);
  await client.query('commit');
  return { medianMs: ms, minMs: ms, cpuMs: cpu, rows, scan: [...new Set(scans(top))].join(', ') };
}

/** `sql` RUNS times after WARMUP untimed runs. */
async function measure(sql: string, as: As): Promise<Measured> {
  const times: number[] = [];
  const cpu: number[] = [];
  let last: Measured | undefined;
  for (let run = -WARMUP; run < RUNS; run += 1) {
    last = await once(sql, as);
    if (run >= 0) {
      times.push(last.medianMs);
      cpu.push(last.cpuMs);
    }
  }
  return { medianMs: median(times), minMs: Math.min(...times), cpuMs: median(cpu), rows: last?.rows ?? 0, scan: last?.scan ?? '' };
}

/** `sql` minus `base`, run alternately RUNS times (after WARMUP): the median and the
 *  smallest of the per-run differences, so a slow moment of a shared machine hits both. */
async function difference(base: string, sql: string, as: As): Promise<{ medianMs: number; minMs: number; cpuMs: number; rows: number }> {
  const diffs: number[] = [];
  const cpu: number[] = [];
  let rows = 0;
  for (let run = -WARMUP; run < RUNS; run += 1) {
    const a = await once(base, as);
    const b = await once(sql, as);
    rows = b.rows;
    if (run >= 0) {
      diffs.push(b.medianMs - a.medianMs);
      cpu.push(b.cpuMs - a.cpuMs);
    }
  }
  return { medianMs: median(diffs), minMs: Math.min(...diffs), cpuMs: median(cpu), rows };
}

/** The text plan of `sql` as the signed-in user, for the doc. */
async function textPlan(sql: string, userId: string): Promise<string> {
  await client.query('begin');
  await client.query(`select set_config('request.jwt.claims', $1, true)`, [JSON.stringify({ sub: userId, role: 'authenticated' })]);
  await client.query('set local role authenticated');
  const { rows } = await client.query<{ 'QUERY PLAN': string }>(`explain (analyze, costs off, timing off, summary off) ${sql}`);
  await client.query('commit');
  return rows.map((r) => r['QUERY PLAN']).join('\n');
}

const fmt = (ms: number) => `${ms.toFixed(2)} ms`;
const us = (ms: number) => `${(ms * 1000).toFixed(1)} µs`;

try {
  const started = new Date();
  const load = loadavg()[0] ?? Number.NaN;
  const subscriber = randomUUID();
  await client.query(`insert into billing_plans (plan, stripe_product_id, name, features, position) values
    ('business', 'analytics_business', 'Business', '{unlimited_sites,api_access}', 0),
    ('pro', 'analytics_pro', 'Pro', '{unlimited_sites}', 1)`);
  await client.query(`insert into billing_customers (user_id, stripe_customer_id) values ($1, 'cus_bench')`, [subscriber]);
  await client.query(
    `insert into billing_subscriptions (stripe_subscription_id, stripe_customer_id, user_id, status, product_id, for_this_product,
       current_period_start, current_period_end, state_event_created, state_event_id)
     values ('sub_bench', 'cus_bench', $1, 'active', 'analytics_business', true, now() - interval '1 day', now() + interval '29 days', now(), 'evt_bench')`,
    [subscriber],
  );
  // Other users' billing rows, so the lookups are not on an empty table.
  await client.query(
    `insert into billing_customers (user_id, stripe_customer_id) select gen_random_uuid(), 'cus_' || g from generate_series(1, 10000) g`,
  );

  // 1. Personal rows ---------------------------------------------------------------------
  const personal = [
    { name: 'baseline: own rows, no billing check', using: `user_id = (select auth.uid())`, baseline: 0 },
    { name: 'own rows and (select billing_has_feature(...))', using: `user_id = (select auth.uid()) and (select billing_has_feature(auth.uid(), 'api_access'))`, baseline: 0 },
    { name: 'own rows and billing_has_feature(...) per row', using: `user_id = (select auth.uid()) and billing_has_feature(auth.uid(), 'api_access')`, baseline: 0 },
    { name: 'own rows as user_id = any ((select billing_subjects_with_feature(...))::uuid[])', using: `user_id = any ((select billing_subjects_with_feature('api_access'))::uuid[])`, baseline: 0 },
    { name: 'baseline: every row, no check', using: `true`, baseline: 4 },
    { name: 'every row, (select billing_has_feature(...))', using: `(select billing_has_feature(auth.uid(), 'api_access'))`, baseline: 4 },
  ];
  await client.query(`create table bench_rows (id bigint generated always as identity primary key, user_id uuid not null, payload text)`);
  await client.query(
    `insert into bench_rows (user_id, payload)
     select case when g % $2 = 0 then $1::uuid else ('00000000-0000-0000-0000-' || lpad((g % $2)::text, 12, '0'))::uuid end, md5(g::text)
     from generate_series(1, $3) g`,
    [subscriber, USERS, ROWS],
  );
  await client.query('create index on bench_rows (user_id)');
  await client.query('analyze');
  const personalResults: (Measured & { name: string; baseline: number })[] = [];
  for (const [i, variant] of personal.entries()) {
    const table = `bench_${i}`;
    await client.query(`create table ${table} (like bench_rows including all)`);
    await client.query(`insert into ${table} (user_id, payload) select user_id, payload from bench_rows`);
    await client.query(`create index on ${table} (user_id)`);
    await client.query(`analyze ${table}`);
    await client.query(`alter table ${table} enable row level security`);
    await client.query(`create policy p on ${table} for select to authenticated using (${variant.using})`);
    await client.query(`grant select on ${table} to authenticated`);
    const result = { name: variant.name, baseline: variant.baseline, ...(await measure(`select count(*) from ${table}`, { userId: subscriber })) };
    personalResults.push(result);
    console.error(`${variant.name}: ${result.rows} rows, median ${fmt(result.medianMs)}`);
  }

  // 3's teams first: 2 calls a team of the user's and one not theirs ---------------------
  await client.query(`create table bench_teams as
    select g as n, gen_random_uuid() as team_id, case when g in (1, 2) or (g > 3 and g % 2 = 0) then 'business' else 'pro' end as plan
    from generate_series(1, ${TEAMS}) g`);
  await client.query(`insert into billing_team_members (team_id, user_id, role)
    select t.team_id, gen_random_uuid(), case when m = 1 then 'owner' else 'member' end
    from bench_teams t cross join generate_series(1, 5) m`);
  await client.query(`insert into billing_team_members (team_id, user_id, role) select team_id, $1, 'member' from bench_teams where n <= 3`, [subscriber]);
  await client.query(`insert into billing_customers (user_id, stripe_customer_id) select team_id, 'cus_team_' || n from bench_teams`);
  await client.query(`insert into billing_subscriptions (stripe_subscription_id, stripe_customer_id, user_id, status, product_id, for_this_product,
       current_period_start, current_period_end, state_event_created, state_event_id)
     select 'sub_team_' || n, 'cus_team_' || n, team_id, 'active', 'analytics_' || plan, true, now() - interval '1 day', now() + interval '29 days', now(), 'evt_team_' || n
     from bench_teams`);
  const teamIds = async (where: string) => (await client.query<{ team_id: string }>(`select team_id from bench_teams where ${where} order by n`)).rows.map((r) => r.team_id);
  const [myTeam] = await teamIds('n = 1');
  const [notMine] = await teamIds('n = 4');

  // 2. One call ----------------------------------------------------------------------------
  // The previous definitions, as 20261201100000 made them (billing_has_feature called
  // billing_features), to compare with in the same run.
  await client.query(`create function public.bench_view_features(p_user_id uuid) returns text[]
    language sql stable security invoker set search_path = '' as $$
      select coalesce((
        select case when (public.billing_decide_access(a.status, a.cancel_at_period_end, a.current_period_start, a.current_period_end,
                 a.payment_failed_at, public.billing_grace_days(), now())).access then a.features else '{}'::text[] end
        from public.billing_accounts a where a.user_id = p_user_id), '{}'::text[])
    $$`);
  await client.query(`create function public.bench_view_has_feature(p_user_id uuid, p_feature text) returns boolean
    language sql stable security invoker set search_path = '' as $$
      select p_feature = any (public.bench_view_features(p_user_id))
    $$`);
  await client.query('grant execute on function public.bench_view_features(uuid), public.bench_view_has_feature(uuid, text) to authenticated');
  const callCases = [
    { name: 'own id (a Business subscriber)', subject: subscriber, as: { userId: subscriber }, fn: 'billing_has_feature', calls: CALLS },
    { name: 'a team of theirs (Business)', subject: myTeam, as: { userId: subscriber }, fn: 'billing_has_feature', calls: CALLS },
    { name: 'a team not theirs (no access: membership checked)', subject: notMine, as: { userId: subscriber }, fn: 'billing_has_feature', calls: CALLS },
    { name: 'as service_role, a team', subject: myTeam, as: { role: 'service_role' }, fn: 'billing_has_feature', calls: CALLS },
    { name: 'previous definition (billing_accounts view), own id', subject: subscriber, as: { userId: subscriber }, fn: 'bench_view_has_feature', calls: VIEW_CALLS },
  ];
  const callResults: { name: string; perCallMs: number; minPerCallMs: number; cpuPerCallMs: number; answer: number; calls: number }[] = [];
  for (const [i, c] of callCases.entries()) {
    const table = `bench_calls_${i}`;
    await client.query(`create table ${table} as select $1::uuid as subject from generate_series(1, ${c.calls})`, [c.subject]);
    await client.query(`analyze ${table}`);
    await client.query(`grant select on ${table} to authenticated, service_role`);
    const called = await difference(`select count(*) from ${table} where subject is not null`, `select count(*) from ${table} where ${c.fn}(subject, 'api_access')`, c.as);
    callResults.push({ name: `${c.fn}: ${c.name}`, perCallMs: called.medianMs / c.calls, minPerCallMs: called.minMs / c.calls, cpuPerCallMs: called.cpuMs / c.calls, answer: called.rows, calls: c.calls });
    console.error(`${c.fn} ${c.name}: ${us(called.medianMs / c.calls)} per call, ${called.rows} of ${c.calls} true`);
  }

  // 3. Team rows ----------------------------------------------------------------------------
  await client.query(`create table bench_team_rows (id bigint generated always as identity primary key, team_id uuid not null, payload text)`);
  await client.query(`insert into bench_team_rows (team_id, payload)
    select t.team_id, md5(g::text) from generate_series(1, ${TEAM_ROWS}) g join bench_teams t on t.n = 1 + g % ${TEAMS}`);
  await client.query('create index bench_team_rows_team_id_idx on bench_team_rows (team_id)');
  await client.query('analyze');
  await client.query('alter table bench_team_rows enable row level security');
  await client.query('grant select on bench_team_rows to authenticated');
  const withApi = await teamIds('n <= 3 and plan = \'business\'');
  const allMine = await teamIds('n <= 3');
  const teamCases = [
    { name: 'no policy: `where team_id = any(<the 2 Business teams>)`, as the owner', using: null, where: `team_id = any ('{${withApi.join(',')}}'::uuid[])` },
    { name: '`team_id = any ((select billing_subjects_with_feature(\'api_access\'))::uuid[])`', using: `team_id = any ((select billing_subjects_with_feature('api_access'))::uuid[])` },
    { name: '`team_id in (select unnest(billing_subjects_with_feature(\'api_access\')))`', using: `team_id in (select unnest(billing_subjects_with_feature('api_access')))` },
    { name: 'no policy: `where team_id = any(<their 3 teams>)`, as the owner', using: null, where: `team_id = any ('{${allMine.join(',')}}'::uuid[])` },
    { name: 'membership only: `team_id = any ((select billing_my_team_ids())::uuid[])`', using: `team_id = any ((select billing_my_team_ids())::uuid[])` },
  ];
  const teamResults: (Measured & { name: string; baseline: number })[] = [];
  let plan = '';
  for (const [i, c] of teamCases.entries()) {
    await client.query('drop policy if exists p on bench_team_rows');
    let result: Measured;
    if (c.using === null) {
      result = await measure(`select count(*) from bench_team_rows where ${c.where ?? 'true'}`, null);
    } else {
      await client.query(`create policy p on bench_team_rows for select to authenticated using (${c.using})`);
      result = await measure('select count(*) from bench_team_rows', { userId: subscriber });
      if (i === 1) plan = await textPlan('select count(*) from bench_team_rows', subscriber);
    }
    teamResults.push({ name: c.name, ...result, baseline: i < 3 ? 0 : 3 });
    console.error(`${c.name}: ${result.rows} rows, median ${fmt(result.medianMs)} (${result.scan})`);
  }

  // 4. What keeping the state costs the writes ------------------------------------------------
  // WRITE_SUBJECTS new subjects, each: the customer link, a subscription event, a paid
  // invoice, a renewal; through billing_apply_event as the webhook applies them. With the
  // state's triggers, and with them disabled, alternately.
  await client.query(`create function bench_writes(p_tag text, p_n integer) returns double precision language plpgsql as $$
    declare t0 timestamptz := clock_timestamp(); c text; u uuid;
    begin
      for i in 1..p_n loop
        c := 'cus_w_' || p_tag || '_' || i;
        u := gen_random_uuid();
        perform billing_link_customer(u, c, null);
        perform billing_apply_event('evt_w1_' || c, 'customer.subscription.created', now(), false, null, jsonb_build_object('kind', 'subscription',
          'subscription', jsonb_build_object('id', 'sub_' || c, 'customer_id', c, 'user_id', u, 'status', 'active', 'price_id', 'price_b',
            'product_id', 'analytics_business', 'quantity', 1, 'for_this_product', true, 'current_period_start', now(),
            'current_period_end', now() + interval '30 days', 'cancel_at_period_end', false, 'created', now())));
        perform billing_apply_event('evt_w2_' || c, 'invoice.paid', now(), false, null, jsonb_build_object('kind', 'invoice',
          'invoice', jsonb_build_object('id', 'in_' || c, 'customer_id', c, 'subscription_id', 'sub_' || c, 'outcome', 'paid', 'amount', 900, 'currency', 'eur')));
        perform billing_apply_event('evt_w3_' || c, 'customer.subscription.updated', now() + interval '1 second', false, null, jsonb_build_object('kind', 'subscription',
          'subscription', jsonb_build_object('id', 'sub_' || c, 'customer_id', c, 'user_id', u, 'status', 'active', 'price_id', 'price_b',
            'product_id', 'analytics_business', 'quantity', 1, 'for_this_product', true, 'current_period_start', now() + interval '30 days',
            'current_period_end', now() + interval '60 days', 'cancel_at_period_end', false, 'created', now())));
      end loop;
      return extract(epoch from clock_timestamp() - t0) * 1000;
    end $$`);
  const stateTriggers = ['billing_subscriptions', 'billing_customers', 'billing_deleted_customers', 'billing_customer_entitlements', 'billing_plans'];
  const setTriggers = async (on: boolean) => {
    for (const table of stateTriggers) {
      for (const op of ['insert', 'update', 'delete']) await client.query(`alter table ${table} ${on ? 'enable' : 'disable'} trigger billing_subject_state_${op}`);
    }
  };
  const writeTimes = { with: [] as number[], without: [] as number[] };
  const writeCpu = { with: [] as number[], without: [] as number[] };
  for (let run = 0; run < 5; run += 1) {
    for (const mode of ['with', 'without'] as const) {
      await setTriggers(mode === 'with');
      const cpuBefore = cpuMs();
      const { rows: [row] } = await client.query<{ ms: number }>('select bench_writes($1, $2) as ms', [`${mode}${run}`, WRITE_SUBJECTS]);
      writeCpu[mode].push((cpuMs() - cpuBefore) / (WRITE_SUBJECTS * 4));
      writeTimes[mode].push((row?.ms ?? Number.NaN) / (WRITE_SUBJECTS * 4));
    }
  }
  await setTriggers(true);
  console.error(`writes: ${us(median(writeTimes.with))} per write with the state, ${us(median(writeTimes.without))} without`);

  // The doc --------------------------------------------------------------------------------
  const { rows: [version] } = await client.query<{ server_version: string }>('show server_version');
  const ratio = (ms: number, baseline: number | undefined) => (baseline ? `${(ms / baseline).toFixed(2)}×` : '?');
  const bare = personalResults[2];
  // The issue's targets, checked against this run's figures.
  const targets = () => {
    const met = (ok: boolean) => (ok ? 'met' : '**missed**');
    const ours = callResults.filter((r) => r.name.startsWith('billing_has_feature'));
    const worstCall = Math.max(...ours.map((r) => r.perCallMs));
    const worstCpu = Math.max(...ours.map((r) => r.cpuPerCallMs));
    const wrapped = personalResults[1];
    const team = teamResults[1];
    return [
      `- A bare per-row call ≤ 20 µs: at most ${us(worstCall)} a call above by the clock (${met(worstCall <= 0.02)}), ${us(worstCpu)} of the backend's CPU (${met(worstCpu <= 0.02)}).`,
      wrapped && personalResults[0] ? `- The own-rows sub-select ≤ 1.5× its baseline (6.85× before): ${ratio(wrapped.medianMs, personalResults[0].medianMs)} by the clock (${met(wrapped.medianMs <= 1.5 * personalResults[0].medianMs)}), ${ratio(wrapped.cpuMs, personalResults[0].cpuMs)} of CPU, planning included (${met(wrapped.cpuMs <= 1.5 * personalResults[0].cpuMs)}).` : '',
      team ? `- The team policy on ${TEAM_ROWS.toLocaleString('en')} rows ≤ 10 ms, through the \`team_id\` index: ${fmt(team.medianMs)}, ${team.scan.includes('team_id_idx') ? 'the index' : '**no index**'} (${met(team.medianMs <= 10 && team.scan.includes('team_id_idx'))}).` : '',
    ];
  };
  const ownBaseline = personalResults[0];
  const lines = [
    '# Entitlements in a policy: what it costs',
    '',
    `\`npm run bench:entitlements\` (scripts/entitlements-bench.ts): PostgreSQL ${version?.server_version ?? '?'} (embedded, the test stack's), Node ${process.version}, ${started.toISOString().slice(0, 10)}. Every figure is the median of ${RUNS} runs of \`explain (analyze, timing off) select count(*)\` (execution time, planning excluded), each run a transaction of its own as a PostgREST request is, after ${WARMUP} untimed runs (PostgreSQL plans a function's statements for their parameters the first five times in a session, then keeps a generic plan; a pooled connection is long past that), each case beside its baseline in the same run. The machine's load average was ${load.toFixed(1)} when the run started (2 cores, shared with other work): wall-clock times are noisy, so the tables also give the database backend's own CPU time for each statement (\`/proc/<pid>/schedstat\`), which other processes do not inflate; it includes planning, which the execution times do not.`,
    '',
    `## Personal rows: ${ROWS.toLocaleString('en')} rows over ${USERS} users`,
    '',
    `The signed-in user is a Business subscriber and owns ${(ROWS / USERS).toLocaleString('en')} of them.`,
    '',
    '| Policy `using (…)` | rows visible | median execution | × its baseline | CPU, planning included | × its baseline | scans |',
    '| --- | --- | --- | --- | --- | --- | --- |',
    ...personalResults.map((r) => `| ${r.name} | ${r.rows.toLocaleString('en')} | ${fmt(r.medianMs)} | ${ratio(r.medianMs, personalResults[r.baseline]?.medianMs)} | ${fmt(r.cpuMs)} | ${ratio(r.cpuMs, personalResults[r.baseline]?.cpuMs)} | ${r.scan} |`),
    '',
    bare && ownBaseline
      ? `The bare form costs ${us((bare.medianMs - ownBaseline.medianMs) / bare.rows)} per row it looks at (its ${bare.rows} rows over the baseline's time), \`auth.uid()\` evaluated per row included.`
      : '',
    '',
    '## One call',
    '',
    `A table of rows naming one subject, \`select count(*) … where billing_has_feature(subject, 'api_access')\` as the signed-in subscriber, minus the same scan without the call (run alternately with it, the difference taken per run), per row (${CALLS.toLocaleString('en')} rows; ${VIEW_CALLS} for the previous definition).`,
    '',
    '| Call | per call (median) | per call (fastest run) | per call, backend CPU (median) | answered true |',
    '| --- | --- | --- | --- | --- |',
    ...callResults.map((r) => `| ${r.name} | ${us(r.perCallMs)} | ${us(r.minPerCallMs)} | ${us(r.cpuPerCallMs)} | ${r.answer.toLocaleString('en')} of ${r.calls.toLocaleString('en')} |`),
    '',
    `## Team rows: ${TEAM_ROWS.toLocaleString('en')} rows over ${TEAMS.toLocaleString('en')} teams`,
    '',
    `Every team has a subscription (Business or Pro) and five members; the signed-in user is a member of three: two on Business (api_access), one on Pro. ${(TEAM_ROWS / TEAMS).toLocaleString('en')} rows a team, an index on \`team_id\`.`,
    '',
    '| Query | rows visible | median execution | × the same rows without a policy | CPU, planning included | × | scans |',
    '| --- | --- | --- | --- | --- | --- | --- |',
    ...teamResults.map((r) => `| ${r.name} | ${r.rows.toLocaleString('en')} | ${fmt(r.medianMs)} | ${ratio(r.medianMs, teamResults[r.baseline]?.medianMs)} | ${fmt(r.cpuMs)} | ${ratio(r.cpuMs, teamResults[r.baseline]?.cpuMs)} | ${r.scan} |`),
    '',
    'The plan of the `billing_subjects_with_feature` policy (`explain (analyze, costs off, timing off)`): the function runs once (InitPlan 1) and its array is the index condition.',
    '',
    '```',
    plan,
    '```',
    '',
    '## What keeping the state costs the writes',
    '',
    `${WRITE_SUBJECTS} new subjects, each: the customer link (\`billing_link_customer\`), a subscription event, a paid invoice and a renewal through \`billing_apply_event\`, as the webhook applies them; five runs with the state's triggers and five with them disabled, alternately. Per write (call), median:`,
    '',
    '| | per write | backend CPU per write |',
    '| --- | --- | --- |',
    `| with billing_subject_state kept | ${us(median(writeTimes.with))} | ${us(median(writeCpu.with))} |`,
    `| triggers disabled | ${us(median(writeTimes.without))} | ${us(median(writeCpu.without))} |`,
    '',
    '## Against the targets',
    '',
    ...targets(),
    '',
    '## Reading',
    '',
    `- The functions read \`billing_subject_state\` (one row per subject, kept equal to \`billing_accounts\` by triggers) by primary key, and for a team one membership row by primary key; the previous definition read the \`billing_accounts\` view, ${us(callResults.at(-1)?.perCallMs ?? Number.NaN)} a call in this run. In a sub-select the call runs once per query, so the own-rows policy costs little more than its baseline; what remains is mostly fixed per-query work (calling a \`security definer\` function, and the policy's second \`auth.uid()\`, whose body PostgreSQL 17 plans once per query).`,
    '- Bare, a call runs for every row the scan looks at. It is cheap now, but on a large table it still multiplies: write it in a sub-select (docs/entitlements.md), or for team rows use `billing_subjects_with_feature` (docs/teams.md).',
    '- `team_id = any ((select billing_subjects_with_feature(…))::uuid[])` is an index condition: the policy reads only the rows of the teams in the list. The `in (select …)` form returns the same rows but is not turned into a join inside a policy: a hashed sub-plan tested on every row of the table.',
    '',
  ];
  await writeFile(path.join(ROOT, 'docs/entitlements-bench.md'), lines.join('\n'));
  console.log(lines.join('\n'));
} finally {
  await client.end();
  await own.stop();
}
