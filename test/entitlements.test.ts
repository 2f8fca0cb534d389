// One rule, in the database: the access cases (test/support/access-cases.ts) through
// billing_decide_access; the same cases as real accounts through GET
// /api/stripe/subscription (which reads the database's decision) and
// billing_features/billing_has_access; and the policy example of docs/entitlements.md.

import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import subscription from '../netlify/functions/stripe-subscription.mts';
import type { AccessFacts } from '../src/database/access.ts';
import { ACCESS_CASES, GRACE_DAYS, type AccessCase } from './support/access-cases.ts';
import { catalogEnv } from './support/catalog.ts';
import { asUser, newUser, query, withEnv, type TestUser } from './support/stack.ts';

const DAY_MS = 86_400_000;
const BUSINESS = ['unlimited_sites', 'realtime_dashboard', 'custom_events', 'advanced_filtering', 'shared_dashboards', 'api_access'];

function factsOf(c: AccessCase, now: number): AccessFacts {
  const at = (days: number | null | undefined) => (days === null || days === undefined ? null : new Date(now + days * DAY_MS).toISOString());
  return {
    status: c.status,
    cancelAtPeriodEnd: c.cancelAtPeriodEnd ?? false,
    currentPeriodStart: at(c.periodStart),
    currentPeriodEnd: at(c.periodEnd),
    paymentFailedAt: at(c.paymentFailed),
  };
}

async function sqlDecision(facts: AccessFacts | null, now: Date, graceDays: number) {
  const [row] = await query<{ access: boolean; reason: string; grace_until: Date | null }>(
    'select * from billing_decide_access($1, $2, $3, $4, $5, $6, $7)',
    [facts?.status ?? null, facts?.cancelAtPeriodEnd ?? false, facts?.currentPeriodStart ?? null, facts?.currentPeriodEnd ?? null, facts?.paymentFailedAt ?? null, graceDays, now.toISOString()],
  );
  return { access: row?.access, reason: row?.reason, graceUntil: row?.grace_until ?? null };
}

describe('the access rule, billing_decide_access', () => {
  const now = new Date();
  it.each(ACCESS_CASES.map((c) => [c.name, c] as const))('%s', async (_name, c) => {
    const decision = await sqlDecision(factsOf(c, now.getTime()), now, GRACE_DAYS);
    expect({ access: decision.access, reason: decision.reason }).toEqual({ access: c.access, reason: c.reason });
    // A grace period's end is said for a past-due subscription only.
    expect(decision.graceUntil !== null).toBe(c.status === 'past_due');
  });

  it('no subscription', async () => {
    expect(await sqlDecision(null, now, GRACE_DAYS)).toEqual({ access: false, reason: 'no_subscription', graceUntil: null });
  });
});

