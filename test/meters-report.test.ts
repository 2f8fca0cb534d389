// Meter usage reaches Stripe exactly once (src/meters, supabase/migrations/20261204800000_meters.sql,
// docs/meters.md): the reporter, the invoice.created flush and the reconcile, against a
// stack of its own (its catalog declares a billed meter, which is database-wide), with
// stripe-mock behind the recording bridge, which keeps meters and meter events as Stripe
// does (scripts/stack/bridge-meters.ts): what we sent is read back from the bridge's
// recorded requests, what Stripe holds from its meter events. Where a test needs Stripe
// to hold something other than what we sent, it changes Stripe's state as Stripe would
// let anyone: by sending or canceling meter events itself, or by losing our sends with
// the bridge's meter faults.

import { randomUUID } from 'node:crypto';
import pg from 'pg';
import Stripe from 'stripe';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import meterReconcileFunction from '../netlify/functions/stripe-meter-reconcile.mts';
import meterReportFunction from '../netlify/functions/stripe-meter-report.mts';
import webhook from '../netlify/functions/stripe-webhook.mts';
import type { RecordedMeterEvent } from '../scripts/stack/bridge-meters.ts';
import type { RecordedStripeRequest } from '../scripts/stack/stripe-mock-bridge.ts';
import { startThrowawayStack, type ThrowawayStack } from '../scripts/stack/throwaway.ts';
import { loadJobConfig } from '../src/config/config.ts';
import { createLogger } from '../src/core/log.ts';
import { reconcileMeters, type ReconcileDeps } from '../src/meters/reconcile.ts';
import { flushCustomerUsage, meterEventSender, reportUsage } from '../src/meters/report.ts';
import { classify } from '../src/meters/send.ts';
import { createMeterStore, type MeterStore } from '../src/meters/store.ts';
import { createStore } from '../src/database/store.ts';
import { PINNED_API_VERSION } from '../src/stripe/api-version.ts';
import { createStripe, stripeOptions } from '../src/stripe/client.ts';
import { StripeRequestError, type MeterEventParams, type MeterEventSender } from '../src/stripe/meter-events.ts';
import { freshEvent, withEnv } from './support/stack.ts';

let own: ThrowawayStack;
let pool: pg.Pool;
let stripe: Stripe;
let store: MeterStore;
let logs: Record<string, unknown>[];

const INCLUDED = 100;
const HOUR = 3_600_000;
/** Where the tests' own meter events (Stripe's state, not our sends) start. */
const STRIPE_SIDE = 'stripe_side_';

beforeAll(async () => {
  own = await startThrowawayStack('meters', { ownDatabase: true });
  pool = new pg.Pool({ connectionString: own.env['DATABASE_URL'], max: 4 });
  await q('select billing_sync_catalog($1)', [JSON.stringify({
    plans: [
      { plan: 'metered', product_id: 'prod_meters', name: 'Metered', features: [], usage: { pageviews: { included: INCLUDED, overage: 'bill', price: { amount: 100, currency: 'eur', per: 10_000 } } } },
      { plan: 'capped', product_id: 'prod_capped', name: 'Capped', features: [], usage: { pageviews: { included: INCLUDED, overage: 'allow' } } },
    ],
    prices: [
      { price_id: 'price_meters_m', plan: 'metered', lookup_key: 'meters_m', interval: 'month', amount: 900, currency: 'eur' },
      { price_id: 'price_capped_m', plan: 'capped', lookup_key: 'capped_m', interval: 'month', amount: 900, currency: 'eur' },
    ],
    free: { usage: { pageviews: { included: 0, overage: 'block' } } },
  })]);
  const config = loadJobConfig({ ...process.env, ...own.env });
  stripe = await createStripe(config.stripe);
  oneTry = new Stripe(config.stripe.secretKey, { ...stripeOptions(config.stripe), maxNetworkRetries: 0 });
  store = createMeterStore(config.store);
  jobs = createStore(config.store);
  stripeConnection = config.stripe;
  sendMeterEvent = meterEventSender(config.stripe);
  // The meter billing:setup makes for the catalog's billed meter, on this stack's bridge.
  await stripe.billing.meters.create({
    display_name: 'pageviews', event_name: 'pageviews', default_aggregation: { formula: 'sum' },
    customer_mapping: { type: 'by_id', event_payload_key: 'stripe_customer_id' }, value_settings: { event_payload_key: 'value' },
  });
});

afterAll(async () => {
  await pool?.end();
  await own?.stop();
});

