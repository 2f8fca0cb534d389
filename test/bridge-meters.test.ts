// Billing Meters on the local stack's bridge (scripts/stack/bridge-meters.ts), through the
// real `stripe` SDK: a bridge of this file's own over the stack's stripe-mock (its meters,
// events, faults and clock are then this file's alone), and an app registered with it
// whose webhook is the real webhook function, so the renewal's invoices are delivered,
// verified and applied as with `npm run dev`.

import { randomUUID } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import Stripe from 'stripe';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import webhook from '../netlify/functions/stripe-webhook.mts';
import { LOCAL_STRIPE_PRODUCT_ID } from '../scripts/lib/local-defaults.ts';
import type { RecordedMeterEvent } from '../scripts/stack/bridge-meters.ts';
import { startStripeMockBridge, type StripeMockBridge } from '../scripts/stack/stripe-mock-bridge.ts';
import { env, query } from './support/stack.ts';

const APP = 'https://meters.example.com';
const DAY = 86_400;

let bridge: StripeMockBridge;
let receiver: Server;
let stripe: Stripe;
/** Every event the pages delivered; the webhook answers invoice.created after `onInvoiceCreated`. */
const delivered: Stripe.Event[] = [];
let onInvoiceCreated: ((invoice: Stripe.Invoice) => Promise<void>) | null = null;

beforeAll(async () => {
  receiver = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      const event = JSON.parse(body) as Stripe.Event;
      void (async () => {
        // What the app's flush does: report the closing period's last usage before answering.
        if (event.type === 'invoice.created' && onInvoiceCreated) await onInvoiceCreated(event.data.object);
        const answer = await webhook(
          new Request('http://localhost/api/stripe/webhook', {
            method: 'POST',
            headers: { 'content-type': 'application/json', 'stripe-signature': String(req.headers['stripe-signature']) },
            body,
          }),
        );
        delivered.push(event);
        res.writeHead(answer.status, { 'content-type': 'application/json' });
        res.end(await answer.text());
      })();
    });
  });
  await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
  const port = (receiver.address() as AddressInfo).port;
  bridge = await startStripeMockBridge(env('STRIPE_MOCK_URL'), 0, {
    apps: [{ origin: APP, webhookUrl: `http://127.0.0.1:${port}/`, webhookSecret: env('STRIPE_WEBHOOK_SECRET'), databaseUrl: env('DATABASE_URL') }],
  });
  stripe = client();
});

afterEach(async () => {
  await control('DELETE', '/__bridge/meter-faults');
  await control('DELETE', '/__bridge/clock');
});

afterAll(async () => {
  await bridge?.close();
  await new Promise((resolve) => receiver?.close(resolve));
});

function client(options: Stripe.StripeConfig = {}): Stripe {
  const base = new URL(bridge.url);
  return new Stripe(env('STRIPE_SECRET_KEY'), { host: base.hostname, port: Number(base.port), protocol: 'http', maxNetworkRetries: 0, ...options });
}

async function control<T = unknown>(method: string, path: string, body?: unknown): Promise<T> {
  const response = await fetch(`${bridge.url}${path}`, { method, ...(body !== undefined && { body: JSON.stringify(body) }) });
  expect(response.status).toBe(200);
  return (await response.json()) as T;
}

const recorded = (customer: string) => control<RecordedMeterEvent[]>('GET', `/__bridge/meter-events?customer=${customer}`);

/** The customer's recorded identifiers once there are `count` (a held request may still be
 *  recording when its client gave up, on a busy machine). */
async function recordedOnce(customer: string, count: number): Promise<string[]> {
  for (const started = Date.now(); Date.now() - started < 20_000; await new Promise((resolve) => setTimeout(resolve, 50))) {
    const events = await recorded(customer);
    if (events.length >= count) return events.map((e) => e.identifier);
  }
  return (await recorded(customer)).map((e) => e.identifier);
}
const bridgeNow = async () => (await control<{ now: number }>('GET', '/__bridge/clock')).now;

