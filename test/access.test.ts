import { describe, expect, it } from 'vitest';
import { canStartCheckout, SUBSCRIPTION_STATUSES, type AccessFacts, type SubscriptionStatus } from '../src/database/access.ts';
import { query } from './support/stack.ts';

const now = new Date('2026-11-25T12:00:00Z');
const DAY = 86_400_000;
const at = (offsetDays: number) => new Date(now.getTime() + offsetDays * DAY).toISOString();

function facts(status: SubscriptionStatus, extra: Partial<AccessFacts> = {}): AccessFacts {
  return { status, cancelAtPeriodEnd: false, currentPeriodStart: at(-10), currentPeriodEnd: at(20), paymentFailedAt: null, ...extra };
}

/** The one access rule: billing_decide_access, which the status endpoint and the policies read. */
async function decideAccess(facts: AccessFacts | null, at: Date, graceDays: number) {
  const [row] = await query<{ access: boolean; reason: string; grace_until: Date | null }>(
    'select * from billing_decide_access($1, $2, $3, $4, $5, $6, $7)',
    [facts?.status ?? null, facts?.cancelAtPeriodEnd ?? false, facts?.currentPeriodStart ?? null, facts?.currentPeriodEnd ?? null, facts?.paymentFailedAt ?? null, graceDays, at.toISOString()],
  );
  return { access: row?.access, reason: row?.reason, graceUntil: row?.grace_until ?? null };
}

describe('billing_decide_access: the access table', () => {
  it.each([
    ['trialing', true, 'trialing'],
    ['active', true, 'active'],
    ['incomplete', false, 'incomplete'],
    ['incomplete_expired', false, 'incomplete_expired'],
    ['unpaid', false, 'unpaid'],
    ['canceled', false, 'canceled'],
    ['paused', false, 'paused'],
  ] as const)('%s: access %s', async (status, access, reason) => {
    expect(await decideAccess(facts(status), now, 7)).toEqual({ access, reason, graceUntil: null });
  });

  it('no subscription: no access', async () => {
    expect(await decideAccess(null, now, 7)).toEqual({ access: false, reason: 'no_subscription', graceUntil: null });
  });

  it('active with cancel_at_period_end: access until the period ends, not after', async () => {
    const ending = facts('active', { cancelAtPeriodEnd: true, currentPeriodEnd: at(1) });
    expect(await decideAccess(ending, now, 7)).toMatchObject({ access: true, reason: 'canceling' });
    const endsNow = facts('active', { cancelAtPeriodEnd: true, currentPeriodEnd: now.toISOString() });
    expect(await decideAccess(endsNow, now, 7)).toMatchObject({ access: false, reason: 'period_ended' });
    const trialEnding = facts('trialing', { cancelAtPeriodEnd: true, currentPeriodEnd: at(-0.001) });
    expect(await decideAccess(trialEnding, now, 7)).toMatchObject({ access: false, reason: 'period_ended' });
  });

  describe('past_due: the grace period counts from the first failed payment', () => {
    it('inside the grace period: access, and says until when', async () => {
      const decision = await decideAccess(facts('past_due', { paymentFailedAt: at(-6.99) }), now, 7);
      expect(decision.access).toBe(true);
      expect(decision.reason).toBe('grace_period');
      expect(decision.graceUntil?.toISOString()).toBe(at(0.01));
    });

    it('at the exact end of the grace period: no access', async () => {
      expect(await decideAccess(facts('past_due', { paymentFailedAt: at(-7) }), now, 7)).toEqual({
        access: false,
        reason: 'grace_expired',
        graceUntil: now,
      });
    });

    it('one millisecond before the end: access', async () => {
      const failed = new Date(now.getTime() - 7 * DAY + 1).toISOString();
      expect((await decideAccess(facts('past_due', { paymentFailedAt: failed }), now, 7)).access).toBe(true);
    });

    it('follows BILLING_GRACE_DAYS, including 0', async () => {
      expect((await decideAccess(facts('past_due', { paymentFailedAt: at(-8) }), now, 10)).access).toBe(true);
      expect((await decideAccess(facts('past_due', { paymentFailedAt: at(-0.5) }), now, 0)).access).toBe(false);
    });

    it('without a recorded failure, counts from the start of the current period', async () => {
      expect(await decideAccess(facts('past_due', { currentPeriodStart: at(-3) }), now, 7)).toMatchObject({ access: true, graceUntil: new Date(at(4)) });
      expect((await decideAccess(facts('past_due', { currentPeriodStart: at(-9) }), now, 7)).access).toBe(false);
    });
  });
});

describe('canStartCheckout', () => {
  it.each(SUBSCRIPTION_STATUSES.map((status) => [status, status === 'canceled' || status === 'incomplete_expired'] as const))(
    '%s: %s',
    (status, allowed) => {
      expect(canStartCheckout(status)).toBe(allowed);
    },
  );

  it('no subscription: allowed', () => {
    expect(canStartCheckout(null)).toBe(true);
  });
});
