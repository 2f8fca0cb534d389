// npm run bench:meters: does reporting a quiet hour for 10,000 subjects fit in one
// scheduled run of the meter reporter, and how fast are meter events sent beside
// Stripe's 1,000 calls/s? On a stack of its own (PostgreSQL + PostgREST, stripe-mock
// behind the recording bridge). Writes docs/meters-bench.md.
//
// Each subject is subscribed to a plan whose meter bills past 300 included units, its
// window began 10 days ago, and it used 1 unit in every hour of it (240 hours, all under
// the included amount, so the claim reads every one) and 100 in the last completed hour:
// 40 over, one meter event each. The reporter runs as the scheduled function does (its
// 20 s budget, batches of 200 subjects, 16 sends at a time) until a pass is done; then a
// second pass, with nothing new, must send nothing.

import { writeFile } from 'node:fs/promises';
import { loadavg } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { loadJobConfig } from '../../src/config/config.ts';
import { createLogger } from '../../src/core/log.ts';
import { createMeterDeps, reportUsage, REPORT_BUDGET_MS, type ReportSummary } from '../../src/meters/report.ts';
import { createStore } from '../../src/database/store.ts';
import { startThrowawayStack } from '../stack/throwaway.ts';

const ROOT = path.resolve(import.meta.dirname, '../..');
const SUBJECTS = Number(process.env['SUBJECTS'] ?? 10_000);
const HOURS = 240;
const INCLUDED = 300;
const STRIPE_LIMIT_PER_SECOND = 1_000;
/** 1 unit in each of the older hours, 100 in the last completed one. */
const OVER = HOURS - 1 + 100 - INCLUDED;

// Appended as written; about the method, so it holds whatever the numbers.
const READING = [
  '## Reading',
  '',
  '- The database, not Stripe, sets the pace: the pass that finds nothing new costs about as much as the one that sends (each subject\'s claim reads its window\'s hourly totals, under its lock, to find late usage), and the sends run 16 at a time beside it. Stripe\'s 1,000 calls/s are far away: one event per subject and hour, spread over the runs of a pass.',
  '- The machine is shared (2 cores; the load average above is what else ran): on a quiet database the claim costs a fraction of this; the number of runs a pass takes scales with the subjects that have a customer.',
  '- A pass that does not fit one run goes on in the next (its cursor is in billing_jobs); an hour is reported within (runs per pass × 5 minutes) of its end, well inside the hour Stripe keeps an invoice a draft, and the invoice.created flush sends a subject\'s usage at once anyway.',
  '',
];

const progress = (message: string) => console.error(`[bench:meters] ${message}`);

