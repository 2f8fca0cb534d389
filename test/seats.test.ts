// Seats through the front door: a per-seat plan's Stripe quantity follows its team's
// membership. Checkout starts at the member count, POST /api/stripe/seats and the
// scheduled seat sync set it after membership changes (absolute, one update in flight,
// a key per membership version, retried), the webhook shows what Stripe bills, and the
// reconcile heals a quantity changed in Stripe. Stripe is the local bridge, which keeps
// the subscriptions this file posts to it, answers their updates with the events Stripe
// would send, and counts the updates in flight (scripts/stack/bridge-subscriptions.ts).
//
// This file sells catalogs of its own (business_<tag> per seat), so that only its own
// teams are per seat for the scheduled runs here, and uses an API key of its own, whose
// event log the catch-up tests never read.

import { randomBytes, randomUUID } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import Stripe from 'stripe';
import { beforeAll, describe, expect, it } from 'vitest';
import checkout from '../netlify/functions/stripe-checkout.mts';
import seatSync from '../netlify/functions/stripe-seat-sync.mts';
import seatsEndpoint from '../netlify/functions/stripe-seats.mts';
import status from '../netlify/functions/stripe-subscription.mts';
import webhook from '../netlify/functions/stripe-webhook.mts';
import { reconcileSubscriptions } from '../src/events/reconcile.ts';
import { loadJobConfig } from '../src/config/config.ts';
import { createStore } from '../src/database/store.ts';
import { stripeOptions } from '../src/stripe/client.ts';
import { seatIdempotencyKey } from '../src/teams/seats.ts';
import { priceIdOf, runSetup, uniqueCatalog } from './support/catalog.ts';
import { checkoutCompletedEvent, subscriptionEvent, type Ids } from './support/events.ts';
import {
  authedPost,
  bridgeSubscription,
  newUser,
  openStripeEventLog,
  postStripeObject,
  query,
  signedDelivery,
  stripeRequests,
  subscriptionFaults,
  withEnv,
  type TestUser,
} from './support/stack.ts';

const DAY = 86_400;
const now = () => Math.floor(Date.now() / 1000);
/** This file's Stripe account, as far as the bridge's event logs go. */
const KEY = `sk_test_seats${randomBytes(6).toString('hex')}`;

interface SeatCatalog {
  file: string;
  tag: string;
  product: string;
  lookupKey: string;
}

/** The shipped catalog with keys of its own, its business plan sold per seat as given. */
async function seatCatalog(seats: Record<string, unknown>): Promise<SeatCatalog> {
  const { file, tag } = await uniqueCatalog();
  const catalog = JSON.parse(await readFile(file, 'utf8')) as { plans: Record<string, Record<string, unknown>> };
  const business = catalog.plans[`business_${tag}`];
  if (!business) throw new Error('uniqueCatalog renamed the business plan');
  business['seats'] = seats;
  await writeFile(file, JSON.stringify(catalog));
  await runSetup(file);
  return { file, tag, product: `analytics_business_${tag}`, lookupKey: `business_monthly_${tag}` };
}

let perSeat: SeatCatalog;
/** Five seats at least, invoiced at once. */
let invoiced: SeatCatalog;

beforeAll(async () => {
  [perSeat, invoiced] = await Promise.all([seatCatalog({ min: 1 }), seatCatalog({ min: 5, proration: 'always_invoice' })]);
  await openStripeEventLog(KEY);
}, 60_000);

const envOf = (catalog: SeatCatalog) => ({ BILLING_CATALOG: catalog.file, STRIPE_SECRET_KEY: KEY });

interface Team {
  id: string;
  users: TestUser[];
}

/** A team of `size` new users, the first its owner. */
async function team(size: number): Promise<Team> {
  const t = { id: randomUUID(), users: [] as TestUser[] };
  await join(t, size);
  return t;
}