describe('GET /api/stripe/subscription says what billing_decide_access and billing_features decide, on every case', () => {
  /** A Business subscriber whose subscription is in the case's state, stored as the webhook stores it. */
  async function account(c: AccessCase): Promise<TestUser> {
    const user = newUser();
    const facts = factsOf(c, Date.now());
    const customer = `cus_${randomUUID().slice(0, 12)}`;
    await query('insert into billing_customers (user_id, stripe_customer_id) values ($1, $2)', [user.id, customer]);
    await query(
      `insert into billing_subscriptions (stripe_subscription_id, stripe_customer_id, user_id, status, product_id, for_this_product,
         cancel_at_period_end, current_period_start, current_period_end, payment_failed_at, stripe_created_at, state_event_created, state_event_id)
       values ($1, $2, $3, $4, 'analytics_business', true, $5, $6, $7, $8, now() - interval '40 days', now() - interval '1 hour', 'evt_case')`,
      [`sub_${randomUUID().slice(0, 12)}`, customer, user.id, facts.status, facts.cancelAtPeriodEnd, facts.currentPeriodStart, facts.currentPeriodEnd, facts.paymentFailedAt],
    );
    return user;
  }

  it.each(ACCESS_CASES.map((c) => [c.name, c] as const))('%s', async (_name, c) => {
    const user = await account(c);
    const response = await withEnv(catalogEnv(), () =>
      subscription(new Request('http://localhost/api/stripe/subscription', { headers: { authorization: `Bearer ${user.token}` } })),
    );
    const body = ((await response.json()) as { subscription: { access: boolean; accessReason: string; plan: string; features: string[]; graceUntil: string | null } }).subscription;
    const expected = c.access ? BUSINESS : [];
    expect({ access: body.access, reason: body.accessReason, plan: body.plan, features: body.features }).toEqual({ access: c.access, reason: c.reason, plan: 'business', features: expected });
    const [stored] = await query<{ payment_failed_at: Date | null; current_period_start: Date | null }>(
      'select payment_failed_at, current_period_start from billing_accounts where user_id = $1',
      [user.id],
    );
    const since = stored?.payment_failed_at ?? stored?.current_period_start ?? null;
    expect(body.graceUntil).toBe(c.status === 'past_due' && since ? new Date(since.getTime() + GRACE_DAYS * DAY_MS).toISOString() : null);

    const [sql] = await asUser<{ features: string[]; access: boolean; api: boolean }>(
      user.id,
      `select billing_features($1) as features, billing_has_access($1) as access, billing_has_feature($1, 'api_access') as api`,
      [user.id],
    );
    expect(sql).toEqual({ features: body.features, access: body.access, api: c.access });
  });

  it('answers false for another user\'s id, and nothing about a user with no account', async () => {
    const subscriber = await account(ACCESS_CASES[0] as AccessCase);
    const other = newUser();
    const [row] = await asUser<{ access: boolean; features: string[]; api: boolean }>(
      other.id,
      `select billing_has_access($1) as access, billing_features($1) as features, billing_has_feature($1, 'api_access') as api`,
      [subscriber.id],
    );
    expect(row).toEqual({ access: false, features: [], api: false });
    const [own] = await asUser<{ access: boolean }>(other.id, 'select billing_has_access($1) as access', [other.id]);
    expect(own?.access).toBe(false);
    // The service role may ask about anyone.
    expect((await query<{ access: boolean }>('select billing_has_access($1) as access', [subscriber.id]))[0]?.access).toBe(true);
  });
});

describe('docs/entitlements.md: the policy example', () => {
  const doc = readFileSync(path.resolve(import.meta.dirname, '../docs/entitlements.md'), 'utf8');
  const example = /```sql\n(create table public\.api_tokens[\s\S]*?)```/.exec(doc)?.[1] ?? '';

  it('a user without the feature reads none of their rows; a user with it reads theirs, and only theirs', async () => {
    expect(example).toContain('billing_has_feature');
    await query('drop table if exists public.api_tokens');
    await query(example);
    const withFeature = newUser();
    const without = newUser();
    const ids = async (user: TestUser, plan: 'business' | 'pro') => {
      const customer = `cus_${randomUUID().slice(0, 12)}`;
      await query('insert into billing_customers (user_id, stripe_customer_id) values ($1, $2)', [user.id, customer]);
      await query(
        `insert into billing_subscriptions (stripe_subscription_id, stripe_customer_id, user_id, status, product_id, for_this_product,
           current_period_start, current_period_end, state_event_created, state_event_id)
         values ($1, $2, $3, 'active', $4, true, now() - interval '1 day', now() + interval '29 days', now(), 'evt_example')`,
        [`sub_${randomUUID().slice(0, 12)}`, customer, user.id, `analytics_${plan}`],
      );
      await query(`insert into api_tokens (user_id, name) values ($1, 'ci'), ($1, 'laptop')`, [user.id]);
    };
    await ids(withFeature, 'business');
    await ids(without, 'pro');

    const read = async (user: TestUser) => (await asUser<{ user_id: string }>(user.id, 'select user_id from api_tokens')).map((r) => r.user_id);
    expect(await read(withFeature)).toEqual([withFeature.id, withFeature.id]);
    expect(await read(without)).toEqual([]);
    expect((await query('select * from api_tokens')).length).toBe(4);
  });
});
