// npm run billing:events: the inbox listed, failed events found and replayed. A replay
// reads the event from Stripe's Events API: here the local bridge serves the events
// this test posts to its event log (stripe-mock's own /v1/events is one fixture).

import pg from 'pg';
import { describe, expect, it } from 'vitest';
import webhook from '../netlify/functions/stripe-webhook.mts';
import { checkoutCompletedEvent, invoiceEvent, newIds, subscriptionEvent } from './support/events.ts';
import { env, newUser, postStripeEvents, query, signedDelivery } from './support/stack.ts';
import { runScript } from './support/trigger.ts';

const DAY = 86_400;
const T = Math.floor(Date.now() / 1000) - DAY;

const events = (...args: string[]) => runScript('billing-events.ts', args);

describe('npm run billing:events', () => {
  it('lists a failed event with its reason, replays it once, and filters by user', async () => {
    const user = newUser();
    const ids = newIds(user.id);
    const checkout = checkoutCompletedEvent(ids, T);
    const created = subscriptionEvent('customer.subscription.created', ids, T + 1, { status: 'active', periodStart: T, periodEnd: T + 30 * DAY });
    const paid = invoiceEvent('invoice.paid', ids, T + 2);
    for (const event of [checkout, created]) expect((await webhook(signedDelivery(JSON.stringify(event)))).status).toBe(200);

    // The database holds this customer's lock for longer than a delivery waits: the
    // invoice fails (500) and is recorded as failed, not processed.
    const holder = new pg.Client({ connectionString: env('DATABASE_URL') });
    await holder.connect();
    try {
      await holder.query('select pg_advisory_lock(hashtextextended($1, 0))', [`billing_customer:${ids.customerId}`]);
      expect((await webhook(signedDelivery(JSON.stringify(paid)))).status).toBe(500);
    } finally {
      await holder.end();
    }
    await postStripeEvents([checkout, created, paid]);

    const failed = await events('--failed', '--since', '2d');
    expect(failed.code).toBe(0);
    const line = failed.stdout.split('\n').find((l) => l.includes(paid.id));
    expect(line).toMatch(/invoice\.paid\s+failed\s+×1/);
    expect(line).toContain('lock timeout');

    const mine = await events('--user', user.id);
    expect(mine.code).toBe(0);
    for (const event of [checkout, created, paid]) expect(mine.stdout).toContain(event.id);
    expect(mine.stdout).toMatch(/3 event\(s\), 1 failed/);
    const someoneElse = await events('--user', newUser().id);
    expect(someoneElse.stdout.trim()).toBe('0 event(s)');

    const replay = await events('--replay-failed', '--since', '2d');
    expect(replay.code).toBe(0);
    expect(replay.stderr).toContain(`${paid.id} invoice.paid: applied`);
    expect(replay.stdout.trim().split('\n').at(-1)).toMatch(/^replayed \d+: \d+ applied/);
    expect(await query('select outcome, reason from stripe_events where id = $1', [paid.id])).toEqual([{ outcome: 'applied', reason: null }]);
    const [row] = await query<{ last_payment_status: string }>('select last_payment_status from billing_subscriptions where stripe_subscription_id = $1', [ids.subscriptionId]);
    expect(row?.last_payment_status).toBe('paid');

    // Replaying it again changes nothing.
    const again = await events('--replay', paid.id);
    expect(again.code).toBe(0);
    expect(again.stdout).toMatch(/replayed 1: 0 applied, 0 stale, 1 duplicate, 0 skipped, 0 failed/);
  });

  it('exits 1 when a replay fails (an event Stripe does not have), 2 on bad usage', async () => {
    const missing = await events('--replay', 'evt_not_in_stripe_0000');
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/evt_not_in_stripe_0000 \?: failed \(.*No such event/);
    expect(missing.stdout).toMatch(/1 failed$/m);
    expect((await events('--replay')).code).toBe(2);
    expect((await events('--since', 'yesterday-ish')).code).toBe(2);
    expect((await events('--user', 'not-a-uuid')).code).toBe(2);
  });
});
