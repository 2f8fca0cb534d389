// The local stack's teams, at <SUPABASE_URL>/__dev/teams (scripts/stack/dev-teams.ts):
// what a product's server does with billing_team_members, for the example dashboard's
// test users. Checked through the billing API too: a team made here is the team the API
// knows (its members, their roles). That no deploy serves it is checked with the
// sign-in's proofs in test/dev-auth.test.ts and test/browser.test.ts.

import { describe, expect, it } from 'vitest';
import status from '../netlify/functions/stripe-subscription.mts';
import { localUserId } from '../scripts/lib/tokens.ts';
import { startGateway } from '../scripts/stack/gateway.ts';
import { getFreePort } from '../scripts/stack/index.ts';
import { env, newUser, query } from './support/stack.ts';
import { calendarMonth, untouchedUsage } from './support/usage.ts';

interface Team {
  id: string;
  name: string;
  role: string;
  members: number;
}

const teams = (path = '', init: RequestInit = {}, token?: string): Promise<Response> =>
  fetch(`${env('SUPABASE_URL')}/__dev/teams${path}`, {
    ...init,
    headers: { 'content-type': 'application/json', ...(token && { authorization: `Bearer ${token}` }), ...(init.headers as Record<string, string> | undefined) },
  });

/** A test user as the dashboard signs one in: by email, at the local sign-in. */
async function signIn(email: string): Promise<{ id: string; token: string }> {
  const response = await fetch(`${env('SUPABASE_URL')}/auth/v1/dev/token`, { method: 'POST', body: JSON.stringify({ email }) });
  const answer = (await response.json()) as { access_token: string; user: { id: string } };
  return { id: answer.user.id, token: answer.access_token };
}

async function teamStatus(team: string, token: string): Promise<Response> {
  return status(new Request(`http://localhost/api/stripe/subscription?team=${team}`, { headers: { authorization: `Bearer ${token}` } }));
}

