// The fault test of #19: 10,000 tracked units over 50 subjects across three hours reach
// the local bridge's Billing Meters while 20% of meter requests fail (429, 500, a timeout
// after Stripe recorded the event, a timeout before it did), and one run crashes between
// a send Stripe accepted and its record. Afterwards Stripe's totals (what the bridge
// counted) equal ours exactly, for every subject and hour. A stack of its own: its
// catalog declares a billed meter, which is database-wide.

import { randomUUID } from 'node:crypto';
import pg from 'pg';
import Stripe from 'stripe';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { startThrowawayStack, type ThrowawayStack } from '../scripts/stack/throwaway.ts';
import { loadJobConfig } from '../src/config/config.ts';
import { createLogger } from '../src/core/log.ts';
import { meterEventSender, reportUsage, type ReportDeps } from '../src/meters/report.ts';
import { createMeterStore, type MeterStore } from '../src/meters/store.ts';
import { createStore } from '../src/database/store.ts';

const SUBJECTS = 50;
const INCLUDED = 100;
const HOUR = 3_600_000;
/** The sender gives up on an answer after this; the bridge's timeouts hold longer. */
const CLIENT_TIMEOUT_MS = 1_500;

let own: ThrowawayStack;
let pool: pg.Pool;

const q = async <Row extends pg.QueryResultRow>(sql: string, params: unknown[] = []) => (await pool.query<Row>(sql, params)).rows;
const bridge = async (path: string, init: RequestInit = {}) => {
  const response = await fetch(`${own.bridge.url}${path}`, init);
  expect(response.ok, `${path}: ${response.status}`).toBe(true);
  return response.json() as Promise<unknown>;
};

beforeAll(async () => {
  own = await startThrowawayStack('meter-faults', { ownDatabase: true });
  pool = new pg.Pool({ connectionString: own.env['DATABASE_URL'], max: 4 });
  await q('select billing_sync_catalog($1)', [JSON.stringify({
    plans: [{ plan: 'metered', product_id: 'prod_faults', name: 'Metered', features: [],
      usage: { pageviews: { included: INCLUDED, overage: 'bill', price: { amount: 1, currency: 'eur' } } } }],
    prices: [{ price_id: 'price_faults_m', plan: 'metered', lookup_key: 'faults_m', interval: 'month', amount: 900, currency: 'eur' }],
  })]);
}, 120_000);

afterAll(async () => {
  await pool?.end();
  await own?.stop();
});

const hourStart = (hoursAgo: number) => new Date(Math.floor(Date.now() / HOUR) * HOUR - hoursAgo * HOUR);

