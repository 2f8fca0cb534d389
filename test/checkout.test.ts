import { describe, expect, it, vi } from 'vitest';
import checkout from '../netlify/functions/stripe-checkout.mts';
import { customerIdempotencyKey } from '../src/accounts/checkout.ts';
import { authedPost, expectCors, newUser, query, stripeRequests } from './support/stack.ts';

const URL_ = 'http://localhost/api/stripe/checkout';

async function post(token: string | null, init: RequestInit = {}): Promise<Response> {
  return checkout(authedPost(URL_, token, init));
}

describe('POST /api/stripe/checkout', () => {
  it('creates a subscription checkout for a new user, with one stored customer', async () => {
    const user = newUser();
    const response = await post(user.token);

    expect(response.status).toBe(200);
    expectCors(response);
    const body = (await response.json()) as { url: string };
    expect(body.url).toMatch(/^https:\/\/checkout\.stripe\.com\//);

    const customers = await query<{ stripe_customer_id: string; email: string }>(
      'select stripe_customer_id, email from billing_customers where user_id = $1',
      [user.id],
    );
    expect(customers).toHaveLength(1);
    expect(customers[0]?.email).toBe(user.email);
    const customerId = customers[0]?.stripe_customer_id;
    expect(customerId).toMatch(/^cus_/);

    const [customerCreate] = await stripeRequests((r) => r.path === '/v1/customers' && r.params['metadata[userId]'] === user.id);
    expect(customerCreate?.idempotencyKey).toBe(customerIdempotencyKey(user.id));
    expect(customerCreate?.params['email']).toBe(user.email);

    const sessions = await stripeRequests((r) => r.path === '/v1/checkout/sessions' && r.params['client_reference_id'] === user.id);
    expect(sessions).toHaveLength(1);
    expect(sessions[0]?.params).toEqual({
      mode: 'subscription',
      customer: customerId,
      'allowed_payment_method_types[0]': 'card',
      'line_items[0][price]': process.env['STRIPE_PRICE_ID'],
      'line_items[0][quantity]': '1',
      success_url: 'https://analytics.example.com/dashboard?checkout=success&session_id={CHECKOUT_SESSION_ID}',
      cancel_url: 'https://analytics.example.com/dashboard?checkout=canceled',
      client_reference_id: user.id,
      'metadata[userId]': user.id,
      'metadata[email]': user.email,
      'subscription_data[metadata][userId]': user.id,
      'subscription_data[metadata][email]': user.email,
    });
  });

  it('reuses the stored customer on the next checkout', async () => {
    const user = newUser();
    expect((await post(user.token)).status).toBe(200);
    expect((await post(user.token)).status).toBe(200);

    const creates = await stripeRequests((r) => r.path === '/v1/customers' && r.params['metadata[userId]'] === user.id);
    expect(creates).toHaveLength(1);
    const sessions = await stripeRequests((r) => r.path === '/v1/checkout/sessions' && r.params['client_reference_id'] === user.id);
    expect(sessions).toHaveLength(2);
    expect(sessions[0]?.params['customer']).toBe(sessions[1]?.params['customer']);
  });

  it('concurrent first checkouts of one user agree on one customer', async () => {
    const user = newUser();
    const responses = await Promise.all([post(user.token), post(user.token), post(user.token)]);
    expect(responses.map((r) => r.status)).toEqual([200, 200, 200]);

    const customers = await query('select * from billing_customers where user_id = $1', [user.id]);
    expect(customers).toHaveLength(1);
    // stripe-mock ignores idempotency keys, so the creates may return different ids here;
    // real Stripe answers every create with this same key with one customer.
    const creates = await stripeRequests((r) => r.path === '/v1/customers' && r.params['metadata[userId]'] === user.id);
    expect(new Set(creates.map((r) => r.idempotencyKey))).toEqual(new Set([customerIdempotencyKey(user.id)]));
    const sessions = await stripeRequests((r) => r.path === '/v1/checkout/sessions' && r.params['client_reference_id'] === user.id);
    expect(new Set(sessions.map((r) => r.params['customer']))).toEqual(
      new Set([(customers[0] as { stripe_customer_id: string }).stripe_customer_id]),
    );
  });

  it('answers 400 "Already subscribed" to a subscribed user, without calling Stripe', async () => {
    const user = newUser();
    await query(`insert into billing_customers (user_id, stripe_customer_id) values ($1, $2)`, [user.id, `cus_${user.id}`]);
    await query(
      `insert into billing_subscriptions (stripe_subscription_id, stripe_customer_id, user_id, status) values ($1, $2, $3, 'active')`,
      [`sub_${user.id}`, `cus_${user.id}`, user.id],
    );

    const response = await post(user.token);
    expect(response.status).toBe(400);
    expectCors(response);
    expect(await response.json()).toEqual({ error: 'Already subscribed' });
    expect(await stripeRequests((r) => r.params['client_reference_id'] === user.id)).toHaveLength(0);
  });

  it('lets a user whose subscription was canceled subscribe again', async () => {
    const user = newUser();
    await query(`insert into billing_customers (user_id, stripe_customer_id) values ($1, $2)`, [user.id, `cus_${user.id}`]);
    await query(
      `insert into billing_subscriptions (stripe_subscription_id, stripe_customer_id, user_id, status) values ($1, $2, $3, 'canceled')`,
      [`sub_${user.id}`, `cus_${user.id}`, user.id],
    );
    const response = await post(user.token);
    expect(response.status).toBe(200);
    const sessions = await stripeRequests((r) => r.path === '/v1/checkout/sessions' && r.params['client_reference_id'] === user.id);
    expect(sessions[0]?.params['customer']).toBe(`cus_${user.id}`);
  });

  it.each([
    ['no Authorization header', null, {}],
    ['a token signed with another secret', 'eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl', {}],
    ['a Basic scheme', null, { headers: { authorization: 'Basic dXNlcjpwYXNz' } }],
  ])('answers 401 to %s', async (_name, token, init) => {
    const response = await post(token, init);
    expect(response.status).toBe(401);
    expect(response.headers.get('www-authenticate')).toBe('Bearer');
    expectCors(response);
    expect(await response.json()).toEqual({ error: expect.any(String) as unknown });
  });

  it('answers OPTIONS preflight before auth', async () => {
    const response = await checkout(new Request(URL_, { method: 'OPTIONS', headers: { origin: 'https://elsewhere.example' } }));
    expect(response.status).toBe(204);
    expectCors(response);
  });

  it('answers 405 with Allow to other methods', async () => {
    const response = await checkout(new Request(URL_, { method: 'GET' }));
    expect(response.status).toBe(405);
    expect(response.headers.get('allow')).toBe('POST, OPTIONS');
    expectCors(response);
    expect(await response.json()).toEqual({ error: 'Method not allowed' });
  });

  it('answers 500 with the error shape when Stripe fails', async () => {
    const user = newUser();
    const saved = process.env['STRIPE_API_BASE'];
    process.env['STRIPE_API_BASE'] = 'http://127.0.0.1:9'; // discard port: nothing listens
    try {
      const response = await post(user.token);
      expect(response.status).toBe(500);
      expectCors(response);
      expect(await response.json()).toEqual({ error: 'Internal server error' });
    } finally {
      process.env['STRIPE_API_BASE'] = saved;
    }
    expect(await query('select * from billing_customers where user_id = $1', [user.id])).toHaveLength(0);
  });

  it('answers 500 when configuration is missing, and logs one line naming the variable', async () => {
    const saved = process.env['STRIPE_PRICE_ID'];
    delete process.env['STRIPE_PRICE_ID'];
    const errors = vi.spyOn(console, 'error').mockImplementation(() => {});
    try {
      const response = await post(newUser().token);
      expect(response.status).toBe(500);
      expectCors(response);
      expect(await response.json()).toEqual({ error: 'Billing is not configured on this server' });
      expect(errors).toHaveBeenCalledTimes(1);
      const line = JSON.parse(String(errors.mock.calls[0]?.[0])) as Record<string, unknown>;
      expect(line).toMatchObject({ level: 'error', fn: 'checkout', status: 500, errorType: 'ConfigError' });
      expect(line['error']).toContain('STRIPE_PRICE_ID is not set');
    } finally {
      errors.mockRestore();
      process.env['STRIPE_PRICE_ID'] = saved;
    }
  });

  it('logs one JSON line per request, without the token', async () => {
    const user = newUser();
    const lines: string[] = [];
    const info = vi.spyOn(console, 'log').mockImplementation((line: unknown) => void lines.push(String(line)));
    try {
      await post(user.token);
      await post(`${user.token}x`);
    } finally {
      info.mockRestore();
    }
    expect(lines).toHaveLength(2);
    for (const line of lines) {
      expect(line).not.toContain(user.token.split('.')[2]);
      expect(JSON.parse(line)).toMatchObject({ msg: 'request', fn: 'checkout', method: 'POST' });
    }
    expect(JSON.parse(lines[0] ?? '{}')).toMatchObject({ userId: user.id, status: 200, customerCreated: true });
    expect(JSON.parse(lines[1] ?? '{}')).toMatchObject({ status: 401 });
  });
});
