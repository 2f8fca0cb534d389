import { describe, expect, it } from 'vitest';
import webhook from '../netlify/functions/stripe-webhook.mts';
import { expectCors, freshEvent, newUser, query, signedDelivery } from './support/stack.ts';

interface SubscriptionRow {
  stripe_subscription_id: string;
  stripe_customer_id: string;
  user_id: string;
  status: string;
  stripe_created_at: Date;
}

function checkoutCompleted(userId: string) {
  const suffix = userId.slice(0, 8);
  return freshEvent('checkout.session.completed', (session) => {
    session['client_reference_id'] = userId;
    session['metadata'] = { userId, email: `${suffix}@example.com` };
    session['customer'] = `cus_${suffix}`;
    session['subscription'] = `sub_${suffix}`;
  });
}

describe('POST /api/stripe/webhook', () => {
  it('checkout.session.completed stores the subscription for the user', async () => {
    const user = newUser();
    const event = checkoutCompleted(user.id);

    const response = await webhook(signedDelivery(JSON.stringify(event)));
    expect(response.status).toBe(200);
    expectCors(response);
    expect(await response.json()).toEqual({ received: true });

    const rows = await query<SubscriptionRow>('select * from billing_subscriptions where user_id = $1', [user.id]);
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({
      stripe_subscription_id: `sub_${user.id.slice(0, 8)}`,
      stripe_customer_id: `cus_${user.id.slice(0, 8)}`,
      status: 'active',
    });
    expect(rows[0]?.stripe_created_at.getTime()).toBe(event.created * 1000);
    const customers = await query('select stripe_customer_id from billing_customers where user_id = $1', [user.id]);
    expect(customers).toEqual([{ stripe_customer_id: `cus_${user.id.slice(0, 8)}` }]);
    const events = await query('select type, outcome from stripe_events where id = $1', [event.id]);
    expect(events).toEqual([{ type: 'checkout.session.completed', outcome: 'applied' }]);
  });

  it('applies a redelivered event once, also when deliveries race', async () => {
    const user = newUser();
    const payload = JSON.stringify(checkoutCompleted(user.id));

    const first = await webhook(signedDelivery(payload));
    expect(first.status).toBe(200);
    const updatedAt = (await query<{ updated_at: Date }>('select updated_at from billing_subscriptions where user_id = $1', [user.id]))[0]?.updated_at;

    const again = await Promise.all(Array.from({ length: 5 }, () => webhook(signedDelivery(payload))));
    expect(again.map((r) => r.status)).toEqual([200, 200, 200, 200, 200]);
    const rows = await query<{ updated_at: Date }>('select updated_at from billing_subscriptions where user_id = $1', [user.id]);
    expect(rows).toHaveLength(1);
    expect(rows[0]?.updated_at).toEqual(updatedAt);
  });

  it('concurrent first deliveries of one event apply it once', async () => {
    const user = newUser();
    const event = checkoutCompleted(user.id);
    const payload = JSON.stringify(event);
    const responses = await Promise.all(Array.from({ length: 8 }, () => webhook(signedDelivery(payload))));
    expect(responses.map((r) => r.status)).toEqual(Array(8).fill(200));
    expect(await query('select id from stripe_events where id = $1', [event.id])).toHaveLength(1);
    expect(await query('select 1 from billing_subscriptions where user_id = $1', [user.id])).toHaveLength(1);
  });

  it('acknowledges event types it does not handle with 200, recording only that it came', async () => {
    const event = freshEvent('product.updated');
    const response = await webhook(signedDelivery(JSON.stringify(event)));
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ received: true });
    expect(await query('select outcome, reason from stripe_events where id = $1', [event.id])).toEqual([{ outcome: 'skipped', reason: 'unhandled event type' }]);
  });

  it('ignores a checkout that is not for a subscription', async () => {
    const user = newUser();
    const event = checkoutCompleted(user.id);
    event.data.object['mode'] = 'payment';
    const response = await webhook(signedDelivery(JSON.stringify(event)));
    expect(response.status).toBe(200);
    expect(await query('select 1 from billing_subscriptions where user_id = $1', [user.id])).toHaveLength(0);
  });

  it.each([
    ['a missing signature', (payload: string) => new Request('http://localhost/api/stripe/webhook', { method: 'POST', body: payload })],
    ['a signature made with another secret', (payload: string) => signedDelivery(payload, { secret: 'whsec_someone_else' })],
    ['a tampered body', (payload: string) => {
      const signed = signedDelivery(payload);
      return new Request(signed.url, { method: 'POST', headers: signed.headers, body: payload.replace('"livemode":false', '"livemode":true') });
    }],
    ['a replayed (old) signature', (payload: string) => signedDelivery(payload, { timestamp: Math.floor(Date.now() / 1000) - 3600 })],
  ])('rejects %s with 400 and writes nothing', async (_name, deliver) => {
    const user = newUser();
    const event = checkoutCompleted(user.id);
    const response = await webhook(deliver(JSON.stringify(event)));
    expect(response.status).toBe(400);
    expectCors(response);
    expect(await response.json()).toEqual({ error: expect.any(String) as unknown });
    expect(await query('select 1 from stripe_events where id = $1', [event.id])).toHaveLength(0);
    expect(await query('select 1 from billing_subscriptions where user_id = $1', [user.id])).toHaveLength(0);
  });

  it('a checkout whose customer belongs to another user changes nothing, and is acknowledged', async () => {
    // It used to raise a unique violation: a 500 on every delivery, which no retry fixes.
    const owner = newUser();
    const user = newUser();
    const event = checkoutCompleted(user.id);
    const customerId = event.data.object['customer'];
    await query('insert into billing_customers (user_id, stripe_customer_id) values ($1, $2)', [owner.id, customerId]);

    const response = await webhook(signedDelivery(JSON.stringify(event)));
    expect(response.status).toBe(200);
    expectCors(response);
    expect(await query('select outcome, reason from stripe_events where id = $1', [event.id])).toEqual([
      { outcome: 'skipped', reason: "checkout session's customer is not the user's customer" },
    ]);
    expect(await query('select 1 from billing_subscriptions where user_id = $1', [user.id])).toHaveLength(0);
    expect(await query('select user_id from billing_customers where stripe_customer_id = $1', [customerId])).toEqual([{ user_id: owner.id }]);
  });

  it('answers 405 with Allow to GET, and OPTIONS with CORS', async () => {
    const response = await webhook(new Request('http://localhost/api/stripe/webhook'));
    expect(response.status).toBe(405);
    expect(response.headers.get('allow')).toBe('POST, OPTIONS');
    expect(await response.json()).toEqual({ error: 'Method not allowed' });
    const preflight = await webhook(new Request('http://localhost/api/stripe/webhook', { method: 'OPTIONS' }));
    expect(preflight.status).toBe(204);
    expectCors(preflight);
  });

  it('fails closed without STRIPE_WEBHOOK_SECRET: 500, nothing accepted', async () => {
    const user = newUser();
    const event = checkoutCompleted(user.id);
    const saved = process.env['STRIPE_WEBHOOK_SECRET'];
    delete process.env['STRIPE_WEBHOOK_SECRET'];
    try {
      const response = await webhook(signedDelivery(JSON.stringify(event), { secret: saved ?? '' }));
      expect(response.status).toBe(500);
      expect(await response.json()).toEqual({ error: 'Billing is not configured on this server' });
    } finally {
      process.env['STRIPE_WEBHOOK_SECRET'] = saved;
    }
    expect(await query('select 1 from stripe_events where id = $1', [event.id])).toHaveLength(0);
  });
});

describe('README: the webhook endpoint to create', () => {
  it('lists exactly the event types the webhook handles', async () => {
    const { readFile } = await import('node:fs/promises');
    const { HANDLED_EVENT_TYPES } = await import('../src/events/reduce.ts');
    const readme = await readFile(new URL('../README.md', import.meta.url), 'utf8');
    const listed = [...readme.matchAll(/enabled_events\[\]=([a-z_.]+)/g)].map((m) => m[1]);
    expect(listed.sort()).toEqual([...HANDLED_EVENT_TYPES].sort());
  });
});
