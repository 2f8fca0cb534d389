// Teams through the front door: a team's owners and admins buy and manage its billing,
// its members read it, and its subscription is the team's through the team's customer.

import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import checkout from '../netlify/functions/stripe-checkout.mts';
import portal from '../netlify/functions/stripe-portal.mts';
import status from '../netlify/functions/stripe-subscription.mts';
import sync from '../netlify/functions/stripe-sync.mts';
import webhook from '../netlify/functions/stripe-webhook.mts';
import { startCheckout, teamCustomerIdempotencyKey } from '../src/accounts/checkout.ts';
import { catalogPrices } from '../src/catalog/prices.ts';
import { subscriptionStatus } from '../src/accounts/status.ts';
import { loadCheckoutConfig, loadStatusConfig } from '../src/config/config.ts';
import { nodeFetch } from '../src/core/node-fetch.ts';
import { createStore } from '../src/database/store.ts';
import { lazyStripe } from '../src/stripe/client.ts';
import { createLogger } from '../src/core/log.ts';
import { catalogEnv } from './support/catalog.ts';
import { checkoutCompletedEvent, invoiceEvent, subscriptionEvent, type Ids } from './support/events.ts';
import { authedPost, newUser, postStripeObject, query, signedDelivery, stripeRequests, withEnv, type TestUser } from './support/stack.ts';
import { team } from './support/teams.ts';
import { calendarMonth, untouchedUsage } from './support/usage.ts';

const DAY = 86_400;
const now = () => Math.floor(Date.now() / 1000);

const post = (fn: (req: Request) => Promise<Response>, path: string, user: TestUser, body?: unknown) =>
  withEnv(catalogEnv(), () => fn(authedPost(`http://localhost/api/stripe/${path}`, user.token, body === undefined ? {} : { body: JSON.stringify(body) })));
const statusOf = (user: TestUser, query = '') =>
  status(new Request(`http://localhost/api/stripe/subscription${query}`, { headers: { authorization: `Bearer ${user.token}` } }));

async function deliver(event: unknown): Promise<void> {
  const response = await withEnv(catalogEnv(), () => webhook(signedDelivery(JSON.stringify(event))));
  expect(response.status).toBe(200);
}

async function teamCustomer(teamId: string): Promise<string | undefined> {
  return (await query<{ stripe_customer_id: string }>('select stripe_customer_id from billing_customers where user_id = $1', [teamId]))[0]?.stripe_customer_id;
}

/** The team's subscription as its buyer's checkout made it, delivered by Stripe. */
async function subscribed(t: { id: string; users: TestUser[] }, state: { trialStart?: number } = {}): Promise<Ids> {
  const buyer = t.users[0];
  if (!buyer) throw new Error('no buyer');
  expect((await post(checkout, 'checkout', buyer, { team: t.id })).status).toBe(200);
  const customerId = await teamCustomer(t.id);
  if (!customerId) throw new Error('checkout stored no team customer');
  const ids: Ids = { userId: buyer.id, teamId: t.id, customerId, subscriptionId: `sub_team${t.id.slice(0, 8)}` };
  const at = now();
  await deliver(checkoutCompletedEvent(ids, at - 60, buyer.email));
  await deliver(subscriptionEvent('customer.subscription.created', ids, at - 60, {
    status: state.trialStart ? 'trialing' : 'active',
    periodStart: at - 60,
    periodEnd: at + 30 * DAY,
    productId: 'analytics_business',
    ...(state.trialStart && { trialStart: state.trialStart, trialEnd: at + 14 * DAY }),
  }));
  return ids;
}

