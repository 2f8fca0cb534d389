// What the functions must refuse, and how, with nothing written; and concurrency.
import { createHmac, generateKeyPairSync } from 'node:crypto';
import jwt from 'jsonwebtoken';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import checkout from '../netlify/functions/stripe-checkout.mts';
import notFound from '../netlify/functions/stripe-not-found.mts';
import portal from '../netlify/functions/stripe-portal.mts';
import status from '../netlify/functions/stripe-subscription.mts';
import webhook from '../netlify/functions/stripe-webhook.mts';
import { customerIdempotencyKey } from '../src/accounts/checkout.ts';
import { MAX_EVENT_BYTES } from '../src/events/webhook.ts';
import { LOCAL_STRIPE_WEBHOOK_SECRET } from '../scripts/lib/local-defaults.ts';
import { checkoutCompletedEvent, newIds } from './support/events.ts';
import { proxyInPlaceOf, type Proxy } from './support/proxy.ts';
import { authedPost, env, exampleEnv, expectCors, newUser, query, signedDelivery, stripeRequests, withEnv } from './support/stack.ts';

const T = 1_790_000_000;

describe('webhook: bad input is refused and nothing is written', () => {
  it('a body over 1 MB: 413, by its Content-Length, before reading it', async () => {
    const event = checkoutCompletedEvent(newIds(newUser().id), T);
    const payload = JSON.stringify({ ...event, padding: 'x'.repeat(MAX_EVENT_BYTES) });
    const signed = signedDelivery(payload);
    const response = await webhook(new Request(signed.url, { method: 'POST', headers: { ...Object.fromEntries(signed.headers), 'content-length': String(Buffer.byteLength(payload)) }, body: payload }));
    expect(response.status).toBe(413);
    expectCors(response);
    expect(await response.json()).toEqual({ error: `Request body larger than ${MAX_EVENT_BYTES} bytes` });
    expect(await query('select 1 from stripe_events where id = $1', [event.id])).toHaveLength(0);
  });

  it('a body over 1 MB without a Content-Length: 413 while streaming', async () => {
    const event = checkoutCompletedEvent(newIds(newUser().id), T);
    const payload = JSON.stringify({ ...event, padding: 'x'.repeat(MAX_EVENT_BYTES) });
    const signed = signedDelivery(payload);
    const bytes = new TextEncoder().encode(payload);
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        for (let i = 0; i < bytes.length; i += 64 * 1024) controller.enqueue(bytes.slice(i, i + 64 * 1024));
        controller.close();
      },
    });
    const response = await webhook(new Request(signed.url, { method: 'POST', headers: signed.headers, body, duplex: 'half' } as RequestInit));
    expect(response.status).toBe(413);
  });

  it.each([
    ['JSON that is not an event', '{"hello":"world"}'],
    ['an event without data', JSON.stringify({ id: 'evt_1', object: 'event', type: 'invoice.paid', created: T, livemode: false })],
    ['not JSON at all', 'id=evt_1&type=invoice.paid'],
  ])('a valid signature over %s: 400', async (_name, payload) => {
    const response = await webhook(signedDelivery(payload));
    expect(response.status).toBe(400);
    expect(await response.json()).toEqual({ error: 'Not a Stripe event' });
  });

  it.each([
    ['a malformed signature header', 'v1=abc'],
    ['a header with only a timestamp', `t=${Math.floor(Date.now() / 1000)}`],
    ['an empty header', ''],
  ])('%s: 400', async (_name, signature) => {
    const event = checkoutCompletedEvent(newIds(newUser().id), T);
    const response = await webhook(new Request('http://localhost/api/stripe/webhook', { method: 'POST', headers: { 'stripe-signature': signature }, body: JSON.stringify(event) }));
    expect(response.status).toBe(400);
    expect(await query('select 1 from stripe_events where id = $1', [event.id])).toHaveLength(0);
  });
});