let jobs: ReturnType<typeof createStore>;
/** The same client without the SDK's own retry: one request, one answer to classify. */
let oneTry: Stripe;
/** What the functions send meter events with (src/stripe/meter-events.ts, no SDK). */
let sendMeterEvent: MeterEventSender;
let stripeConnection: ReturnType<typeof loadJobConfig>['stripe'];

beforeEach(() => {
  logs = [];
});

async function q<Row extends pg.QueryResultRow>(sql: string, params: unknown[] = []): Promise<Row[]> {
  return (await pool.query<Row>(sql, params)).rows;
}

function deps(overrides: Partial<ReconcileDeps> = {}): ReconcileDeps {
  return {
    store,
    sendMeterEvent,
    stripe: () => Promise.resolve(stripe),
    log: createLogger({ fn: 'test' }, (line) => logs.push(JSON.parse(line) as Record<string, unknown>)),
    jobs,
    ...overrides,
  };
}

/** A subject subscribed to `price` (the billed plan unless told) for a period around now. */
async function subscriber(options: { price?: string; start?: Date; end?: Date } = {}): Promise<{ subject: string; customer: string }> {
  const subject = randomUUID();
  const customer = `cus_m${randomUUID().replaceAll('-', '').slice(0, 14)}`;
  const start = options.start ?? new Date(Date.now() - 10 * 86_400_000);
  const end = options.end ?? new Date(Date.now() + 20 * 86_400_000);
  await q('insert into billing_customers (user_id, stripe_customer_id) values ($1, $2)', [subject, customer]);
  await q(
    `insert into billing_subscriptions (stripe_subscription_id, stripe_customer_id, user_id, status, price_id, product_id, for_this_product,
       cancel_at_period_end, current_period_start, current_period_end, stripe_created_at, state_event_created, state_event_id)
     select $1, $2, $3, 'active', p.stripe_price_id, pl.stripe_product_id, true, false, $4, $5, now(), now(), 'evt_meters'
     from billing_prices p join billing_plans pl using (plan) where p.stripe_price_id = $6`,
    [`sub_m${randomUUID().slice(0, 12)}`, customer, subject, start.toISOString(), end.toISOString(), options.price ?? 'price_meters_m'],
  );
  return { subject, customer };
}

const hourStart = (hoursAgo: number) => new Date(Math.floor(Date.now() / HOUR) * HOUR - hoursAgo * HOUR);

async function track(subject: string, amount: number, at: Date): Promise<void> {
  await q(`select billing_track($1, 'pageviews', $2, $3, $4)`, [subject, amount, randomUUID(), at.toISOString()]);
}

async function recorded(filter: (r: RecordedStripeRequest) => boolean): Promise<RecordedStripeRequest[]> {
  const response = await fetch(`${own.bridge.url}/__bridge/requests`);
  return ((await response.json()) as RecordedStripeRequest[]).filter(filter);
}

/** The meter events we sent for the customer (every request, refused or not). */
const meterEventsOf = (customer: string) =>
  recorded((r) => r.method === 'POST' && r.path === '/v1/billing/meter_events' && r.params['payload[stripe_customer_id]'] === customer
    && !r.params['identifier']?.startsWith(STRIPE_SIDE));

const sent = (events: RecordedStripeRequest[]) =>
  events.map((e) => ({ identifier: e.params['identifier'], value: Number(e.params['payload[value]']), timestamp: Number(e.params['timestamp']) }));

const idOf = (subject: string, hour: Date, seq = 1) =>
  `bm_${subject.replaceAll('-', '')}_pageviews_${hour.toISOString().slice(0, 13).replace(/[-T]/g, '')}${seq > 1 ? `_${seq}` : ''}`;

async function rows(subject: string): Promise<{ identifier: string; state: string; value: string; kind: string }[]> {
  return q('select identifier, state, value::text, kind from billing_meter_reports where subject_id = $1 order by hour, seq', [subject]);
}

async function bridge(path: string, init?: RequestInit): Promise<unknown> {
  const response = await fetch(`${own.bridge.url}${path}`, init);
  expect(response.ok).toBe(true);
  return response.json();
}

/** The meter events Stripe recorded for the customer, oldest first. */
const stripeEventsOf = async (customer: string) => (await bridge(`/__bridge/meter-events?customer=${customer}`)) as RecordedMeterEvent[];