describe('POST /api/stripe/checkout {"team"}', () => {
  it('an owner or admin buys for the team: one team customer, the session names the team beside the buyer', async () => {
    const t = await team('owner', 'admin');
    const [owner, admin] = t.users as [TestUser, TestUser];
    const [a, b] = await Promise.all([post(checkout, 'checkout', owner, { team: t.id }), post(checkout, 'checkout', admin, { team: t.id })]);
    expect([a.status, b.status]).toEqual([200, 200]);

    const customerId = await teamCustomer(t.id);
    expect(customerId).toMatch(/^cus_/);
    const creates = await stripeRequests((r) => r.method === 'POST' && r.path === '/v1/customers' && r.params['metadata[teamId]'] === t.id);
    expect(new Set(creates.map((r) => r.idempotencyKey))).toEqual(new Set([teamCustomerIdempotencyKey(t.id)]));
    // The buyers' own billing is untouched: no customer of theirs.
    expect(await query('select 1 from billing_customers where user_id = any($1)', [[owner.id, admin.id]])).toEqual([]);

    const sessions = await stripeRequests((r) => r.path === '/v1/checkout/sessions' && r.params['metadata[teamId]'] === t.id);
    expect(sessions).toHaveLength(2);
    for (const session of sessions) {
      expect(session.params['customer']).toBe(customerId);
      expect(session.params['subscription_data[metadata][teamId]']).toBe(t.id);
      expect([owner.id, admin.id]).toContain(session.params['client_reference_id']);
      expect(session.params['metadata[userId]']).toBe(session.params['client_reference_id']);
    }
  });

  it.each<[string, () => Promise<{ user: TestUser; team: string }>]>([
    ['a member', async () => { const t = await team('owner', 'member'); return { user: t.users[1] as TestUser, team: t.id }; }],
    ['a non-member', async () => ({ user: newUser(), team: (await team('owner')).id })],
    ['an unknown team', () => Promise.resolve({ user: newUser(), team: randomUUID() })],
  ])('%s: 403, nothing sent to Stripe', async (_name, given) => {
    const { user, team: teamId } = await given();
    const response = await post(checkout, 'checkout', user, { team: teamId });
    expect(response.status).toBe(403);
    expect(await response.json()).toEqual({ error: "Not allowed to manage this team's billing" });
    expect(await stripeRequests((r) => JSON.stringify(r.params).includes(teamId))).toEqual([]);
  });

  it('a team that is not a UUID: 400 Invalid team, before the role check', async () => {
    for (const bad of ['not-a-uuid', 42, '']) {
      const response = await post(checkout, 'checkout', newUser(), { team: bad });
      expect(response.status).toBe(400);
      expect(await response.json()).toEqual({ error: 'Invalid team' });
    }
  });

  it('Already subscribed is per subject: the team is, its owner is not', async () => {
    const t = await team('owner');
    await subscribed(t);
    const owner = t.users[0] as TestUser;
    const again = await post(checkout, 'checkout', owner, { team: t.id });
    expect(again.status).toBe(400);
    expect(await again.json()).toEqual({ error: 'Already subscribed' });
    expect((await post(checkout, 'checkout', owner)).status).toBe(200);
  });

  it('one trial per team ever, and none when its buyer had one, personally or for another team', async () => {
    const trialOf = async (user: TestUser, teamId: string) => {
      expect((await post(checkout, 'checkout', user, { team: teamId, price: 'pro_monthly' })).status).toBe(200);
      const sessions = await stripeRequests((r) => r.path === '/v1/checkout/sessions' && r.params['metadata[teamId]'] === teamId && r.params['client_reference_id'] === user.id);
      return sessions.at(-1)?.params['subscription_data[trial_period_days]'];
    };
    const first = await team('owner');
    const buyer = first.users[0] as TestUser;
    expect(await trialOf(buyer, first.id)).toBe('14');

    // The buyer trials the first team; a second team of theirs gets no trial.
    await subscribed(first, { trialStart: now() - 60 });
    const second = await team('owner');
    await query(`insert into billing_team_members (team_id, user_id, role) values ($1, $2, 'admin')`, [second.id, buyer.id]);
    expect(await trialOf(buyer, second.id)).toBeUndefined();
    // Its own owner, who never trialed, still gets one there.
    expect(await trialOf(second.users[0] as TestUser, second.id)).toBe('14');
    // Nor does the buyer get one for themselves now.
    expect((await post(checkout, 'checkout', buyer, { price: 'pro_monthly' })).status).toBe(200);
    const own = await stripeRequests((r) => r.path === '/v1/checkout/sessions' && r.params['client_reference_id'] === buyer.id && r.params['metadata[teamId]'] === undefined);
    expect(own.at(-1)?.params['subscription_data[trial_period_days]']).toBeUndefined();
  });

  it('trial checkouts for three teams at once: one offers the trial, while it can be completed', async () => {
    const buyer = newUser();
    const teams = await Promise.all([team('owner'), team('owner'), team('owner')]);
    for (const t of teams) await query(`insert into billing_team_members (team_id, user_id, role) values ($1, $2, 'admin')`, [t.id, buyer.id]);
    const answers = await Promise.all(teams.map((t) => post(checkout, 'checkout', buyer, { team: t.id, price: 'pro_monthly' })));
    expect(answers.map((r) => r.status)).toEqual([200, 200, 200]);
    const sessions = await stripeRequests((r) => r.path === '/v1/checkout/sessions' && r.params['client_reference_id'] === buyer.id);
    expect(sessions).toHaveLength(3);
    const offered = sessions.filter((r) => r.params['subscription_data[trial_period_days]'] === '14');
    expect(offered).toHaveLength(1);
    // The team it was offered for is offered it again (a second try at the same checkout).
    const teamId = offered[0]?.params['metadata[teamId]'] ?? '';
    expect((await post(checkout, 'checkout', buyer, { team: teamId, price: 'pro_monthly' })).status).toBe(200);
    const again = await stripeRequests((r) => r.path === '/v1/checkout/sessions' && r.params['client_reference_id'] === buyer.id && r.params['metadata[teamId]'] === teamId);
    expect(again.at(-1)?.params['subscription_data[trial_period_days]']).toBe('14');
  });
});

