// npm run usage:add: adds metered usage for a test user (or a team they are in) to the
// local stack of `npm run dev`, and moves its billing clock forward, so the example
// dashboard walks a meter through warning, over, grace and locked. It signs in as the
// test user and calls the stack's /__dev/usage and /__dev/clock (scripts/stack/dev-usage.ts):
// billing_track through PostgREST with the service role, a new idempotency key each call.

import { parseArgs } from 'node:util';
import { DEV_PORTS } from './lib/local-defaults.ts';

const HELP = `Usage: npm run usage:add -- --email <test user> [--team <team id>] [what]

What (any of them, in this order):
  --meter <meter> --amount <n>   adds n to the meter (e.g. --meter pageviews --amount 50000)
  --end-window                   moves the clock to the end of the subject's usage window
  --advance-days <n>             moves the clock n days forward
  --reset-clock                  the clock back to the real time
With none, prints the clock.

  --supabase <url>   the local stack (default http://127.0.0.1:${DEV_PORTS.gateway}, npm run dev's)

The clock is the billing SQL's (billing_now()), in the local stack only: a deployed
database has no movable clock. The dashboard shows the result after Refresh.`;

interface Clock {
  now: string;
  offsetSeconds: number;
}

function fail(message: string): never {
  console.error(message);
  process.exit(1);
}

function parse() {
  return parseArgs({
    options: {
      email: { type: 'string' },
      team: { type: 'string' },
      meter: { type: 'string' },
      amount: { type: 'string' },
      'end-window': { type: 'boolean', default: false },
      'advance-days': { type: 'string' },
      'reset-clock': { type: 'boolean', default: false },
      supabase: { type: 'string', default: `http://127.0.0.1:${DEV_PORTS.gateway}` },
      help: { type: 'boolean', short: 'h', default: false },
    },
    strict: true,
  }).values;
}
let args: ReturnType<typeof parse>;
try {
  args = parse();
} catch (error) {
  fail(`${error instanceof Error ? error.message : String(error)}\n\n${HELP}`);
}
if (args.help) {
  console.log(HELP);
  process.exit(0);
}
if (!args.email) fail(`--email is required.\n\n${HELP}`);
if ((args.meter === undefined) !== (args.amount === undefined)) fail('--meter and --amount go together.');
const amount = args.amount === undefined ? undefined : Number(args.amount.replaceAll('_', '').replaceAll(',', ''));
if (amount !== undefined && (!Number.isSafeInteger(amount) || amount < 0)) fail('--amount must be a whole number of 0 or more.');
const days = args['advance-days'] === undefined ? undefined : Number(args['advance-days']);
if (days !== undefined && (!Number.isInteger(days) || days < 0)) fail('--advance-days must be a whole number of 0 or more.');

const base = args.supabase.replace(/\/+$/, '');

async function call(path: string, body?: unknown, token?: string): Promise<unknown> {
  let response: Response;
  try {
    response = await fetch(`${base}${path}`, {
      method: body === undefined ? 'GET' : 'POST',
      headers: { 'content-type': 'application/json', ...(token && { authorization: `Bearer ${token}` }) },
      ...(body !== undefined && { body: JSON.stringify(body) }),
    });
  } catch {
    return fail(`The local stack at ${base} did not answer: start it with npm run dev.`);
  }
  const data = (await response.json().catch(() => ({}))) as { error?: string };
  if (!response.ok) fail(`${path}: ${data.error ?? `HTTP ${response.status}`}`);
  return data;
}

const signedIn = (await call('/auth/v1/dev/token', { email: args.email })) as { access_token: string; user: { id: string } };
const token = signedIn.access_token;
const team = args.team ? { team: args.team } : {};
const subject = args.team ?? signedIn.user.id;
const showClock = (clock: Clock) => `billing clock ${clock.now} (${(clock.offsetSeconds / 86_400).toFixed(2)} days ahead)`;

if (args.meter !== undefined && amount !== undefined) {
  const added = (await call('/__dev/usage', { meter: args.meter, amount, ...team }, token)) as { result: { used: number; limit: number | null; allowed: boolean } };
  const { used, limit, allowed } = added.result;
  console.log(`${allowed ? 'added' : 'refused (overage: block)'}: ${args.meter} of ${subject}: ${used.toLocaleString('en')} used of ${limit === null ? 'unlimited' : limit.toLocaleString('en')} this window`);
}
if (args['end-window']) console.log(`window ended: ${showClock((await call('/__dev/clock', { endWindow: true, ...team }, token)) as Clock)}`);
if (days !== undefined) console.log(`moved ${days} day(s): ${showClock((await call('/__dev/clock', { advanceDays: days }, token)) as Clock)}`);
if (args['reset-clock']) console.log(`reset: ${showClock((await call('/__dev/clock', { reset: true }, token)) as Clock)}`);
if (args.meter === undefined && !args['end-window'] && days === undefined && !args['reset-clock']) {
  console.log(showClock((await call('/__dev/clock', undefined, token)) as Clock));
}