/** Stripe's total of the customer's counted events (not canceled, no meter error). */
const stripeTotalOf = async (customer: string) =>
  (await stripeEventsOf(customer)).filter((e) => !e.cancelled && e.error === null).reduce((sum, e) => sum + e.value, 0);

/** Stripe takes an event we never sent: usage of the customer at `hour`. */
async function stripeGets(customer: string, value: number, hour: Date): Promise<void> {
  await stripe.billing.meterEvents.create({
    event_name: 'pageviews', identifier: `${STRIPE_SIDE}${randomUUID()}`, timestamp: hour.getTime() / 1000,
    payload: { stripe_customer_id: customer, value: String(value) },
  });
}

/** Stripe stops counting an event it holds (a cancel adjustment). */
async function stripeDrops(identifier: string): Promise<void> {
  await stripe.billing.meterEventAdjustments.create({ event_name: 'pageviews', type: 'cancel', cancel: { identifier } });
}

/** The next meter requests fail at the bridge as these faults say, until `meterFaultsOff`. */
async function meterFaults(plan: { next?: string[]; rate?: number; kinds?: string[]; timeoutMs?: number }): Promise<void> {
  await bridge('/__bridge/meter-faults', { method: 'POST', body: JSON.stringify(plan) });
}
const meterFaultsOff = () => bridge('/__bridge/meter-faults', { method: 'DELETE' });

const run = (holder = `test-${randomUUID()}`, options: { leaseSeconds?: number } = {}) => reportUsage(deps(), { holder, ...options });

