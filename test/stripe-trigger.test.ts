// `npm run stripe:trigger` flows: each is the sequence of events Stripe would send,
// continuing the user's stored state, and the status endpoint shows what it did.
// Planned flows go to the webhook function; the script itself runs against an HTTP
// front door to the same function.
import { randomUUID } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type Stripe from 'stripe';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import checkout from '../netlify/functions/stripe-checkout.mts';
import status from '../netlify/functions/stripe-subscription.mts';
import webhook from '../netlify/functions/stripe-webhook.mts';
import { addMonth, addYear, FlowError, planFlow, readStoredBilling, type Flow, type FlowOptions, type PlannedFlow } from '../scripts/lib/stripe-flows.ts';
import { issuerFor, localUserId, mintAccessToken } from '../scripts/lib/tokens.ts';
import { authedPost, db, env, newUser, query, signedDelivery, type TestUser } from './support/stack.ts';
import { runTrigger, type TriggerResult } from './support/trigger.ts';

const DAY = 86_400;

interface View {
  status: string;
  access: boolean;
  accessReason: string;
  priceId: string | null;
  currentPeriodEnd: string | null;
  cancelAtPeriodEnd: boolean;
  trialEnd: string | null;
  graceUntil: string | null;
  lastPayment: { status: string; at: string; amount: number; currency: string; invoiceUrl: string | null; nextPaymentAttempt: string | null } | null;
}

async function view(user: TestUser): Promise<View | null> {
  const response = await status(new Request('http://localhost/api/stripe/subscription', { headers: { authorization: `Bearer ${user.token}` } }));
  expect(response.status).toBe(200);
  return ((await response.json()) as { subscription: View | null }).subscription;
}

async function plan(flow: Flow, user: TestUser, options: Partial<FlowOptions> = {}): Promise<PlannedFlow> {
  return planFlow(flow, await readStoredBilling(db(), user.id), { userId: user.id, email: user.email, priceId: env('STRIPE_PRICE_ID'), ...options });
}

/** Plans the flow from the stored state and delivers it; every event must be applied, none stale. */
async function run(flow: Flow, user: TestUser, options: Partial<FlowOptions> = {}): Promise<PlannedFlow> {
  const planned = await plan(flow, user, options);
  for (const event of planned.events) {
    const response = await webhook(signedDelivery(JSON.stringify(event)));
    expect(response.status, `${flow}: ${event.type}`).toBe(200);
  }
  const outcomes = await query<{ id: string; outcome: string }>('select id, outcome from stripe_events where id = any($1)', [planned.events.map((e) => e.id)]);
  expect(outcomes.map((o) => o.outcome), flow).toEqual(planned.events.map(() => 'applied'));
  return planned;
}

const seconds = (iso: string | null | undefined) => (iso ? Date.parse(iso) / 1000 : null);
const types = (planned: PlannedFlow) => planned.events.map((e) => e.type);

