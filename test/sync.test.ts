// POST /api/stripe/sync: the dashboard's eager read of a just-paid Checkout Session.
// stripe-mock answers any session id with one fixture that has no metadata, so the
// sessions here are served by the local bridge (POST /__bridge/objects), shaped by the
// shared builder as Stripe would return them, with the subscription expanded.

import { describe, expect, it } from 'vitest';
import checkout from '../netlify/functions/stripe-checkout.mts';
import sync from '../netlify/functions/stripe-sync.mts';
import webhook from '../netlify/functions/stripe-webhook.mts';
import { checkoutCompletedEvent, subscriptionEvent, type Ids } from './support/events.ts';
import { authedPost, expectCors, newUser, postStripeObject, query, signedDelivery, type TestUser } from './support/stack.ts';

const DAY = 86_400;

/** A user who went through our checkout: their customer is stored. */
async function checkedOut(): Promise<{ user: TestUser; ids: Ids }> {
  const user = newUser();
  expect((await checkout(authedPost('http://localhost/api/stripe/checkout', user.token))).status).toBe(200);
  const [link] = await query<{ stripe_customer_id: string }>('select stripe_customer_id from billing_customers where user_id = $1', [user.id]);
  if (!link) throw new Error('checkout stored no customer');
  const tag = user.id.slice(0, 8);
  return { user, ids: { userId: user.id, customerId: link.stripe_customer_id, subscriptionId: `sub_sync${tag}` } };
}

/** The session Stripe holds for `ids`, its subscription expanded; served by the bridge. */
async function stripeHas(ids: Ids, edit: (session: Record<string, unknown>) => void = () => {}): Promise<{ id: string; subscription: Record<string, unknown> }> {
  const now = Math.floor(Date.now() / 1000);
  const session = checkoutCompletedEvent(ids, now).data.object as unknown as Record<string, unknown>;
  const subscription = subscriptionEvent('customer.subscription.created', ids, now, { status: 'active', periodStart: now, periodEnd: now + 30 * DAY }).data.object as unknown as Record<string, unknown>;
  session['subscription'] = subscription;
  edit(session);
  const id = String(session['id']);
  await postStripeObject(`/v1/checkout/sessions/${id}`, session);
  return { id, subscription };
}

const syncRequest = (token: string | null, body: unknown) =>
  authedPost('http://localhost/api/stripe/sync', token, { body: typeof body === 'string' ? body : JSON.stringify(body) });

describe('POST /api/stripe/sync', () => {
  it('applies the paid session before any webhook, and answers the status body', async () => {
    const { user, ids } = await checkedOut();
    const session = await stripeHas(ids);
    expect(await query('select 1 from billing_subscriptions where user_id = $1', [user.id])).toHaveLength(0);

    const response = await sync(syncRequest(user.token, { sessionId: session.id }));
    expect(response.status).toBe(200);
    expectCors(response);
    expect(await response.json()).toMatchObject({ subscription: { status: 'active', access: true, accessReason: 'active' } });

    // Synced twice, then the webhook: still one subscription, still active.
    expect((await sync(syncRequest(user.token, { sessionId: session.id }))).status).toBe(200);
    const completed = checkoutCompletedEvent(ids, Math.floor(Date.now() / 1000));
    expect((await webhook(signedDelivery(JSON.stringify(completed)))).status).toBe(200);
    const rows = await query<{ status: string }>('select status from billing_subscriptions where user_id = $1', [user.id]);
    expect(rows).toEqual([{ status: 'active' }]);
  });

  it('answers 404 for a session that is not the caller\'s, and does not touch it', async () => {
    const { ids } = await checkedOut();
    const session = await stripeHas(ids);
    const stranger = await checkedOut();
    const response = await sync(syncRequest(stranger.user.token, { sessionId: session.id }));
    expect(response.status).toBe(404);
    expect(await response.json()).toEqual({ error: 'Checkout session not found' });
    expect(await query('select 1 from billing_subscriptions where stripe_subscription_id = $1', [ids.subscriptionId])).toHaveLength(0);

    // Stripe's fixture for any other id: a session this backend did not make.
    const unknown = await sync(syncRequest(stranger.user.token, { sessionId: 'cs_test_notours0000000000' }));
    expect(unknown.status).toBe(404);
  });

  it('answers 400 for a session not complete yet, and for a body without a session id', async () => {
    const { user, ids } = await checkedOut();
    const open = await stripeHas(ids, (s) => Object.assign(s, { status: 'open', subscription: null, payment_status: 'unpaid' }));
    const response = await sync(syncRequest(user.token, { sessionId: open.id }));
    expect(response.status).toBe(400);
    expect(await response.json()).toEqual({ error: 'Checkout not complete' });
    for (const body of ['', '{}', 'not json', { sessionId: 'sub_123' }, { sessionId: 42 }]) {
      const bad = await sync(syncRequest(user.token, body));
      expect(bad.status, JSON.stringify(body)).toBe(400);
      expect(await bad.json()).toEqual({ error: expect.any(String) as unknown });
    }
  });

  it('needs a signed-in user', async () => {
    const response = await sync(syncRequest(null, { sessionId: 'cs_test_abc' }));
    expect(response.status).toBe(401);
    expect(response.headers.get('www-authenticate')).toBe('Bearer');
  });
});