/** `count` new members, in one statement. */
async function join(t: Team, count: number): Promise<void> {
  const users = Array.from({ length: count }, () => newUser());
  const roles = users.map((_, i) => (t.users.length === 0 && i === 0 ? 'owner' : 'member'));
  await query(
    `insert into billing_team_members (team_id, user_id, role) select $1, u, r from unnest($2::uuid[], $3::text[]) as x(u, r)`,
    [t.id, users.map((u) => u.id), roles],
  );
  t.users.push(...users);
}

/** The last `count` members (never the owner) leave, in one statement. */
async function leave(t: Team, count: number): Promise<void> {
  const gone = t.users.splice(Math.max(t.users.length - count, 1));
  await query('delete from billing_team_members where team_id = $1 and user_id = any($2::uuid[])', [t.id, gone.map((u) => u.id)]);
}

const members = async (t: Team) =>
  (await query<{ n: number }>('select count(*)::int as n from billing_team_members where team_id = $1', [t.id]))[0]?.n ?? 0;
const version = async (t: Team) =>
  Number((await query<{ version: string }>('select version from billing_team_versions where team_id = $1', [t.id]))[0]?.version ?? 0);
const storedQuantity = async (subscriptionId: string) =>
  (await query<{ quantity: number | null }>('select quantity from billing_subscriptions where stripe_subscription_id = $1', [subscriptionId]))[0]?.quantity;

const post = (fn: (req: Request) => Promise<Response>, path: string, user: TestUser, body: unknown) =>
  fn(authedPost(`http://localhost/api/stripe/${path}`, user.token, { body: JSON.stringify(body) }));

/** POST /api/stripe/seats {"team"} as `user`. */
const seats = (user: TestUser, teamId: string, catalog: SeatCatalog = perSeat) =>
  withEnv(envOf(catalog), () => post(seatsEndpoint, 'seats', user, { team: teamId }));

async function statusOf(user: TestUser, teamId: string | null, catalog: SeatCatalog = perSeat): Promise<{ subscription: Record<string, unknown> | null }> {
  const response = await withEnv(envOf(catalog), () =>
    status(new Request(`http://localhost/api/stripe/subscription${teamId ? `?team=${teamId}` : ''}`, { headers: { authorization: `Bearer ${user.token}` } })),
  );
  expect(response.status).toBe(200);
  return (await response.json()) as { subscription: Record<string, unknown> | null };
}

async function deliver(event: unknown, catalog: SeatCatalog = perSeat): Promise<void> {
  const response = await withEnv(envOf(catalog), () => webhook(signedDelivery(JSON.stringify(event))));
  expect(response.status).toBe(200);
}

/** The scheduled seat sync, as Netlify runs it; its summary line. It syncs every team of
 *  this file's catalog, so a test asserts on its own team. */
async function scheduledRun(catalog: SeatCatalog = perSeat): Promise<Record<string, unknown>> {
  const response = await withEnv(envOf(catalog), () =>
    seatSync(new Request('http://localhost/.netlify/functions/stripe-seat-sync', { method: 'POST', body: '{"next_run":"2026-12-04T12:01:00.000Z"}' })),
  );
  return (await response.json()) as Record<string, unknown>;
}

interface Subscribed extends Ids {
  itemId: string;
}

/** The team's per-seat subscription, bought by its owner at `quantity` seats: Stripe holds
 *  it (the bridge) and the webhook brought it. */