/** A meter of its own (event names are unique among active meters) and a customer id. */
async function newMeter(formula: 'sum' | 'count' | 'last' = 'sum'): Promise<{ meter: Stripe.Billing.Meter; customer: string }> {
  const eventName = `pageviews_${randomUUID().slice(0, 8)}`;
  const meter = await stripe.billing.meters.create({
    display_name: 'Pageviews',
    event_name: eventName,
    default_aggregation: { formula },
    customer_mapping: { event_payload_key: 'stripe_customer_id', type: 'by_id' },
    value_settings: { event_payload_key: 'value' },
  });
  return { meter, customer: `cus_${randomUUID().replaceAll('-', '').slice(0, 14)}` };
}

function report(meter: Stripe.Billing.Meter, customer: string, value: number, extra: { identifier?: string; timestamp?: number } = {}, via = stripe) {
  return via.billing.meterEvents.create({ event_name: meter.event_name, payload: { stripe_customer_id: customer, value: String(value) }, ...extra });
}

async function refusal(promise: Promise<unknown>): Promise<Stripe.errors.StripeError> {
  const error = await promise.then(
    () => null,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(Stripe.errors.StripeError);
  return error as Stripe.errors.StripeError;
}

describe('meters', () => {
  it('are remembered as created: listed by status, retrieved, renamed, deactivated and reactivated', async () => {
    const { meter } = await newMeter('count');
    expect(meter).toMatchObject({
      object: 'billing.meter',
      display_name: 'Pageviews',
      default_aggregation: { formula: 'count' },
      customer_mapping: { event_payload_key: 'stripe_customer_id', type: 'by_id' },
      value_settings: { event_payload_key: 'value' },
      status: 'active',
    });
    expect(meter.event_name).toMatch(/^pageviews_/);
    expect(await stripe.billing.meters.retrieve(meter.id)).toEqual(meter);
    const active = await stripe.billing.meters.list({ status: 'active' }).autoPagingToArray({ limit: 1000 });
    expect(active.map((m) => m.id)).toContain(meter.id);

    expect((await stripe.billing.meters.update(meter.id, { display_name: 'Page views' })).display_name).toBe('Page views');
    const inactive = await stripe.billing.meters.deactivate(meter.id);
    expect(inactive.status).toBe('inactive');
    expect(inactive.status_transitions.deactivated_at).toEqual(expect.any(Number));
    expect((await stripe.billing.meters.list({ status: 'inactive' }).autoPagingToArray({ limit: 1000 })).map((m) => m.id)).toContain(meter.id);
    expect((await stripe.billing.meters.list({ status: 'active' }).autoPagingToArray({ limit: 1000 })).map((m) => m.id)).not.toContain(meter.id);
    expect((await stripe.billing.meters.reactivate(meter.id)).status).toBe('active');

    const missing = await refusal(stripe.billing.meters.retrieve('mtr_unknown'));
    expect([missing.statusCode, missing.code]).toEqual([404, 'resource_missing']);
  });

  it('refuse a second active meter for an event name, as Stripe does', async () => {
    const { meter } = await newMeter();
    const again = await refusal(stripe.billing.meters.create({ display_name: 'Again', event_name: meter.event_name, default_aggregation: { formula: 'sum' } }));
    expect([again.statusCode, again.param]).toEqual([400, 'event_name']);
  });

  it('a metered price comes back linked to its meter, with its package and decimal amount', async () => {
    const { meter } = await newMeter();
    const perPackage = await stripe.prices.create({
      product: LOCAL_STRIPE_PRODUCT_ID,
      currency: 'eur',
      unit_amount: 100,
      recurring: { interval: 'month', usage_type: 'metered', meter: meter.id },
      transform_quantity: { divide_by: 10_000, round: 'up' },
    });
    expect(String(perPackage.unit_amount_decimal)).toBe('100');
    expect(perPackage).toMatchObject({
      unit_amount: 100,
      recurring: { interval: 'month', usage_type: 'metered', meter: meter.id },
      transform_quantity: { divide_by: 10_000, round: 'up' },
    });
    const perUnit = await stripe.prices.create({
      product: LOCAL_STRIPE_PRODUCT_ID,
      currency: 'eur',
      unit_amount_decimal: Stripe.Decimal.from('0.05'),
      recurring: { interval: 'month', usage_type: 'metered', meter: meter.id },
    });
    expect(perUnit).toMatchObject({ unit_amount: null, transform_quantity: null, recurring: { usage_type: 'metered' } });
    expect(String(perUnit.unit_amount_decimal)).toBe('0.05');
  });
});

describe('meter events', () => {
  it('are recorded; an identifier is refused for 24 hours, as Stripe refuses it, and taken again after', async () => {
    const { meter, customer } = await newMeter();
    const first = await report(meter, customer, 7, { identifier: 'hour-1' });
    expect(first).toMatchObject({ object: 'billing.meter_event', event_name: meter.event_name, identifier: 'hour-1', payload: { stripe_customer_id: customer, value: '7' } });

    const duplicate = await refusal(report(meter, customer, 7, { identifier: 'hour-1' }));
    expect([duplicate.statusCode, duplicate.type, duplicate.message]).toEqual([400, 'StripeInvalidRequestError', 'An event already exists with identifier hour-1.']);
    expect(duplicate.headers?.['stripe-should-retry']).toBe('false');

    await control('POST', '/__bridge/clock', { advance: DAY - 60 });
    expect((await refusal(report(meter, customer, 7, { identifier: 'hour-1' }))).statusCode).toBe(400);
    await control('POST', '/__bridge/clock', { advance: 120 });
    await report(meter, customer, 7, { identifier: 'hour-1' });

    // Without an identifier, one is made: two such events are two events.
    const [a, b] = [await report(meter, customer, 1), await report(meter, customer, 1)];
    expect(a.identifier).not.toBe(b.identifier);
    const mine = await recorded(customer);
    expect(mine.map((e) => [e.identifier, e.value, e.meter, e.cancelled, e.error])).toEqual([
      ['hour-1', 7, meter.id, false, null],
      ['hour-1', 7, meter.id, false, null],
      [a.identifier, 1, meter.id, false, null],
      [b.identifier, 1, meter.id, false, null],
    ]);
  });

  it('refuse a timestamp older than 35 days or more than 5 minutes ahead, and take the edges', async () => {
    const { meter, customer } = await newMeter();
    const now = await bridgeNow();
    const tooOld = await refusal(report(meter, customer, 1, { timestamp: now - 35 * DAY - 60 }));
    const tooNew = await refusal(report(meter, customer, 1, { timestamp: now + 6 * 60 }));
    for (const refused of [tooOld, tooNew]) expect([refused.statusCode, refused.type, refused.param]).toEqual([400, 'StripeInvalidRequestError', 'timestamp']);
    await report(meter, customer, 2, { timestamp: now - 35 * DAY + 60 });
    await report(meter, customer, 3, { timestamp: now + 4 * 60 });
    expect((await recorded(customer)).map((e) => e.value)).toEqual([2, 3]);

    // The window moves with the bridge's clock.
    await control('POST', '/__bridge/clock', { now: now + 40 * DAY });
    expect((await refusal(report(meter, customer, 1, { timestamp: now }))).param).toBe('timestamp');
  });

  it('are accepted but never counted without an active meter, a customer or a number, as Stripe reports them later', async () => {
    const { meter, customer } = await newMeter();
    const unknown = await stripe.billing.meterEvents.create({ event_name: `nothing_${randomUUID().slice(0, 8)}`, payload: { stripe_customer_id: customer, value: '5' } });
    expect(unknown.object).toBe('billing.meter_event');
    await stripe.billing.meterEvents.create({ event_name: meter.event_name, payload: { value: '5' } });
    await report(meter, customer, Number.NaN);
    await stripe.billing.meters.deactivate(meter.id);
    await report(meter, customer, 5);
    await stripe.billing.meters.reactivate(meter.id);
    const all = await control<RecordedMeterEvent[]>('GET', '/__bridge/meter-events');
    expect(all.filter((e) => e.customer === customer || (e.event_name === meter.event_name && e.customer === null)).map((e) => e.error)).toEqual([
      'no_meter',
      'meter_event_no_customer_defined',
      'meter_event_invalid_value',
      'archived_meter',
    ]);
    const [summary] = (await stripe.billing.meters.listEventSummaries(meter.id, { customer, start_time: (await minute()) - 3600, end_time: (await minute()) + 3600 })).data;
    expect(summary?.aggregated_value).toBe(0);
  });

  it('a cancel adjustment within 24 hours takes an event out of the sums; later, or unknown, it is refused', async () => {
    const { meter, customer } = await newMeter();
    await report(meter, customer, 10, { identifier: 'a' });
    await report(meter, customer, 5, { identifier: 'b' });
    const adjustment = await stripe.billing.meterEventAdjustments.create({ event_name: meter.event_name, type: 'cancel', cancel: { identifier: 'a' } });
    expect(adjustment).toMatchObject({ object: 'billing.meter_event_adjustment', type: 'cancel', cancel: { identifier: 'a' }, event_name: meter.event_name });
    const end = (await minute()) + 600;
    const total = async () => (await stripe.billing.meters.listEventSummaries(meter.id, { customer, start_time: end - 7200, end_time: end })).data[0]?.aggregated_value;
    expect(await total()).toBe(5);
    expect((await recorded(customer)).map((e) => [e.identifier, e.cancelled])).toEqual([['a', true], ['b', false]]);

    const unknown = await refusal(stripe.billing.meterEventAdjustments.create({ event_name: meter.event_name, type: 'cancel', cancel: { identifier: 'nope' } }));
    expect([unknown.statusCode, unknown.param]).toEqual([400, 'cancel[identifier]']);
    await control('POST', '/__bridge/clock', { advance: DAY + 60 });
    const late = await refusal(stripe.billing.meterEventAdjustments.create({ event_name: meter.event_name, type: 'cancel', cancel: { identifier: 'b' } }));
    expect(late.statusCode).toBe(400);
    expect(await total()).toBe(5);
  });
});

/** The bridge's now, down to its minute. */
async function minute(): Promise<number> {
  const now = await bridgeNow();
  return now - (now % 60);
}

describe('event summaries', () => {
  it('sum the counted events of a customer in the range, at once, by hour and by day, in pages', async () => {
    const { meter, customer } = await newMeter();
    const other = `cus_${randomUUID().replaceAll('-', '').slice(0, 14)}`;
    const now = await bridgeNow();
    const today = now - (now % DAY);
    // Three hours of yesterday (11:xx twice, 13:xx) and one of two days ago.
    const at = (dayOffset: number, hour: number, minuteOfHour: number) => today - dayOffset * DAY + hour * 3600 + minuteOfHour * 60;
    await report(meter, customer, 100, { timestamp: at(1, 11, 5) });
    await report(meter, customer, 20, { timestamp: at(1, 11, 55) });
    await report(meter, customer, 3, { timestamp: at(1, 13, 0) });
    await report(meter, customer, 4000, { timestamp: at(2, 23, 59) });
    await report(meter, other, 999, { timestamp: at(1, 11, 30) });

    const list = (params: Partial<Stripe.Billing.MeterListEventSummariesParams>) =>
      stripe.billing.meters.listEventSummaries(meter.id, { customer, start_time: today - 3 * DAY, end_time: today, ...params }).autoPagingToArray({ limit: 1000 });
    const whole = await list({});
    expect(whole).toEqual([
      { id: expect.stringMatching(/^mtrusg_/) as string, object: 'billing.meter_event_summary', aggregated_value: 4123, start_time: today - 3 * DAY, end_time: today, livemode: false, meter: meter.id },
    ]);
    const hours = await list({ value_grouping_window: 'hour' });
    expect(hours.map((s) => [s.start_time, s.end_time, s.aggregated_value])).toEqual([
      [at(2, 23, 0), at(1, 0, 0), 4000],
      [at(1, 11, 0), at(1, 12, 0), 120],
      [at(1, 13, 0), at(1, 14, 0), 3],
    ]);
    const days = await list({ value_grouping_window: 'day' });
    expect(days.map((s) => [s.start_time, s.end_time, s.aggregated_value])).toEqual([
      [today - 2 * DAY, today - DAY, 4000],
      [today - DAY, today, 123],
    ]);
    // A range that cuts a window sums only its part; [start, end) as Stripe has it.
    expect((await list({ start_time: at(1, 11, 30), end_time: at(1, 13, 0) }))[0]?.aggregated_value).toBe(20);

    // Pages of one, by id.
    const first = await stripe.billing.meters.listEventSummaries(meter.id, { customer, start_time: today - 3 * DAY, end_time: today, value_grouping_window: 'hour', limit: 1 });
    expect([first.data.length, first.has_more]).toEqual([1, true]);
    const second = await stripe.billing.meters.listEventSummaries(meter.id, {
      customer,
      start_time: today - 3 * DAY,
      end_time: today,
      value_grouping_window: 'hour',
      limit: 2,
      starting_after: first.data[0]?.id ?? '',
    });
    expect([second.data.map((s) => s.aggregated_value), second.has_more]).toEqual([[120, 3], false]);

    const unaligned = await refusal(stripe.billing.meters.listEventSummaries(meter.id, { customer, start_time: today - 30, end_time: today }));
    expect([unaligned.statusCode, unaligned.param]).toEqual([400, 'start_time']);
  });

  it('follow the meter formula: count and last', async () => {
    const counted = await newMeter('count');
    const last = await newMeter('last');
    const now = await bridgeNow();
    for (const [value, ago] of [[5, 300], [9, 200], [2, 100]] as const) {
      await report(counted.meter, counted.customer, value, { timestamp: now - ago });
      await report(last.meter, last.customer, value, { timestamp: now - ago });
    }
    const range = { start_time: (await minute()) - 3600, end_time: (await minute()) + 3600 };
    expect((await stripe.billing.meters.listEventSummaries(counted.meter.id, { customer: counted.customer, ...range })).data[0]?.aggregated_value).toBe(3);
    expect((await stripe.billing.meters.listEventSummaries(last.meter.id, { customer: last.customer, ...range })).data[0]?.aggregated_value).toBe(2);
  });
});

describe('faults', () => {
  /** A client that gives up after 1 s; the bridge holds a timeout for 3 s. */
  const impatient = () => client({ timeout: 1000 });

  it('429: refused before anything is kept, as Stripe\'s rate limiter does', async () => {
    const { meter, customer } = await newMeter();
    await control('POST', '/__bridge/meter-faults', { next: ['429'] });
    const limited = await refusal(report(meter, customer, 1, { identifier: 'x' }));
    expect([limited.statusCode, limited.type, limited.code]).toEqual([429, 'StripeRateLimitError', 'rate_limit']);
    expect(await recorded(customer)).toEqual([]);
    await report(meter, customer, 1, { identifier: 'x' });
    expect((await recorded(customer)).length).toBe(1);
  });

  it('500: an api_error, nothing recorded, the answer kept under its idempotency key', async () => {
    const { meter, customer } = await newMeter();
    await control('POST', '/__bridge/meter-faults', { next: ['500'] });
    const failed = await refusal(report(meter, customer, 1, { identifier: 'y' }).then(() => undefined));
    expect([failed.statusCode, failed.type]).toEqual([500, 'StripeAPIError']);
    expect(await recorded(customer)).toEqual([]);
    await report(meter, customer, 1, { identifier: 'y' });
    expect((await recorded(customer)).length).toBe(1);

    await control('POST', '/__bridge/meter-faults', { next: ['500'] });
    const params = { event_name: meter.event_name, payload: { stripe_customer_id: customer, value: '2' }, identifier: 'z' };
    expect((await refusal(stripe.billing.meterEvents.create(params, { idempotencyKey: 'key-500' }))).statusCode).toBe(500);
    expect((await refusal(stripe.billing.meterEvents.create(params, { idempotencyKey: 'key-500' }))).statusCode).toBe(500);
    expect((await recorded(customer)).map((e) => e.identifier)).toEqual(['y']);
  });

  it('timeout-recorded: the client times out, the event is recorded; its retry is a duplicate, or the first answer under the same key', async () => {
    const { meter, customer } = await newMeter();
    await control('POST', '/__bridge/meter-faults', { next: ['timeout-recorded'], timeoutMs: 3000 });
    const lost = await refusal(report(meter, customer, 4, { identifier: 'sent' }, impatient()));
    expect(lost).toBeInstanceOf(Stripe.errors.StripeConnectionError);
    expect(await recordedOnce(customer, 1)).toEqual(['sent']);
    expect((await refusal(report(meter, customer, 4, { identifier: 'sent' }))).message).toBe('An event already exists with identifier sent.');

    await control('POST', '/__bridge/meter-faults', { next: ['timeout-recorded'], timeoutMs: 3000 });
    const params = { event_name: meter.event_name, payload: { stripe_customer_id: customer, value: '6' }, identifier: 'keyed' };
    expect(await refusal(impatient().billing.meterEvents.create(params, { idempotencyKey: 'key-timeout' }))).toBeInstanceOf(Stripe.errors.StripeConnectionError);
    expect(await recordedOnce(customer, 2)).toEqual(['sent', 'keyed']);
    const replayed = await stripe.billing.meterEvents.create(params, { idempotencyKey: 'key-timeout' });
    expect(replayed.identifier).toBe('keyed');
    expect(replayed.lastResponse.headers['idempotent-replayed']).toBe('true');
    expect((await recorded(customer)).map((e) => e.identifier)).toEqual(['sent', 'keyed']);
  });

  it('timeout-lost: the client times out and nothing is recorded; the retry is the first', async () => {
    const { meter, customer } = await newMeter();
    await control('POST', '/__bridge/meter-faults', { next: ['timeout-lost'], timeoutMs: 3000 });
    expect(await refusal(report(meter, customer, 4, { identifier: 'never' }, impatient()))).toBeInstanceOf(Stripe.errors.StripeConnectionError);
    expect(await recorded(customer)).toEqual([]);
    await report(meter, customer, 4, { identifier: 'never' });
    expect((await recorded(customer)).length).toBe(1);
  });

  it('a rate of faults is drawn from its seed: the same seed fails the same requests, and adjustments fail too', async () => {
    const run = async () => {
      const { meter, customer } = await newMeter();
      await control('POST', '/__bridge/meter-faults', { rate: 0.3, kinds: ['429', '500'], seed: 7 });
      const outcomes: (number | string)[] = [];
      // Identifiers are the account's: each run's its own.
      for (let i = 0; i < 30; i++) outcomes.push(await report(meter, customer, 1, { identifier: `${customer}-${i}` }).then(() => 'ok', (e: Stripe.errors.StripeError) => e.statusCode ?? 'error'));
      const stats = await control<{ injected: Record<string, number> }>('GET', '/__bridge/meter-faults');
      return { outcomes, injected: stats.injected, recorded: (await recorded(customer)).length };
    };
    const first = await run();
    const second = await run();
    expect(second).toEqual(first);
    const failures = first.outcomes.filter((o) => o !== 'ok').length;
    expect(failures).toBeGreaterThan(0);
    expect(failures).toBeLessThan(30);
    expect(first.recorded).toBe(30 - failures);
    expect((first.injected['429'] ?? 0) + (first.injected['500'] ?? 0)).toBe(failures);

    await control('DELETE', '/__bridge/meter-faults');
    const { meter, customer } = await newMeter();
    await report(meter, customer, 1, { identifier: 'adj' });
    await control('POST', '/__bridge/meter-faults', { next: ['429'] });
    expect((await refusal(stripe.billing.meterEventAdjustments.create({ event_name: meter.event_name, type: 'cancel', cancel: { identifier: 'adj' } }))).statusCode).toBe(429);
    expect((await recorded(customer))[0]?.cancelled).toBe(false);
  });

  it('unknown kinds are refused, and DELETE clears the faults', async () => {
    const response = await fetch(`${bridge.url}/__bridge/meter-faults`, { method: 'POST', body: JSON.stringify({ next: ['503'] }) });
    expect(response.status).toBe(400);
    await control('POST', '/__bridge/meter-faults', { rate: 1, kinds: ['429'] });
    await control('DELETE', '/__bridge/meter-faults');
    const { meter, customer } = await newMeter();
    await report(meter, customer, 1);
  });
});

describe('renewals and the portal', () => {
  it('a renewal bills the closing period\'s usage: the draft with what was reported, the paid invoice with the flush; the portal shows it', async () => {
    const { meter } = await newMeter();
    await stripe.products.create({ id: LOCAL_STRIPE_PRODUCT_ID, name: 'Analytics Pro' });
    const plan = await stripe.prices.create({ product: LOCAL_STRIPE_PRODUCT_ID, unit_amount: 900, currency: 'eur', recurring: { interval: 'month' } });
    const overage = await stripe.prices.create({
      product: LOCAL_STRIPE_PRODUCT_ID,
      unit_amount: 100,
      currency: 'eur',
      recurring: { interval: 'month', usage_type: 'metered', meter: meter.id },
      transform_quantity: { divide_by: 10_000, round: 'up' },
    });
    const teamId = randomUUID();
    const ownerId = randomUUID();
    await query('insert into billing_team_members (team_id, user_id, role) values ($1, $2, $3)', [teamId, ownerId, 'owner']);
    const customer = `cus_${teamId.replaceAll('-', '').slice(0, 14)}`;
    await query('select billing_link_customer($1, $2, $3)', [teamId, customer, null]);
    const metadata = { userId: ownerId, teamId };
    const session = await stripe.checkout.sessions.create({
      mode: 'subscription',
      customer,
      line_items: [{ price: plan.id, quantity: 1 }, { price: overage.id }],
      success_url: `${APP}/dashboard?checkout=success&session_id={CHECKOUT_SESSION_ID}`,
      client_reference_id: ownerId,
      metadata,
      subscription_data: { metadata },
    });
    expect((await fetch(session.url ?? '', { method: 'POST', body: new URLSearchParams({ card: '4242424242424242' }), redirect: 'manual' })).status).toBe(303);

    // 25,000 pageviews past the plan this period, one event cancelled; the app flushes 6,000 more on invoice.created.
    await report(meter, customer, 15_000, { identifier: 'h1' });
    await report(meter, customer, 10_000, { identifier: 'h2' });
    await report(meter, customer, 7_000, { identifier: 'wrong' });
    await stripe.billing.meterEventAdjustments.create({ event_name: meter.event_name, type: 'cancel', cancel: { identifier: 'wrong' } });

    const portal = await stripe.billingPortal.sessions.create({ customer, return_url: `${APP}/dashboard` });
    const shown = await (await fetch(portal.url)).text();
    expect(shown).toContain('<h2>Usage this period</h2>');
    expect(shown).toMatch(/<strong>Pageviews<\/strong>: 25,000 units at €1\.00 per 10,000 \(3 × €1\.00\) since [A-Z][a-z]+ \d+, \d{4}, €3\.00 so far/);

    onInvoiceCreated = async () => {
      await report(meter, customer, 6_000, { identifier: 'flush' });
    };
    const before = delivered.length;
    expect((await fetch(portal.url, { method: 'POST', body: new URLSearchParams({ action: 'advance' }), redirect: 'manual' })).status).toBe(303);
    onInvoiceCreated = null;
    const renewal = delivered.slice(before);
    expect(renewal.map((e) => e.type)).toEqual(['customer.subscription.updated', 'invoice.created', 'invoice.paid']);
    const [, draft, paid] = renewal.map((e) => e.data.object as Stripe.Invoice);
    const usageLine = (invoice: Stripe.Invoice | undefined) => invoice?.lines.data.find((line) => line.pricing?.price_details?.price === overage.id);
    expect(draft?.status).toBe('draft');
    expect(draft?.id).toBe(paid?.id);
    expect([usageLine(draft)?.quantity, usageLine(draft)?.amount, draft?.amount_due]).toEqual([3, 300, 1200]);
    expect([usageLine(paid)?.quantity, usageLine(paid)?.amount, paid?.amount_paid, paid?.status]).toEqual([4, 400, 1300, 'paid']);
    // Arrears: the usage line covers the period that closed; the plan's line the one that starts.
    const subscription = renewal[0]?.data.object as Stripe.Subscription;
    expect(usageLine(paid)?.period.end).toBe(subscription.items.data[0]?.current_period_start);
    expect(paid?.lines.data[0]?.period.start).toBe(subscription.items.data[0]?.current_period_start);
    expect(usageLine(paid)?.description).toBe('Pageviews: 31,000 units at €1.00 per 10,000 (4 × €1.00)');
    expect(usageLine(draft)?.description).toBe('Pageviews: 25,000 units at €1.00 per 10,000 (3 × €1.00)');
  });
});
