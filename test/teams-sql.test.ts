// Teams in the database (supabase/migrations/20261204100000_teams.sql, docs/teams.md):
// the membership table and its owner rule, who reads it, access through membership
// for users and teams, billing_subjects_with_feature in a policy, the docs' trigger that
// feeds membership from a product's own table, the customer link winning over a
// subscription's metadata, and the per-subject state staying equal to billing_accounts.

import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import type Stripe from 'stripe';
import { describe, expect, it } from 'vitest';
import webhook from '../netlify/functions/stripe-webhook.mts';
import { newIds, subscriptionEvent } from './support/events.ts';
import { random } from './support/histories.ts';
import { asUser, db, env, newUser, query, signedDelivery } from './support/stack.ts';

const DAY = 86_400;
const BUSINESS = ['unlimited_sites', 'realtime_dashboard', 'custom_events', 'advanced_filtering', 'shared_dashboards', 'api_access'];
const PRO = ['unlimited_sites', 'realtime_dashboard', 'custom_events', 'advanced_filtering'];
const doc = readFileSync(path.resolve(import.meta.dirname, '../docs/teams.md'), 'utf8');

/** The ```sql block of docs/teams.md that starts with `start`. */
function docBlock(start: string): string {
  const block = doc.split('```sql\n').slice(1).map((b) => b.slice(0, b.indexOf('```'))).find((b) => b.startsWith(start));
  if (!block) throw new Error(`docs/teams.md has no sql block starting with ${start}`);
  return block;
}

type Role = 'owner' | 'admin' | 'member';

async function addMembers(teamId: string, members: [string, Role][]): Promise<void> {
  await query(
    'insert into billing_team_members (team_id, user_id, role) select $1, u, r from unnest($2::uuid[], $3::text[]) as m(u, r)',
    [teamId, members.map(([u]) => u), members.map(([, r]) => r)],
  );
}

async function membersOf(teamId: string): Promise<{ user_id: string; role: string }[]> {
  return query('select user_id, role from billing_team_members where team_id = $1 order by role, user_id', [teamId]);
}

/** A subject (user or team) subscribed to `plan`, stored as the webhook stores it. */
async function subscribe(subject: string, plan: 'business' | 'pro', status = 'active', paymentFailedDaysAgo: number | null = null): Promise<void> {
  const customer = `cus_${randomUUID().slice(0, 12)}`;
  await query('insert into billing_customers (user_id, stripe_customer_id) values ($1, $2)', [subject, customer]);
  await query(
    `insert into billing_subscriptions (stripe_subscription_id, stripe_customer_id, user_id, status, product_id, for_this_product,
       current_period_start, current_period_end, payment_failed_at, state_event_created, state_event_id)
     values ($1, $2, $3, $4, $5, true, now() - interval '20 days', now() + interval '10 days',
       now() - make_interval(days => $6::integer), now(), 'evt_teams')`,
    [`sub_${randomUUID().slice(0, 12)}`, customer, subject, status, `analytics_${plan}`, paymentFailedDaysAgo],
  );
}

/** Runs `run` in one transaction on one connection, rolled back at the end. */
async function inTransaction<T>(run: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await db().connect();
  try {
    await client.query('begin');
    return await run(client);
  } finally {
    await client.query('rollback');
    client.release();
  }
}

/** From here on in the transaction, the signed-in user `userId` (as PostgREST sets it). */
async function becomeUser(client: pg.ClientBase, userId: string): Promise<void> {
  await client.query(`select set_config('request.jwt.claims', $1, true)`, [JSON.stringify({ sub: userId, role: 'authenticated' })]);
  await client.query('set local role authenticated');
}

function rest(pathAndQuery: string, token: string, init: RequestInit = {}): Promise<Response> {
  return fetch(`${env('SUPABASE_URL')}/rest/v1/${pathAndQuery}`, {
    ...init,
    headers: { apikey: token, authorization: `Bearer ${token}`, 'content-type': 'application/json', ...(init.headers as Record<string, string>) },
  });
}

const rpc = async (name: string, token: string, args: Record<string, unknown>): Promise<unknown> => {
  const response = await rest(`rpc/${name}`, token, { method: 'POST', body: JSON.stringify(args) });
  expect(response.status, name).toBe(200);
  return response.json();
};