describe('webhook: the signature covers the bytes Stripe sent', () => {
  const post = (bytes: Uint8Array, signature: string) =>
    webhook(new Request('http://localhost/api/stripe/webhook', { method: 'POST', headers: { 'stripe-signature': signature, 'content-type': 'application/json' }, body: new Blob([new Uint8Array(bytes)]) }));

  it('a byte-order mark added in front of a signed body: 400, nothing written', async () => {
    const event = checkoutCompletedEvent(newIds(newUser().id), T);
    const payload = JSON.stringify(event);
    const signature = signedDelivery(payload).headers.get('stripe-signature') ?? '';
    const response = await post(Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(payload)]), signature);
    expect(response.status).toBe(400);
    expect(await response.json()).toEqual({ error: 'Invalid signature' });
    expect(await query('select 1 from stripe_events where id = $1', [event.id])).toHaveLength(0);
  });

  it('bytes that are not UTF-8, signed over exactly those bytes: 400, nothing written', async () => {
    const event = checkoutCompletedEvent(newIds(newUser().id), T);
    // A field holding the byte 0xFF, which no UTF-8 text has (a lenient decoder reads U+FFFD).
    const payload = JSON.stringify(event);
    const bytes = Buffer.concat([Buffer.from(`${payload.slice(0, -1)},"note":"`), Buffer.from([0xff]), Buffer.from('"}')]);
    const t = Math.floor(Date.now() / 1000);
    const v1 = createHmac('sha256', env('STRIPE_WEBHOOK_SECRET')).update(`${t}.`).update(bytes).digest('hex');
    const response = await post(bytes, `t=${t},v1=${v1}`);
    expect(response.status).toBe(400);
    expect(await response.json()).toEqual({ error: 'Not a Stripe event' });
    expect(await query('select 1 from stripe_events where id = $1', [event.id])).toHaveLength(0);
  });

  it('the same event as plain UTF-8 bytes, signed over them, is applied', async () => {
    const event = checkoutCompletedEvent(newIds(newUser().id), T);
    const payload = `{"note":"Zoë ☕",${JSON.stringify(event).slice(1)}`;
    const response = await webhook(signedDelivery(payload));
    expect(response.status).toBe(200);
    expect(await query('select 1 from stripe_events where id = $1', [event.id])).toHaveLength(1);
  });
});

describe('webhook: a deploy whose secret list holds a published secret accepts nothing', () => {
  it.each([
    ["the .env.example placeholder", exampleEnv('STRIPE_WEBHOOK_SECRET')],
    ['the local development secret', LOCAL_STRIPE_WEBHOOK_SECRET],
  ])('%s beside a real secret: a delivery forged with it answers 500, and nothing is written', async (_name, published) => {
    const event = checkoutCompletedEvent(newIds(newUser().id), T);
    const payload = JSON.stringify(event);
    const response = await withEnv(
      // A Supabase off this machine is a deploy; the request never gets as far as reaching it.
      { STRIPE_WEBHOOK_SECRET: `whsec_the_endpoints_real_secret_0123,${published}`, SUPABASE_URL: 'https://abcd.supabase.co' },
      () => webhook(signedDelivery(payload, { secret: published })),
    );
    expect(response.status).toBe(500);
    expect(await response.json()).toEqual({ error: 'Billing is not configured on this server' });
    expect(await query('select 1 from stripe_events where id = $1', [event.id])).toHaveLength(0);
  });
});

describe('checkout, portal and status ignore what they do not use', () => {
  it.each([
    ['a JSON body', { 'content-type': 'application/json' }, '{"priceId":"price_attacker","customer":"cus_someone_else"}'],
    ['an empty body', { 'content-type': 'application/json' }, ''],
    ['an empty object, no content type', {}, '{}'],
  ])('checkout with %s uses only the token and the configured price', async (_name, headers, body) => {
    const user = newUser();
    const response = await checkout(authedPost('http://localhost/api/stripe/checkout', user.token, { headers, body }));
    expect(response.status).toBe(200);
    const [session] = await stripeRequests((r) => r.path === '/v1/checkout/sessions' && r.params['client_reference_id'] === user.id);
    expect(session?.params['line_items[0][price]']).toBe(env('STRIPE_PRICE_ID'));
  });

  it.each([
    ['a text body', { 'content-type': 'text/plain' }, 'hello'],
    ['a malformed JSON body', { 'content-type': 'application/json' }, '{"price": "business_yearly"'],
    ['JSON that is not an object', { 'content-type': 'application/json' }, '["business_yearly"]'],
    ['JSON null', { 'content-type': 'application/json' }, 'null'],
    ['no content type and not JSON', {}, 'x'],
  ])('checkout with %s: 400 Invalid JSON body, and nothing is sold', async (_name, headers, body) => {
    const user = newUser();
    const response = await checkout(authedPost('http://localhost/api/stripe/checkout', user.token, { headers, body }));
    expect(response.status).toBe(400);
    expectCors(response);
    expect(await response.json()).toEqual({ error: 'Invalid JSON body' });
    expect(await stripeRequests((r) => r.params['client_reference_id'] === user.id || r.params['metadata[userId]'] === user.id)).toEqual([]);
  });

  it('an oversized Authorization header: 401, not a crash', async () => {
    const response = await portal(authedPost('http://localhost/api/stripe/portal', `${'a'.repeat(20_000)}.b.c`));
    expect(response.status).toBe(401);
  });

  it('anonymous users are refused with 403 by checkout, portal and status', async () => {
    const user = newUser({ is_anonymous: true });
    for (const response of [
      await checkout(authedPost('http://localhost/api/stripe/checkout', user.token)),
      await portal(authedPost('http://localhost/api/stripe/portal', user.token)),
      await status(new Request('http://localhost/api/stripe/subscription', { headers: { authorization: `Bearer ${user.token}` } })),
    ]) {
      expect(response.status).toBe(403);
      expect(response.headers.get('access-control-allow-origin')).toBe('*');
      expect(await response.json()).toEqual({ error: 'Anonymous users cannot use billing; sign in with an account' });
    }
    expect(await query('select 1 from billing_customers where user_id = $1', [user.id])).toHaveLength(0);
  });
});