async function subscribed(t: Team, quantity: number, catalog: SeatCatalog = perSeat): Promise<Subscribed> {
  const owner = t.users[0];
  if (!owner) throw new Error('a team has an owner');
  const started = await withEnv(envOf(catalog), () => post(checkout, 'checkout', owner, { team: t.id, price: catalog.lookupKey }));
  expect(started.status).toBe(200);
  const [customer] = await query<{ stripe_customer_id: string }>('select stripe_customer_id from billing_customers where user_id = $1', [t.id]);
  if (!customer) throw new Error('checkout stored no team customer');
  const ids: Ids = { userId: owner.id, teamId: t.id, customerId: customer.stripe_customer_id, subscriptionId: `sub_seats${randomBytes(8).toString('hex')}` };
  const at = now() - 60;
  const created = subscriptionEvent('customer.subscription.created', ids, at, {
    status: 'active',
    periodStart: at,
    periodEnd: at + 30 * DAY,
    priceId: await priceIdOf(catalog.lookupKey),
    productId: catalog.product,
    quantity,
  });
  await deliver(checkoutCompletedEvent(ids, at, owner.email), catalog);
  await deliver(created, catalog);
  await postStripeObject(`/v1/subscriptions/${ids.subscriptionId}`, created.data.object);
  const itemId = (created.data.object as Stripe.Subscription).items.data[0]?.id;
  if (!itemId) throw new Error('the subscription has an item');
  return { ...ids, itemId };
}

const updatesOf = (subscriptionId: string) => stripeRequests((r) => r.method === 'POST' && r.path === `/v1/subscriptions/${subscriptionId}`);

/** The events Stripe logged for this subscription (on this file's key), by type: events of
 *  one second have no order in the log. */
async function stripeEventsOf(subscriptionId: string): Promise<Stripe.Event[]> {
  const stripe = new Stripe(KEY, stripeOptions({ secretKey: KEY, apiBase: new URL(process.env['STRIPE_API_BASE'] ?? '') }));
  const all = await stripe.events.list({ limit: 100 }).autoPagingToArray({ limit: 10_000 });
  const order = ['customer.subscription.updated', 'invoiceitem.created', 'invoice.created', 'invoice.finalized', 'invoice.paid'];
  return all.filter((event) => JSON.stringify(event.data.object).includes(subscriptionId)).sort((a, b) => order.indexOf(a.type) - order.indexOf(b.type));
}

describe('the membership version', () => {
  it('goes up by one per statement that changes a team\'s members, however many rows it touches', async () => {
    const t = await team(3);
    expect(await version(t)).toBe(1);
    await join(t, 4);
    expect(await version(t)).toBe(2);
    await leave(t, 2);
    await query(`update billing_team_members set role = 'admin' where team_id = $1 and role = 'member'`, [t.id]);
    expect(await version(t)).toBe(4);
  });
});

describe('checkout of a per-seat plan', () => {
  it('a team buys its member count, at least the plan\'s minimum; a person, or a flat plan, one', async () => {
    const t = await team(3);
    const owner = t.users[0] as TestUser;
    const quantityOf = async (catalog: SeatCatalog, body: Record<string, unknown>) => {
      const response = await withEnv(envOf(catalog), () => post(checkout, 'checkout', owner, body));
      expect(response.status).toBe(200);
      const [session] = (await stripeRequests((r) => r.path === '/v1/checkout/sessions' && r.params['client_reference_id'] === owner.id)).slice(-1);
      expect(session?.params['line_items[0][price]']).toBe(await priceIdOf(String(body['price'])));
      return session?.params['line_items[0][quantity]'];
    };
    expect(await quantityOf(perSeat, { team: t.id, price: perSeat.lookupKey })).toBe('3');
    expect(await quantityOf(invoiced, { team: t.id, price: invoiced.lookupKey })).toBe('5');
    expect(await quantityOf(perSeat, { price: perSeat.lookupKey })).toBe('1');
    expect(await quantityOf(perSeat, { team: t.id, price: `pro_monthly_${perSeat.tag}` })).toBe('1');
  });
});

