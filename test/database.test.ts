// The schema's promises, checked through PostgREST as Supabase clients would see them.
import { createClient } from '@supabase/supabase-js';
import { describe, expect, it } from 'vitest';
import { env, newUser, query } from './support/stack.ts';

function rest(path: string, token: string, init: RequestInit = {}): Promise<Response> {
  return fetch(`${env('SUPABASE_URL')}/rest/v1/${path}`, {
    ...init,
    headers: { apikey: token, authorization: `Bearer ${token}`, 'content-type': 'application/json', ...(init.headers as Record<string, string>) },
  });
}

async function seed(userId: string): Promise<void> {
  await query('insert into billing_customers (user_id, stripe_customer_id) values ($1, $2)', [userId, `cus_${userId}`]);
  await query(
    `insert into billing_subscriptions (stripe_subscription_id, stripe_customer_id, user_id, status) values ($1, $2, $3, 'active')`,
    [`sub_${userId}`, `cus_${userId}`, userId],
  );
}

describe('row-level security', () => {
  it('a user reads only their own subscription and customer link', async () => {
    const alice = newUser();
    const bob = newUser();
    await seed(alice.id);
    await seed(bob.id);

    // As a dashboard would read it: supabase-js with the user's session token.
    const asAlice = createClient(env('SUPABASE_URL'), alice.token, {
      accessToken: () => Promise.resolve(alice.token),
      auth: { persistSession: false },
    });
    for (const table of ['billing_subscriptions', 'billing_customers', 'billing_accounts']) {
      const { data, error } = await asAlice.from(table).select('user_id');
      expect(error).toBeNull();
      expect(data).toEqual([{ user_id: alice.id }]);
    }
  });

  it('a user cannot write, nor read processed events', async () => {
    const alice = newUser();
    await seed(alice.id);
    const update = await rest(`billing_subscriptions?user_id=eq.${alice.id}`, alice.token, {
      method: 'PATCH',
      body: JSON.stringify({ status: 'canceled' }),
    });
    expect(update.status).toBe(403);
    const insert = await rest('billing_customers', alice.token, {
      method: 'POST',
      body: JSON.stringify({ user_id: alice.id, stripe_customer_id: 'cus_mine' }),
    });
    expect(insert.status).toBe(403);
    expect((await rest('stripe_events?select=id', alice.token)).status).toBe(403);
    expect(await query('select status from billing_subscriptions where user_id = $1', [alice.id])).toEqual([{ status: 'active' }]);
  });

  // The entitlement functions (supabase/migrations/20261201100000) and the teams' policy
  // helpers (20261204100000) and the limits' readers (20261204600000) are for policies, so `authenticated` may run them; they answer
  // only about the caller and their teams (test/entitlements.test.ts, test/teams-sql.test.ts).
  it('billing functions, but the entitlement ones, are not executable by signed-in users or anon', async () => {
    const alice = newUser();
    const call = await rest('rpc/billing_link_customer', alice.token, {
      method: 'POST',
      body: JSON.stringify({ p_user_id: alice.id, p_stripe_customer_id: 'cus_stolen', p_email: null }),
    });
    expect([401, 403, 404]).toContain(call.status);
    const privileges = await query<{ grantee: string }>(
      `select distinct grantee from information_schema.routine_privileges
        where routine_schema = 'public' and routine_name like 'billing_%' and privilege_type = 'EXECUTE'
          and routine_name not in ('billing_has_access', 'billing_features', 'billing_has_feature', 'billing_decide_access', 'billing_grace_days', 'billing_account_grace_days',
                                   'billing_subjects_with_feature', 'billing_my_team_ids', 'billing_limit', 'billing_usage', 'billing_usage_state')`,
    );
    const grantees = privileges.map((p) => p.grantee);
    expect(grantees).toContain('service_role');
    for (const role of ['anon', 'authenticated', 'PUBLIC']) expect(grantees).not.toContain(role);
    expect(await query('select 1 from billing_customers where user_id = $1', [alice.id])).toHaveLength(0);
  });
});