describe('the reporter', () => {
  it('sends nothing under the included amount, then only the overage of each completed hour, once, under identifiers of subject, meter and hour', async () => {
    const { subject, customer } = await subscriber();
    await track(subject, 60, hourStart(3));
    expect((await run()).status).toBe('done');
    expect(await meterEventsOf(customer)).toEqual([]);

    await track(subject, 60, new Date(hourStart(2).getTime() + 60_000));
    await track(subject, 500, new Date()); // the current hour: not complete, not sent yet
    const summary = await run();
    expect(summary).toMatchObject({ status: 'done', sent: 1, unsent: 0, failed: 0 });
    expect(sent(await meterEventsOf(customer))).toEqual([
      { identifier: idOf(subject, hourStart(2)), value: 20, timestamp: hourStart(2).getTime() / 1000 },
    ]);
    const [event] = await meterEventsOf(customer);
    expect(event?.params).toMatchObject({ event_name: 'pageviews', 'payload[stripe_customer_id]': customer });

    // A run with nothing new sends nothing: at most one event per subject, meter and hour.
    await run();
    expect(await meterEventsOf(customer)).toHaveLength(1);
    expect(await rows(subject)).toEqual([{ identifier: idOf(subject, hourStart(2)), state: 'sent', value: '20', kind: 'usage' }]);
  });

  it('reports late usage for an hour already sent as a correction with the next identifier of that hour', async () => {
    const { subject, customer } = await subscriber();
    await track(subject, 150, hourStart(3));
    await track(subject, 10, hourStart(2));
    await run();
    expect(sent(await meterEventsOf(customer)).map((e) => [e.identifier, e.value])).toEqual([[idOf(subject, hourStart(3)), 50], [idOf(subject, hourStart(2)), 10]]);

    // Late usage, dated in both hours.
    await track(subject, 5, new Date(hourStart(3).getTime() + 120_000));
    await track(subject, 7, new Date(hourStart(2).getTime() + 120_000));
    await run();
    expect(sent(await meterEventsOf(customer)).map((e) => [e.identifier, e.value])).toEqual([
      [idOf(subject, hourStart(3)), 50], [idOf(subject, hourStart(2)), 10],
      [idOf(subject, hourStart(3), 2), 5], [idOf(subject, hourStart(2), 2), 7],
    ]);
    const total = (await meterEventsOf(customer)).reduce((sum, e) => sum + Number(e.params['payload[value]']), 0);
    expect(total).toBe(150 + 10 + 5 + 7 - INCLUDED);
  });

  it('bills nothing of a meter whose overage is not "bill"', async () => {
    const { subject, customer } = await subscriber({ price: 'price_capped_m' });
    await track(subject, 500, hourStart(2));
    await run();
    expect(await meterEventsOf(customer)).toEqual([]);
    expect(await rows(subject)).toEqual([]);
  });

  it('after a crash between send and record, resends the same identifier (Stripe deduplicates it), once its lease runs out', async () => {
    const { subject, customer } = await subscriber();
    await track(subject, 130, hourStart(2));
    // The store answers every call but the one that records the send: as if the process
    // died right after Stripe accepted the event.
    const crashing: MeterStore = { ...store, sent: () => Promise.reject(new Error('killed between send and record')) };
    const crashed = await reportUsage(deps({ store: crashing }), { holder: 'crash', leaseSeconds: 2 });
    expect(crashed.status).toBe('failed');
    expect(await rows(subject)).toEqual([{ identifier: idOf(subject, hourStart(2)), state: 'pending', value: '30', kind: 'usage' }]);

    // Stripe has the event: it was accepted before the crash.
    expect((await stripeEventsOf(customer)).map((e) => [e.identifier, e.value, e.cancelled, e.error])).toEqual([[idOf(subject, hourStart(2)), 30, false, null]]);

    // While the lease holds, another run leaves the row alone (and claims nothing new).
    expect(await run()).toMatchObject({ claimed: 0 });
    let resend: Awaited<ReturnType<typeof run>> | undefined;
    await waitFor(async () => (resend = await run()).resent === 1);
    // Stripe refuses the resend ("An event already exists with identifier …"): that
    // answer means it holds the event, so the row is sent, not failed.
    expect(resend).toMatchObject({ sent: 1, failed: 0, unsent: 0 });
    const events = sent(await meterEventsOf(customer));
    expect(events.map((e) => e.identifier)).toEqual([idOf(subject, hourStart(2)), idOf(subject, hourStart(2))]);
    expect(events.map((e) => e.value)).toEqual([30, 30]);
    expect(await rows(subject)).toEqual([{ identifier: idOf(subject, hourStart(2)), state: 'sent', value: '30', kind: 'usage' }]);
    expect(logs.filter((l) => l['level'] === 'error')).toEqual([]);
    await run();
    expect(await meterEventsOf(customer)).toHaveLength(2);
    // Counted once.
    expect(await stripeEventsOf(customer)).toHaveLength(1);
    expect(await stripeTotalOf(customer)).toBe(30);
  });

  it('never resends a pending row older than 23 h: it waits for the reconcile', async () => {
    const { subject, customer } = await subscriber();
    await track(subject, 120, hourStart(2));
    const crashing: MeterStore = { ...store, sent: () => Promise.reject(new Error('killed')) };
    await reportUsage(deps({ store: crashing }), { holder: 'crash-old', leaseSeconds: 1 });
    await q(`update billing_meter_reports set claimed_at = claimed_at - interval '23 hours 1 minute', lease_until = now() - interval '1 second' where subject_id = $1`, [subject]);
    await run();
    expect(await meterEventsOf(customer)).toHaveLength(1);
    expect((await rows(subject))[0]?.state).toBe('pending');
  });

  it('sends usage older than Stripe takes at the earliest time it does, and logs it', async () => {
    // A period that began 34.9 days ago, so its window's hours are all still kept.
    const { subject, customer } = await subscriber({ start: new Date(Date.now() - 34.9 * 86_400_000), end: new Date(Date.now() + 86_400_000) });
    const old = new Date(Date.now() - 34.5 * 86_400_000);
    await track(subject, 140, old);
    const before = Date.now();
    await run();
    const [event] = sent(await meterEventsOf(customer));
    expect(event?.value).toBe(40);
    const earliest = (ms: number) => Math.floor((ms - 34 * 86_400_000) / 1000);
    expect(event?.timestamp).toBeGreaterThanOrEqual(earliest(before) - 5);
    expect(event?.timestamp).toBeLessThanOrEqual(earliest(Date.now()) + 5);
    expect(logs).toContainEqual(expect.objectContaining({ level: 'warn', msg: expect.stringContaining('older than Stripe takes') as unknown, subject, value: 40 }));
  });

  it('runs as Netlify starts the scheduled functions: one summary line, the usage sent', async () => {
    const { subject, customer } = await subscriber();
    await track(subject, 111, hourStart(2));
    const nextRun = JSON.stringify({ next_run: new Date().toISOString() });
    const response = await withEnv(own.env, () => meterReportFunction(new Request('http://localhost/.netlify/functions/stripe-meter-report', { method: 'POST', body: nextRun })));
    expect(response.status).toBe(200);
    expect(await response.json()).toMatchObject({ status: 'done', failed: 0, unsent: 0 });
    expect(sent(await meterEventsOf(customer))).toEqual([expect.objectContaining({ identifier: idOf(subject, hourStart(2)), value: 11 })]);
    const reconciled = await withEnv(own.env, () => meterReconcileFunction(new Request('http://localhost/.netlify/functions/stripe-meter-reconcile', { method: 'POST', body: nextRun })));
    expect(reconciled.status).toBe(200);
    expect((await reconciled.json()) as { status: string }).toMatchObject({ status: 'done' });
  });

  it('holds one run at a time', async () => {
    const lease = await jobs.acquireJob('stripe-meter-report', 'someone-else', 30);
    expect(lease).not.toBeNull();
    try {
      expect((await run()).status).toBe('busy');
    } finally {
      await jobs.saveJob('stripe-meter-report', 'someone-else', {}, null, true);
    }
  });
});