const own = await startThrowawayStack('meters-bench', { ownDatabase: true });
const pool = new pg.Pool({ connectionString: own.env['DATABASE_URL'], max: 2 });
try {
  await pool.query('select billing_sync_catalog($1)', [JSON.stringify({
    plans: [{ plan: 'metered', product_id: 'prod_bench_meters', name: 'Metered', features: [], usage: { pageviews: { included: INCLUDED, overage: 'bill', price: { amount: 100, currency: 'eur', per: 10_000 } } } }],
    prices: [{ price_id: 'price_bench_meters', plan: 'metered', lookup_key: 'bench_meters', interval: 'month', amount: 900, currency: 'eur' }],
  })]);
  progress(`${SUBJECTS} subjects, ${HOURS + 1} hourly totals each`);
  const seeded = performance.now();
  await pool.query(`
    create temp table bench_subjects as
      select gen_random_uuid() as subject, 'cus_bench' || lpad(i::text, 6, '0') as customer from generate_series(1, $1) i;
    insert into billing_customers (user_id, stripe_customer_id) select subject, customer from bench_subjects;
    insert into billing_subscriptions (stripe_subscription_id, stripe_customer_id, user_id, status, price_id, product_id, for_this_product,
        cancel_at_period_end, current_period_start, current_period_end, stripe_created_at, state_event_created, state_event_id)
      select 'sub_' || customer, customer, subject, 'active', 'price_bench_meters', 'prod_bench_meters', true, false,
             date_trunc('hour', now()) - interval '${HOURS} hours', date_trunc('hour', now()) + interval '20 days', now(), now(), 'evt_bench'
      from bench_subjects;
    insert into billing_usage_hours (subject_id, meter, hour, amount)
      select subject, 'pageviews', date_trunc('hour', now()) - make_interval(hours => h), case when h = 1 then 100 else 1 end
      from bench_subjects cross join generate_series(1, ${HOURS}) h;
    analyze;`.replace('$1', String(SUBJECTS)));
  progress(`seeded in ${((performance.now() - seeded) / 1000).toFixed(1)} s`);

  const config = loadJobConfig({ ...process.env, ...own.env });
  const deps = {
    ...createMeterDeps(config, 'bench'),
    log: createLogger({ fn: 'bench' }, () => {}),
    jobs: createStore(config.store),
  };

  const runs: ReportSummary[] = [];
  const started = performance.now();
  for (let i = 1; ; i += 1) {
    const summary = await reportUsage(deps, { holder: `bench-${i}` });
    runs.push(summary);
    progress(`run ${i}: ${summary.status}, ${summary.subjects} subjects, ${summary.sent} events in ${(summary.durationMs / 1000).toFixed(1)} s`);
    if (summary.status === 'failed') throw new Error(summary.error);
    if (summary.status === 'done') break;
  }
  const passSeconds = (performance.now() - started) / 1000;
  // The next pass, with nothing new: every subject read again, nothing sent.
  const again: ReportSummary[] = [];
  for (let i = 1; ; i += 1) {
    const summary = await reportUsage(deps, { holder: `bench-again-${i}` });
    again.push(summary);
    if (summary.status !== 'paused') break;
  }
  const quiet = {
    status: again.at(-1)?.status ?? 'done', runs: again.length,
    subjects: again.reduce((sum, r) => sum + r.subjects, 0), sent: again.reduce((sum, r) => sum + r.sent, 0),
    durationMs: again.reduce((sum, r) => sum + r.durationMs, 0),
  };
  const counts = (await pool.query<{ rows: string; per_hour_max: string; units: string }>(`
    select count(*)::text as rows, coalesce(max(n), 0)::text as per_hour_max, coalesce(sum(units), 0)::text as units
    from (select count(*) as n, sum(value) as units from billing_meter_reports where state = 'sent' group by subject_id, meter, hour) x`)).rows[0];

  const sent = runs.reduce((sum, r) => sum + r.sent, 0);
  const sendSeconds = runs.reduce((sum, r) => sum + r.durationMs, 0) / 1000;
  const perSecond = sent / sendSeconds;
  const lines = [
    '# Meter reporting: a quiet hour for 10,000 subjects',
    '',
    `From \`npm run bench:meters\` (scripts/bench/meters.ts) on ${new Date().toISOString().slice(0, 10)}, Node ${process.version}, ` +
      `load average ${loadavg()[0]?.toFixed(2)} at the end: ${SUBJECTS.toLocaleString('en')} subjects with a Stripe customer, each with ${HOURS} hourly totals under its ` +
      `included ${INCLUDED} in its current window and ${OVER} units over in the last completed hour. The reporter runs as the scheduled function does ` +
      `(a ${REPORT_BUDGET_MS / 1000} s budget, batches of 200 subjects, 16 sends at a time) against stripe-mock behind the recording bridge, on this machine.`,
    '',
    '| run | status | subjects | events sent | time |',
    '| --- | --- | --- | --- | --- |',
    ...runs.map((r, i) => `| ${i + 1} | ${r.status} | ${r.subjects.toLocaleString('en')} | ${r.sent.toLocaleString('en')} | ${(r.durationMs / 1000).toFixed(1)} s |`),
    `| the next pass, nothing new (${quiet.runs} run(s)) | ${quiet.status} | ${quiet.subjects.toLocaleString('en')} | ${quiet.sent} | ${(quiet.durationMs / 1000).toFixed(1)} s |`,
    '',
    `- A pass over ${SUBJECTS.toLocaleString('en')} subjects took ${runs.length} run(s), ${passSeconds.toFixed(1)} s in all: ${sent.toLocaleString('en')} meter events, ` +
      `${perSecond.toFixed(0)} events/s while running, ${(perSecond / STRIPE_LIMIT_PER_SECOND * 100).toFixed(1)}% of Stripe's ${STRIPE_LIMIT_PER_SECOND.toLocaleString('en')} calls/s per account.`,
    `- Events per subject, meter and hour: at most ${counts?.per_hour_max ?? '?'} (${counts?.rows ?? '?'} rows, ${counts?.units ?? '?'} units = ${SUBJECTS.toLocaleString('en')} × ${OVER}); the pass after it sent ${quiet.sent}.`,
    `- With a run every 5 minutes, a pass of ${runs.length} run(s) reports each hour within ${runs.length * 5} minutes of its end.`,
    '',
    ...READING,
  ];
  await writeFile(path.join(ROOT, 'docs/meters-bench.md'), lines.join('\n'));
  console.log(lines.join('\n'));
} finally {
  await pool.end();
  await own.stop();
}