describe('<SUPABASE_URL>/__dev/teams (the local stack only)', () => {
  it('creates a team with the caller as owner; the billing API knows it, with its one member', async () => {
    const owner = newUser();
    const created = await teams('', { method: 'POST', body: JSON.stringify({ name: '  Analytics crew ' }) }, owner.token);
    expect(created.status).toBe(201);
    expect(created.headers.get('access-control-allow-origin')).toBe('*');
    const { team } = (await created.json()) as { team: Team };
    expect(team).toEqual({ id: expect.stringMatching(/^[0-9a-f-]{36}$/) as unknown, name: 'Analytics crew', role: 'owner', members: 1 });

    expect(await query('select user_id, role from billing_team_members where team_id = $1', [team.id])).toEqual([{ user_id: owner.id, role: 'owner' }]);
    const listed = await teams('', {}, owner.token);
    expect(await listed.json()).toEqual({ teams: [team] });
    const read = await teamStatus(team.id, owner.token);
    expect(read.status).toBe(200);
    expect(await read.json()).toEqual({ subscription: null, ...untouchedUsage(null, calendarMonth(), 1), team: { id: team.id, role: 'owner', members: 1 } });
  });

  it('adds a test user by email and removes them: their teams, their access to the team\'s status, and the count follow', async () => {
    const ownerEmail = `owner-${Date.now()}@example.com`;
    const memberEmail = `member-${Date.now()}@example.com`;
    const owner = await signIn(ownerEmail);
    const { team } = (await (await teams('', { method: 'POST', body: '{"name":"Crew"}' }, owner.token)).json()) as { team: Team };

    const added = await teams(`/${team.id}/members`, { method: 'POST', body: JSON.stringify({ email: memberEmail }) }, owner.token);
    expect(added.status).toBe(201);
    expect(await added.json()).toEqual({ member: { userId: localUserId(memberEmail), email: memberEmail, role: 'member' } });
    const member = await signIn(memberEmail);
    expect(member.id).toBe(localUserId(memberEmail));

    // The member sees the team, its members (by the emails the stack knows), and its billing.
    expect(await (await teams('', {}, member.token)).json()).toEqual({ teams: [{ id: team.id, name: 'Crew', role: 'member', members: 2 }] });
    expect(await (await teams(`/${team.id}/members`, {}, member.token)).json()).toEqual({
      members: [
        { userId: owner.id, email: ownerEmail, role: 'owner' },
        { userId: member.id, email: memberEmail, role: 'member' },
      ],
    });
    expect(await (await teamStatus(team.id, member.token)).json()).toEqual({ subscription: null, ...untouchedUsage(null, calendarMonth(), 2), team: { id: team.id, role: 'member', members: 2 } });
    // A member neither adds nor removes others.
    const refused = await teams(`/${team.id}/members`, { method: 'POST', body: JSON.stringify({ email: 'third@example.com' }) }, member.token);
    expect(refused.status).toBe(403);
    expect(await refused.json()).toEqual({ error: 'Only owners and admins add members' });
    expect((await teams(`/${team.id}/members/${owner.id}`, { method: 'DELETE' }, member.token)).status).toBe(403);
    // Adding them twice is a conflict, not a second row.
    expect((await teams(`/${team.id}/members`, { method: 'POST', body: JSON.stringify({ email: memberEmail }) }, owner.token)).status).toBe(409);

    const removed = await teams(`/${team.id}/members/${member.id}`, { method: 'DELETE' }, owner.token);
    expect(removed.status).toBe(200);
    expect(await removed.json()).toEqual({ removed: { userId: member.id, email: memberEmail, role: 'member' } });
    expect(await (await teams('', {}, member.token)).json()).toEqual({ teams: [] });
    expect((await teamStatus(team.id, member.token)).status).toBe(403);
    expect((await teams(`/${team.id}/members`, {}, member.token)).status).toBe(403);
    expect(await (await teams('', {}, owner.token)).json()).toEqual({ teams: [{ id: team.id, name: 'Crew', role: 'owner', members: 1 }] });
  });

  it('keeps the plan\'s member cap (the shipped Pro plan: 3 members) and says so, not "a team needs an owner"', async () => {
    const owner = newUser();
    const { team } = (await (await teams('', { method: 'POST', body: '{"name":"Capped"}' }, owner.token)).json()) as { team: Team };
    // The team on Pro (monthly), as Stripe's events would leave it.
    const customer = `cus_cap${team.id.slice(0, 8)}`;
    await query('insert into billing_customers (user_id, stripe_customer_id) values ($1, $2)', [team.id, customer]);
    await query(
      `insert into billing_subscriptions (stripe_subscription_id, stripe_customer_id, user_id, status, price_id, product_id, for_this_product,
         cancel_at_period_end, current_period_start, current_period_end, stripe_created_at, state_event_created, state_event_id)
       select $1, $2, $3, 'active', p.stripe_price_id, pl.stripe_product_id, true, false, now() - interval '1 day', now() + interval '29 days', now(), now(), 'evt_cap'
       from billing_prices p join billing_plans pl using (plan) where p.lookup_key = 'pro_monthly'`,
      [`sub_cap${team.id.slice(0, 8)}`, customer, team.id],
    );
    const add = (email: string) => teams(`/${team.id}/members`, { method: 'POST', body: JSON.stringify({ email }) }, owner.token);
    expect((await add(`cap-a-${Date.now()}@example.com`)).status).toBe(201);
    expect((await add(`cap-b-${Date.now()}@example.com`)).status).toBe(201);
    const fourth = await add(`cap-c-${Date.now()}@example.com`);
    expect(fourth.status).toBe(409);
    expect(await fourth.json()).toEqual({ error: "Plan limit reached: members: the team's plan caps its members" });
    expect(await (await teamStatus(team.id, owner.token)).json()).toMatchObject({ limits: { members: { limit: 3, used: 3 } }, team: { members: 3 } });
  });

  it('keeps the database\'s rule: the last owner cannot leave while members remain', async () => {
    const owner = newUser();
    const { team } = (await (await teams('', { method: 'POST', body: '{"name":"Solo"}' }, owner.token)).json()) as { team: Team };
    await teams(`/${team.id}/members`, { method: 'POST', body: JSON.stringify({ email: `m-${Date.now()}@example.com`, role: 'admin' }) }, owner.token);
    const leaving = await teams(`/${team.id}/members/${owner.id}`, { method: 'DELETE' }, owner.token);
    expect(leaving.status).toBe(409);
    expect(await leaving.json()).toEqual({ error: 'A team needs an owner: make another member owner first' });
    expect(await query('select count(*)::int as n from billing_team_members where team_id = $1', [team.id])).toEqual([{ n: 2 }]);
  });

  it.each([
    ['no token', '', { method: 'GET' }, null, 401],
    ['a token not of this stack', '', { method: 'GET' }, 'eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln', 401],
    ['no name', '', { method: 'POST', body: '{}' }, 'user', 400],
    ['a body that is not JSON', '', { method: 'POST', body: 'name=x' }, 'user', 400],
    ['an unknown team', `/${'0'.repeat(8)}-0000-4000-8000-${'0'.repeat(12)}/members`, { method: 'GET' }, 'user', 403],
    ['a path that is not a route', '/not-a-uuid', { method: 'GET' }, 'user', 404],
    ['a method the route has not', '', { method: 'DELETE' }, 'user', 405],
  ])('answers %s with a JSON error', async (_case, path, init, token, expected) => {
    const response = await teams(path, init, token === 'user' ? newUser().token : (token ?? undefined));
    expect(response.status).toBe(expected);
    expect(response.headers.get('access-control-allow-origin')).toBe('*');
    expect(await response.json()).toEqual({ error: expect.any(String) as unknown });
  });

  it('answers the CORS preflight of a page on another origin (the dashboard sends a bearer token)', async () => {
    const response = await teams('', { method: 'OPTIONS', headers: { origin: 'http://localhost:8888', 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization, content-type' } });
    expect(response.status).toBe(204);
    expect(response.headers.get('access-control-allow-methods')).toBe('GET, POST, DELETE, OPTIONS');
    expect(response.headers.get('access-control-allow-headers')).toBe('Content-Type, Authorization');
  });

  it('is not there in a gateway started without devAuth', async () => {
    const gateway = await startGateway({ port: 0, postgrestPort: await getFreePort() });
    try {
      const response = await fetch(`${gateway.url}/__dev/teams`, { headers: { authorization: `Bearer ${newUser().token}` } });
      expect(response.status).toBe(404);
    } finally {
      await gateway.close();
    }
  });
});
