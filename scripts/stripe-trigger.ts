// npm run stripe:trigger -- <flow> (--user <uuid> | --email <email> | --token <jwt>) [--url <webhook url>]
//
// `stripe trigger` for this backend, without a Stripe account or a network: sends the
// signed events Stripe would send for a flow (subscribe, renew, payment-failed, …), one
// after the other, to the local webhook (or --url). Each flow continues the user's
// story as the local database tells it: their customer, their current subscription
// and its period (scripts/lib/stripe-flows.ts). `--dry-run` prints the events instead.

import { parseArgs } from 'node:util';
import jwt from 'jsonwebtoken';
import pg from 'pg';
import Stripe from 'stripe';
import { DEV_PORTS, LOCAL_STRIPE_PRICE_ID, LOCAL_STRIPE_WEBHOOK_SECRET } from './lib/local-defaults.ts';
import { FlowError, FLOWS, isFlow, planFlow, readStoredBilling, type PlannedFlow, type StoredBilling } from './lib/stripe-flows.ts';
import { API_VERSIONS, isApiVersion, PINNED_API_VERSION, renderInVersion } from './lib/stripe-events.ts';
import { localUserId } from './lib/tokens.ts';

const USAGE = `usage: npm run stripe:trigger -- <flow> (--user <uuid> | --email <email> | --token <jwt>) [--url <webhook url>] [--api-version <v>] [--dry-run]

  --user <uuid>          the Supabase user id (the dashboard shows it)
  --email <email>        a test user of the dashboard's local sign-in (same email, same user)
  --token <jwt>          an access token: its sub and email
  --url <url>            where to send (default http://localhost:${DEV_PORTS.netlify}/api/stripe/webhook)
  --database-url <url>   the local database to read the user's state from (default: npm run dev's)
  --api-version <v>      render the events as an endpoint on this API version receives them
                         (${API_VERSIONS.join(', ')}; default ${PINNED_API_VERSION})
  --dry-run              print the events, send nothing

flows:
${Object.entries(FLOWS)
  .map(([flow, what]) => `  ${flow.padEnd(27)}${what}`)
  .join('\n')}`;

function fail(message: string): never {
  console.error(message);
  process.exit(2);
}

let parsed;
try {
  parsed = parseArgs({
    allowPositionals: true,
    options: {
      user: { type: 'string' },
      email: { type: 'string' },
      token: { type: 'string' },
      url: { type: 'string', default: `http://localhost:${DEV_PORTS.netlify}/api/stripe/webhook` },
      'database-url': { type: 'string', default: process.env['DATABASE_URL'] ?? `postgresql://postgres:postgres@127.0.0.1:${DEV_PORTS.postgres}/postgres` },
      'api-version': { type: 'string', default: PINNED_API_VERSION },
      'dry-run': { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
} catch (error) {
  fail(`${error instanceof Error ? error.message : String(error)}\n\n${USAGE}`);
}
const { values, positionals } = parsed;

const flow = positionals[0];
if (values.help) {
  console.log(USAGE);
  process.exit(0);
}
if (!isFlow(flow)) fail(flow ? `unknown flow "${flow}"\n\n${USAGE}` : USAGE);
const apiVersion = values['api-version'];
if (!isApiVersion(apiVersion)) fail(`--api-version must be one of ${API_VERSIONS.join(', ')}, not "${apiVersion}"`);

const claims = values.token ? jwt.decode(values.token) : null;
const claim = (name: string): string | undefined => {
  const value = claims && typeof claims === 'object' ? (claims as Record<string, unknown>)[name] : undefined;
  return typeof value === 'string' && value !== '' ? value : undefined;
};
function whose(): string {
  const id = values.user ?? (values.email ? localUserId(values.email) : claim('sub'));
  if (!id) fail('say whose events these are: --user <uuid>, --email <email> or --token <access token>');
  if (!/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(id)) fail(`--user must be a UUID (a Supabase user id), not "${id}"`);
  return id.toLowerCase();
}
const userId = whose();
const email = values.email ?? claim('email');

async function readState(): Promise<StoredBilling> {
  const client = new pg.Client({ connectionString: values['database-url'], connectionTimeoutMillis: 3000 });
  try {
    await client.connect();
    return await readStoredBilling(client, userId);
  } catch (error) {
    return fail(
      `cannot read the user's billing state from the local database (${error instanceof Error ? error.message : String(error)}).\n` +
        'Is `npm run dev` running? Elsewhere, pass --database-url <superuser connection string>.',
    );
  } finally {
    await client.end().catch(() => {});
  }
}

const stored = await readState();
let planned: PlannedFlow;
try {
  planned = planFlow(flow, stored, {
    userId,
    email: email ?? null,
    priceId: process.env['STRIPE_PRICE_ID'] ?? LOCAL_STRIPE_PRICE_ID,
    appUrl: new URL(values.url).origin,
  });
} catch (error) {
  if (error instanceof FlowError) fail(error.message);
  throw error;
}

const events = planned.events.map((event) => renderInVersion(event, apiVersion));
if (values['dry-run']) {
  console.log(JSON.stringify(events, null, 2));
  process.exit(0);
}

const secret = process.env['STRIPE_WEBHOOK_SECRET'] ?? LOCAL_STRIPE_WEBHOOK_SECRET;
for (const event of events) {
  const payload = JSON.stringify(event, null, 2);
  const signature = Stripe.webhooks.generateTestHeaderString({ payload, secret });
  let status: number;
  let body: string;
  try {
    const response = await fetch(values.url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'stripe-signature': signature },
      body: payload,
    });
    status = response.status;
    body = await response.text();
  } catch (error) {
    console.error(`${event.type} ${event.id}: ${values.url} did not answer (${error instanceof Error ? error.message : String(error)}). Is \`npm run dev\` running?`);
    process.exit(1);
  }
  console.log(`${event.type.padEnd(38)} ${event.id} -> ${status} ${body}`);
  // The rest of the story would not make sense without this event: stop here.
  if (status < 200 || status >= 300) process.exit(1);
}

console.log(`${flow}: ${events.length} event(s) delivered for user ${userId} (customer ${planned.customerId}, subscription ${planned.subscriptionId})`);