describe('POST /api/stripe/seats', () => {
  it('when Stripe already bills the member count: 200 {billed, members}, and no Stripe call', async () => {
    const t = await team(3);
    const sub = await subscribed(t, 3);
    const response = await seats(t.users[2] as TestUser, t.id);
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ seats: { billed: 3, members: 3 } });
    expect(await stripeRequests((r) => r.path.startsWith(`/v1/subscriptions/${sub.subscriptionId}`))).toEqual([]);
  });

  it('after members join and leave: the absolute count, under the membership version\'s key', async () => {
    const t = await team(3);
    const sub = await subscribed(t, 3);
    await join(t, 2);
    const grown = await seats(t.users[1] as TestUser, t.id);
    expect(await grown.json()).toEqual({ seats: { billed: 5, members: 5 } });
    await leave(t, 1);
    const shrunk = await seats(t.users[0] as TestUser, t.id);
    expect(await shrunk.json()).toEqual({ seats: { billed: 4, members: 4 } });

    const sent = await updatesOf(sub.subscriptionId);
    expect(sent.map((r) => r.params)).toEqual([
      { 'items[0][id]': sub.itemId, 'items[0][quantity]': '5', proration_behavior: 'create_prorations' },
      { 'items[0][id]': sub.itemId, 'items[0][quantity]': '4', proration_behavior: 'create_prorations' },
    ]);
    const v = await version(t);
    expect(sent.map((r) => r.idempotencyKey)).toEqual([seatIdempotencyKey(sub.subscriptionId, v - 1, 1), seatIdempotencyKey(sub.subscriptionId, v, 1)]);
    expect(seatIdempotencyKey(sub.subscriptionId, v, 1)).toBe(`billing-seats-${sub.subscriptionId}-v${v}`);
    expect((await bridgeSubscription(sub.subscriptionId)).quantity).toBe(4);
    // Stripe's answer is stored before its webhook comes.
    expect(await storedQuantity(sub.subscriptionId)).toBe(4);
  });

  it('a 429 and a 500 are retried, each next send under a key of its own (Stripe keeps a 500 under its key)', async () => {
    const t = await team(2);
    const sub = await subscribed(t, 2);
    await subscriptionFaults(sub.subscriptionId, { statuses: [429, 500] });
    await join(t, 1);
    const response = await seats(t.users[0] as TestUser, t.id);
    expect(await response.json()).toEqual({ seats: { billed: 3, members: 3 } });
    const sent = await updatesOf(sub.subscriptionId);
    expect(sent.map((r) => r.params['items[0][quantity]'])).toEqual(['3', '3', '3']);
    const v = await version(t);
    expect(sent.map((r) => r.idempotencyKey)).toEqual([1, 2, 3].map((n) => seatIdempotencyKey(sub.subscriptionId, v, n)));
    expect(await bridgeSubscription(sub.subscriptionId)).toMatchObject({ quantity: 3, updates: 1 });
  });

  it('sends that keep failing: 500, the failure recorded; the scheduled run waits out its backoff, then sets it', async () => {
    const t = await team(2);
    const sub = await subscribed(t, 2);
    await subscriptionFaults(sub.subscriptionId, { statuses: Array.from({ length: 200 }, () => 500) });
    await join(t, 2);
    const failed = await seats(t.users[0] as TestUser, t.id);
    expect(failed.status).toBe(500);
    expect(await failed.json()).toEqual({ error: 'Internal server error' });
    const [row] = await query<{ holder: string | null; failures: number; last_error: string; waits: boolean }>(
      'select holder, failures, last_error, retry_at > now() as waits from billing_seat_syncs where stripe_subscription_id = $1',
      [sub.subscriptionId],
    );
    expect(row).toMatchObject({ holder: null, failures: 1, waits: true });

    await subscriptionFaults(sub.subscriptionId, { statuses: [] });
    await scheduledRun();
    expect((await bridgeSubscription(sub.subscriptionId)).quantity).toBe(2);
    // Thirty seconds later (the backoff, moved instead of waited for).
    await query(`update billing_seat_syncs set retry_at = now() - interval '1 second' where stripe_subscription_id = $1`, [sub.subscriptionId]);
    expect(await scheduledRun()).toMatchObject({ updated: expect.any(Number) as unknown });
    expect((await bridgeSubscription(sub.subscriptionId)).quantity).toBe(4);
    expect(await query('select failures, last_error, retry_at from billing_seat_syncs where stripe_subscription_id = $1', [sub.subscriptionId])).toEqual([
      { failures: 0, last_error: null, retry_at: null },
    ]);
  });

  it('a subscription stored before its item was: the item is read from Stripe first', async () => {
    const t = await team(1);
    const sub = await subscribed(t, 1);
    await query('update billing_subscriptions set stripe_item_id = null where stripe_subscription_id = $1', [sub.subscriptionId]);
    await join(t, 1);
    expect(await (await seats(t.users[0] as TestUser, t.id)).json()).toEqual({ seats: { billed: 2, members: 2 } });
    expect((await stripeRequests((r) => r.path === `/v1/subscriptions/${sub.subscriptionId}`)).map((r) => r.method)).toEqual(['GET', 'POST']);
  });

  it('400 for a team without a per-seat subscription, 403 for a non-member, 400 for a bad team', async () => {
    const none = await team(1);
    const flat = await team(2);
    const owner = flat.users[0] as TestUser;
    await withEnv(envOf(perSeat), () => post(checkout, 'checkout', owner, { team: flat.id, price: `pro_monthly_${perSeat.tag}` }));
    const [customer] = await query<{ stripe_customer_id: string }>('select stripe_customer_id from billing_customers where user_id = $1', [flat.id]);
    const ids: Ids = { userId: owner.id, teamId: flat.id, customerId: customer?.stripe_customer_id ?? '', subscriptionId: `sub_flat${randomBytes(8).toString('hex')}` };
    await deliver(subscriptionEvent('customer.subscription.created', ids, now() - 60, {
      status: 'active', periodStart: now() - 60, periodEnd: now() + 30 * DAY, productId: `analytics_pro_${perSeat.tag}`,
    }));
    for (const [user, teamId] of [[none.users[0], none.id], [owner, flat.id]] as const) {
      const response = await seats(user as TestUser, teamId);
      expect(response.status).toBe(400);
      expect(await response.json()).toEqual({ error: 'No per-seat subscription' });
    }
    const outsider = await seats(newUser(), flat.id);
    expect(outsider.status).toBe(403);
    expect(await outsider.json()).toEqual({ error: 'Not a member of this team' });
    const bad = await withEnv(envOf(perSeat), () => post(seatsEndpoint, 'seats', owner, { team: 'acme' }));
    expect(await bad.json()).toEqual({ error: 'Invalid team' });
    expect(await stripeRequests((r) => r.path.startsWith(`/v1/subscriptions/${ids.subscriptionId}`))).toEqual([]);
  });
});