describe('the team\'s subscription is the team\'s', () => {
  it('webhooks attach it to the team through its customer, not to the buyer named in metadata', async () => {
    const t = await team('owner', 'member');
    const ids = await subscribed(t);
    const rows = await query<{ user_id: string; buyer_id: string }>('select user_id, buyer_id from billing_subscriptions where stripe_subscription_id = $1', [ids.subscriptionId]);
    expect(rows).toEqual([{ user_id: t.id, buyer_id: ids.userId }]);
    // The buyer's own billing shows nothing.
    expect(await (await statusOf(t.users[0] as TestUser)).json()).toEqual({ subscription: null, ...untouchedUsage(null, calendarMonth()) });
  });

  it('a team session whose customer is not the team\'s stored customer links nothing', async () => {
    const t = await team('owner');
    const buyer = t.users[0] as TestUser;
    const ids: Ids = { userId: buyer.id, teamId: t.id, customerId: `cus_stranger${t.id.slice(0, 8)}`, subscriptionId: `sub_stranger${t.id.slice(0, 8)}` };
    const event = checkoutCompletedEvent(ids, now(), buyer.email);
    await deliver(event);
    expect(await query<{ outcome: string }>('select outcome from stripe_events where id = $1', [event.id])).toEqual([{ outcome: 'skipped' }]);
    expect(await query('select 1 from billing_customers where user_id = $1 or stripe_customer_id = $2', [t.id, ids.customerId])).toEqual([]);
  });
});

