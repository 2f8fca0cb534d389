// Account deletion (src/accounts/forget.ts, npm run billing:forget) against stripe-mock
// and the real database. The mock is stateless: it lists one fixture subscription for
// any customer and deletes any id, so the test asserts what was sent to Stripe, and
// what the database holds after one run and after a second. A team's customer, its
// subscriptions and its sessions are served by the bridge (postStripeObject,
// postStripeList) with the metadata our checkout writes, which the fixtures lack.

import { describe, expect, it } from 'vitest';
import checkout from '../netlify/functions/stripe-checkout.mts';
import status from '../netlify/functions/stripe-subscription.mts';
import webhook from '../netlify/functions/stripe-webhook.mts';
import { forgetSummary, forgetUser } from '../src/accounts/forget.ts';
import { loadJobConfig } from '../src/config/config.ts';
import { createStore } from '../src/database/store.ts';
import { createStripe } from '../src/stripe/client.ts';
import { subscriptionEvent } from './support/events.ts';
import { authedPost, newUser, postStripeList, postStripeObject, query, signedDelivery, stripeRequests, type TestUser } from './support/stack.ts';
import { team } from './support/teams.ts';
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

describe('forgetting a user who bought for a team', () => {
  const config = () => loadJobConfig(process.env);
  const forget = async (userId: string) => {
    const c = config();
    return forgetUser({ stripe: await createStripe(c.stripe), store: createStore(c.store), livemode: false }, userId);
  };
  const teamCheckout = async (user: TestUser, teamId: string): Promise<string> => {
    const response = await checkout(authedPost('http://localhost/api/stripe/checkout', user.token, { body: JSON.stringify({ team: teamId }) }));
    expect(response.status).toBe(200);
    const [link] = await query<{ stripe_customer_id: string; email: string | null }>('select stripe_customer_id, email from billing_customers where user_id = $1', [teamId]);
    // Created with what any manager would send: no buyer's email (Checkout asks for the billing email).
    expect(link?.email).toBeNull();
    return link?.stripe_customer_id ?? '';
  };
  const stored = (teamId: string) => query<{ stripe_customer_id: string; email: string | null }>('select stripe_customer_id, email from billing_customers where user_id = $1', [teamId]);
  // Objects as our checkout makes them for a team: the buyer and their email beside the team.
  const metadata = (buyer: TestUser, teamId: string) => ({ userId: buyer.id, email: buyer.email, teamId });
  const subscription = (id: string, customer: string, status: string, meta: Record<string, string>) => ({ id, object: 'subscription', customer, status, metadata: meta });
  const session = (id: string, customer: string, meta: Record<string, string>) => ({
    id, object: 'checkout.session', customer, status: 'complete', client_reference_id: meta['userId'] ?? null, metadata: meta,
  });
  /** What Stripe holds for the team's customer, as the bridge serves it. */
  const inStripe = async (customerId: string, state: { customer: { email: string | null; metadata: Record<string, string> }; subscriptions: unknown[]; sessions: unknown[] }) => {
    await postStripeObject(`/v1/customers/${customerId}`, { id: customerId, object: 'customer', ...state.customer });
    await postStripeList('/v1/subscriptions', { customer: customerId }, state.subscriptions);
    await postStripeList('/v1/checkout/sessions', { customer: customerId }, state.sessions);
  };
  const sentFor = (ids: string[]) => stripeRequests((r) => ids.some((id) => r.path.endsWith(`/${id}`)) && r.method !== 'GET');

  it("a buyer who left the team: their id and email leave what they bought for it and the team's customer; its subscription goes on, its customer stays, another member's purchases are untouched; their own billing ends as before; again sends nothing more", async () => {
    const t = await team('owner', 'admin');
    const [buyer, other] = t.users as [TestUser, TestUser];
    expect((await checkout(authedPost('http://localhost/api/stripe/checkout', buyer.token))).status).toBe(200);
    const [own] = await query<{ stripe_customer_id: string }>('select stripe_customer_id from billing_customers where user_id = $1', [buyer.id]);
    const teamCustomer = await teamCheckout(buyer, t.id);
    const tag = t.id.slice(0, 8);
    const ids = { bought: `sub_bought${tag}`, ended: `sub_ended${tag}`, others: `sub_others${tag}`, session: `cs_test_bought${tag}`, othersSession: `cs_test_others${tag}` };
    const at = Math.floor(Date.now() / 1000);
    const delivered = await webhook(signedDelivery(JSON.stringify(subscriptionEvent('customer.subscription.created', { userId: buyer.id, teamId: t.id, customerId: teamCustomer, subscriptionId: ids.bought }, at, { status: 'active', periodStart: at, periodEnd: at + 30 * DAY }))));
    expect(delivered.status).toBe(200);
    expect(await query('select user_id, buyer_id from billing_subscriptions where stripe_subscription_id = $1', [ids.bought])).toEqual([{ user_id: t.id, buyer_id: buyer.id }]);
    // They hand the team over and leave it: only the subscription they bought finds it.
    await query(`update billing_team_members set role = 'owner' where team_id = $1 and user_id = $2`, [t.id, other.id]);
    await query('delete from billing_team_members where team_id = $1 and user_id = $2', [t.id, buyer.id]);
    // The billing email the buyer gave at Checkout is theirs.
    await inStripe(teamCustomer, {
      customer: { email: buyer.email, metadata: { teamId: t.id } },
      subscriptions: [
        subscription(ids.bought, teamCustomer, 'active', metadata(buyer, t.id)),
        subscription(ids.ended, teamCustomer, 'canceled', metadata(buyer, t.id)),
        subscription(ids.others, teamCustomer, 'active', metadata(other, t.id)),
      ],
      sessions: [session(ids.session, teamCustomer, metadata(buyer, t.id)), session(ids.othersSession, teamCustomer, metadata(other, t.id))],
    });

    const report = await forget(buyer.id);
    expect(report).toMatchObject({ customerId: own?.stripe_customer_id, customerDeleted: 'deleted' });
    expect(report.teams).toEqual([{
      teamId: t.id,
      customerId: teamCustomer,
      scrubbedSubscriptions: [ids.bought],
      scrubbedCheckoutSessions: [ids.session],
      customerScrubbed: ['email'],
      storedEmailCleared: false,
      kept: [ids.ended],
    }]);

    // Only writes that take the buyer out: no cancel, no delete, nothing of the other member's.
    const sent = await sentFor([teamCustomer, ...Object.values(ids)]);
    expect(sent.map((r) => ({ call: `${r.method} ${r.path}`, params: r.params, key: r.idempotencyKey }))).toEqual([
      { call: `POST /v1/customers/${teamCustomer}`, params: { email: '' }, key: `billing-forget-team-email-${teamCustomer}-${buyer.id}` },
      { call: `POST /v1/subscriptions/${ids.bought}`, params: { 'metadata[userId]': '', 'metadata[email]': '' }, key: `billing-forget-team-scrub-${ids.bought}` },
      { call: `POST /v1/checkout/sessions/${ids.session}`, params: { 'metadata[userId]': '', 'metadata[email]': '' }, key: `billing-forget-team-scrub-${ids.session}` },
    ]);
    // The team keeps its customer (without the buyer's email) and its subscription.
    expect(await stored(t.id)).toEqual([{ stripe_customer_id: teamCustomer, email: null }]);
    expect(await query('select user_id, status from billing_subscriptions where stripe_subscription_id = $1', [ids.bought])).toEqual([{ user_id: t.id, status: 'active' }]);
    // Their own billing ends as before.
    expect(await stripeRequests((r) => r.method === 'DELETE' && r.path === `/v1/customers/${own?.stripe_customer_id}`)).toHaveLength(1);
    expect(await query('select 1 from billing_customers where user_id = $1', [buyer.id])).toEqual([]);

    // Again, with Stripe as the first run left it: nothing more is sent for the team.
    await inStripe(teamCustomer, {
      customer: { email: null, metadata: { teamId: t.id } },
      subscriptions: [
        subscription(ids.bought, teamCustomer, 'active', { teamId: t.id }),
        subscription(ids.ended, teamCustomer, 'canceled', metadata(buyer, t.id)),
        subscription(ids.others, teamCustomer, 'active', metadata(other, t.id)),
      ],
      sessions: [session(ids.session, teamCustomer, { teamId: t.id }), session(ids.othersSession, teamCustomer, metadata(other, t.id))],
    });
    const again = await runScript('billing-forget.ts', ['--user', buyer.id]);
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout).toContain(
      `; in 1 team(s) they bought for: team ${t.id} (customer ${teamCustomer} untouched): id and email removed from the metadata of 0 subscription(s) and 0 checkout session(s), none canceled, Stripe keeps them in ${ids.ended}\n`,
    );
    expect(await sentFor([teamCustomer, ...Object.values(ids)])).toEqual(sent);
  });

  it("a team whose billing email is not the buyer's keeps it; the buyer's id and email still leave what they bought", async () => {
    const t = await team('owner');
    const [buyer] = t.users as [TestUser];
    const teamCustomer = await teamCheckout(buyer, t.id);
    const bought = `sub_changed${t.id.slice(0, 8)}`;
    const at = Math.floor(Date.now() / 1000);
    expect((await webhook(signedDelivery(JSON.stringify(subscriptionEvent('customer.subscription.created', { userId: buyer.id, teamId: t.id, customerId: teamCustomer, subscriptionId: bought }, at, { status: 'active', periodStart: at, periodEnd: at + 30 * DAY }))))).status).toBe(200);
    await inStripe(teamCustomer, {
      customer: { email: 'billing@team.example', metadata: { teamId: t.id } },
      subscriptions: [subscription(bought, teamCustomer, 'active', metadata(buyer, t.id))],
      sessions: [],
    });

    const report = await forget(buyer.id);
    expect(report).toMatchObject({ customerId: null, customerDeleted: 'no customer' });
    expect(report.teams).toEqual([{ teamId: t.id, customerId: teamCustomer, scrubbedSubscriptions: [bought], scrubbedCheckoutSessions: [], customerScrubbed: [], storedEmailCleared: false, kept: [] }]);
    expect((await sentFor([teamCustomer, bought])).map((r) => ({ call: `${r.method} ${r.path}`, params: r.params }))).toEqual([
      { call: `POST /v1/subscriptions/${bought}`, params: { 'metadata[userId]': '', 'metadata[email]': '' } },
    ]);
    expect(await stored(t.id)).toEqual([{ stripe_customer_id: teamCustomer, email: null }]);
    expect(forgetSummary(report)).toBe(
      `forgot user ${buyer.id}: no Stripe customer of their own; in 1 team(s) they bought for: team ${t.id} (customer ${teamCustomer} untouched): ` +
        'id and email removed from the metadata of 1 subscription(s) and 0 checkout session(s), none canceled',
    );
  });

  it("a member's abandoned team checkout is found through the membership; a team where they bought nothing is left alone", async () => {
    const t = await team('owner', 'admin');
    const [, member] = t.users as [TestUser, TestUser];
    const teamCustomer = await teamCheckout(member, t.id);
    const abandoned = `cs_test_abandoned${t.id.slice(0, 8)}`;
    await inStripe(teamCustomer, {
      customer: { email: null, metadata: { teamId: t.id } },
      subscriptions: [],
      sessions: [{ ...session(abandoned, teamCustomer, metadata(member, t.id)), status: 'expired' }],
    });
    // Another team they are in, whose billing its owner bought: nothing of theirs there.
    const elsewhere = await team('owner');
    const [elsewhereOwner] = elsewhere.users as [TestUser];
    await query(`insert into billing_team_members (team_id, user_id, role) values ($1, $2, 'member')`, [elsewhere.id, member.id]);
    const elsewhereCustomer = await teamCheckout(elsewhereOwner, elsewhere.id);
    const ownersSession = `cs_test_owners${elsewhere.id.slice(0, 8)}`;
    await inStripe(elsewhereCustomer, {
      customer: { email: elsewhereOwner.email, metadata: { teamId: elsewhere.id } },
      subscriptions: [],
      sessions: [session(ownersSession, elsewhereCustomer, metadata(elsewhereOwner, elsewhere.id))],
    });

    const report = await forget(member.id);
    expect(report.teams).toEqual([{ teamId: t.id, customerId: teamCustomer, scrubbedSubscriptions: [], scrubbedCheckoutSessions: [abandoned], customerScrubbed: [], storedEmailCleared: false, kept: [] }]);
    expect((await sentFor([teamCustomer, abandoned])).map((r) => `${r.method} ${r.path} ${JSON.stringify(r.params)}`)).toEqual([
      `POST /v1/checkout/sessions/${abandoned} {"metadata[userId]":"","metadata[email]":""}`,
    ]);
    expect(await stored(t.id)).toEqual([{ stripe_customer_id: teamCustomer, email: null }]);
    expect(await sentFor([elsewhereCustomer, ownersSession])).toEqual([]);
    expect(await stored(elsewhere.id)).toEqual([{ stripe_customer_id: elsewhereCustomer, email: null }]);
    // The team's owner is still in it; its membership is the product's, not forget's.
    expect(await query('select user_id from billing_team_members where team_id = $1', [t.id])).toHaveLength(2);
  });
});