describe("classify: Stripe's answer to a meter event, as the sender acts on it", () => {
  const answerTo = async (params: Stripe.Billing.MeterEventCreateParams) => {
    try {
      await oneTry.billing.meterEvents.create(params);
      return null;
    } catch (error) {
      return classify(error);
    }
  };
  const event = (identifier = `classify_${randomUUID()}`, timestamp = Math.floor(Date.now() / 1000)): Stripe.Billing.MeterEventCreateParams =>
    ({ event_name: 'pageviews', identifier, timestamp, payload: { stripe_customer_id: 'cus_classify', value: '1' } });

  it('takes "an event already exists with identifier" for sent: Stripe has it (the resend after a lost answer or a crash)', async () => {
    const first = event();
    expect(await answerTo(first)).toBeNull();
    expect(await answerTo(first)).toEqual({ kind: 'sent' });
    // As real Stripe words it: a 400 with no error code, only the message.
    const duplicate = await oneTry.billing.meterEvents.create(first).catch((error: unknown) => error);
    expect(duplicate).toMatchObject({ statusCode: 400, type: 'StripeInvalidRequestError', message: `An event already exists with identifier ${first.identifier}.` });
    expect((duplicate as Stripe.errors.StripeError).code).toBeUndefined();
  });

  it('refuses any other 400, waits on a 429, sends again after a 500 or no answer', async () => {
    const tooOld = await answerTo(event(undefined, Math.floor(Date.now() / 1000) - 40 * 86_400));
    expect(tooOld).toMatchObject({ kind: 'refused', error: expect.stringContaining('35') as unknown });
    // Two lost: the SDK sends again once, whatever its retries, when a connection is reset.
    await meterFaults({ next: ['429', '500', 'timeout-lost', 'timeout-lost'], timeoutMs: 100 });
    try {
      expect(await answerTo(event())).toMatchObject({ kind: 'rate limit' });
      expect(await answerTo(event())).toMatchObject({ kind: 'server' });
      expect(await answerTo(event())).toMatchObject({ kind: 'server' });
    } finally {
      await meterFaultsOff();
    }
  });
});

