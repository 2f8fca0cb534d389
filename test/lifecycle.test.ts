// The subscription lifecycle through the webhook, checkout, portal and status
// functions, against the real local database.
import type Stripe from 'stripe';
import { describe, expect, it } from 'vitest';
import checkout from '../netlify/functions/stripe-checkout.mts';
import portal from '../netlify/functions/stripe-portal.mts';
import status from '../netlify/functions/stripe-subscription.mts';
import webhook from '../netlify/functions/stripe-webhook.mts';
import { customerIdempotencyKey } from '../src/accounts/checkout.ts';
import { SUBSCRIPTION_STATUSES } from '../src/database/access.ts';
import {
  checkoutCompletedEvent,
  customerDeletedEvent,
  invoiceEvent,
  newIds,
  subscriptionEvent,
  type Ids,
  type SubscriptionState,
} from './support/events.ts';
import { authedPost, newUser, query, signedDelivery, stripeRequests, type TestUser } from './support/stack.ts';
import { anchoredMonth, calendarMonth, untouchedUsage } from './support/usage.ts';

const DAY = 86_400;
const T = 1_790_000_000; // 2026-09-21

async function deliver(...events: Stripe.Event[]): Promise<number[]> {
  const statuses: number[] = [];
  for (const event of events) statuses.push((await webhook(signedDelivery(JSON.stringify(event)))).status);
  return statuses;
}

interface Row {
  user_id: string | null;
  status: string | null;
  price_id: string | null;
  quantity: number | null;
  current_period_start: Date | null;
  current_period_end: Date | null;
  cancel_at_period_end: boolean;
  canceled_at: Date | null;
  ended_at: Date | null;
  trial_end: Date | null;
  state_event_id: string | null;
  last_payment_status: string | null;
  last_payment_amount: string | null;
  hosted_invoice_url: string | null;
  next_payment_attempt: Date | null;
  payment_failed_at: Date | null;
  trial_will_end_at: Date | null;
}

async function row(ids: Ids): Promise<Row | undefined> {
  return (await query<Row>('select * from billing_subscriptions where stripe_subscription_id = $1', [ids.subscriptionId]))[0];
}

const seconds = (date: Date | null | undefined) => (date ? date.getTime() / 1000 : null);

function active(extra: Partial<SubscriptionState> = {}): SubscriptionState {
  return { status: 'active', periodStart: T, periodEnd: T + 30 * DAY, ...extra };
}

async function subscribedUser(state: SubscriptionState = active()): Promise<{ user: TestUser; ids: Ids }> {
  const user = newUser();
  const ids = newIds(user.id);
  await deliver(checkoutCompletedEvent(ids, T), subscriptionEvent('customer.subscription.created', ids, T, state));
  return { user, ids };
}

