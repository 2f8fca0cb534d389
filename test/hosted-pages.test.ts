// The local Checkout and portal pages (scripts/stack/hosted-pages.ts) with seats, over
// HTTP, without a browser: a bridge of this file's own over the stack's stripe-mock (its
// portal configurations are then this file's alone), an app registered with it whose
// webhook is the real webhook function, so every event the pages send is verified and
// applied to the test database, as with `npm run dev`.
//
// - Checkout takes the session's line-item quantity: it shows it, charges for it, and
//   the subscription it makes (events, database, the completed session sync reads)
//   carries it; a renewal keeps it. A team's session is the team's.
// - The portal shows a seats control only where the portal configuration allows
//   quantity changes, and a change is Stripe's own request, POST /v1/subscriptions/<id>
//   with items[0][id] and items[0][quantity], sent through the bridge.

import { randomUUID } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import Stripe from 'stripe';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import webhook from '../netlify/functions/stripe-webhook.mts';
import { LOCAL_STRIPE_PRODUCT_ID } from '../scripts/lib/local-defaults.ts';
import { itemId } from '../scripts/lib/stripe-events.ts';
import { startStripeMockBridge, type RecordedStripeRequest, type StripeMockBridge } from '../scripts/stack/stripe-mock-bridge.ts';
import { env, query } from './support/stack.ts';

const APP = 'https://seats.example.com';

let bridge: StripeMockBridge;
let receiver: Server;
let stripe: Stripe;
let priceId: string;
/** Every event the pages delivered, with the webhook's answer. */
const delivered: { event: Stripe.Event; status: number }[] = [];

beforeAll(async () => {
  // The webhook function itself answers the pages' deliveries.
  receiver = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      const request = new Request('http://localhost/api/stripe/webhook', {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'stripe-signature': String(req.headers['stripe-signature']) },
        body,
      });
      void webhook(request).then(async (answer) => {
        delivered.push({ event: JSON.parse(body) as Stripe.Event, status: answer.status });
        res.writeHead(answer.status, { 'content-type': 'application/json' });
        res.end(await answer.text());
      });
    });
  });
  await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
  const port = (receiver.address() as AddressInfo).port;

  bridge = await startStripeMockBridge(env('STRIPE_MOCK_URL'), 0, {
    apps: [{ origin: APP, webhookUrl: `http://127.0.0.1:${port}/`, webhookSecret: env('STRIPE_WEBHOOK_SECRET'), databaseUrl: env('DATABASE_URL') }],
  });
  const base = new URL(bridge.url);
  stripe = new Stripe(env('STRIPE_SECRET_KEY'), { host: base.hostname, port: Number(base.port), protocol: 'http' });
  // A price of the product this backend sells (STRIPE_PRODUCT_ID), as the bridge remembers it.
  await stripe.products.create({ id: LOCAL_STRIPE_PRODUCT_ID, name: 'Analytics Team' });
  priceId = (await stripe.prices.create({ product: LOCAL_STRIPE_PRODUCT_ID, unit_amount: 2900, currency: 'eur', recurring: { interval: 'month' } })).id;
});

afterAll(async () => {
  await bridge?.close();
  await new Promise((resolve) => receiver?.close(resolve));
});

/** A team with its owner, and the team's Stripe customer linked as our checkout links it. */
async function newTeam(): Promise<{ teamId: string; ownerId: string; customerId: string }> {
  const teamId = randomUUID();
  const ownerId = randomUUID();
  await query('insert into billing_team_members (team_id, user_id, role) values ($1, $2, $3)', [teamId, ownerId, 'owner']);
  const customerId = (await stripe.customers.create({ metadata: { teamId, userId: ownerId } })).id.replace(/^cus_/, `cus_${teamId.slice(0, 8)}`);
  await query('select billing_link_customer($1, $2, $3)', [teamId, customerId, null]);
  return { teamId, ownerId, customerId };
}