describe('the meter event sender (no SDK): the request the SDK made, and the errors classify reads', () => {
  const CUSTOMER = 'cus_sender';
  const event = (identifier = `sender_${randomUUID()}`, timestamp = Math.floor(Date.now() / 1000)): MeterEventParams =>
    ({ event_name: 'pageviews', identifier, timestamp, payload: { stripe_customer_id: CUSTOMER, value: '1' } });
  const requestsFor = (identifier: string | undefined) =>
    recorded((r) => r.method === 'POST' && r.path === '/v1/billing/meter_events' && r.params['identifier'] === identifier);
  /** As the fault test runs it: no retry of its own, one answer to classify. */
  const oneTrySender = (timeoutMs?: number) => meterEventSender(stripeConnection, { maxNetworkRetries: 0, ...(timeoutMs !== undefined && { timeoutMs }) });
  const failureOf = (send: MeterEventSender, params: MeterEventParams) => send(params).then(() => null, (error: unknown) => error);

  it('sends what the SDK sent: the same parameters, the pinned Stripe-Version, an Idempotency-Key; Stripe holds the event', async () => {
    const ours = event();
    const bySdk = { ...ours, identifier: `sender_sdk_${randomUUID()}` };
    await sendMeterEvent(ours);
    await oneTry.billing.meterEvents.create(bySdk);
    const [sent] = await requestsFor(ours.identifier);
    const [sdkSent] = await requestsFor(bySdk.identifier);
    expect(sdkSent?.stripeVersion).toBe(PINNED_API_VERSION);
    expect(sent).toEqual({
      method: 'POST', path: '/v1/billing/meter_events', stripeVersion: PINNED_API_VERSION, idempotencyKey: expect.any(String) as unknown,
      params: { ...sdkSent?.params, identifier: ours.identifier },
    });
    expect((await stripeEventsOf(CUSTOMER)).filter((e) => e.identifier === ours.identifier)).toMatchObject([{ value: 1, timestamp: ours.timestamp, error: null }]);
  });

  it('takes "an event already exists with identifier" for sent: a 400 with Stripe\'s message and no code, not sent again', async () => {
    const first = event();
    await sendMeterEvent(first);
    const duplicate = await failureOf(sendMeterEvent, first);
    expect(duplicate).toBeInstanceOf(StripeRequestError);
    expect(duplicate).toMatchObject({ statusCode: 400, type: 'invalid_request_error', message: `An event already exists with identifier ${first.identifier}.` });
    expect((duplicate as StripeRequestError).code).toBeUndefined();
    expect(classify(duplicate)).toEqual({ kind: 'sent' });
    expect(await requestsFor(first.identifier)).toHaveLength(2);
  });

  it('refuses any other 400, waits on a 429, sends again after a 500 or no answer; a connection closed on the first try is tried once more', async () => {
    const tooOld = await failureOf(oneTrySender(), event(undefined, Math.floor(Date.now() / 1000) - 40 * 86_400));
    expect(tooOld).toMatchObject({ statusCode: 400, type: 'invalid_request_error', param: 'timestamp' });
    expect(classify(tooOld)).toMatchObject({ kind: 'refused', error: expect.stringContaining('35') as unknown });
    await meterFaults({ next: ['429', '500', 'timeout-lost', 'timeout-lost'], timeoutMs: 100 });
    try {
      expect(classify(await failureOf(oneTrySender(), event()))).toMatchObject({ kind: 'rate limit' });
      expect(classify(await failureOf(oneTrySender(), event()))).toMatchObject({ kind: 'server' });
      // Closed twice without an answer: sent again once with retries off, as the SDK does.
      const lost = event();
      const closed = await failureOf(oneTrySender(), lost);
      expect(closed).toMatchObject({ statusCode: undefined, message: 'An error occurred with our connection to Stripe. Request was retried 1 times.' });
      expect(classify(closed)).toMatchObject({ kind: 'server' });
      const attempts = await requestsFor(lost.identifier);
      expect(attempts).toHaveLength(2);
      expect(attempts[1]?.idempotencyKey).toBe(attempts[0]?.idempotencyKey);
    } finally {
      await meterFaultsOff();
    }
  });

  it('sends again what got no answer, under the same Idempotency-Key, and takes Stripe\'s replay of the first answer; with retries off the timeout is the answer', async () => {
    // Stripe recorded the event and its answer was lost: the sender gives up after 300 ms
    // and sends again (its one retry); Stripe answers with the first answer, kept under the key.
    await meterFaults({ next: ['timeout-recorded'], timeoutMs: 2_000 });
    const params = event();
    try {
      await meterEventSender(stripeConnection, { timeoutMs: 300 })(params);
    } finally {
      await meterFaultsOff();
    }
    const attempts = await requestsFor(params.identifier);
    expect(attempts).toHaveLength(2);
    expect(attempts[1]?.idempotencyKey).toBe(attempts[0]?.idempotencyKey);
    expect((await stripeEventsOf(CUSTOMER)).filter((e) => e.identifier === params.identifier)).toHaveLength(1);

    await meterFaults({ next: ['timeout-lost'], timeoutMs: 2_000 });
    try {
      const timedOut = await failureOf(oneTrySender(300), event());
      expect(timedOut).toMatchObject({ statusCode: undefined, message: 'Request aborted due to timeout being reached (300ms)' });
      expect(classify(timedOut)).toMatchObject({ kind: 'server' });
    } finally {
      await meterFaultsOff();
    }
  });

  it('does not retry a 500 whose Stripe-Should-Retry says false: an api_error, sent again by the outbox', async () => {
    await meterFaults({ next: ['500'] });
    const params = event();
    try {
      const failed = await failureOf(sendMeterEvent, params);
      expect(failed).toMatchObject({ statusCode: 500, type: 'api_error' });
      expect(classify(failed)).toMatchObject({ kind: 'server' });
    } finally {
      await meterFaultsOff();
    }
    expect(await requestsFor(params.identifier)).toHaveLength(1);
  });
});

