// What real Stripe accounts send, through the front door: events rendered in an older
// API version than the SDK's, verified events that cannot be read, checkout sessions
// this backend did not create, subscriptions to other products on the same account,
// and more than one signing secret.

import type Stripe from 'stripe';
import { afterEach, describe, expect, it, vi } from 'vitest';
import checkout from '../netlify/functions/stripe-checkout.mts';
import status from '../netlify/functions/stripe-subscription.mts';
import webhook from '../netlify/functions/stripe-webhook.mts';
import { FIXTURE_IDS, renderInVersion } from '../scripts/lib/stripe-events.ts';
import { checkoutCompletedEvent, invoiceEvent, newIds, subscriptionEvent, type Ids } from './support/events.ts';
import { authedPost, env, newUser, query, signedDelivery, type TestUser } from './support/stack.ts';

const DAY = 86_400;
const T = 1_790_000_000;

async function deliver(event: Stripe.Event): Promise<Response> {
  return webhook(signedDelivery(JSON.stringify(event)));
}

async function statusOf(user: TestUser): Promise<{ subscription: Record<string, unknown> | null }> {
  const response = await status(new Request('http://localhost/api/stripe/subscription', { headers: { authorization: `Bearer ${user.token}` } }));
  expect(response.status).toBe(200);
  return (await response.json()) as { subscription: Record<string, unknown> | null };
}

/** A user whose checkout stored their customer, as our checkout does before Stripe's. */
async function linkedUser(): Promise<{ user: TestUser; ids: Ids }> {
  const user = newUser();
  const ids = newIds(user.id);
  await query('insert into billing_customers (user_id, stripe_customer_id, email) values ($1, $2, $3)', [user.id, ids.customerId, user.email]);
  return { user, ids };
}

function logLines(spy: { mock: { calls: unknown[][] } }): Record<string, unknown>[] {
  return spy.mock.calls.map((call) => JSON.parse(String(call[0])) as Record<string, unknown>);
}

afterEach(() => {
  vi.restoreAllMocks();
});

describe('an endpoint on an API version before 2025-03-31.basil', () => {
  it('customer.subscription.updated, period on the subscription: applied, not a 500', async () => {
    const { user, ids } = await linkedUser();
    const event = renderInVersion(subscriptionEvent('customer.subscription.updated', ids, T, { status: 'active', periodStart: T, periodEnd: T + 30 * DAY }), '2024-06-20');
    const response = await deliver(event);
    expect(response.status).toBe(200);
    expect(await query('select outcome, api_version from stripe_events where id = $1', [event.id])).toEqual([{ outcome: 'applied', api_version: '2024-06-20' }]);
    const { subscription } = await statusOf(user);
    expect(subscription).toMatchObject({ status: 'active', access: true, currentPeriodEnd: new Date((T + 30 * DAY) * 1000).toISOString() });
  });

  it('invoice.payment_failed with the subscription at the top: the grace period starts', async () => {
    const { user, ids } = await linkedUser();
    expect((await deliver(renderInVersion(subscriptionEvent('customer.subscription.updated', ids, T, { status: 'past_due', periodStart: T, periodEnd: T + 30 * DAY }), '2024-09-30.acacia'))).status).toBe(200);
    const failed = renderInVersion(invoiceEvent('invoice.payment_failed', ids, T + 60), '2024-09-30.acacia');
    expect((failed.data.object as unknown as Record<string, unknown>)['parent']).toBeUndefined();
    expect((await deliver(failed)).status).toBe(200);
    expect(await query('select outcome from stripe_events where id = $1', [failed.id])).toEqual([{ outcome: 'applied' }]);
    const [row] = await query<{ payment_failed_at: Date | null }>('select payment_failed_at from billing_subscriptions where stripe_subscription_id = $1', [ids.subscriptionId]);
    expect(row?.payment_failed_at?.getTime()).toBe((T + 60) * 1000);
    const { subscription } = await statusOf(user);
    expect(subscription).toMatchObject({ status: 'past_due', graceUntil: new Date((T + 60 + 7 * DAY) * 1000).toISOString() });
  });
});

describe('a verified event that cannot be read', () => {
  it('is acknowledged, logged at error with its id, type and API version, recorded as failed, and a replay applies it', async () => {
    const { ids } = await linkedUser();
    const good = subscriptionEvent('customer.subscription.updated', ids, T, { status: 'active', periodStart: T, periodEnd: T + 30 * DAY });
    const broken = structuredClone(good);
    const object = broken.data.object as unknown as Record<string, unknown>;
    for (const item of (object['items'] as { data: Record<string, unknown>[] }).data) delete item['current_period_end'];

    const errors = vi.spyOn(console, 'error').mockImplementation(() => {});
    const response = await deliver(broken);
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ received: true });
    const [line] = logLines(errors);
    expect(line).toMatchObject({
      level: 'error',
      eventId: good.id,
      eventType: 'customer.subscription.updated',
      apiVersion: good.api_version,
      outcome: 'failed',
      reason: expect.stringContaining('no billing period') as unknown,
    });
    const [recorded] = await query<{ outcome: string; reason: string; api_version: string; attempts: number }>('select * from stripe_events where id = $1', [good.id]);
    expect(recorded).toMatchObject({ outcome: 'failed', api_version: good.api_version, attempts: 1 });
    expect(recorded?.reason).toContain('no billing period');
    expect(await query('select 1 from billing_subscriptions where stripe_subscription_id = $1', [ids.subscriptionId])).toHaveLength(0);

    // Stripe's redelivery of the same bytes fails the same way, and is counted.
    expect((await deliver(broken)).status).toBe(200);
    expect(await query('select attempts from stripe_events where id = $1', [good.id])).toEqual([{ attempts: 2 }]);

    // Replayed once readable (say, after a deploy that reads it): applied, once.
    expect((await deliver(good)).status).toBe(200);
    expect(await query('select outcome from stripe_events where id = $1', [good.id])).toEqual([{ outcome: 'applied' }]);
    expect((await deliver(good)).status).toBe(200);
    expect(await query('select outcome, attempts from stripe_events where id = $1', [good.id])).toEqual([{ outcome: 'applied', attempts: 4 }]);
  });
});