describe('what Stripe sends back', () => {
  it('customer.subscription.updated makes the team\'s status show its seats; a person\'s status is as before', async () => {
    const t = await team(3);
    const sub = await subscribed(t, 3);
    const owner = t.users[0] as TestUser;
    expect((await statusOf(owner, t.id)).subscription).toMatchObject({ plan: `business_${perSeat.tag}`, seats: { billed: 3, members: 3 } });

    // Someone changes the quantity in Stripe's Dashboard: the webhook says so.
    const at = now();
    await deliver(subscriptionEvent('customer.subscription.updated', sub, at, {
      status: 'active', periodStart: at - 60, periodEnd: at + 30 * DAY, priceId: await priceIdOf(perSeat.lookupKey), productId: perSeat.product, quantity: 7,
    }));
    expect((await statusOf(owner, t.id)).subscription).toMatchObject({ seats: { billed: 7, members: 3 } });

    // A person's own subscription to the same plan: no seats in their status.
    const buyer = newUser();
    const ids: Ids = { userId: buyer.id, customerId: `cus_seat${randomBytes(6).toString('hex')}`, subscriptionId: `sub_person${randomBytes(6).toString('hex')}` };
    await deliver(checkoutCompletedEvent(ids, at - 60, buyer.email));
    await deliver(subscriptionEvent('customer.subscription.created', ids, at - 60, { status: 'active', periodStart: at - 60, periodEnd: at + 30 * DAY, productId: perSeat.product }));
    const personal = (await statusOf(buyer, null)).subscription;
    expect(personal).toMatchObject({ plan: `business_${perSeat.tag}` });
    expect(personal).not.toHaveProperty('seats');
  });

  it('an update is answered with the events Stripe sends: the subscription updated and two proration items for the next invoice', async () => {
    const t = await team(3);
    const sub = await subscribed(t, 3);
    await join(t, 1);
    await seats(t.users[0] as TestUser, t.id);
    const events = await stripeEventsOf(sub.subscriptionId);
    expect(events.map((e) => e.type)).toEqual(['customer.subscription.updated', 'invoiceitem.created', 'invoiceitem.created']);
    const [updated, ...items] = events as [Stripe.Event, Stripe.Event, Stripe.Event];
    expect((updated.data.object as Stripe.Subscription).items.data[0]?.quantity).toBe(4);
    expect(updated.data.previous_attributes).toMatchObject({ items: { data: [{ id: sub.itemId, quantity: 3 }] } });
    expect(updated.request?.idempotency_key).toBe(seatIdempotencyKey(sub.subscriptionId, await version(t), 1));
    const [unused, remaining] = items.map((e) => e.data.object as Stripe.InvoiceItem).sort((a, b) => a.amount - b.amount) as [Stripe.InvoiceItem, Stripe.InvoiceItem];
    expect([unused.quantity, unused.proration, unused.invoice, unused.amount < 0]).toEqual([3, true, null, true]);
    expect([remaining.quantity, remaining.proration, remaining.invoice, remaining.amount > 0]).toEqual([4, true, null, true]);
    // Three seats' credit and four seats' charge over the same rest of the period.
    expect(Math.abs(remaining.amount / -unused.amount - 4 / 3)).toBeLessThan(0.01);

    // Delivered, the subscription's event is applied (or is already what the answer stored).
    for (const event of events) await deliver(event);
    const outcomes = await query<{ outcome: string }>('select outcome from stripe_events where id = $1', [updated.id]);
    expect(['applied', 'stale']).toContain(outcomes[0]?.outcome);
    expect((await statusOf(t.users[1] as TestUser, t.id)).subscription).toMatchObject({ seats: { billed: 4, members: 4 } });
  });

  it('always_invoice (a catalog option): passed to Stripe, which invoices the proration at once', async () => {
    const t = await team(5);
    const sub = await subscribed(t, 5, invoiced);
    await join(t, 2);
    expect(await (await seats(t.users[0] as TestUser, t.id, invoiced)).json()).toEqual({ seats: { billed: 7, members: 7 } });
    const [sent] = await updatesOf(sub.subscriptionId);
    expect(sent?.params['proration_behavior']).toBe('always_invoice');
    const events = await stripeEventsOf(sub.subscriptionId);
    expect(events.map((e) => e.type)).toEqual([
      'customer.subscription.updated', 'invoiceitem.created', 'invoiceitem.created', 'invoice.created', 'invoice.finalized', 'invoice.paid',
    ]);
    const paid = events.at(-1)?.data.object as Stripe.Invoice;
    expect(paid.billing_reason).toBe('subscription_update');
    expect(paid.lines.data.map((line) => line.quantity)).toEqual([5, 7]);
    expect(paid.amount_paid).toBeGreaterThan(0);
    for (const event of events) await deliver(event, invoiced);
    expect((await statusOf(t.users[0] as TestUser, t.id, invoiced)).subscription).toMatchObject({
      seats: { billed: 7, members: 7 },
      lastPayment: { status: 'paid', amount: paid.amount_paid },
    });

    // Below the minimum, the minimum.
    await leave(t, 4);
    expect(await (await seats(t.users[0] as TestUser, t.id, invoiced)).json()).toEqual({ seats: { billed: 5, members: 3 } });
  });
});