describe('the flows, one user\'s story through the webhook', () => {
  it('what the local Checkout and portal play: a declined first payment, 3-D Secure, then paid; a switch to a yearly price; a scheduled downgrade; uncancel', async () => {
    const user = newUser();
    expect((await checkout(authedPost('http://localhost/api/stripe/checkout', user.token))).status).toBe(200);

    const declined = await run('first-payment-declined', user);
    expect(types(declined)).toEqual(['customer.subscription.created', 'invoice.payment_failed']);
    expect(await view(user)).toMatchObject({ status: 'incomplete', access: false, lastPayment: { status: 'failed', nextPaymentAttempt: null } });
    const challenged = await run('first-payment-requires-action', user);
    expect(types(challenged)).toEqual(['invoice.payment_action_required']);
    const invoiceOf = (planned: PlannedFlow) => (planned.events.find((e) => e.type.startsWith('invoice.'))?.data.object as { id: string }).id;
    expect(invoiceOf(challenged)).toBe(invoiceOf(declined));
    const paid = await run('first-payment-paid', user, { checkout: { sessionId: 'cs_test_local1', successUrl: 'http://localhost:8888/dashboard?checkout=success&session_id={CHECKOUT_SESSION_ID}', cancelUrl: 'http://localhost:8888/dashboard?checkout=canceled' } });
    expect(types(paid)).toEqual(['invoice.paid', 'customer.subscription.updated', 'checkout.session.completed']);
    expect(invoiceOf(paid)).toBe(invoiceOf(declined));
    expect((paid.events[2]?.data.object as { id: string }).id).toBe('cs_test_local1');
    expect(paid.subscriptionId).toBe(declined.subscriptionId);
    expect(await view(user)).toMatchObject({ status: 'active', access: true, lastPayment: { status: 'paid', amount: 900 } });

    // A yearly price, now: a new period of a year, the unused month credited.
    const yearly = { id: 'price_local_yearly', amount: 9000, currency: 'eur', interval: 'year' as const, productId: env('STRIPE_PRODUCT_ID') };
    const switched = await run('switch-price', user, { newPrice: yearly });
    expect(types(switched)).toEqual(['customer.subscription.updated', 'invoice.paid']);
    const onYearly = await view(user);
    expect(onYearly?.priceId).toBe('price_local_yearly');
    const switchedAt = switched.events[0]?.created ?? 0;
    expect(seconds(onYearly?.currentPeriodEnd)).toBe(addYear(switchedAt));
    expect(onYearly?.lastPayment?.amount).toBeGreaterThanOrEqual(9000 - 900);
    expect(onYearly?.lastPayment?.amount).toBeLessThanOrEqual(9000);

    // Back to monthly waits for the year's end; the renewal moves to it and releases the schedule.
    const monthly = { id: env('STRIPE_PRICE_ID'), amount: 900, currency: 'eur', interval: 'month' as const, productId: env('STRIPE_PRODUCT_ID') };
    const scheduled = await run('schedule-price-change', user, { newPrice: monthly, interval: 'year', amount: 9000 });
    expect(types(scheduled)).toEqual(['subscription_schedule.created']);
    const scheduleId = (scheduled.events[0]?.data.object as { id: string }).id;
    expect((await view(user)) as unknown).toMatchObject({ priceId: 'price_local_yearly', scheduledChange: { priceId: env('STRIPE_PRICE_ID'), at: onYearly?.currentPeriodEnd } });
    const renewed = await run('renew', user, { newPrice: monthly, scheduleId, interval: 'year', amount: 9000 });
    expect(types(renewed)).toEqual(['customer.subscription.updated', 'subscription_schedule.released', 'invoice.paid']);
    const onMonthly = await view(user);
    expect(onMonthly as unknown).toMatchObject({ priceId: env('STRIPE_PRICE_ID'), scheduledChange: null, lastPayment: { status: 'paid', amount: 900 } });
    expect(seconds(onMonthly?.currentPeriodEnd)).toBe(addMonth(seconds(onYearly?.currentPeriodEnd) ?? 0));

    await run('cancel-at-period-end', user);
    expect(await view(user)).toMatchObject({ accessReason: 'canceling', cancelAtPeriodEnd: true });
    const kept = await run('uncancel', user);
    expect(kept.events[0]?.data).toMatchObject({ previous_attributes: { cancel_at_period_end: true } });
    expect(await view(user)).toMatchObject({ accessReason: 'active', cancelAtPeriodEnd: false });
    await expect(plan('uncancel', user)).rejects.toThrow(FlowError);
  });

  it('subscribe, renew, payment-failed twice, recover, cancel-at-period-end, cancel, subscribe again', async () => {
    const user = newUser();
    // The dashboard's Subscribe: checkout stores the user's Stripe customer.
    expect((await checkout(authedPost('http://localhost/api/stripe/checkout', user.token))).status).toBe(200);
    const [{ stripe_customer_id: customer } = { stripe_customer_id: '' }] = await query<{ stripe_customer_id: string }>(
      'select stripe_customer_id from billing_customers where user_id = $1',
      [user.id],
    );
    expect(await view(user)).toBeNull();

    const subscribed = await run('subscribe', user);
    expect(types(subscribed)).toEqual(['customer.subscription.created', 'invoice.paid', 'customer.subscription.updated', 'checkout.session.completed']);
    expect(subscribed.customerId).toBe(customer);
    const active = await view(user);
    expect(active).toMatchObject({ status: 'active', access: true, accessReason: 'active', priceId: env('STRIPE_PRICE_ID'), cancelAtPeriodEnd: false });
    expect(active?.lastPayment).toMatchObject({ status: 'paid', amount: 900, currency: 'eur', nextPaymentAttempt: null });
    expect(active?.lastPayment?.invoiceUrl).toMatch(/^https:\/\/invoice\.stripe\.com\//);
    const firstEnd = seconds(active?.currentPeriodEnd) ?? 0;
    expect(firstEnd - Date.now() / 1000).toBeGreaterThan(27 * DAY);

    const renewed = await run('renew', user);
    expect(types(renewed)).toEqual(['customer.subscription.updated', 'invoice.paid']);
    expect(renewed.subscriptionId).toBe(subscribed.subscriptionId);
    const afterRenewal = await view(user);
    expect(afterRenewal).toMatchObject({ status: 'active', access: true });
    expect(seconds(afterRenewal?.currentPeriodEnd)).toBe(addMonth(firstEnd));
    expect(afterRenewal?.lastPayment?.at).not.toBe(active?.lastPayment?.at);

    const failed = await run('payment-failed', user);
    expect(types(failed)).toEqual(['invoice.payment_failed', 'customer.subscription.updated']);
    const pastDue = await view(user);
    expect(pastDue).toMatchObject({ status: 'past_due', access: true, accessReason: 'grace_period' });
    expect(pastDue?.lastPayment).toMatchObject({ status: 'failed', amount: 900 });
    expect(seconds(pastDue?.lastPayment?.nextPaymentAttempt)).toBe((seconds(pastDue?.lastPayment?.at) ?? 0) + 3 * DAY);
    expect(seconds(pastDue?.graceUntil)).toBe((seconds(pastDue?.lastPayment?.at) ?? 0) + 7 * DAY);
    expect(seconds(pastDue?.currentPeriodEnd)).toBe(addMonth(addMonth(firstEnd)));

    // The retry of the same invoice fails too: still past due, same period, the grace period unchanged.
    const retried = await run('payment-failed', user);
    expect(types(retried)).toEqual(['invoice.payment_failed']);
    const [invoiceOfRetry] = retried.events.map((e) => (e.data.object as Stripe.Invoice).id);
    expect(invoiceOfRetry).toBe((failed.events[0]?.data.object as Stripe.Invoice).id);
    expect(await view(user)).toMatchObject({ status: 'past_due', graceUntil: pastDue?.graceUntil, currentPeriodEnd: pastDue?.currentPeriodEnd });

    expect(types(await run('recover', user))).toEqual(['invoice.paid', 'customer.subscription.updated']);
    expect(await view(user)).toMatchObject({ status: 'active', access: true, accessReason: 'active', graceUntil: null, lastPayment: { status: 'paid' } });

    const canceling = await run('cancel-at-period-end', user);
    expect(canceling.events[0]?.request?.id).toMatch(/^req_/); // the customer did it, in the portal
    expect(await view(user)).toMatchObject({ status: 'active', access: true, accessReason: 'canceling', cancelAtPeriodEnd: true });
    await expect(plan('renew', user)).rejects.toThrow(/will not renew/);
    await expect(plan('cancel-at-period-end', user)).rejects.toThrow(/already cancels/);

    expect(types(await run('cancel', user))).toEqual(['customer.subscription.deleted']);
    expect(await view(user)).toMatchObject({ status: 'canceled', access: false, accessReason: 'canceled' });
    await expect(plan('renew', user)).rejects.toThrow(FlowError);
    await expect(plan('cancel', user)).rejects.toThrow(/its subscription is canceled/);

    // A canceled customer may subscribe again: a new subscription for the same customer.
    const again = await run('subscribe', user);
    expect(again.subscriptionId).not.toBe(subscribed.subscriptionId);
    expect(again.customerId).toBe(customer);
    expect(await view(user)).toMatchObject({ status: 'active', access: true });
  });

  it('trial: trialing with a trial end, the reminder, then the first paid period from the trial end', async () => {
    const user = newUser();
    const trial = await run('trial', user);
    expect(types(trial)).toEqual(['customer.subscription.created', 'invoice.paid', 'checkout.session.completed']);
    const trialing = await view(user);
    expect(trialing).toMatchObject({ status: 'trialing', access: true, accessReason: 'trialing', lastPayment: { status: 'paid', amount: 0 } });
    const trialEnd = seconds(trialing?.trialEnd) ?? 0;
    expect(Math.round((trialEnd - Date.now() / 1000) / DAY)).toBe(14);

    await run('trial-will-end', user);
    const [reminded] = await query<{ trial_will_end_at: Date | null }>('select trial_will_end_at from billing_subscriptions where stripe_subscription_id = $1', [trial.subscriptionId]);
    expect(reminded?.trial_will_end_at).toBeInstanceOf(Date);

    await run('renew', user);
    const paying = await view(user);
    expect(paying).toMatchObject({ status: 'active', access: true, lastPayment: { status: 'paid', amount: 900 } });
    expect(seconds(paying?.currentPeriodEnd)).toBe(addMonth(trialEnd));
  });

  it('a team\'s seats: the subscription is the team\'s, carries its quantity, and every invoice charges per seat', async () => {
    const buyer = newUser();
    const teamId = randomUUID();
    await query('insert into billing_team_members (team_id, user_id, role) values ($1, $2, $3)', [teamId, buyer.id, 'owner']);
    await query('select billing_link_customer($1, $2, $3)', [teamId, `cus_team${teamId.slice(0, 8)}`, buyer.email]);
    const runForTeam = async (flow: Flow, options: Partial<FlowOptions> = {}) => {
      const planned = planFlow(flow, await readStoredBilling(db(), teamId), { userId: buyer.id, teamId, email: buyer.email, priceId: env('STRIPE_PRICE_ID'), ...options });
      for (const event of planned.events) expect((await webhook(signedDelivery(JSON.stringify(event)))).status, `${flow}: ${event.type}`).toBe(200);
      return planned.events;
    };
    const items = (event: Stripe.Event | undefined) => (event?.data.object as Stripe.Subscription).items.data.map((item) => item.quantity);
    const charged = (events: Stripe.Event[]) => events.filter((e) => e.type.startsWith('invoice.')).map((e) => (e.data.object as Stripe.Invoice).amount_due);

    const subscribed = await runForTeam('subscribe', { quantity: 3 });
    expect(items(subscribed[0])).toEqual([3]);
    expect((subscribed[0]?.data.object as Stripe.Subscription).metadata).toEqual({ userId: buyer.id, email: buyer.email, teamId });
    expect(charged(subscribed)).toEqual([2700]);
    const [row] = await query<{ user_id: string; quantity: number }>('select user_id, quantity from billing_subscriptions where stripe_customer_id = $1', [`cus_team${teamId.slice(0, 8)}`]);
    expect(row).toEqual({ user_id: teamId, quantity: 3 });
    expect(await readStoredBilling(db(), buyer.id)).toMatchObject({ subscription: null });

    // Later flows read the stored quantity: the renewal, its failure and the retry bill three seats.
    const renewed = await runForTeam('renew');
    expect(items(renewed[0])).toEqual([3]);
    expect(charged(renewed)).toEqual([2700]);
    expect(charged(await runForTeam('payment-failed'))).toEqual([2700]);
    expect(charged(await runForTeam('recover'))).toEqual([2700]);
  });

  it('refuses a flow that does not fit the stored state, before sending anything', async () => {
    const user = newUser();
    for (const flow of ['renew', 'payment-failed', 'recover', 'cancel-at-period-end', 'cancel', 'trial-will-end'] as const) {
      await expect(plan(flow, user), flow).rejects.toThrow(/needs a live subscription.*no subscription/);
    }
    await run('subscribe', user);
    await expect(plan('subscribe', user)).rejects.toThrow(/already has a subscription \(active\)/);
    await expect(plan('trial', user)).rejects.toThrow(FlowError);
    await expect(plan('recover', user)).rejects.toThrow(/past_due or unpaid; .* is active/);
  });

  it('plans events a second apart, after the newest stored state, all test mode, unique ids', async () => {
    const user = newUser();
    const first = await run('subscribe', user);
    const times = first.events.map((e) => e.created);
    expect(times.slice(1).map((t, i) => t - (times[i] ?? 0))).toEqual([1, 1, 1]);
    // Planned at once, as a script run right after the last one would be: still newer
    // than every subscription and invoice event stored (a checkout session is no state).
    const next = await plan('cancel-at-period-end', user);
    const stateTimes = first.events.filter((e) => e.type !== 'checkout.session.completed').map((e) => e.created);
    expect(next.events[0]?.created).toBeGreaterThan(Math.max(...stateTimes));
    const all = [...first.events, ...next.events];
    expect(new Set(all.map((e) => e.id)).size).toBe(all.length);
    expect(all.every((e) => e.livemode === false && e.api_version === '2026-10-28.endive')).toBe(true);
  });
});

// The script, over HTTP ------------------------------------------------------------

let server: Server;
let webhookUrl: string;

beforeAll(async () => {
  // The webhook function behind a real HTTP port, as netlify dev would serve it.
  server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const headers = new Headers();
      for (const [name, value] of Object.entries(req.headers)) if (typeof value === 'string') headers.set(name, value);
      webhook(new Request(`http://localhost${req.url ?? '/'}`, { method: req.method ?? 'GET', headers, body: Buffer.concat(chunks) }))
        .then(async (response) => {
          res.writeHead(response.status, Object.fromEntries(response.headers));
          res.end(await response.text());
        })
        .catch((error: unknown) => {
          res.writeHead(500);
          res.end(String(error));
        });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  webhookUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}/api/stripe/webhook`;
});

afterAll(async () => {
  await new Promise((resolve) => server.close(resolve));
});

function trigger(...args: string[]): Promise<TriggerResult> {
  return runTrigger(webhookUrl, ...args);
}

describe('npm run stripe:trigger', () => {
  it('subscribe then cancel for the dashboard\'s test user, by email', async () => {
    const email = `trigger-${Date.now()}@example.com`;
    const user: TestUser = {
      id: localUserId(email),
      email,
      token: mintAccessToken({ sub: localUserId(email), email, secret: env('SUPABASE_JWT_SECRET'), issuer: issuerFor(env('SUPABASE_URL')) }),
    };

    const subscribed = await trigger('subscribe', '--email', email);
    expect(subscribed.stderr).toBe('');
    expect(subscribed.code).toBe(0);
    const lines = subscribed.stdout.trim().split('\n');
    expect(lines.slice(0, 4).map((line) => line.split(/\s+/)[0])).toEqual([
      'customer.subscription.created',
      'invoice.paid',
      'customer.subscription.updated',
      'checkout.session.completed',
    ]);
    for (const line of lines.slice(0, 4)) expect(line).toMatch(/ evt_\w+ -> 200 \{"received":true\}$/);
    expect(lines[4]).toMatch(new RegExp(`^subscribe: 4 event\\(s\\) delivered for user ${user.id} \\(customer cus_\\w+, subscription sub_\\w+\\)$`));
    expect(await view(user)).toMatchObject({ status: 'active', access: true });

    const canceled = await trigger('cancel', '--user', user.id);
    expect(canceled.code).toBe(0);
    expect(canceled.stdout).toMatch(/^customer\.subscription\.deleted\s+evt_\w+ -> 200/);
    expect(await view(user)).toMatchObject({ status: 'canceled', access: false });
  });

  it('keeps the seed\'s single event: checkout.session.completed --token', async () => {
    const user = newUser();
    const result = await trigger('checkout.session.completed', '--token', user.token);
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/^checkout\.session\.completed\s+evt_\w+ -> 200/);
    expect(await view(user)).toMatchObject({ status: 'active', access: true });
  });

  it('--dry-run prints the events and sends nothing', async () => {
    const user = newUser();
    const result = await trigger('trial', '--user', user.id, '--dry-run');
    expect(result.code).toBe(0);
    const events = JSON.parse(result.stdout) as Stripe.Event[];
    expect(events.map((e) => e.type)).toEqual(['customer.subscription.created', 'invoice.paid', 'checkout.session.completed']);
    expect(await view(user)).toBeNull();
  });

  it('--api-version renders the flow as an older endpoint receives it, with the same result', async () => {
    const user = newUser();
    const dry = await trigger('subscribe', '--user', user.id, '--api-version', '2024-06-20', '--dry-run');
    expect(dry.code).toBe(0);
    const events = JSON.parse(dry.stdout) as (Stripe.Event & { data: { object: Record<string, unknown> } })[];
    expect(new Set(events.map((e) => e.api_version))).toEqual(new Set(['2024-06-20']));
    const created = events.find((e) => e.type === 'customer.subscription.created');
    expect(created?.data.object['current_period_end']).toEqual(expect.any(Number));

    const sent = await trigger('subscribe', '--user', user.id, '--api-version', '2024-06-20');
    expect(sent.code).toBe(0);
    expect(await view(user)).toMatchObject({ status: 'active', access: true });

    const wrong = await trigger('subscribe', '--user', user.id, '--api-version', '2019-01-01');
    expect(wrong.code).toBe(2);
    expect(wrong.stderr).toMatch(/--api-version must be one of 2024-06-20/);
  });

  it('exits 2 with the reason for a flow that does not fit, an unknown flow, or no user', async () => {
    const user = newUser();
    const renew = await trigger('renew', '--user', user.id);
    expect(renew).toMatchObject({ code: 2, stdout: '' });
    expect(renew.stderr).toMatch(/renew needs a live subscription/);

    const unknown = await trigger('refund', '--user', user.id);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/unknown flow "refund"[\s\S]*payment-failed/);

    const nobody = await trigger('subscribe');
    expect(nobody.code).toBe(2);
    expect(nobody.stderr).toMatch(/--user <uuid>, --email <email> or --token/);
  });
});