describe('unknown paths under /api/stripe/', () => {
  it.each(['GET', 'POST', 'PUT', 'DELETE'])('%s answers 404 with the error shape', async (method) => {
    const response = await notFound(new Request('http://localhost/api/stripe/refunds', { method }));
    expect(response.status).toBe(404);
    expect(response.headers.get('access-control-allow-origin')).toBe('*');
    expect(await response.json()).toEqual({ error: 'Not found' });
  });
});

describe('tokens signed with the project’s asymmetric keys', () => {
  // A stand-in for Supabase's gateway: the JWKS at /auth/v1/.well-known/jwks.json,
  // and everything else forwarded to the local stack's gateway.
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  let proxy: Proxy;

  beforeAll(async () => {
    proxy = await proxyInPlaceOf('SUPABASE_URL', (req, res) => {
      if (req.url !== '/auth/v1/.well-known/jwks.json') return false;
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ keys: [{ ...publicKey.export({ format: 'jwk' }), kid: 'key-es-1', alg: 'ES256', use: 'sig' }] }));
      return true;
    });
  });

  afterAll(() => proxy.close());

  it('an ES256 token from the JWKS opens checkout; HS256 keeps working beside it', async () => {
    const userId = crypto.randomUUID();
    const now = Math.floor(Date.now() / 1000);
    const token = jwt.sign(
      { sub: userId, email: 'es@example.com', aud: 'authenticated', role: 'authenticated', iss: `${env('SUPABASE_URL')}/auth/v1`, exp: now + 300 },
      privateKey,
      { algorithm: 'ES256', keyid: 'key-es-1' },
    );
    const response = await checkout(authedPost('http://localhost/api/stripe/checkout', token));
    expect(response.status).toBe(200);
    expect(await query('select 1 from billing_customers where user_id = $1', [userId])).toHaveLength(1);

    const legacy = newUser(); // HS256, issuer from the current SUPABASE_URL
    expect((await checkout(authedPost('http://localhost/api/stripe/checkout', legacy.token))).status).toBe(200);
  });
});

describe('concurrency', () => {
  it('20 simultaneous first checkouts of one user: one stored customer, one idempotency key', async () => {
    const user = newUser();
    const responses = await Promise.all(Array.from({ length: 20 }, () => checkout(authedPost('http://localhost/api/stripe/checkout', user.token))));
    expect(responses.map((r) => r.status)).toEqual(Array(20).fill(200));
    const customers = await query<{ stripe_customer_id: string }>('select stripe_customer_id from billing_customers where user_id = $1', [user.id]);
    expect(customers).toHaveLength(1);
    const creates = await stripeRequests((r) => r.path === '/v1/customers' && r.params['metadata[userId]'] === user.id);
    expect(new Set(creates.map((r) => r.idempotencyKey))).toEqual(new Set([customerIdempotencyKey(user.id)]));
    const sessions = await stripeRequests((r) => r.path === '/v1/checkout/sessions' && r.params['client_reference_id'] === user.id);
    expect(sessions).toHaveLength(20);
    expect(new Set(sessions.map((r) => r.params['customer']))).toEqual(new Set([customers[0]?.stripe_customer_id]));
  });

  it('20 simultaneous deliveries of one event: applied once', async () => {
    const user = newUser();
    const event = checkoutCompletedEvent(newIds(user.id), T);
    const payload = JSON.stringify(event);
    const responses = await Promise.all(Array.from({ length: 20 }, () => webhook(signedDelivery(payload))));
    expect(responses.map((r) => r.status)).toEqual(Array(20).fill(200));
    expect(await query('select outcome from stripe_events where id = $1', [event.id])).toEqual([{ outcome: 'applied' }]);
    expect(await query('select 1 from billing_subscriptions where user_id = $1', [user.id])).toHaveLength(1);
  });
});