describe('each event type, applied from its own object', () => {
  it('customer.subscription.created stores status, price, quantity, period and the user (from metadata)', async () => {
    const user = newUser();
    const ids = newIds(user.id);
    expect(await deliver(subscriptionEvent('customer.subscription.created', ids, T, active({ priceId: 'price_pro', quantity: 3 })))).toEqual([200]);
    expect(await row(ids)).toMatchObject({ user_id: user.id, status: 'active', price_id: 'price_pro', quantity: 3, cancel_at_period_end: false });
    const stored = await row(ids);
    expect(seconds(stored?.current_period_start)).toBe(T);
    expect(seconds(stored?.current_period_end)).toBe(T + 30 * DAY);
  });

  it('customer.subscription.updated: renewal moves the period, cancel_at_period_end is kept', async () => {
    const { ids } = await subscribedUser();
    await deliver(subscriptionEvent('customer.subscription.updated', ids, T + 30 * DAY, active({ periodStart: T + 30 * DAY, periodEnd: T + 60 * DAY, cancelAtPeriodEnd: true })));
    const stored = await row(ids);
    expect(seconds(stored?.current_period_end)).toBe(T + 60 * DAY);
    expect(stored?.cancel_at_period_end).toBe(true);
  });

  it('customer.subscription.deleted: canceled, with when', async () => {
    const { ids } = await subscribedUser();
    await deliver(subscriptionEvent('customer.subscription.deleted', ids, T + 30 * DAY, active({ status: 'canceled', canceledAt: T + 5 * DAY, endedAt: T + 30 * DAY })));
    const stored = await row(ids);
    expect(stored?.status).toBe('canceled');
    expect(seconds(stored?.canceled_at)).toBe(T + 5 * DAY);
    expect(seconds(stored?.ended_at)).toBe(T + 30 * DAY);
  });

  it('customer.subscription.paused and .resumed', async () => {
    const { ids } = await subscribedUser({ status: 'trialing', periodStart: T, periodEnd: T + 14 * DAY, trialStart: T, trialEnd: T + 14 * DAY });
    await deliver(subscriptionEvent('customer.subscription.paused', ids, T + 14 * DAY, { status: 'paused', periodStart: T, periodEnd: T + 14 * DAY }));
    expect((await row(ids))?.status).toBe('paused');
    await deliver(subscriptionEvent('customer.subscription.resumed', ids, T + 20 * DAY, active({ periodStart: T + 20 * DAY, periodEnd: T + 50 * DAY })));
    expect((await row(ids))?.status).toBe('active');
  });

  it('customer.subscription.trial_will_end is recorded', async () => {
    const trial = { status: 'trialing', periodStart: T, periodEnd: T + 14 * DAY, trialStart: T, trialEnd: T + 14 * DAY } as const;
    const { ids } = await subscribedUser(trial);
    await deliver(subscriptionEvent('customer.subscription.trial_will_end', ids, T + 11 * DAY, trial));
    const stored = await row(ids);
    expect(seconds(stored?.trial_will_end_at)).toBe(T + 11 * DAY);
    expect(seconds(stored?.trial_end)).toBe(T + 14 * DAY);
  });

  it('invoice.payment_failed starts the grace period; invoice.paid ends it', async () => {
    const { ids } = await subscribedUser();
    await deliver(invoiceEvent('invoice.payment_failed', ids, T + 30 * DAY, { amount: 900, nextAttempt: T + 33 * DAY }));
    let stored = await row(ids);
    expect(stored).toMatchObject({ last_payment_status: 'failed', last_payment_amount: '900' });
    expect(stored?.hosted_invoice_url).toMatch(/^https:\/\/invoice\.stripe\.com\//);
    expect(seconds(stored?.payment_failed_at)).toBe(T + 30 * DAY);
    expect(seconds(stored?.next_payment_attempt)).toBe(T + 33 * DAY);

    await deliver(invoiceEvent('invoice.payment_failed', ids, T + 33 * DAY));
    expect(seconds((await row(ids))?.payment_failed_at)).toBe(T + 30 * DAY); // the first failure counts

    await deliver(invoiceEvent('invoice.paid', ids, T + 35 * DAY, { amount: 900, nextAttempt: null }));
    stored = await row(ids);
    expect(stored).toMatchObject({ last_payment_status: 'paid', payment_failed_at: null, next_payment_attempt: null });
  });

  it('invoice.payment_action_required is recorded as the last payment outcome', async () => {
    const { ids } = await subscribedUser();
    await deliver(invoiceEvent('invoice.payment_action_required', ids, T + 30 * DAY));
    expect((await row(ids))?.last_payment_status).toBe('action_required');
  });

  it('customer.deleted unlinks the user and ends their subscription', async () => {
    const { user, ids } = await subscribedUser();
    await deliver(customerDeletedEvent(ids, T + 40 * DAY));
    expect(await query('select 1 from billing_customers where user_id = $1', [user.id])).toHaveLength(0);
    const account = async () =>
      (await query<{ status: string; ended_at: Date; stripe_customer_id: string | null }>(
        'select status, ended_at, stripe_customer_id from billing_accounts where user_id = $1',
        [user.id],
      ))[0];
    expect(await account()).toMatchObject({ status: 'canceled', stripe_customer_id: null });
    expect(seconds((await account())?.ended_at)).toBe(T + 40 * DAY);

    // An event for it delivered late cannot bring it back.
    await deliver(subscriptionEvent('customer.subscription.updated', ids, T + 39 * DAY, active()));
    expect((await account())?.status).toBe('canceled');
    const statusBody = (await (await status(new Request('http://localhost/api/stripe/subscription', { headers: { authorization: `Bearer ${user.token}` } }))).json()) as { subscription: { status: string; access: boolean } };
    expect(statusBody.subscription).toMatchObject({ status: 'canceled', access: false });

    // Their next checkout creates a new customer, with a new idempotency key.
    expect((await checkout(authedPost('http://localhost/api/stripe/checkout', user.token))).status).toBe(200);
    const creates = await stripeRequests((r) => r.path === '/v1/customers' && r.params['metadata[userId]'] === user.id);
    expect(creates.map((r) => r.idempotencyKey)).toEqual([customerIdempotencyKey(user.id, ids.customerId)]);
    const [link] = await query<{ stripe_customer_id: string }>('select stripe_customer_id from billing_customers where user_id = $1', [user.id]);
    expect(link?.stripe_customer_id).toMatch(/^cus_/);
    expect(link?.stripe_customer_id).not.toBe(ids.customerId);
  });
});

describe('order and duplicates', () => {
  it('an older event delivered after a newer one changes nothing', async () => {
    const { ids } = await subscribedUser();
    await deliver(subscriptionEvent('customer.subscription.deleted', ids, T + 30 * DAY, active({ status: 'canceled', endedAt: T + 30 * DAY })));
    await deliver(subscriptionEvent('customer.subscription.updated', ids, T + 10 * DAY, active({ cancelAtPeriodEnd: true })));
    expect(await row(ids)).toMatchObject({ status: 'canceled', cancel_at_period_end: false });
  });

  it('in the same second, the state further along the lifecycle wins, in either order', async () => {
    for (const order of ['incomplete first', 'active first']) {
      const user = newUser();
      const ids = newIds(user.id);
      const created = subscriptionEvent('customer.subscription.created', ids, T, { status: 'incomplete', periodStart: T, periodEnd: T + 30 * DAY });
      const updated = subscriptionEvent('customer.subscription.updated', ids, T, active());
      await deliver(...(order === 'incomplete first' ? [created, updated] : [updated, created]));
      expect((await row(ids))?.status).toBe('active');
    }
  });

  it('a subscription event before checkout.session.completed is kept, and linked when the checkout arrives', async () => {
    const user = newUser();
    const ids = newIds(user.id);
    await deliver(subscriptionEvent('customer.subscription.created', ids, T + 1, active({ withoutUserMetadata: true })));
    expect(await row(ids)).toMatchObject({ user_id: null, status: 'active' });

    await deliver(checkoutCompletedEvent(ids, T));
    expect(await row(ids)).toMatchObject({ user_id: user.id, status: 'active' });
    expect(await query('select stripe_customer_id from billing_customers where user_id = $1', [user.id])).toEqual([{ stripe_customer_id: ids.customerId }]);
  });

  it('an invoice before its subscription is kept and joined by the subscription later', async () => {
    const user = newUser();
    const ids = newIds(user.id);
    await deliver(invoiceEvent('invoice.paid', ids, T + 2), checkoutCompletedEvent(ids, T + 1), subscriptionEvent('customer.subscription.created', ids, T, active()));
    expect(await row(ids)).toMatchObject({ user_id: user.id, status: 'active', last_payment_status: 'paid' });
  });

  it('an event of the other mode (livemode) is acknowledged and never applied', async () => {
    const user = newUser();
    const ids = newIds(user.id);
    const event = subscriptionEvent('customer.subscription.created', ids, T, active());
    event.livemode = true;
    expect(await deliver(event)).toEqual([200]);
    expect(await row(ids)).toBeUndefined();
    expect(await query('select outcome, reason from stripe_events where id = $1', [event.id])).toEqual([
      { outcome: 'skipped', reason: 'livemode does not match STRIPE_SECRET_KEY' },
    ]);
  });
});

describe('GET /api/stripe/subscription', () => {
  const get = (token: string) => status(new Request('http://localhost/api/stripe/subscription', { headers: { authorization: `Bearer ${token}` } }));

  it('says null to a user who never subscribed', async () => {
    const response = await get(newUser().token);
    expect(response.status).toBe(200);
    expect(response.headers.get('access-control-allow-origin')).toBe('*');
    expect(response.headers.get('access-control-allow-methods')).toBe('GET, OPTIONS');
    expect(await response.json()).toEqual({ subscription: null, ...untouchedUsage(null, calendarMonth()) });
  });

  it('shows an active subscription with its last payment, in ISO 8601', async () => {
    const { user, ids } = await subscribedUser(active({ periodStart: T, periodEnd: T + 30 * DAY, priceId: 'price_pro' }));
    await deliver(invoiceEvent('invoice.paid', ids, T + 60, { amount: 900, nextAttempt: null }));
    const body = (await (await get(user.token)).json()) as Record<string, unknown>;
    expect(body).toEqual({
      subscription: {
        status: 'active',
        access: true,
        accessReason: 'active',
        priceId: 'price_pro',
        currentPeriodEnd: new Date((T + 30 * DAY) * 1000).toISOString(),
        cancelAtPeriodEnd: false,
        trialEnd: null,
        graceUntil: null,
        lastPayment: {
          status: 'paid',
          at: new Date((T + 60) * 1000).toISOString(),
          amount: 900,
          currency: 'eur',
          invoiceUrl: expect.stringMatching(/^https:\/\/invoice\.stripe\.com\//) as unknown,
          nextPaymentAttempt: null,
        },
        // No catalog (BILLING_CATALOG unset): no plan, no features.
        plan: null,
        interval: null,
        features: [],
        scheduledChange: null,
      },
      // A price the catalog does not sell: no plan, so the free entry; the period is
      // over, so the window is the month anchored on its start that holds now.
      ...untouchedUsage(null, anchoredMonth(new Date(T * 1000))),
    });
  });

  it('shows a past-due subscriber in their grace period, and until when', async () => {
    const now = Math.floor(Date.now() / 1000);
    const { user, ids } = await subscribedUser(active({ periodStart: now - 30 * DAY, periodEnd: now }));
    await deliver(
      invoiceEvent('invoice.payment_failed', ids, now - 2 * DAY),
      subscriptionEvent('customer.subscription.updated', ids, now - 2 * DAY + 1, active({ status: 'past_due', periodStart: now - 2 * DAY, periodEnd: now + 28 * DAY })),
    );
    const body = (await (await get(user.token)).json()) as { subscription: Record<string, unknown> };
    expect(body.subscription).toMatchObject({
      status: 'past_due',
      access: true,
      accessReason: 'grace_period',
      graceUntil: new Date((now - 2 * DAY + 7 * DAY) * 1000).toISOString(),
      lastPayment: { status: 'failed' },
    });
  });

  it('shows the trial end of a trialing subscriber, and no access once canceled', async () => {
    const { user, ids } = await subscribedUser({ status: 'trialing', periodStart: T, periodEnd: T + 14 * DAY, trialStart: T, trialEnd: T + 14 * DAY });
    expect(((await (await get(user.token)).json()) as { subscription: Record<string, unknown> }).subscription).toMatchObject({
      status: 'trialing',
      access: true,
      trialEnd: new Date((T + 14 * DAY) * 1000).toISOString(),
    });
    await deliver(subscriptionEvent('customer.subscription.deleted', ids, T + 14 * DAY, { status: 'canceled', periodStart: T, periodEnd: T + 14 * DAY, endedAt: T + 14 * DAY }));
    expect(((await (await get(user.token)).json()) as { subscription: Record<string, unknown> }).subscription).toMatchObject({
      status: 'canceled',
      access: false,
      accessReason: 'canceled',
    });
  });

  it('answers 401 without a token, 405 to POST, and the preflight', async () => {
    const unauthenticated = await status(new Request('http://localhost/api/stripe/subscription'));
    expect(unauthenticated.status).toBe(401);
    const post = await status(new Request('http://localhost/api/stripe/subscription', { method: 'POST' }));
    expect(post.status).toBe(405);
    expect(post.headers.get('allow')).toBe('GET, OPTIONS');
    const preflight = await status(new Request('http://localhost/api/stripe/subscription', { method: 'OPTIONS' }));
    expect(preflight.status).toBe(204);
  });
});

describe('checkout and portal decide by status', () => {
  it.each(SUBSCRIPTION_STATUSES.map((s) => [s] as const))('a %s subscriber', async (subscriptionStatus) => {
    const { user } = await subscribedUser(active({ status: subscriptionStatus }));
    const checkoutResponse = await checkout(authedPost('http://localhost/api/stripe/checkout', user.token));
    const mayCheckout = subscriptionStatus === 'canceled' || subscriptionStatus === 'incomplete_expired';
    expect(checkoutResponse.status).toBe(mayCheckout ? 200 : 400);
    if (!mayCheckout) expect(await checkoutResponse.json()).toEqual({ error: 'Already subscribed' });
    // Anyone who has had a subscription may open the portal, to pay, renew or see invoices.
    expect((await portal(authedPost('http://localhost/api/stripe/portal', user.token))).status).toBe(200);
  });
});