describe('what was missed', () => {
  it('the scheduled run sets a change no one reported', async () => {
    const t = await team(2);
    const sub = await subscribed(t, 2);
    await join(t, 3);
    const line = await scheduledRun();
    expect(line).toMatchObject({ status: 'done', failed: 0 });
    expect(line['due']).toBeGreaterThanOrEqual(1);
    expect(line['updated']).toBeGreaterThanOrEqual(1);
    expect((await bridgeSubscription(sub.subscriptionId)).quantity).toBe(5);
    expect(await storedQuantity(sub.subscriptionId)).toBe(5);
    // Nothing left to do: the next run sends nothing for it.
    await scheduledRun();
    expect(await updatesOf(sub.subscriptionId)).toHaveLength(1);
  });

  it('the reconcile heals a quantity changed in Stripe, through the seat sync', async () => {
    const t = await team(3);
    const sub = await subscribed(t, 3);
    // Someone set 9 seats in Stripe's Dashboard, and the webhook never came.
    const at = now();
    const drifted = subscriptionEvent('customer.subscription.updated', sub, at, {
      status: 'active', periodStart: at - 60, periodEnd: at + 30 * DAY, priceId: await priceIdOf(perSeat.lookupKey), productId: perSeat.product, quantity: 9,
    });
    await postStripeObject(`/v1/subscriptions/${sub.subscriptionId}`, drifted.data.object);

    const config = loadJobConfig({ ...process.env, ...envOf(perSeat) });
    const stripe = new Stripe(KEY, stripeOptions(config.stripe));
    const report = await reconcileSubscriptions({ stripe, store: createStore(config.store), livemode: false, scope: config.scope }, { customerId: sub.customerId });
    expect(report).toMatchObject({ complete: true, seen: 1, applied: 1, seatUpdates: 1, failures: [] });
    expect((await bridgeSubscription(sub.subscriptionId)).quantity).toBe(3);
    expect(await storedQuantity(sub.subscriptionId)).toBe(3);
    const [heal] = await updatesOf(sub.subscriptionId);
    expect(heal?.params['items[0][quantity]']).toBe('3');
  });
});