/** A Checkout Session as our checkout makes one for a team, with `quantity` seats. */
async function teamCheckout(team: { teamId: string; ownerId: string; customerId: string }, quantity: number): Promise<Stripe.Checkout.Session> {
  const metadata = { userId: team.ownerId, teamId: team.teamId };
  return stripe.checkout.sessions.create({
    mode: 'subscription',
    customer: team.customerId,
    line_items: [{ price: priceId, quantity }],
    success_url: `${APP}/dashboard?checkout=success&session_id={CHECKOUT_SESSION_ID}`,
    cancel_url: `${APP}/dashboard?checkout=canceled`,
    client_reference_id: team.ownerId,
    metadata,
    subscription_data: { metadata },
  });
}

const page = async (url: string, form?: Record<string, string>): Promise<Response> =>
  fetch(url, { redirect: 'manual', ...(form && { method: 'POST', body: new URLSearchParams(form) }) });

async function requests(filter: (r: RecordedStripeRequest) => boolean): Promise<RecordedStripeRequest[]> {
  return ((await (await fetch(`${bridge.url}/__bridge/requests`)).json()) as RecordedStripeRequest[]).filter(filter);
}

/** A team that paid for three seats at the local Checkout, and its portal session. */
async function paidTeam(configuration?: string): Promise<{ team: Awaited<ReturnType<typeof newTeam>>; subscriptionId: string; portalUrl: string }> {
  const team = await newTeam();
  const session = await teamCheckout(team, 3);
  expect((await page(session.url ?? '', { card: '4242 4242 4242 4242' })).status).toBe(303);
  const [row] = await query<{ stripe_subscription_id: string }>('select stripe_subscription_id from billing_subscriptions where user_id = $1', [team.teamId]);
  const portal = await stripe.billingPortal.sessions.create({ customer: team.customerId, return_url: `${APP}/dashboard`, ...(configuration && { configuration }) });
  return { team, subscriptionId: row?.stripe_subscription_id ?? '', portalUrl: portal.url };
}

/** A portal configuration as billing:setup makes one, with or without quantity changes. */
async function portalConfiguration(quantity: 'none' | 'allowed' | 'product-disabled'): Promise<string> {
  const configuration = await stripe.billingPortal.configurations.create({
    features: {
      subscription_update: {
        enabled: true,
        default_allowed_updates: quantity === 'none' ? ['price'] : ['price', 'quantity'],
        proration_behavior: 'always_invoice',
        products: [
          {
            product: LOCAL_STRIPE_PRODUCT_ID,
            prices: [priceId],
            ...(quantity !== 'none' && { adjustable_quantity: { enabled: quantity === 'allowed', minimum: 1, maximum: 10 } }),
          },
        ],
      },
    },
  });
  return configuration.id;
}

