// No endpoint is an amplifier: a session already applied is answered from the database,
// and checkout, portal and sync count each user's requests in Postgres (429 past them).

import { describe, expect, it } from 'vitest';
import checkout from '../netlify/functions/stripe-checkout.mts';
import portal from '../netlify/functions/stripe-portal.mts';
import sync from '../netlify/functions/stripe-sync.mts';
import { REQUEST_LIMITS, type LimitedAction } from '../src/http/request-limits.ts';
import { checkoutCompletedEvent, subscriptionEvent, type Ids } from './support/events.ts';
import { asUser, authedPost, expectCors, newUser, postStripeObject, query, stripeRequests, type TestUser } from './support/stack.ts';

const DAY = 86_400;
const post = (path: string, token: string, body?: unknown) =>
  authedPost(`http://localhost/api/stripe/${path}`, token, body === undefined ? {} : { body: JSON.stringify(body) });

/** A user who went through our checkout, and the paid session Stripe holds for them. */
async function paidSession(): Promise<{ user: TestUser; ids: Ids; sessionId: string }> {
  const user = newUser();
  expect((await checkout(post('checkout', user.token))).status).toBe(200);
  const [link] = await query<{ stripe_customer_id: string }>('select stripe_customer_id from billing_customers where user_id = $1', [user.id]);
  if (!link) throw new Error('checkout stored no customer');
  const ids = { userId: user.id, customerId: link.stripe_customer_id, subscriptionId: `sub_lim${user.id.slice(0, 8)}` };
  const now = Math.floor(Date.now() / 1000);
  const session = checkoutCompletedEvent(ids, now).data.object as unknown as Record<string, unknown>;
  session['subscription'] = subscriptionEvent('customer.subscription.created', ids, now, { status: 'active', periodStart: now, periodEnd: now + 30 * DAY }).data.object;
  const sessionId = String(session['id']);
  await postStripeObject(`/v1/checkout/sessions/${sessionId}`, session);
  return { user, ids, sessionId };
}

const sessionReads = (sessionId: string) => stripeRequests((r) => r.method === 'GET' && r.path === `/v1/checkout/sessions/${sessionId}`);
const inboxRows = async (ids: Ids) =>
  (await query<{ n: string }>("select count(*) as n from stripe_events where id like 'sync_%' and stripe_customer_id = $1", [ids.customerId]))[0]?.n;

describe('POST /api/stripe/sync is idempotent for a session it has applied', () => {
  it('30 calls for one unchanged session: one Stripe read, no inbox row after the first, the same answer', async () => {
    const { user, ids, sessionId } = await paidSession();
    const first = await sync(post('sync', user.token, { sessionId }));
    expect(first.status).toBe(200);
    const body: unknown = await first.json();
    expect(body).toMatchObject({ subscription: { status: 'active', access: true } });
    const rowsAfterFirst = await inboxRows(ids);
    expect(Number(rowsAfterFirst)).toBeGreaterThan(0);

    for (let i = 1; i < 30; i += 1) {
      const again = await sync(post('sync', user.token, { sessionId }));
      expect(again.status).toBe(200);
      expect(await again.json()).toEqual(body);
    }
    expect(await sessionReads(sessionId)).toHaveLength(1);
    expect(await inboxRows(ids)).toBe(rowsAfterFirst);
  });

  it('the stored answer is only for the session\'s own user: a stranger still gets 404', async () => {
    const { user, sessionId } = await paidSession();
    expect((await sync(post('sync', user.token, { sessionId }))).status).toBe(200);
    const stranger = newUser();
    expect((await checkout(post('checkout', stranger.token))).status).toBe(200);
    const response = await sync(post('sync', stranger.token, { sessionId }));
    expect(response.status).toBe(404);
    expect(await response.json()).toEqual({ error: 'Checkout session not found' });
  });
});

describe('a per-user request limit, kept in Postgres', () => {
  it('the portal: 30 a minute answer, the 31st is 429 with Retry-After; the next window answers again', async () => {
    const user = newUser(); // never subscribed: each answer is 400, no Stripe call
    for (let i = 0; i < REQUEST_LIMITS.portal.limit; i += 1) {
      expect((await portal(post('portal', user.token))).status).toBe(400);
    }
    const refused = await portal(post('portal', user.token));
    expect(refused.status).toBe(429);
    expectCors(refused);
    expect(await refused.json()).toEqual({ error: 'Too many requests' });
    const retryAfter = Number(refused.headers.get('retry-after'));
    expect(retryAfter).toBeGreaterThanOrEqual(1);
    expect(retryAfter).toBeLessThanOrEqual(REQUEST_LIMITS.portal.windowSeconds);

    // Another user is not held back by this one.
    expect((await portal(post('portal', newUser().token))).status).toBe(400);

    await query("update billing_request_counts set window_start = window_start - interval '61 seconds' where subject_id = $1", [user.id]);
    expect((await portal(post('portal', user.token))).status).toBe(400);
  });

  it('concurrent requests cannot overshoot: 40 at once, exactly 30 answered', async () => {
    const user = newUser();
    const statuses = await Promise.all(Array.from({ length: 40 }, () => portal(post('portal', user.token)).then((r) => r.status)));
    expect(statuses.filter((s) => s === 429)).toHaveLength(40 - REQUEST_LIMITS.portal.limit);
    expect(statuses.filter((s) => s === 400)).toHaveLength(REQUEST_LIMITS.portal.limit);
  });

  it.each<[LimitedAction, (token: string) => Promise<Response>]>([
    ['checkout', (token) => checkout(post('checkout', token))],
    ['portal', (token) => portal(post('portal', token))],
    ['sync', (token) => sync(post('sync', token, { sessionId: 'cs_test_limited0000' }))],
  ])('%s past its limit: 429 before any Stripe call', async (action, call) => {
    const user = newUser();
    // The count as another function instance left it: the limit is the database's.
    await query(`insert into billing_request_counts (subject_id, action, window_start, hits) values ($1, $2, now(), $3)`, [user.id, action, REQUEST_LIMITS[action].limit]);
    const response = await call(user.token);
    expect(response.status).toBe(429);
    expect(await response.json()).toEqual({ error: 'Too many requests' });
    expect(await stripeRequests((r) => r.params['client_reference_id'] === user.id || r.params['metadata[userId]'] === user.id)).toEqual([]);
    expect(await query('select 1 from billing_customers where user_id = $1', [user.id])).toHaveLength(0);
  });

  it('signed-in users can neither read nor call the counts', async () => {
    const user = newUser();
    await expect(asUser(user.id, 'select * from billing_request_counts')).rejects.toThrow(/permission denied/);
    await expect(asUser(user.id, `select billing_count_request($1, 'portal', 1000, 60)`, [user.id])).rejects.toThrow(/permission denied/);
  });
});
