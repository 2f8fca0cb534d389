// Account deletion (src/billing/forget.ts, npm run billing:forget) against stripe-mock
// and the real database. The mock is stateless: it lists one fixture subscription for
// any customer and deletes any id, so the test asserts what was sent to Stripe, and
// what the database holds after one run and after a second.

import { describe, expect, it } from 'vitest';
import checkout from '../netlify/functions/stripe-checkout.mts';
import status from '../netlify/functions/stripe-subscription.mts';
import webhook from '../netlify/functions/stripe-webhook.mts';
import { forgetUser } from '../src/billing/forget.ts';
import { loadJobConfig } from '../src/config.ts';
import { createStore } from '../src/store.ts';
import { createStripe } from '../src/stripe-client.ts';
import { subscriptionEvent } from './support/events.ts';
import { authedPost, newUser, query, signedDelivery, stripeRequests } from './support/stack.ts';
import { runScript } from './support/trigger.ts';

const DAY = 86_400;

describe('forgetting a user who deletes their account', () => {
  it('takes the email out of Stripe metadata, cancels their subscriptions now, deletes their customer, keeps the rows as canceled history; again changes nothing', async () => {
    const user = newUser();
    expect((await checkout(authedPost('http://localhost/api/stripe/checkout', user.token))).status).toBe(200);
    const [link] = await query<{ stripe_customer_id: string; email: string }>('select stripe_customer_id, email from billing_customers where user_id = $1', [user.id]);
    const customerId = link?.stripe_customer_id ?? '';
    expect(link?.email).toBe(user.email);
    const t = Math.floor(Date.now() / 1000);
    const ids = { userId: user.id, customerId, subscriptionId: `sub_forget${user.id.slice(0, 8)}` };
    expect((await webhook(signedDelivery(JSON.stringify(subscriptionEvent('customer.subscription.created', ids, t, { status: 'active', periodStart: t, periodEnd: t + 30 * DAY }))))).status).toBe(200);

    const config = loadJobConfig(process.env);
    const deps = { stripe: await createStripe(config.stripe), store: createStore(config.store), livemode: false };
    const report = await forgetUser(deps, user.id);
    expect(report).toMatchObject({ userId: user.id, customerId, customerDeleted: 'deleted' });

    // The email out of the metadata of every subscription and Checkout Session Stripe
    // lists for the customer (checkout wrote it on both), each before the subscription is
    // canceled (Stripe refuses metadata on a canceled one) and before the customer goes.
    const all = await stripeRequests(() => true);
    const listed = all.findIndex((r) => r.method === 'GET' && r.path === '/v1/subscriptions' && r.params['customer'] === customerId);
    const deleted = all.findIndex((r) => r.method === 'DELETE' && r.path === `/v1/customers/${customerId}`);
    expect(listed).toBeGreaterThanOrEqual(0);
    expect(deleted).toBeGreaterThan(listed);
    const run = all.slice(listed, deleted);
    const subscriptions = (await deps.stripe.subscriptions.list({ customer: customerId, status: 'all' })).data.map((s) => s.id);
    const sessions = (await deps.stripe.checkout.sessions.list({ customer: customerId })).data.map((s) => s.id);
    expect(subscriptions.length).toBeGreaterThan(0);
    expect(sessions.length).toBeGreaterThan(0);
    const scrubAt = (path: string, id: string) => {
      const at = run.findIndex((r) => r.method === 'POST' && r.path === path && r.idempotencyKey === `billing-forget-scrub-${id}`);
      expect(at, `POST ${path} before DELETE /v1/customers/${customerId}`).toBeGreaterThanOrEqual(0);
      expect(run[at]?.params).toEqual({ 'metadata[email]': '' });
      return at;
    };
    for (const id of subscriptions) {
      const cancel = run.findIndex((r) => r.method === 'DELETE' && r.path === `/v1/subscriptions/${id}` && r.idempotencyKey === `billing-forget-${id}`);
      expect(cancel).toBeGreaterThanOrEqual(0);
      expect(scrubAt(`/v1/subscriptions/${id}`, id)).toBeLessThan(cancel);
    }
    for (const id of sessions) scrubAt(`/v1/checkout/sessions/${id}`, id);
    expect(report).toMatchObject({ scrubbedSubscriptions: subscriptions, scrubbedCheckoutSessions: sessions, unscrubbedSubscriptions: [], unscrubbedCheckoutSessions: [] });

    const sent = await stripeRequests((r) => r.params['customer'] === customerId || r.path === `/v1/customers/${customerId}` || report.canceledSubscriptions.some((id) => r.path === `/v1/subscriptions/${id}`));
    expect(sent.map((r) => `${r.method} ${r.path}`)).toEqual(
      expect.arrayContaining(['GET /v1/subscriptions', ...report.canceledSubscriptions.map((id) => `DELETE /v1/subscriptions/${id}`), `DELETE /v1/customers/${customerId}`]),
    );
    expect(report.canceledSubscriptions.length).toBeGreaterThan(0);
    for (const id of report.canceledSubscriptions) {
      expect(sent.find((r) => r.method === 'DELETE' && r.path === `/v1/subscriptions/${id}`)?.idempotencyKey).toBe(`billing-forget-${id}`);
    }

    // Locally: no link (it held the email), the subscription kept, reading as canceled.
    expect(await query('select 1 from billing_customers where user_id = $1', [user.id])).toEqual([]);
    expect(await query('select stripe_subscription_id from billing_subscriptions where user_id = $1', [user.id])).toEqual([{ stripe_subscription_id: ids.subscriptionId }]);
    const view = await status(new Request('http://localhost/api/stripe/subscription', { headers: { authorization: `Bearer ${user.token}` } }));
    expect(await view.json()).toMatchObject({ subscription: { status: 'canceled', access: false } });

    // Stripe's customer.deleted arrives later: nothing more changes.
    const before = await query('select * from billing_accounts where user_id = $1', [user.id]);
    const again = await runScript('billing-forget.ts', ['--user', user.id]);
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout).toMatch(new RegExp(`^forgot user ${user.id}: customer ${customerId} deleted, .*, email removed from the metadata of ${subscriptions.length} subscription\\(s\\) and ${sessions.length} checkout session\\(s\\)$`, 'm'));
    expect(await query('select * from billing_accounts where user_id = $1', [user.id])).toEqual(before);
    expect(await query("select outcome from stripe_events where id = $1", [`forget_${customerId}`])).toEqual([{ outcome: 'applied' }]);
  });

  it('a user who never had a customer: nothing to end; a bad user id: exit 2', async () => {
    const nobody = await runScript('billing-forget.ts', ['--user', newUser().id]);
    expect(nobody.code).toBe(0);
    expect(nobody.stdout).toMatch(/has no Stripe customer: nothing to end/);
    expect((await runScript('billing-forget.ts', ['--user', 'ada'])).code).toBe(2);
  });
});