describe('the local Checkout takes the session\'s quantity', () => {
  it('shows it, charges for it, and the team\'s subscription carries it: events, database, the session sync reads; a renewal keeps it', async () => {
    const team = await newTeam();
    const session = await teamCheckout(team, 3);
    expect(session.url).toBe(`${bridge.url}/checkout/${session.id}`);

    const shown = await (await page(session.url ?? '')).text();
    expect(shown).toContain('<p id="quantity">Quantity: 3 (€29.00 each)</p>');
    expect(shown).toMatch(/<p class="price" id="price"><strong>€87\.00<\/strong> per month<\/p>/);

    const paid = await page(session.url ?? '', { card: '4242 4242 4242 4242' });
    expect(paid.status).toBe(303);
    expect(paid.headers.get('location')).toBe(`${APP}/dashboard?checkout=success&session_id=${session.id}`);

    const mine = delivered.filter(({ event }) => (event.data.object as { customer?: unknown }).customer === team.customerId);
    expect(mine.map(({ event, status }) => `${event.type} ${status}`)).toEqual([
      'customer.subscription.created 200',
      'invoice.paid 200',
      'customer.subscription.updated 200',
      'checkout.session.completed 200',
    ]);
    const created = mine[0]?.event.data.object as Stripe.Subscription;
    expect(created.items.data.map((item) => [item.price.id, item.quantity])).toEqual([[priceId, 3]]);
    // The team's, bought by its owner: metadata as our checkout sets it.
    expect(created.metadata).toEqual({ userId: team.ownerId, teamId: team.teamId });
    expect((mine[1]?.event.data.object as Stripe.Invoice).amount_paid).toBe(8700);

    const [row] = await query<{ user_id: string; quantity: number; status: string }>(
      'select user_id, quantity, status from billing_subscriptions where stripe_customer_id = $1',
      [team.customerId],
    );
    expect(row).toEqual({ user_id: team.teamId, quantity: 3, status: 'active' });
    // What POST /api/stripe/sync reads: the completed session, with its subscription.
    const completed = await stripe.checkout.sessions.retrieve(session.id, { expand: ['subscription'] });
    expect(completed.status).toBe('complete');
    expect(completed.metadata).toEqual({ userId: team.ownerId, teamId: team.teamId });
    expect((completed.subscription as Stripe.Subscription).items.data[0]?.quantity).toBe(3);

    // The renewal (the portal's test clock) bills the same three seats.
    const portal = await stripe.billingPortal.sessions.create({ customer: team.customerId, return_url: `${APP}/dashboard` });
    expect((await page(portal.url, { action: 'advance' })).status).toBe(303);
    const renewal = delivered.filter(({ event }) => (event.data.object as { customer?: unknown }).customer === team.customerId).slice(4);
    expect(renewal.map(({ event }) => event.type)).toEqual(['customer.subscription.updated', 'invoice.paid']);
    expect((renewal[0]?.event.data.object as Stripe.Subscription).items.data[0]?.quantity).toBe(3);
    expect((renewal[1]?.event.data.object as Stripe.Invoice).amount_paid).toBe(8700);
  });

  it('takes quantity 1 when the session names none, and says so', async () => {
    const team = await newTeam();
    const metadata = { userId: team.ownerId, teamId: team.teamId };
    const session = await stripe.checkout.sessions.create({
      mode: 'subscription',
      customer: team.customerId,
      line_items: [{ price: priceId }],
      success_url: `${APP}/dashboard?checkout=success&session_id={CHECKOUT_SESSION_ID}`,
      client_reference_id: team.ownerId,
      metadata,
    });
    expect(await (await page(session.url ?? '')).text()).toContain('<p id="quantity">Quantity: 1 (€29.00 each)</p>');
  });
});

describe('the local portal changes seats where the portal configuration allows it', () => {
  it('shows no seats control when the configuration does not allow quantity changes', async () => {
    const { portalUrl } = await paidTeam(await portalConfiguration('none'));
    const shown = await (await page(portalUrl)).text();
    expect(shown).toContain('Quantity: 3');
    expect(shown).not.toContain('Update seats');
    const refused = await page(portalUrl, { action: 'quantity', quantity: '4' });
    expect(refused.status).toBe(409);
    expect(await refused.text()).toContain('This portal does not change the quantity of this subscription.');
  });

  it('shows none either when the product\'s adjustable_quantity is disabled', async () => {
    const { portalUrl } = await paidTeam(await portalConfiguration('product-disabled'));
    expect(await (await page(portalUrl)).text()).not.toContain('Update seats');
  });

  it('sends Stripe\'s own update, items[0][id] and items[0][quantity], within the configured bounds', async () => {
    const { subscriptionId, portalUrl } = await paidTeam(await portalConfiguration('allowed'));
    const shown = await (await page(portalUrl)).text();
    expect(shown).toMatch(/<input id="quantity" name="quantity" type="number" inputmode="numeric" required min="1" max="10" value="3"/);
    expect(shown).toContain('€29.00 per seat per month, prorated for the rest of this period.');

    for (const outOfBounds of ['0', '11', '2.5', '']) {
      const refused = await page(portalUrl, { action: 'quantity', quantity: outOfBounds });
      expect(refused.status, outOfBounds).toBe(409);
      expect(await refused.text()).toContain('Choose from 1 to 10 seats.');
    }
    const isUpdate = (r: RecordedStripeRequest) => r.method === 'POST' && r.path === `/v1/subscriptions/${subscriptionId}`;
    expect(await requests(isUpdate)).toEqual([]);

    const changed = await page(portalUrl, { action: 'quantity', quantity: '5' });
    expect(changed.status).toBe(303);
    const notice = new URL(changed.headers.get('location') ?? '', bridge.url).searchParams.get('notice');
    expect(notice).toBe('Seats changed to 5.');
    expect((await requests(isUpdate)).map((r) => r.params)).toEqual([
      { 'items[0][id]': itemId(subscriptionId), 'items[0][quantity]': '5', proration_behavior: 'always_invoice' },
    ]);
  });
});