it('10,000 units, 50 subjects, three hours, 20% of meter requests failing and a crash between send and record: Stripe holds exactly our totals', async () => {
  const base = new URL(own.env['STRIPE_API_BASE'] ?? '');
  const stripe = new Stripe(own.env['STRIPE_SECRET_KEY'] ?? '', {
    host: base.hostname, port: Number(base.port), protocol: 'http', timeout: CLIENT_TIMEOUT_MS, maxNetworkRetries: 0,
  });
  await stripe.billing.meters.create({
    display_name: 'pageviews', event_name: 'pageviews', default_aggregation: { formula: 'sum' },
    customer_mapping: { type: 'by_id', event_payload_key: 'stripe_customer_id' }, value_settings: { event_payload_key: 'value' },
  });

  // 50 subscribers, 200 units each over three completed hours (100 past included).
  const hours = [hourStart(4), hourStart(3), hourStart(2)];
  const customers = new Map<string, string>();
  let tracked = 0;
  for (let i = 0; i < SUBJECTS; i++) {
    const subject = randomUUID();
    const customer = `cus_f${randomUUID().replaceAll('-', '').slice(0, 14)}`;
    customers.set(subject, customer);
    await q('insert into billing_customers (user_id, stripe_customer_id) values ($1, $2)', [subject, customer]);
    await q(
      `insert into billing_subscriptions (stripe_subscription_id, stripe_customer_id, user_id, status, price_id, product_id, for_this_product,
         cancel_at_period_end, current_period_start, current_period_end, stripe_created_at, state_event_created, state_event_id)
       values ($1, $2, $3, 'active', 'price_faults_m', 'prod_faults', true, false, now() - interval '10 days', now() + interval '20 days', now(), now(), 'evt_faults')`,
      [`sub_f${randomUUID().slice(0, 12)}`, customer, subject],
    );
    const first = 20 + (i % 5) * 10;
    for (const [h, amount] of [first, 60, 140 - first].entries()) {
      // Several calls an hour, as a product reports per site and minute.
      for (const part of [Math.floor(amount / 2), amount - Math.floor(amount / 2)]) {
        await q(`select billing_track($1, 'pageviews', $2, $3, $4)`, [subject, part, randomUUID(), new Date((hours[h]?.getTime() ?? 0) + 60_000 * (part % 7)).toISOString()]);
        tracked += part;
      }
    }
  }
  expect(tracked).toBe(10_000);

  await bridge('/__bridge/meter-faults', { method: 'POST', body: JSON.stringify({ rate: 0.2, kinds: ['429', '500', 'timeout'], seed: 19, timeoutMs: CLIENT_TIMEOUT_MS * 2 }) });
  const config = loadJobConfig({ ...process.env, ...own.env });
  const store = createMeterStore(config.store);
  // The crash: the first record after a send Stripe accepted never happens.
  let crashed = false;
  const crashing: MeterStore = {
    ...store,
    sent: async (identifiers) => {
      if (!crashed) {
        crashed = true;
        throw new Error('the process died between the send and its record');
      }
      return store.sent(identifiers);
    },
  };
  const deps: ReportDeps = {
    store: crashing,
    sendMeterEvent: meterEventSender(config.stripe, { timeoutMs: CLIENT_TIMEOUT_MS, maxNetworkRetries: 0 }),
    log: createLogger({ fn: 'meter-faults' }, () => {}),
    jobs: createStore(config.store),
  };

  let runs = 0;
  for (; runs < 60; runs++) {
    await reportUsage(deps, { holder: `faults-${runs}`, leaseSeconds: 1, sleep: () => Promise.resolve() }).catch(() => null);
    const [open] = await q<{ n: string }>(`select count(*) as n from billing_meter_reports where state = 'pending'`);
    const [due] = await q<{ n: string }>(`select count(*) as n from billing_meter_reports where state = 'failed'`);
    expect(due?.n).toBe('0'); // nothing Stripe refused for good
    if (runs > 0 && open?.n === '0') {
      // One more pass claims nothing new: every hour is reported.
      const last = await reportUsage({ ...deps, store }, { holder: `faults-last`, leaseSeconds: 1 });
      if (last.sent === 0 && last.claimed === 0) break;
    }
    await new Promise((resolve) => setTimeout(resolve, 1_100)); // the lease of a row a dead run held
  }
  expect(crashed).toBe(true);
  expect(runs).toBeLessThan(60);
  const injected = (await bridge('/__bridge/meter-faults')) as { injected: Record<string, number> };
  expect(Object.values(injected.injected).reduce((a, b) => a + b, 0)).toBeGreaterThan(10);
  await bridge('/__bridge/meter-faults', { method: 'DELETE' });

  // Ours: each subject's overage per hour (cumulative within the window, past included).
  const expected = new Map<string, number>();
  for (let i = 0; i < SUBJECTS; i++) {
    const subject = [...customers.keys()][i] ?? '';
    const first = 20 + (i % 5) * 10;
    let used = 0;
    for (const [h, amount] of [first, 60, 140 - first].entries()) {
      const over = Math.max(used + amount - INCLUDED, 0) - Math.max(used - INCLUDED, 0);
      used += amount;
      if (over > 0) expected.set(`${customers.get(subject)} ${(hours[h]?.getTime() ?? 0) / 1000}`, over);
    }
  }
  // Stripe's: what the bridge counted (not cancelled, a meter found).
  const recorded = (await bridge('/__bridge/meter-events?event_name=pageviews')) as { customer: string; value: number; timestamp: number; cancelled: boolean; error: string | null }[];
  const held = new Map<string, number>();
  for (const event of recorded) {
    if (event.cancelled || event.error) continue;
    const key = `${event.customer} ${Math.floor(event.timestamp / 3600) * 3600}`;
    held.set(key, (held.get(key) ?? 0) + event.value);
  }
  expect(Object.fromEntries([...held].sort())).toEqual(Object.fromEntries([...expected].sort()));
  expect([...held.values()].reduce((a, b) => a + b, 0)).toBe(SUBJECTS * 100);
  // And our outbox says the same.
  const outbox = await q<{ customer: string; hour: Date; total: string }>(
    `select c.stripe_customer_id as customer, r.hour, sum(r.value)::text as total from billing_meter_reports r
     join billing_customers c on c.user_id = r.subject_id where r.state = 'sent' group by 1, 2`,
  );
  expect(Object.fromEntries(outbox.map((r) => [`${r.customer} ${r.hour.getTime() / 1000}`, Number(r.total)]).sort())).toEqual(Object.fromEntries([...expected].sort()));
}, 600_000);
