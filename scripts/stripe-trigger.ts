// npm run stripe:trigger -- <event type> (--user <uuid> | --token <jwt>) [--url <webhook url>]
//
// Sends a realistic, signed Stripe event to the local webhook, as Stripe would deliver
// it: `stripe trigger` without a Stripe account or a network. The event is built from
// the fixture of its type in test/fixtures/events, with fresh ids and the user's
// stored Stripe customer (read from the local database) so it links up as in real life.

import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import jwt from 'jsonwebtoken';
import pg from 'pg';
import Stripe from 'stripe';
import { DEV_PORTS, LOCAL_STRIPE_WEBHOOK_SECRET } from './lib/local-defaults.ts';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    user: { type: 'string' },
    token: { type: 'string' },
    url: { type: 'string', default: `http://localhost:${DEV_PORTS.netlify}/api/stripe/webhook` },
    'database-url': { type: 'string', default: process.env['DATABASE_URL'] ?? `postgresql://postgres:postgres@127.0.0.1:${DEV_PORTS.postgres}/postgres` },
  },
});

const SUPPORTED = ['checkout.session.completed'] as const;
type Supported = (typeof SUPPORTED)[number];
const isSupported = (type: string | undefined): type is Supported => SUPPORTED.some((s) => s === type);

function fail(message: string): never {
  console.error(message);
  process.exit(2);
}

const type = positionals[0];
if (!isSupported(type)) fail(`usage: npm run stripe:trigger -- <${SUPPORTED.join('|')}> --user <uuid> | --token <jwt>`);

const decoded = values.token ? jwt.decode(values.token) : null;
const userId = values.user ?? (decoded && typeof decoded === 'object' ? decoded.sub : undefined);
if (!userId) fail('say whose event this is: --user <uuid> or --token <access token>');
const email = decoded && typeof decoded === 'object' && typeof decoded['email'] === 'string' ? decoded['email'] : undefined;

const randomId = (prefix: string) => `${prefix}_${randomBytes(12).toString('base64url')}`;

async function storedCustomer(id: string): Promise<string | undefined> {
  const client = new pg.Client({ connectionString: values['database-url'], connectionTimeoutMillis: 3000 });
  try {
    await client.connect();
    const result = await client.query<{ stripe_customer_id: string }>('select stripe_customer_id from billing_customers where user_id = $1', [id]);
    return result.rows[0]?.stripe_customer_id;
  } catch {
    return undefined;
  } finally {
    await client.end().catch(() => {});
  }
}

const template = JSON.parse(
  readFileSync(new URL(`../test/fixtures/events/${type}.json`, import.meta.url), 'utf8'),
) as { id: string; created: number; data: { object: Record<string, unknown> } };

const customer = (await storedCustomer(userId)) ?? randomId('cus_local');
const now = Math.floor(Date.now() / 1000);
const event = structuredClone(template);
event.id = randomId('evt_local');
event.created = now;
Object.assign(event.data.object, {
  id: randomId('cs_test'),
  created: now - 60,
  client_reference_id: userId,
  customer,
  customer_email: null,
  customer_details: { ...(event.data.object['customer_details'] as object), email: email ?? null },
  metadata: { userId, ...(email && { email }) },
  subscription: randomId('sub_local'),
});

const payload = JSON.stringify(event, null, 2);
const secret = process.env['STRIPE_WEBHOOK_SECRET'] ?? LOCAL_STRIPE_WEBHOOK_SECRET;
const signature = Stripe.webhooks.generateTestHeaderString({ payload, secret });
const response = await fetch(values.url, {
  method: 'POST',
  headers: { 'content-type': 'application/json', 'stripe-signature': signature },
  body: payload,
});
console.log(`${type} ${event.id} for user ${userId} (customer ${customer}) -> ${response.status} ${await response.text()}`);
process.exitCode = response.ok ? 0 : 1;