describe('billing_team_members: the table', () => {
  it('refuses a team that is its own member and roles other than owner, admin and member', async () => {
    const user = randomUUID();
    await expect(addMembers(user, [[user, 'owner']])).rejects.toThrow(/check constraint/);
    await expect(query(`insert into billing_team_members values ($1, $2, 'billing')`, [randomUUID(), user])).rejects.toThrow(/check constraint/);
    await expect(addMembers(randomUUID(), [[user, 'owner'], [user, 'member']])).rejects.toThrow(/duplicate key/);
  });

  it('a team exists from its first member, who must be an owner; deleting all of its rows dissolves it', async () => {
    const team = randomUUID();
    const [owner, member] = [randomUUID(), randomUUID()];
    await expect(addMembers(team, [[member, 'member']])).rejects.toThrow(/would have members but no owner/);
    expect(await membersOf(team)).toEqual([]);
    await addMembers(team, [[owner, 'owner'], [member, 'member']]);
    expect(await membersOf(team)).toEqual([{ user_id: member, role: 'member' }, { user_id: owner, role: 'owner' }]);
    await query('delete from billing_team_members where team_id = $1', [team]);
    expect(await membersOf(team)).toEqual([]);
  });

  it('the last owner cannot be removed or demoted while members remain; a new owner in the same statement or before makes it possible', async () => {
    const team = randomUUID();
    const [first, second, member] = [randomUUID(), randomUUID(), randomUUID()];
    await addMembers(team, [[first, 'owner'], [second, 'admin'], [member, 'member']]);
    await expect(query('delete from billing_team_members where team_id = $1 and user_id = $2', [team, first])).rejects.toMatchObject({
      code: '23514',
      message: expect.stringMatching(/would have members but no owner/) as string,
    });
    await expect(query(`update billing_team_members set role = 'admin' where team_id = $1 and user_id = $2`, [team, first])).rejects.toThrow(/no owner/);
    // Another team touched by the same statement does not hide this one.
    const other = randomUUID();
    await addMembers(other, [[randomUUID(), 'owner']]);
    await expect(query(`delete from billing_team_members where (team_id = $1 and user_id = $2) or team_id = $3`, [team, first, other])).rejects.toThrow(/no owner/);
    expect(await membersOf(other)).toHaveLength(1);

    // Handing over in one statement.
    await query(`update billing_team_members set role = case when user_id = $2 then 'admin' else 'owner' end where team_id = $1 and user_id in ($2, $3)`, [team, first, second]);
    expect(await membersOf(team)).toEqual([{ user_id: first, role: 'admin' }, { user_id: member, role: 'member' }, { user_id: second, role: 'owner' }]);
    // Or a second owner first, then the first one goes.
    await query(`update billing_team_members set role = 'owner' where team_id = $1 and user_id = $2`, [team, member]);
    await query('delete from billing_team_members where team_id = $1 and user_id = $2', [team, second]);
    // Members may leave; the last owner may leave last.
    await query('delete from billing_team_members where team_id = $1 and user_id = $2', [team, first]);
    await query('delete from billing_team_members where team_id = $1 and user_id = $2', [team, member]);
    expect(await membersOf(team)).toEqual([]);
  });

  /** Two transactions each delete one of a team's two owners, the second while the first
   *  holds the team; the first commits. What happens to the second. */
  async function removeBothOwners(isolation: 'read committed' | 'repeatable read'): Promise<{ second: unknown; left: { user_id: string; role: string }[] }> {
    const team = randomUUID();
    const [a, b, member] = [randomUUID(), randomUUID(), randomUUID()];
    await addMembers(team, [[a, 'owner'], [b, 'owner'], [member, 'member']]);
    const [one, two] = [new pg.Client({ connectionString: env('DATABASE_URL') }), new pg.Client({ connectionString: env('DATABASE_URL') })];
    await Promise.all([one.connect(), two.connect()]);
    try {
      await one.query('begin');
      await one.query('delete from billing_team_members where team_id = $1 and user_id = $2', [team, a]);
      await two.query(`begin isolation level ${isolation}`);
      const pid = (await two.query<{ pid: number }>('select pg_backend_pid() as pid')).rows[0]?.pid;
      const second = two.query('delete from billing_team_members where team_id = $1 and user_id = $2', [team, b]).then(
        () => 'deleted',
        (error: Error & { code?: string }) => ({ code: error.code, message: error.message }),
      );
      // The second waits for the first's lock on the team before the first commits.
      for (let i = 0; ; i += 1) {
        const [row] = await query<{ wait_event_type: string | null }>('select wait_event_type from pg_stat_activity where pid = $1', [pid]);
        if (row?.wait_event_type === 'Lock') break;
        if (i > 200) throw new Error('the second delete never waited for the first');
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
      await one.query('commit');
      const outcome = await second;
      await two.query('rollback');
      return { second: outcome, left: await membersOf(team) };
    } finally {
      await Promise.all([one.end(), two.end()]);
    }
  }

  it('concurrent statements cannot both remove the last two owners (read committed: the second is refused)', async () => {
    const { second, left } = await removeBothOwners('read committed');
    expect(second).toMatchObject({ code: '23514', message: expect.stringMatching(/no owner/) as string });
    expect(left.map((m) => m.role)).toEqual(['member', 'owner']);
  });

  it('concurrent statements cannot both remove the last two owners (repeatable read: the second fails to serialize)', async () => {
    const { second, left } = await removeBothOwners('repeatable read');
    expect(second).toMatchObject({ code: '40001' });
    expect(left.map((m) => m.role)).toEqual(['member', 'owner']);
  });
});

describe('billing_team_members: who reads it', () => {
  it('a signed-in user reads the membership rows of their own teams only, through PostgREST too', async () => {
    const user = newUser();
    const [mine, theirs] = [randomUUID(), randomUUID()];
    const [colleague, stranger] = [randomUUID(), randomUUID()];
    await addMembers(mine, [[colleague, 'owner'], [user.id, 'member']]);
    await addMembers(theirs, [[stranger, 'owner']]);

    const rows = await asUser<{ team_id: string; user_id: string }>(user.id, 'select team_id, user_id from billing_team_members order by user_id');
    expect(rows).toEqual([{ team_id: mine, user_id: colleague }, { team_id: mine, user_id: user.id }].sort((x, y) => x.user_id.localeCompare(y.user_id)));
    const response = await rest('billing_team_members?select=team_id,role&order=role', user.token);
    expect(await response.json()).toEqual([{ team_id: mine, role: 'member' }, { team_id: mine, role: 'owner' }]);
    expect(await asUser(stranger, 'select team_id from billing_team_members')).toEqual([{ team_id: theirs }]);
    expect(await asUser(randomUUID(), 'select team_id from billing_team_members')).toEqual([]);
  });

  it('a signed-in user cannot write it: not to join a team, promote themselves or remove anyone', async () => {
    const user = newUser();
    const team = randomUUID();
    const owner = randomUUID();
    await addMembers(team, [[owner, 'owner'], [user.id, 'member']]);
    await expect(asUser(user.id, `insert into billing_team_members values ($1, $2, 'owner')`, [randomUUID(), user.id])).rejects.toThrow(/permission denied/);
    await expect(asUser(user.id, `update billing_team_members set role = 'owner' where user_id = $1`, [user.id])).rejects.toThrow(/permission denied/);
    await expect(asUser(user.id, 'delete from billing_team_members where user_id = $1', [owner])).rejects.toThrow(/permission denied/);
    const insert = await rest('billing_team_members', user.token, { method: 'POST', body: JSON.stringify({ team_id: randomUUID(), user_id: user.id, role: 'owner' }) });
    expect(insert.status).toBe(403);
    expect(await membersOf(team)).toEqual([{ user_id: user.id, role: 'member' }, { user_id: owner, role: 'owner' }]);
  });
});

describe('access through membership', () => {
  it('as the service role: any subject, user or team (PostgREST and a direct session)', async () => {
    const team = randomUUID();
    const user = randomUUID();
    await addMembers(team, [[randomUUID(), 'owner']]);
    await subscribe(team, 'business');
    await subscribe(user, 'pro');
    const service = env('SUPABASE_SERVICE_ROLE_KEY');
    expect(await rpc('billing_has_access', service, { p_user_id: team })).toBe(true);
    expect(await rpc('billing_features', service, { p_user_id: team })).toEqual(BUSINESS);
    expect(await rpc('billing_has_feature', service, { p_user_id: user, p_feature: 'api_access' })).toBe(false);
    expect(await rpc('billing_has_feature', service, { p_user_id: user, p_feature: 'custom_events' })).toBe(true);
    // The test's own connection is a superuser's: row-level security would not restrict it either.
    expect(await query('select billing_has_access($1) as team, billing_features($2) as usr', [team, user])).toEqual([{ team: true, usr: PRO }]);
  });

  it('a member gets the team\'s access and features, whatever their role; a non-member gets the no-access answer', async () => {
    const team = randomUUID();
    const [owner, admin, member, outsider] = [newUser(), newUser(), newUser(), newUser()];
    await addMembers(team, [[owner.id, 'owner'], [admin.id, 'admin'], [member.id, 'member']]);
    await subscribe(team, 'business');
    const ask = 'select billing_has_access($1) as access, billing_features($1) as features, billing_has_feature($1, $2) as api';
    for (const user of [owner, admin, member]) {
      expect(await asUser(user.id, ask, [team, 'api_access'])).toEqual([{ access: true, features: BUSINESS, api: true }]);
      // Their own id is still their own: no subscription of their own.
      expect(await asUser(user.id, ask, [user.id, 'api_access'])).toEqual([{ access: false, features: [], api: false }]);
    }
    expect(await asUser(outsider.id, ask, [team, 'api_access'])).toEqual([{ access: false, features: [], api: false }]);
    // The same through PostgREST with the outsider's token.
    expect(await rpc('billing_has_access', outsider.token, { p_user_id: team })).toBe(false);
    expect(await rpc('billing_has_access', member.token, { p_user_id: team })).toBe(true);
    // A member of one team learns nothing about another subscribed team.
    const otherTeam = randomUUID();
    await addMembers(otherTeam, [[randomUUID(), 'owner']]);
    await subscribe(otherTeam, 'business');
    expect(await asUser(member.id, ask, [otherTeam, 'api_access'])).toEqual([{ access: false, features: [], api: false }]);
  });

  it('follows the team\'s subscription: a past-due team within grace keeps access, a lapsed or canceled one has none', async () => {
    const member = randomUUID();
    const cases = [
      { status: 'past_due', failed: 2, access: true },
      { status: 'past_due', failed: 30, access: false },
      { status: 'canceled', failed: null, access: false },
      { status: 'trialing', failed: null, access: true },
    ];
    for (const c of cases) {
      const team = randomUUID();
      await addMembers(team, [[member, 'owner']]);
      await subscribe(team, 'business', c.status, c.failed);
      expect(await asUser(member, 'select billing_has_access($1) as access, billing_has_feature($1, $2) as api', [team, 'api_access']), c.status).toEqual([
        { access: c.access, api: c.access },
      ]);
    }
  });

  it('removing a member ends their access in the same transaction', async () => {
    const team = randomUUID();
    const [owner, member] = [randomUUID(), randomUUID()];
    await addMembers(team, [[owner, 'owner'], [member, 'member']]);
    await subscribe(team, 'business');
    const ask = 'select billing_has_access($1) as access, billing_has_feature($1, $2) as api, billing_subjects_with_feature($2) as subjects';
    await inTransaction(async (client) => {
      await becomeUser(client, member);
      expect((await client.query(ask, [team, 'api_access'])).rows).toEqual([{ access: true, api: true, subjects: [team] }]);
      await client.query('reset role');
      await client.query('delete from billing_team_members where team_id = $1 and user_id = $2', [team, member]);
      await becomeUser(client, member);
      expect((await client.query(ask, [team, 'api_access'])).rows).toEqual([{ access: false, api: false, subjects: [] }]);
    });
    // Rolled back: still a member.
    expect(await asUser(member, 'select billing_has_access($1) as access', [team])).toEqual([{ access: true }]);
  });

  it('knows the caller as auth.uid() does, from either claim setting PostgREST versions use', async () => {
    // The functions read the caller's id with auth.uid()'s own expression (cheaper than calling it).
    const [user, team] = [randomUUID(), randomUUID()];
    await addMembers(team, [[user, 'member'], [randomUUID(), 'owner']]);
    await subscribe(team, 'business');
    for (const setting of ['request.jwt.claims', 'request.jwt.claim.sub']) {
      const value = setting === 'request.jwt.claims' ? JSON.stringify({ sub: user, role: 'authenticated' }) : user;
      const row = await inTransaction(async (client) => {
        await client.query('select set_config($1, $2, true)', [setting, value]);
        await client.query('set local role authenticated');
        const sql = 'select auth.uid() as uid, billing_has_access($1) as access, billing_subjects_with_feature($2) as subjects';
        return (await client.query<{ uid: string; access: boolean; subjects: string[] }>(sql, [team, 'api_access'])).rows;
      });
      expect(row, setting).toEqual([{ uid: user, access: true, subjects: [team] }]);
    }
  });

  it('billing_subjects_with_feature: the caller\'s own id and their teams\', of those whose account grants the feature now', async () => {
    const user = randomUUID();
    const teams = { business: randomUUID(), pro: randomUUID(), lapsed: randomUUID(), unsubscribed: randomUUID(), notMine: randomUUID() };
    for (const [name, team] of Object.entries(teams)) await addMembers(team, [[name === 'notMine' ? randomUUID() : user, 'owner']]);
    await subscribe(teams.business, 'business');
    await subscribe(teams.pro, 'pro');
    await subscribe(teams.lapsed, 'business', 'past_due', 30);
    await subscribe(teams.notMine, 'business');
    await subscribe(user, 'business');
    const subjects = async (feature: string) => ((await asUser<{ s: string[] }>(user, 'select billing_subjects_with_feature($1) as s', [feature]))[0]?.s ?? []);
    expect(await subjects('api_access')).toEqual([user, teams.business].sort());
    expect(await subjects('custom_events')).toEqual([user, teams.business, teams.pro].sort());
    expect(await subjects('no_such_feature')).toEqual([]);
    // Nobody signed in (the service role): nobody's.
    expect(await query('select billing_subjects_with_feature($1) as s', ['api_access'])).toEqual([{ s: [] }]);
  });

  it('personal behaviour is unchanged: rpc/billing_has_feature and billing_features with a user\'s own id, and false for another user\'s', async () => {
    const [subscriber, other] = [newUser(), newUser()];
    await subscribe(subscriber.id, 'business');
    await subscribe(other.id, 'business');
    expect(await rpc('billing_has_feature', subscriber.token, { p_user_id: subscriber.id, p_feature: 'api_access' })).toBe(true);
    expect(await rpc('billing_features', subscriber.token, { p_user_id: subscriber.id })).toEqual(BUSINESS);
    expect(await rpc('billing_has_access', subscriber.token, { p_user_id: subscriber.id })).toBe(true);
    expect(await rpc('billing_has_feature', subscriber.token, { p_user_id: other.id, p_feature: 'api_access' })).toBe(false);
    expect(await rpc('billing_features', subscriber.token, { p_user_id: other.id })).toEqual([]);
    // anon may not call them at all.
    const anonKey = await rest('rpc/billing_has_access', 'not-a-token', { method: 'POST', body: JSON.stringify({ p_user_id: subscriber.id }) });
    expect([401, 403]).toContain(anonKey.status);
  });
});

describe('docs/teams.md: a policy over team rows', () => {
  it('members read the projects of their teams whose plan has the feature, through the team_id index', async () => {
    const example = docBlock('create table public.projects');
    expect(example).toContain('= any ((select billing_subjects_with_feature(');
    await query('drop table if exists public.projects');
    await query(example);
    const user = randomUUID();
    const [business, pro, notMine] = [randomUUID(), randomUUID(), randomUUID()];
    await addMembers(business, [[user, 'member'], [randomUUID(), 'owner']]);
    await addMembers(pro, [[user, 'owner']]);
    await addMembers(notMine, [[randomUUID(), 'owner']]);
    await subscribe(business, 'business');
    await subscribe(pro, 'pro');
    await subscribe(notMine, 'business');
    for (const team of [business, pro, notMine, user]) await query(`insert into projects (team_id, name) values ($1, 'a'), ($1, 'b')`, [team]);

    const read = async (who: string) => (await asUser<{ team_id: string }>(who, 'select team_id from projects order by id')).map((r) => r.team_id);
    expect(await read(user)).toEqual([business, business]);
    // Their own Business plan adds their personal rows (team_id = their own id).
    await subscribe(user, 'business');
    expect((await read(user)).sort()).toEqual([business, business, user, user].sort());
    expect(await read(randomUUID())).toEqual([]);

    // The condition is an index condition on the sub-select's one value (the bench shows
    // the planner choosing it on a large table; here it is only allowed to).
    const plan = await inTransaction(async (client) => {
      await becomeUser(client, user);
      await client.query('set local enable_seqscan = off');
      return (await client.query<{ 'QUERY PLAN': string }>('explain select * from projects')).rows.map((r) => r['QUERY PLAN']).join('\n');
    });
    expect(plan).toMatch(/InitPlan/);
    expect(plan).toMatch(/Index Cond: \(team_id = ANY \(\(InitPlan 1\)\.col1\)\)/);
    expect(plan).not.toMatch(/Seq Scan/);
  });

  it('the in (select …) form gives the same rows but scans the whole table, index or not', async () => {
    await query('drop table if exists public.projects_in_form');
    await query(`create table public.projects_in_form (id bigint generated always as identity primary key, team_id uuid not null);
      create index on public.projects_in_form (team_id);
      alter table public.projects_in_form enable row level security;
      create policy p on public.projects_in_form for select to authenticated
        using (team_id in (select unnest(billing_subjects_with_feature('api_access'))));
      grant select on public.projects_in_form to authenticated;`);
    const user = randomUUID();
    await subscribe(user, 'business');
    await query('insert into projects_in_form (team_id) values ($1), ($2)', [user, randomUUID()]);
    expect(await asUser(user, 'select team_id from projects_in_form')).toEqual([{ team_id: user }]);
    const plan = await inTransaction(async (client) => {
      await becomeUser(client, user);
      await client.query('set local enable_seqscan = off');
      return (await client.query<{ 'QUERY PLAN': string }>('explain select * from projects_in_form')).rows.map((r) => r['QUERY PLAN']).join('\n');
    });
    expect(plan).toMatch(/Seq Scan on projects_in_form/);
    expect(plan).toMatch(/hashed SubPlan/);
  });

  it('the issue\'s form without the cast is read as = any (subquery) and fails', async () => {
    await expect(query(`select 1 where gen_random_uuid() = any ((select billing_subjects_with_feature('api_access')))`)).rejects.toThrow(
      /operator does not exist: uuid = uuid\[\]/,
    );
  });
});

describe('docs/teams.md: feeding membership from the product\'s own table', () => {
  it('mirrors team accounts, skips personal ones, hands over ownership, dissolves a deleted account and refuses an ownerless team', async () => {
    await query('drop table if exists public.account_user, public.accounts cascade');
    await query('drop function if exists public.account_user_to_billing()');
    await query(docBlock('create table public.accounts'));
    await query(docBlock('create function public.account_user_to_billing()'));
    const [ada, bob, cy] = [randomUUID(), randomUUID(), randomUUID()];
    const team = randomUUID();
    await query(`insert into accounts (id, name) values ($1, 'Ada'), ($2, 'Ada''s team')`, [ada, team]);

    // A personal account (its id is its user's) is not a team.
    await query(`insert into account_user values ($1, $1, 'owner')`, [ada]);
    expect(await membersOf(ada)).toEqual([]);
    // A team account with its owner and a member, in one statement.
    await query(`insert into account_user values ($1, $2, 'owner'), ($1, $3, 'member')`, [team, ada, bob]);
    expect(await membersOf(team)).toEqual([{ user_id: bob, role: 'member' }, { user_id: ada, role: 'owner' }]);
    // Ownership handed over in one statement, then the old owner leaves.
    await query(`update account_user set account_role = case when user_id = $2 then 'member' else 'owner' end where account_id = $1`, [team, ada]);
    await query('delete from account_user where account_id = $1 and user_id = $2', [team, ada]);
    await query(`insert into account_user values ($1, $2, 'member')`, [team, cy]);
    expect(await membersOf(team)).toEqual([{ user_id: cy, role: 'member' }, { user_id: bob, role: 'owner' }]);
    // The product's own statement is refused if it would leave the team without an owner.
    await expect(query('delete from account_user where account_id = $1 and user_id = $2', [team, bob])).rejects.toThrow(/no owner/);
    expect(await query('select count(*)::int as n from account_user where account_id = $1', [team])).toEqual([{ n: 2 }]);
    // Deleting the account: the cascade removes its members in one statement, and the team with them.
    await query('delete from accounts where id = any($1)', [[team, ada]]);
    expect(await membersOf(team)).toEqual([]);
    expect(await query('select count(*)::int as n from account_user where account_id = any($1)', [[team, ada]])).toEqual([{ n: 0 }]);
  });
});

describe('a team\'s subscription belongs to the team', () => {
  const now = Math.floor(Date.now() / 1000);
  const active = { status: 'active' as const, periodStart: now - DAY, periodEnd: now + 29 * DAY };

  /** A subscription event of the buyer's checkout for the team: metadata.userId = buyer, metadata.teamId = team. */
  function teamEvent(ids: ReturnType<typeof newIds>, team: string, created: number): string {
    const event = subscriptionEvent('customer.subscription.created', ids, created, active);
    (event.data.object as Stripe.Subscription).metadata['teamId'] = team;
    return JSON.stringify(event);
  }

  it('a subscription event naming the buyer in metadata.userId, for a customer linked to a team, attaches to the team', async () => {
    const buyer = newUser();
    const team = randomUUID();
    await addMembers(team, [[buyer.id, 'owner']]);
    const ids = newIds(buyer.id);
    expect(await query('select billing_link_customer($1, $2, null) as c', [team, ids.customerId])).toEqual([{ c: ids.customerId }]);

    const response = await webhook(signedDelivery(teamEvent(ids, team, now)));
    expect(response.status).toBe(200);
    expect(await query('select user_id from billing_subscriptions where stripe_subscription_id = $1', [ids.subscriptionId])).toEqual([{ user_id: team }]);
    expect(await query('select user_id, status from billing_accounts where user_id = any($1)', [[team, buyer.id]])).toEqual([{ user_id: team, status: 'active' }]);
    // The buyer has the team's access as a member, none of their own.
    expect(await asUser(buyer.id, 'select billing_has_access($1) as team, billing_has_access($2) as own', [team, buyer.id])).toEqual([{ team: true, own: false }]);
  });

  it('a team subscription recorded before its customer is linked belongs to nobody until the link, then to the team', async () => {
    const buyer = newUser();
    const team = randomUUID();
    await addMembers(team, [[buyer.id, 'owner']]);
    const ids = newIds(buyer.id);
    expect((await webhook(signedDelivery(teamEvent(ids, team, now)))).status).toBe(200);
    // metadata.userId names the buyer, but a team's subscription never belongs to its buyer.
    expect(await query('select user_id from billing_subscriptions where stripe_subscription_id = $1', [ids.subscriptionId])).toEqual([{ user_id: null }]);
    expect(await query('select billing_has_access($1) as buyer', [buyer.id])).toEqual([{ buyer: false }]);

    await query('select billing_link_customer($1, $2, null)', [team, ids.customerId]);
    expect(await query('select user_id from billing_subscriptions where stripe_subscription_id = $1', [ids.subscriptionId])).toEqual([{ user_id: team }]);
    expect(await query('select billing_has_access($1) as team, billing_has_access($2) as buyer', [team, buyer.id])).toEqual([{ team: true, buyer: false }]);
    // A later event naming the buyer again changes nothing about who owns it.
    const later = subscriptionEvent('customer.subscription.updated', ids, now + 60, { ...active, cancelAtPeriodEnd: true });
    expect((await webhook(signedDelivery(JSON.stringify(later)))).status).toBe(200);
    expect(await query('select user_id, cancel_at_period_end from billing_subscriptions where stripe_subscription_id = $1', [ids.subscriptionId])).toEqual([
      { user_id: team, cancel_at_period_end: true },
    ]);
  });
});

describe('billing_subject_state under concurrency', () => {
  it("billing:setup taking a feature out of a plan while a new subscription to it is written: the state follows the plan", async () => {
    const product = `analytics_race_${randomUUID().slice(0, 8)}`;
    const plan = `race_${randomUUID().slice(0, 8)}`;
    await query(`insert into billing_plans (plan, stripe_product_id, name, features, position) values ($1, $2, 'Race', '{api_access}', 99)`, [plan, product]);
    const subject = randomUUID();
    const setup = await db().connect();
    const writer = await db().connect();
    try {
      await setup.query('begin');
      await writer.query('begin');
      await setup.query(`update billing_plans set features = '{}' where plan = $1`, [plan]);
      // The webhook's write waits for the setup to commit, then reads the plan as it ends up.
      await writer.query('set local role service_role');
      const applying = writer.query(`select billing_apply_event($1, 'customer.subscription.created', now(), false, null, $2::jsonb)`, [
        `evt_race_${randomUUID().slice(0, 8)}`,
        JSON.stringify({ kind: 'subscription', subscription: {
          id: `sub_race_${randomUUID().slice(0, 8)}`, customer_id: `cus_race${randomUUID().slice(0, 8)}`, user_id: subject, buyer_id: subject, status: 'active',
          price_id: null, product_id: product, quantity: 1, for_this_product: true, current_period_start: new Date().toISOString(),
          current_period_end: new Date(Date.now() + 30 * 86_400_000).toISOString(), cancel_at_period_end: false, cancel_at: null, canceled_at: null,
          ended_at: null, trial_start: null, trial_end: null, created: new Date().toISOString() } }),
      ]);
      await new Promise((resolve) => setTimeout(resolve, 200));
      await setup.query('commit');
      await applying;
      await writer.query('commit');
    } finally {
      setup.release();
      writer.release();
    }
    const [row] = await query<{ view: string[]; state: string[]; has: boolean }>(
      `select (select features from billing_accounts where user_id = $1) as view,
              (select features from billing_subject_state where subject_id = $1) as state,
              billing_has_feature($1, 'api_access') as has`,
      [subject],
    );
    expect(row).toEqual({ view: [], state: [], has: false });
  });
});

describe('billing_subject_state equals billing_accounts', () => {
  const COLUMNS = 'status, cancel_at_period_end, current_period_start, current_period_end, payment_failed_at, features';

  async function differences(subjects: string[] | null): Promise<unknown[]> {
    const only = subjects ? 'where user_id = any($1)' : '';
    const onlyState = subjects ? 'where subject_id = any($1)' : '';
    return query(
      `(select 'view' as side, user_id, ${COLUMNS} from billing_accounts ${only}
        except all select 'view', subject_id, ${COLUMNS} from billing_subject_state ${onlyState})
       union all
       (select 'state', subject_id, ${COLUMNS} from billing_subject_state ${onlyState}
        except all select 'state', user_id, ${COLUMNS} from billing_accounts ${only})`,
      subjects ? [subjects] : [],
    );
  }

  it('after every step of random histories: subscriptions, invoices, entitlements, deleted and relinked customers, plan changes, deleted rows', { timeout: 120_000 }, async () => {
    const seed = Number(process.env['SEED'] ?? Math.floor(Math.random() * 2 ** 31));
    const rand = random(seed);
    const pick = <T,>(items: readonly T[]): T => items[Math.floor(rand() * items.length)] as T;
    const tag = randomUUID().slice(0, 8);
    const plan = `teams_sql_${tag}`;
    const product = `prod_teams_sql_${tag}`;
    await query(`insert into billing_plans (plan, stripe_product_id, name, features, position) values ($1, $2, 'Teams test', '{api_access}', 99)`, [plan, product]);
    const subjects = Array.from({ length: 6 }, () => randomUUID());
    const customers = subjects.flatMap((subject) => [`cus_${randomUUID().slice(0, 12)}`, `cus_${randomUUID().slice(0, 12)}`].map((id) => ({ id, subject })));
    const subscriptions = customers.flatMap((c) => [0, 1].map((i) => ({ id: `sub_${c.id.slice(4)}_${i}`, customer: c })));
    const iso = (seconds: number) => new Date(seconds * 1000).toISOString();
    const base = Math.floor(Date.now() / 1000);
    let clock = base - 40 * DAY;
    let n = 0;
    const eventId = () => `evt_teams_${tag}_${(n += 1)}`;
    const apply = (change: unknown, created: number) =>
      query('select billing_apply_event($1, $2, $3, false, null, $4)', [eventId(), 'test.event', iso(created), JSON.stringify(change)]);

    const steps: string[] = [];
    const seen = new Set<string>();
    try {
      for (let step = 0; step < 250; step += 1) {
        // Mostly forward in time, sometimes an older event (stale) or the same second.
        clock += pick([0, 0, 1, 60, DAY]);
        const created = rand() < 0.15 ? clock - Math.floor(rand() * 5 * DAY) : clock;
        const sub = pick(subscriptions);
        const kind = rand() < 0.03 ? 'deleted' : pick(['subscription', 'subscription', 'subscription', 'invoice', 'entitlements', 'checkout', 'relink', 'plan', 'drop']);
        steps.push(`${kind} ${sub.id}`);
        if (kind === 'subscription') {
          const start = created - Math.floor(rand() * 30) * DAY;
          await apply({
            kind: 'subscription',
            subscription: {
              id: sub.id,
              customer_id: sub.customer.id,
              // The metadata names the subject, or another one, or nobody: the customer link wins when there is one.
              user_id: pick([sub.customer.subject, sub.customer.subject, pick(subjects), null]),
              status: pick(['incomplete', 'trialing', 'active', 'active', 'past_due', 'canceled', 'unpaid', 'paused']),
              price_id: 'price_x',
              product_id: pick(['analytics_business', 'analytics_pro', product, 'prod_elsewhere']),
              quantity: 1,
              for_this_product: rand() < 0.9,
              current_period_start: iso(start),
              current_period_end: iso(start + 30 * DAY),
              cancel_at_period_end: rand() < 0.3,
              cancel_at: null,
              canceled_at: null,
              ended_at: null,
              trial_start: null,
              trial_end: null,
              created: iso(start - DAY),
            },
          }, created);
        } else if (kind === 'invoice') {
          await apply({
            kind: 'invoice',
            invoice: {
              id: `in_${tag}_${n}`, customer_id: sub.customer.id, subscription_id: sub.id, outcome: pick(['paid', 'failed', 'failed', 'action_required']),
              amount: 900, currency: 'eur', hosted_invoice_url: null, next_payment_attempt: null,
            },
          }, created);
        } else if (kind === 'entitlements') {
          const features = BUSINESS.filter(() => rand() < 0.5);
          await query('select billing_apply_entitlements($1, $2, $3, false, null, $4, $5)', [eventId(), 'entitlements.active_entitlement_summary.updated', iso(created), sub.customer.id, features]);
        } else if (kind === 'checkout') {
          await apply({ kind: 'checkout_completed', user_id: sub.customer.subject, customer_id: sub.customer.id, subscription_id: sub.id, email: null }, created);
        } else if (kind === 'deleted') {
          await apply({ kind: 'customer_deleted', customer_id: sub.customer.id }, created);
        } else if (kind === 'relink') {
          await query('select billing_link_customer($1, $2, null)', [sub.customer.subject, sub.customer.id]);
        } else if (kind === 'plan') {
          await query('update billing_plans set features = $2 where plan = $1', [plan, BUSINESS.filter(() => rand() < 0.5)]);
        } else {
          await query('delete from billing_subscriptions where stripe_subscription_id = $1', [sub.id]);
        }
        expect(await differences(subjects), `seed ${seed}, step ${step}: ${steps.slice(-5).join(' → ')}`).toEqual([]);
        const states = await query<{ s: string }>(`select coalesce(status, 'none') || ':' || cardinality(features) as s from billing_subject_state where subject_id = any($1)`, [subjects]);
        for (const { s } of states) seen.add(s);
      }
      // The histories went through the states that matter, features and none.
      expect(seen.size, `seed ${seed}: ${[...seen].join(' ')}`).toBeGreaterThan(5);
      expect([...seen].some((s) => s.endsWith(':0')) && [...seen].some((s) => !s.endsWith(':0')), `seed ${seed}`).toBe(true);
    } finally {
      await query('delete from billing_plans where plan = $1', [plan]);
    }
    expect(await differences(subjects)).toEqual([]);
  });

  it('holds for every subject in the database, whatever the other test files wrote', async () => {
    expect(await differences(null)).toEqual([]);
    expect((await query<{ n: number }>('select count(*)::int as n from billing_subject_state'))[0]?.n).toBeGreaterThan(0);
  });
});