describe('invoice.created', () => {
  const deliver = async (customer: string) => {
    const event = freshEvent('invoice.created', (invoice) => {
      invoice['customer'] = customer;
    });
    const payload = JSON.stringify(event);
    const signature = Stripe.webhooks.generateTestHeaderString({ payload, secret: own.env['STRIPE_WEBHOOK_SECRET'] ?? '' });
    const response = await withEnv(own.env, () =>
      webhook(new Request('http://localhost/api/stripe/webhook', { method: 'POST', headers: { 'stripe-signature': signature }, body: payload })));
    const [row] = await q<{ outcome: string; reason: string | null }>('select outcome, reason from stripe_events where id = $1', [event.id]);
    return { status: response.status, row };
  };

  it('flushes the closing window\'s unsent usage, the current hour included, before Stripe finalizes the draft', async () => {
    const { subject, customer } = await subscriber();
    await track(subject, 90, hourStart(5));
    await track(subject, 40, hourStart(1));
    await track(subject, 25, new Date()); // this hour: the reporter would wait for its end
    const { status, row } = await deliver(customer);
    expect(status).toBe(200);
    expect(row).toEqual({ outcome: 'applied', reason: '2 meter events flushed' });
    expect(sent(await meterEventsOf(customer)).map((e) => [e.identifier, e.value])).toEqual([
      [idOf(subject, hourStart(1)), 30], [idOf(subject, hourStart(0)), 25],
    ]);
    // The whole period's overage is at Stripe.
    expect((await rows(subject)).every((r) => r.state === 'sent')).toBe(true);
    expect((await meterEventsOf(customer)).reduce((sum, e) => sum + Number(e.params['payload[value]']), 0)).toBe(90 + 40 + 25 - INCLUDED);

    // More usage in this hour after the flush: the reporter sends it as the hour's correction.
    await track(subject, 3, new Date());
    const rerun = await deliver(customer);
    expect(rerun.status).toBe(200);
    expect(sent(await meterEventsOf(customer)).at(-1)).toMatchObject({ identifier: idOf(subject, hourStart(0), 2), value: 3 });
  });

  it('is skipped for a customer with no billed meter', async () => {
    const { customer } = await subscriber({ price: 'price_capped_m' });
    expect(await deliver(customer)).toEqual({ status: 200, row: { outcome: 'skipped', reason: 'no meter billed for this customer' } });
  });

  it('answers 500 when the usage cannot be sent, so that Stripe delivers it again', async () => {
    const { subject, customer } = await subscriber();
    await track(subject, 150, hourStart(1));
    const failing = { ...deps(), sendMeterEvent: meterEventSender({ secretKey: 'sk_test_unreachable', apiBase: new URL('http://127.0.0.1:9') }, { maxNetworkRetries: 0, timeoutMs: 500 }) };
    await expect(flushCustomerUsage(failing, customer, { holder: 'flush-down', budgetMs: 1_500, sleep: () => Promise.resolve() })).rejects.toThrow(/unsent/);
    expect((await rows(subject))[0]?.state).toBe('pending');
  });
});