describe('GET /api/stripe/subscription?team=', () => {
  it('members read the team\'s status, with their role and the member count', async () => {
    const t = await team('owner', 'admin', 'member');
    await subscribed(t);
    for (const [i, role] of (['owner', 'admin', 'member'] as const).entries()) {
      const response = await statusOf(t.users[i] as TestUser, `?team=${t.id}`);
      expect(response.status).toBe(200);
      expect(await response.json()).toMatchObject({ subscription: { status: 'active', access: true, plan: 'business' }, team: { id: t.id, role, members: 3 } });
    }
  });

  it("the hosted invoice is for the team's managers: a plain member's status has no invoiceUrl", async () => {
    const t = await team('owner', 'member');
    const ids = await subscribed(t);
    await deliver(invoiceEvent('invoice.payment_failed', ids, now(), { amount: 2900 }));
    const urlOf = async (user: TestUser) =>
      ((await (await statusOf(user, `?team=${t.id}`)).json()) as { subscription: { lastPayment: { invoiceUrl: string | null; status: string } } }).subscription.lastPayment;
    expect(await urlOf(t.users[0] as TestUser)).toMatchObject({ status: 'failed', invoiceUrl: expect.stringMatching(/^https:/) as unknown });
    expect(await urlOf(t.users[1] as TestUser)).toMatchObject({ status: 'failed', invoiceUrl: null });
  });

  it('a team without a subscription: null, and the team', async () => {
    const t = await team('owner');
    expect(await (await statusOf(t.users[0] as TestUser, `?team=${t.id}`)).json()).toEqual({ subscription: null, ...untouchedUsage(null, calendarMonth(), 1), team: { id: t.id, role: 'owner', members: 1 } });
  });

  it('others and unknown teams: 403; a team that is not a UUID: 400; no team: as today', async () => {
    const t = await team('owner');
    for (const [user, teamId] of [[newUser(), t.id], [t.users[0] as TestUser, randomUUID()]] as const) {
      const response = await statusOf(user, `?team=${teamId}`);
      expect(response.status).toBe(403);
      expect(await response.json()).toEqual({ error: 'Not a member of this team' });
    }
    const bad = await statusOf(newUser(), '?team=nope');
    expect(bad.status).toBe(400);
    expect(await bad.json()).toEqual({ error: 'Invalid team' });
    expect(await (await statusOf(t.users[0] as TestUser)).json()).toEqual({ subscription: null, ...untouchedUsage(null, calendarMonth()) });
  });

  it('a removed member can no longer read it', async () => {
    const t = await team('owner', 'member');
    const member = t.users[1] as TestUser;
    expect((await statusOf(member, `?team=${t.id}`)).status).toBe(200);
    await query('delete from billing_team_members where team_id = $1 and user_id = $2', [t.id, member.id]);
    expect((await statusOf(member, `?team=${t.id}`)).status).toBe(403);
  });
});

describe('POST /api/stripe/portal {"team"}', () => {
  it('owners and admins open the team\'s portal; members may not; a team that never subscribed has none', async () => {
    const t = await team('owner', 'admin', 'member');
    const [owner, admin, member] = t.users as [TestUser, TestUser, TestUser];
    const none = await post(portal, 'portal', owner, { team: t.id });
    expect(none.status).toBe(400);
    expect(await none.json()).toEqual({ error: 'No active subscription' });

    const ids = await subscribed(t);
    for (const user of [owner, admin]) expect((await post(portal, 'portal', user, { team: t.id })).status).toBe(200);
    const portals = await stripeRequests((r) => r.path === '/v1/billing_portal/sessions' && r.params['customer'] === ids.customerId);
    expect(portals).toHaveLength(2);

    const refused = await post(portal, 'portal', member, { team: t.id });
    expect(refused.status).toBe(403);
    expect(await refused.json()).toEqual({ error: "Not allowed to manage this team's billing" });
    // Without a team, the owner's own billing: they never subscribed themselves.
    expect((await post(portal, 'portal', owner)).status).toBe(400);
    // A broken body is refused, never read as "my own billing".
    const broken = await withEnv(catalogEnv(), () => portal(authedPost('http://localhost/api/stripe/portal', owner.token, { body: `{"team": "${t.id}",}` })));
    expect(broken.status).toBe(400);
    expect(await broken.json()).toEqual({ error: 'Invalid JSON body' });
  });
});