describe('checkout sessions this backend did not create', () => {
  it('a Payment Link session whose buyer typed a user id does not touch that user', async () => {
    const { user, ids } = await linkedUser();
    const stranger = newIds(user.id); // the buyer's own customer and subscription, our victim's user id
    const event = checkoutCompletedEvent(stranger, T);
    Object.assign(event.data.object, { payment_link: 'plink_1SXq0aLkdIwHu7ixLink', metadata: {} });

    expect((await deliver(event)).status).toBe(200);
    expect(await query('select stripe_customer_id from billing_customers where user_id = $1', [user.id])).toEqual([{ stripe_customer_id: ids.customerId }]);
    expect(await query('select 1 from billing_subscriptions where stripe_subscription_id = $1', [stranger.subscriptionId])).toHaveLength(0);
    expect((await statusOf(user)).subscription).toBeNull();
  });

  it('a session naming the user but paid by another customer never replaces the stored one', async () => {
    const { user, ids } = await linkedUser();
    const other = { ...newIds(user.id), userId: user.id };
    const warnings = vi.spyOn(console, 'warn').mockImplementation(() => {});
    const event = checkoutCompletedEvent(other, T);
    expect((await deliver(event)).status).toBe(200);
    expect(logLines(warnings)).toEqual([expect.objectContaining({ eventId: event.id, outcome: 'skipped', reason: "checkout session's customer is not the user's customer" })]);
    expect(await query('select stripe_customer_id from billing_customers where user_id = $1', [user.id])).toEqual([{ stripe_customer_id: ids.customerId }]);
    expect((await statusOf(user)).subscription).toBeNull();
  });
});

describe('subscriptions to another product on the same account', () => {
  const other = { priceId: 'price_other_product', productId: 'prod_other_product' };

  it('grant no access here, and do not stop a checkout', async () => {
    const { user, ids } = await linkedUser();
    expect((await deliver(subscriptionEvent('customer.subscription.created', ids, T, { status: 'active', periodStart: T, periodEnd: T + 30 * DAY, ...other }))).status).toBe(200);
    const [row] = await query<{ for_this_product: boolean; product_id: string }>('select for_this_product, product_id from billing_subscriptions where stripe_subscription_id = $1', [ids.subscriptionId]);
    expect(row).toEqual({ for_this_product: false, product_id: other.productId });
    expect((await statusOf(user)).subscription).toBeNull();
    const response = await checkout(authedPost('http://localhost/api/stripe/checkout', user.token));
    expect(response.status).toBe(200);
  });

  it('beside a subscription to this product, this one is the user\'s', async () => {
    const { user, ids } = await linkedUser();
    const ours = { ...ids, subscriptionId: `${ids.subscriptionId}ours` };
    expect((await deliver(subscriptionEvent('customer.subscription.created', ours, T, { status: 'active', periodStart: T, periodEnd: T + 30 * DAY }))).status).toBe(200);
    expect((await deliver(subscriptionEvent('customer.subscription.created', ids, T + 5, { status: 'past_due', periodStart: T, periodEnd: T + 30 * DAY, ...other }))).status).toBe(200);
    expect((await statusOf(user)).subscription).toMatchObject({ status: 'active', priceId: FIXTURE_IDS.priceId });
    const [account] = await query<{ stripe_subscription_id: string }>('select stripe_subscription_id from billing_accounts where user_id = $1', [user.id]);
    expect(account?.stripe_subscription_id).toBe(ours.subscriptionId);
  });
});

describe('more than one signing secret (a rolled secret, or a second endpoint)', () => {
  it('accepts a delivery signed with any one of them, and nothing else', async () => {
    const saved = env('STRIPE_WEBHOOK_SECRET');
    process.env['STRIPE_WEBHOOK_SECRET'] = `whsec_old_endpoint_secret, ${saved}`;
    try {
      const { ids } = await linkedUser();
      const payload = JSON.stringify(subscriptionEvent('customer.subscription.created', ids, T, { status: 'active', periodStart: T, periodEnd: T + 30 * DAY }));
      expect((await webhook(signedDelivery(payload, { secret: 'whsec_old_endpoint_secret' }))).status).toBe(200);
      expect((await webhook(signedDelivery(payload, { secret: saved }))).status).toBe(200);
      expect((await webhook(signedDelivery(payload, { secret: 'whsec_somebody_else' }))).status).toBe(400);
    } finally {
      process.env['STRIPE_WEBHOOK_SECRET'] = saved;
    }
  });
});