describe('the reconcile', () => {
  const reconcile = async () => {
    const summary = await reconcileMeters(deps(), { holder: `reconcile-${randomUUID()}`, settleSeconds: 0 });
    expect(summary.error ?? null).toBeNull();
    return summary;
  };
  const adjustmentsOf = (identifier: string) =>
    recorded((r) => r.method === 'POST' && r.path === '/v1/billing/meter_event_adjustments' && r.params['cancel[identifier]'] === identifier);

  /** A subject whose 30 units of overage were reported: Stripe holds them. */
  async function reported(): Promise<{ subject: string; customer: string }> {
    const who = await subscriber();
    await track(who.subject, 130, hourStart(2));
    await run();
    expect(await stripeTotalOf(who.customer)).toBe(30);
    return who;
  }

  it('leaves a window alone when Stripe holds what we sent', async () => {
    const { customer } = await reported();
    await reconcile();
    expect(await meterEventsOf(customer)).toHaveLength(1);
    expect(logs.filter((l) => l['customer'] === customer)).toEqual([]);
  });

  it('sends what Stripe lacks as a repair with a new identifier, then cancels the repair when the original turns up', async () => {
    const { subject, customer } = await reported();
    // Stripe does not count the original (yet).
    await stripeDrops(idOf(subject, hourStart(2)));
    await reconcile();
    const events = sent(await meterEventsOf(customer));
    expect(events).toHaveLength(2);
    const repair = events[1];
    expect(repair).toMatchObject({ identifier: idOf(subject, hourStart(2), 2), value: 30 });
    expect(logs).toContainEqual(expect.objectContaining({ level: 'warn', msg: expect.stringContaining('repair sent') as unknown, customer, stripe: 0, expected: 30, difference: -30 }));
    expect((await rows(subject)).map((r) => [r.kind, r.state])).toEqual([['usage', 'sent'], ['reconcile', 'sent']]);
    expect(await stripeTotalOf(customer)).toBe(30);

    // Still short (Stripe does not count the repair either): no second repair while it is young.
    await stripeDrops(repair?.identifier ?? '');
    await reconcile();
    expect(await meterEventsOf(customer)).toHaveLength(2);
    expect(logs).toContainEqual(expect.objectContaining({ level: 'error', msg: expect.stringContaining('still lacks usage after a repair') as unknown, customer }));

    // Both were only late at Stripe: it now counts the original's 30 and the repair's 30.
    await stripeGets(customer, 30, hourStart(2));
    await stripeGets(customer, 30, hourStart(2));
    expect(await stripeTotalOf(customer)).toBe(60);
    const adjustmentsBefore = (await adjustmentsOf(repair?.identifier ?? '')).length;
    await reconcile();
    expect(await adjustmentsOf(repair?.identifier ?? '')).toHaveLength(adjustmentsBefore + 1);
    expect((await rows(subject)).map((r) => [r.kind, r.state])).toEqual([['usage', 'sent'], ['reconcile', 'void']]);
    expect(logs).toContainEqual(expect.objectContaining({ level: 'warn', msg: expect.stringContaining('repairs canceled') as unknown, customer, difference: 30 }));
  });

  it('logs at error what Stripe holds beyond what we sent when no repair of ours can be canceled', async () => {
    const { customer } = await reported();
    // Stripe holds 37: 7 more than we sent, from no repair of ours.
    await stripeGets(customer, 7, hourStart(2));
    const summary = await reconcile();
    expect(summary.excess).toBeGreaterThanOrEqual(1);
    expect(logs).toContainEqual(expect.objectContaining({ level: 'error', msg: expect.stringContaining('cannot take it back') as unknown, customer, excess: 7 }));
    expect(await stripeTotalOf(customer)).toBe(37);
  });

  it('settles a row left pending past 23 h: arrived if Stripe holds it, else void and reported again under a new identifier', async () => {
    const arrived = await subscriber();
    const lost = await subscriber();
    const claimedADayAgo = (subject: string) =>
      q(`update billing_meter_reports set claimed_at = claimed_at - interval '24 hours', lease_until = null where subject_id = $1`, [subject]);

    // Lost: every send of its event is dropped on the way (no answer, nothing recorded).
    await track(lost.subject, 130, hourStart(2));
    await meterFaults({ rate: 1, kinds: ['timeout-lost'], timeoutMs: 100 });
    try {
      expect(await run()).toMatchObject({ sent: 0, unsent: 1 });
    } finally {
      await meterFaultsOff();
    }
    expect((await rows(lost.subject)).map((r) => r.state)).toEqual(['pending']);
    expect(await stripeEventsOf(lost.customer)).toEqual([]);
    await claimedADayAgo(lost.subject);

    // Arrived: Stripe accepted it, and the process died before recording that.
    await track(arrived.subject, 130, hourStart(2));
    const crashing: MeterStore = { ...store, sent: () => Promise.reject(new Error('killed')) };
    await reportUsage(deps({ store: crashing }), { holder: 'crash-settle' });
    expect((await rows(arrived.subject)).map((r) => r.state)).toEqual(['pending']);
    expect(await stripeTotalOf(arrived.customer)).toBe(30);
    await claimedADayAgo(arrived.subject);

    const summary = await reconcile();
    expect(summary).toMatchObject({ confirmed: 1, voided: 1 });
    expect((await rows(arrived.subject)).map((r) => r.state)).toEqual(['sent']);
    expect((await rows(lost.subject)).map((r) => r.state)).toEqual(['void']);

    await run();
    expect(sent(await meterEventsOf(lost.customer)).at(-1)).toMatchObject({ identifier: idOf(lost.subject, hourStart(2), 2), value: 30 });
    expect((await stripeEventsOf(lost.customer)).map((e) => [e.identifier, e.value])).toEqual([[idOf(lost.subject, hourStart(2), 2), 30]]);
    expect(sent(await meterEventsOf(arrived.customer))).toHaveLength(1);
  });
});

async function waitFor(check: () => Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > until) throw new Error('timed out waiting');
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}
