import { describe, expect, it } from 'vitest';
import portal from '../netlify/functions/stripe-portal.mts';
import { authedPost, expectCors, newUser, query, stripeRequests, type TestUser } from './support/stack.ts';

const URL_ = 'http://localhost/api/stripe/portal';

async function subscribe(user: TestUser, status: string): Promise<string> {
  const customerId = `cus_${user.id.slice(0, 8)}`;
  await query(`insert into billing_customers (user_id, stripe_customer_id) values ($1, $2)`, [user.id, customerId]);
  await query(
    `insert into billing_subscriptions (stripe_subscription_id, stripe_customer_id, user_id, status) values ($1, $2, $3, $4)`,
    [`sub_${user.id}`, customerId, user.id, status],
  );
  return customerId;
}

describe('POST /api/stripe/portal', () => {
  it('opens the billing portal for the stored customer, returning to the dashboard', async () => {
    const user = newUser();
    const customerId = await subscribe(user, 'active');

    const response = await portal(authedPost(URL_, user.token));
    expect(response.status).toBe(200);
    expectCors(response);
    const body = (await response.json()) as { url: string };
    expect(body.url).toMatch(/^https:\/\//);

    const sent = await stripeRequests((r) => r.path === '/v1/billing_portal/sessions' && r.params['customer'] === customerId);
    expect(sent).toHaveLength(1);
    expect(sent[0]?.params).toEqual({ customer: customerId, return_url: 'https://analytics.example.com/dashboard' });
  });

  it('lets a canceled subscriber in, to see invoices', async () => {
    const user = newUser();
    await subscribe(user, 'canceled');
    expect((await portal(authedPost(URL_, user.token))).status).toBe(200);
  });

  it('answers 400 "No active subscription" to a user who never subscribed', async () => {
    const response = await portal(authedPost(URL_, newUser().token));
    expect(response.status).toBe(400);
    expectCors(response);
    expect(await response.json()).toEqual({ error: 'No active subscription' });
  });

  it('answers 400 to a user with a customer but no subscription yet (checkout abandoned)', async () => {
    const user = newUser();
    await query(`insert into billing_customers (user_id, stripe_customer_id) values ($1, 'cus_abandoned_${user.id.slice(0, 8)}')`, [user.id]);
    const response = await portal(authedPost(URL_, user.token));
    expect(response.status).toBe(400);
    expect(await response.json()).toEqual({ error: 'No active subscription' });
  });

  it('answers 401 without a valid token', async () => {
    const response = await portal(authedPost(URL_, 'not.a.token'));
    expect(response.status).toBe(401);
    expect(response.headers.get('www-authenticate')).toBe('Bearer');
    expectCors(response);
  });

  it('answers OPTIONS and 405', async () => {
    const preflight = await portal(new Request(URL_, { method: 'OPTIONS' }));
    expect(preflight.status).toBe(204);
    expectCors(preflight);
    const wrong = await portal(new Request(URL_, { method: 'PUT' }));
    expect(wrong.status).toBe(405);
    expect(wrong.headers.get('allow')).toBe('POST, OPTIONS');
  });

  it('answers 500 when the database is unreachable', async () => {
    const saved = process.env['SUPABASE_URL'];
    process.env['SUPABASE_URL'] = 'http://127.0.0.1:9';
    try {
      const user = newUser(); // token issuer follows SUPABASE_URL
      const response = await portal(authedPost(URL_, user.token));
      expect(response.status).toBe(500);
      expectCors(response);
      expect(await response.json()).toEqual({ error: 'Internal server error' });
    } finally {
      process.env['SUPABASE_URL'] = saved;
    }
  });
});