describe('a burst of membership changes (measured)', () => {
  it('20 changes, each followed at once by POST /seats: Stripe ends at the final count, one update in flight at most', async () => {
    const t = await team(2);
    const sub = await subscribed(t, 2);
    // Each update takes 50 ms more at Stripe, so that overlapping sends would overlap.
    await subscriptionFaults(sub.subscriptionId, { delayMs: 50 });
    const started = performance.now();
    const answers = await withEnv(envOf(perSeat), async () => {
      const calls: Promise<Response>[] = [];
      for (let change = 0; change < 20; change += 1) {
        if (change % 4 === 3) await leave(t, 1);
        else await join(t, 1);
        // The owner and the first member, who stay: any member may call.
        const caller = t.users[change % 2] as TestUser;
        calls.push(post(seatsEndpoint, 'seats', caller, { team: t.id }));
      }
      return Promise.all(calls);
    });
    const elapsedMs = Math.round(performance.now() - started);
    expect(answers.map((a) => a.status)).toEqual(answers.map(() => 200));

    const final = await members(t);
    expect(final).toBe(2 + 15 - 5);
    const stripeSide = await bridgeSubscription(sub.subscriptionId);
    const measured = { changes: 20, calls: answers.length, finalMembers: final, stripeQuantity: stripeSide.quantity, updates: stripeSide.updates, maxInFlight: stripeSide.maxInFlight, elapsedMs };
    await mkdir('test-results', { recursive: true });
    await writeFile('test-results/seats-burst.json', `${JSON.stringify(measured, null, 2)}\n`);
    expect(stripeSide.quantity).toBe(final);
    expect(stripeSide.maxInFlight).toBe(1);
    expect(stripeSide.updates).toBeGreaterThanOrEqual(1);
    expect(await storedQuantity(sub.subscriptionId)).toBe(final);
  });
});
