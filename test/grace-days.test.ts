// The grace period has one home, public.billing_settings: the API's status and the SQL
// functions that policies call read the same row, so a change moves both at once.
// This file changes that row, so it runs against a stack of its own: the other files'
// past-due cases keep the default of 7 days.

import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import subscription from '../netlify/functions/stripe-subscription.mts';
import { startThrowawayStack, type ThrowawayStack } from '../scripts/stack/throwaway.ts';
import { asUser, closeDb, newUser, query, withEnv, type TestUser } from './support/stack.ts';

const DAY_MS = 86_400_000;
let own: ThrowawayStack;

beforeAll(async () => {
  own = await startThrowawayStack('grace', { ownDatabase: true });
  // Not the run's shared database, which the other files' past-due cases use.
  expect(own.env['DATABASE_URL']).not.toBe(process.env['DATABASE_URL']);
});

afterAll(async () => {
  if (!own) return;
  await withEnv(own.env, closeDb);
  await own.stop();
});

/** A past-due subscriber whose first failed payment was `failedDaysAgo` days ago. */
async function pastDue(failedDaysAgo: number): Promise<{ user: TestUser; failedAt: Date }> {
  const user = newUser();
  const customer = `cus_${randomUUID().slice(0, 12)}`;
  const failedAt = new Date(Date.now() - failedDaysAgo * DAY_MS);
  await query('insert into billing_customers (user_id, stripe_customer_id) values ($1, $2)', [user.id, customer]);
  await query(
    `insert into billing_subscriptions (stripe_subscription_id, stripe_customer_id, user_id, status, product_id, for_this_product,
       cancel_at_period_end, current_period_start, current_period_end, payment_failed_at, stripe_created_at, state_event_created, state_event_id)
     values ($1, $2, $3, 'past_due', 'prod_local_analytics', true, false, now() - interval '20 days', now() + interval '10 days', $4,
       now() - interval '40 days', now() - interval '1 hour', 'evt_grace')`,
    [`sub_${randomUUID().slice(0, 12)}`, customer, user.id, failedAt.toISOString()],
  );
  return { user, failedAt };
}

/** What the API says and what SQL says, for the same user, now. */
async function both(user: TestUser): Promise<{ api: { access: boolean; graceUntil: string | null }; sql: boolean }> {
  const response = await subscription(new Request('http://localhost/api/stripe/subscription', { headers: { authorization: `Bearer ${user.token}` } }));
  expect(response.status).toBe(200);
  const body = ((await response.json()) as { subscription: { access: boolean; graceUntil: string | null } }).subscription;
  const [row] = await asUser<{ access: boolean }>(user.id, 'select billing_has_access($1) as access', [user.id]);
  return { api: { access: body.access, graceUntil: body.graceUntil }, sql: row?.access ?? false };
}

describe('the grace period, in billing_settings', () => {
  it('defaults to 7 days; a change of the row moves the API and SQL together, on the next request', () =>
    withEnv(own.env, async () => {
      const { user, failedAt } = await pastDue(8);
      const graceUntil = (days: number) => new Date(failedAt.getTime() + days * DAY_MS).toISOString();

      expect(await query('select grace_days from billing_settings')).toEqual([{ grace_days: 7 }]);
      expect(await both(user)).toEqual({ api: { access: false, graceUntil: graceUntil(7) }, sql: false });

      await query('update billing_settings set grace_days = 10');
      expect(await both(user)).toEqual({ api: { access: true, graceUntil: graceUntil(10) }, sql: true });

      const recent = await pastDue(0.5);
      expect((await both(recent.user)).sql).toBe(true);
      await query('update billing_settings set grace_days = 0');
      expect(await both(recent.user)).toEqual({ api: { access: false, graceUntil: recent.failedAt.toISOString() }, sql: false });
    }));

  it('holds one row of 0 to 90 days, which signed-in users can neither read nor change', () =>
    withEnv(own.env, async () => {
      await expect(query('update billing_settings set grace_days = 91')).rejects.toThrow(/check constraint/);
      await expect(query('insert into billing_settings (id, grace_days) values (false, 3)')).rejects.toThrow(/check constraint/);
      const user = newUser();
      await expect(asUser(user.id, 'select grace_days from billing_settings')).rejects.toThrow(/permission denied/);
      await expect(asUser(user.id, 'update billing_settings set grace_days = 90')).rejects.toThrow(/permission denied/);
      // Through the function, which policies call, they may read the number.
      expect(await asUser(user.id, 'select billing_grace_days() as days')).toEqual([{ days: expect.any(Number) as number }]);
    }));
});