describe('POST /api/stripe/sync for a team\'s session', () => {
  async function teamSession(t: { id: string; users: TestUser[] }, buyer: TestUser) {
    expect((await post(checkout, 'checkout', buyer, { team: t.id })).status).toBe(200);
    const customerId = await teamCustomer(t.id);
    if (!customerId) throw new Error('no team customer');
    const ids: Ids = { userId: buyer.id, teamId: t.id, customerId, subscriptionId: `sub_tsync${t.id.slice(0, 8)}` };
    const at = now();
    const session = checkoutCompletedEvent(ids, at, buyer.email).data.object as unknown as Record<string, unknown>;
    session['subscription'] = subscriptionEvent('customer.subscription.created', ids, at, { status: 'active', periodStart: at, periodEnd: at + 30 * DAY }).data.object;
    const sessionId = String(session['id']);
    await postStripeObject(`/v1/checkout/sessions/${sessionId}`, session);
    return { ids, sessionId };
  }

  it('the buyer, still an owner or admin, applies it: the team\'s status; again, from the database', async () => {
    const t = await team('owner', 'admin');
    const admin = t.users[1] as TestUser;
    const { ids, sessionId } = await teamSession(t, admin);
    const first = await post(sync, 'sync', admin, { sessionId });
    expect(first.status).toBe(200);
    const body: unknown = await first.json();
    expect(body).toMatchObject({ subscription: { status: 'active', access: true }, team: { id: t.id, role: 'admin', members: 2 } });
    expect(await query<{ user_id: string }>('select user_id from billing_subscriptions where stripe_subscription_id = $1', [ids.subscriptionId])).toEqual([{ user_id: t.id }]);

    const again = await post(sync, 'sync', admin, { sessionId });
    expect(await again.json()).toEqual(body);
    expect(await stripeRequests((r) => r.method === 'GET' && r.path === `/v1/checkout/sessions/${sessionId}`)).toHaveLength(1);
  });

  it('404 for anyone else: another member, the buyer once demoted, a stranger', async () => {
    const t = await team('owner', 'admin', 'member');
    const [owner, admin, member] = t.users as [TestUser, TestUser, TestUser];
    const { ids, sessionId } = await teamSession(t, admin);
    // The owner did not make this session (client_reference_id is the admin's).
    for (const user of [owner, member, newUser()]) {
      const response = await post(sync, 'sync', user, { sessionId });
      expect(response.status).toBe(404);
      expect(await response.json()).toEqual({ error: 'Checkout session not found' });
    }
    await query(`update billing_team_members set role = 'member' where team_id = $1 and user_id = $2`, [t.id, admin.id]);
    expect((await post(sync, 'sync', admin, { sessionId })).status).toBe(404);
    expect(await query('select 1 from billing_subscriptions where stripe_subscription_id = $1', [ids.subscriptionId])).toEqual([]);
  });
});

describe('a team request costs what a personal one does', () => {
  /** The store as the functions build it, counting its calls to PostgREST. */
  function countingStore(): { store: ReturnType<typeof createStore>; calls: () => number } {
    let calls = 0;
    const config = loadStatusConfig(process.env);
    const counting: typeof fetch = (input, init) => {
      calls += 1;
      return nodeFetch(input, init);
    };
    return { store: createStore(config.store, counting), calls: () => calls };
  }

  it('the caller\'s role, the member count and the team\'s status: one database round trip', async () => {
    const t = await team('owner', 'member');
    await subscribed(t);
    for (const user of t.users) {
      const { store, calls } = countingStore();
      const body = await subscriptionStatus({ config: loadStatusConfig(process.env), store }, { id: user.id, email: user.email }, t.id);
      expect(body).toMatchObject({ subscription: { status: 'active' }, team: { id: t.id, members: 2 } });
      expect(calls()).toBe(1);
    }
  });

  it('a team checkout with its customer stored asks the database what a personal one does before Stripe', async () => {
    const t = await team('owner');
    const owner = t.users[0] as TestUser;
    expect((await post(checkout, 'checkout', owner, { team: t.id })).status).toBe(200); // stores the team's customer
    const counts: number[] = [];
    for (const request of [{ price: null, team: t.id }, { price: null, team: null }]) {
      const { store, calls } = countingStore();
      // The shipped catalog (its default plan offers a trial), whatever another file left in process.env.
      const config = loadCheckoutConfig({ ...process.env, ...catalogEnv() });
      if (request.team === null) expect((await post(checkout, 'checkout', owner)).status).toBe(200); // the owner's own customer, stored
      const before = calls();
      const stripe = lazyStripe(config.stripe);
      const prices = config.catalog ? catalogPrices(stripe, config.catalog, { log: createLogger({ fn: 'test' }) }) : null;
      await startCheckout({ config, stripe, store, prices }, { id: owner.id, email: owner.email }, request);
      counts.push(calls() - before);
    }
    // The context (limit, role, account) in one call, and the trial offer the default plan makes.
    expect(counts).toEqual([2, 2]);
  });
});
