// Random billing histories of one user, as Stripe would send them, and a reference
// model of the ordering rule that says what state they must end in. Used by the
// convergence property test and the webhook load test.

import type Stripe from 'stripe';
import { expect } from 'vitest';
import webhook from '../../netlify/functions/stripe-webhook.mts';
import { API_VERSIONS, renderInVersion, type ApiVersion } from '../../scripts/lib/stripe-events.ts';
import {
  checkoutCompletedEvent,
  customerDeletedEvent,
  invoiceEvent,
  newIds,
  subscriptionEvent,
  type Ids,
  type InvoiceEventType,
  type SubscriptionEventType,
  type SubscriptionState,
} from './events.ts';
import { query, signedDelivery } from './stack.ts';

const DAY = 86_400;

/** mulberry32: small, seedable, good enough to pick test cases. */
export function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const STATUS_RANK: Record<string, number> = {
  incomplete: 0, trialing: 1, active: 2, past_due: 3, unpaid: 4, paused: 4, canceled: 5, incomplete_expired: 5,
};
const PAYMENT_RANK: Record<string, number> = { failed: 0, action_required: 1, paid: 2 };

export type Sent =
  | { kind: 'subscription'; event: Stripe.Event; subscriptionId: string; state: SubscriptionState }
  | { kind: 'invoice'; event: Stripe.Event; subscriptionId: string; outcome: 'paid' | 'failed' | 'action_required' }
  | { kind: 'trial_will_end'; event: Stripe.Event; subscriptionId: string }
  | { kind: 'checkout'; event: Stripe.Event; subscriptionId: string }
  | { kind: 'customer_deleted'; event: Stripe.Event };

export interface History {
  userId: string;
  customerId: string;
  subscriptionIds: string[];
  sent: Sent[];
  steps: string[];
  /** The API versions its events are rendered in (the pinned one until renderHistory). */
  versions: ApiVersion[];
}

/** One user's billing history, as Stripe would send it, in true time order. */
export function generateHistory(rand: () => number, userId: string): History {
  const pick = <T,>(items: readonly T[]): T => items[Math.floor(rand() * items.length)] as T;
  let t = 1_780_000_000 + Math.floor(rand() * 10_000_000);
  // Many events share a second: that is where ordering is hardest.
  const tick = () => {
    const r = rand();
    t += r < 0.35 ? 0 : r < 0.6 ? 1 + Math.floor(rand() * 5) : DAY * (1 + Math.floor(rand() * 30));
    return t;
  };
  const withoutUserMetadata = rand() < 0.3;
  const sent: Sent[] = [];
  const steps: string[] = [];
  let ids: Ids = newIds(userId);
  const customerId = ids.customerId;
  const subscriptionIds: string[] = [];
  let state: SubscriptionState;

  const sub = (type: SubscriptionEventType, next: SubscriptionState) => {
    state = next;
    const event = subscriptionEvent(type, ids, tick(), { ...next, withoutUserMetadata });
    sent.push(type === 'customer.subscription.trial_will_end'
      ? { kind: 'trial_will_end', event, subscriptionId: ids.subscriptionId }
      : { kind: 'subscription', event, subscriptionId: ids.subscriptionId, state: next });
  };
  const invoice = (type: InvoiceEventType) => {
    const outcome = type === 'invoice.paid' ? 'paid' : type === 'invoice.payment_failed' ? 'failed' : 'action_required';
    sent.push({ kind: 'invoice', event: invoiceEvent(type, ids, tick(), { amount: 900 + Math.floor(rand() * 100) }), subscriptionId: ids.subscriptionId, outcome });
  };

  const subscribe = () => {
    subscriptionIds.push(ids.subscriptionId);
    sent.push({ kind: 'checkout', event: checkoutCompletedEvent(ids, tick()), subscriptionId: ids.subscriptionId });
    if (rand() < 0.3) {
      steps.push('subscribe with trial');
      sub('customer.subscription.created', { status: 'trialing', periodStart: t, periodEnd: t + 14 * DAY, trialStart: t, trialEnd: t + 14 * DAY });
    } else {
      steps.push('subscribe');
      sub('customer.subscription.created', { status: 'incomplete', periodStart: t, periodEnd: t + 30 * DAY });
      invoice('invoice.paid');
      sub('customer.subscription.updated', { ...state, status: 'active' });
    }
  };

  subscribe();
  const length = 2 + Math.floor(rand() * 7);
  for (let i = 0; i < length; i += 1) {
    const s = state!;
    const options: string[] =
      s.status === 'trialing' ? ['trial_will_end', 'convert', 'cancel', 'pause']
      : s.status === 'active' ? ['renew', 'renew', 'fail', s.cancelAtPeriodEnd ? 'uncancel' : 'cancel_at_period_end', 'cancel', 'action_required']
      : s.status === 'past_due' ? ['recover', 'fail', 'unpaid', 'cancel']
      : s.status === 'paused' ? ['resume', 'cancel']
      : s.status === 'unpaid' ? ['recover', 'cancel']
      : ['resubscribe'];
    const step = pick(options);
    steps.push(step);
    const next = (extra: Partial<SubscriptionState>) => ({ ...s, ...extra });
    switch (step) {
      case 'trial_will_end': sub('customer.subscription.trial_will_end', s); break;
      case 'convert': invoice('invoice.paid'); sub('customer.subscription.updated', next({ status: 'active', periodStart: t, periodEnd: t + 30 * DAY })); break;
      case 'pause': sub('customer.subscription.paused', next({ status: 'paused' })); break;
      case 'resume': sub('customer.subscription.resumed', next({ status: 'active', periodStart: t, periodEnd: t + 30 * DAY })); break;
      case 'renew': invoice('invoice.paid'); sub('customer.subscription.updated', next({ periodStart: s.periodEnd, periodEnd: s.periodEnd + 30 * DAY })); break;
      case 'fail': invoice('invoice.payment_failed'); sub('customer.subscription.updated', next({ status: 'past_due' })); break;
      case 'action_required': invoice('invoice.payment_action_required'); break;
      case 'recover': invoice('invoice.paid'); sub('customer.subscription.updated', next({ status: 'active' })); break;
      case 'unpaid': sub('customer.subscription.updated', next({ status: 'unpaid' })); break;
      case 'cancel_at_period_end': sub('customer.subscription.updated', next({ cancelAtPeriodEnd: true })); break;
      case 'uncancel': sub('customer.subscription.updated', next({ cancelAtPeriodEnd: false })); break;
      case 'cancel': sub('customer.subscription.deleted', next({ status: 'canceled', canceledAt: t, endedAt: t })); break;
      case 'resubscribe':
        ids = { ...newIds(userId), customerId };
        subscribe();
        break;
    }
  }
  if (rand() < 0.1) {
    steps.push('delete customer');
    sent.push({ kind: 'customer_deleted', event: customerDeletedEvent(ids, tick()) });
  }
  return { userId, customerId, subscriptionIds, sent, steps, versions: [API_VERSIONS[API_VERSIONS.length - 1] as ApiVersion] };
}

/** The history as an endpoint on `version` receives it; or each event in a random version. */
export function renderHistory(rand: () => number, history: History, how: ApiVersion | 'one version' | 'any version per event'): History {
  const pickVersion = () => API_VERSIONS[Math.floor(rand() * API_VERSIONS.length)] as ApiVersion;
  const one = how === 'one version' ? pickVersion() : how === 'any version per event' ? null : how;
  const sent = history.sent.map((s) => ({ ...s, event: renderInVersion(s.event, one ?? pickVersion()) }));
  const versions = [...new Set(sent.map((s) => s.event.api_version as ApiVersion))];
  return { ...history, sent, versions };
}

/** Shuffled, with about a quarter of the events delivered twice or three times. */
export function deliveries(rand: () => number, history: History): string[] {
  const payloads = history.sent.flatMap(({ event }) => {
    const payload = JSON.stringify(event);
    const r = rand();
    return r < 0.15 ? [payload, payload] : r < 0.25 ? [payload, payload, payload] : [payload];
  });
  for (let i = payloads.length - 1; i > 0; i -= 1) {
    const j = Math.floor(rand() * (i + 1));
    [payloads[i], payloads[j]] = [payloads[j] as string, payloads[i] as string];
  }
  return payloads;
}

/** Through the webhook function, in concurrent batches of 1 to 8. */
export async function deliverConcurrently(rand: () => number, payloads: string[]): Promise<number[]> {
  const statuses: number[] = [];
  for (let i = 0; i < payloads.length;) {
    const size = 1 + Math.floor(rand() * 8);
    const batch = payloads.slice(i, i + size);
    i += size;
    const responses = await Promise.all(batch.map((payload) => webhook(signedDelivery(payload))));
    statuses.push(...responses.map((r) => r.status));
  }
  return statuses;
}

/** Compares ordering keys as the database does: created, then rank, then id (byte order). */
function newer(a: readonly [number, number, string], b: readonly [number, number, string]): boolean {
  if (a[0] !== b[0]) return a[0] > b[0];
  if (a[1] !== b[1]) return a[1] > b[1];
  return Buffer.compare(Buffer.from(a[2]), Buffer.from(b[2])) > 0;
}

export interface Expected {
  status: string;
  stateEventId: string;
  cancelAtPeriodEnd: boolean;
  currentPeriodEnd: number;
  lastPaymentStatus: string | null;
  invoiceEventId: string | null;
  paymentFailedAt: number | null;
  trialWillEndAt: number | null;
}

/** The reference model: what the newest events say, computed from the set of events. */
export function expectedState(history: History, subscriptionId: string): Expected {
  const mine = history.sent.filter((s) => 'subscriptionId' in s && s.subscriptionId === subscriptionId);
  let state: { key: [number, number, string]; s: SubscriptionState } | undefined;
  let payment: { key: [number, number, string]; outcome: string } | undefined;
  let lastPaid: number | null = null;
  let trialWillEnd: number | null = null;
  for (const sent of mine) {
    const { created, id } = sent.event;
    if (sent.kind === 'subscription') {
      const key: [number, number, string] = [created, STATUS_RANK[sent.state.status] ?? -1, id];
      if (!state || newer(key, state.key)) state = { key, s: sent.state };
    } else if (sent.kind === 'invoice') {
      const key: [number, number, string] = [created, PAYMENT_RANK[sent.outcome] ?? -1, id];
      if (!payment || newer(key, payment.key)) payment = { key, outcome: sent.outcome };
      if (sent.outcome === 'paid') lastPaid = Math.max(lastPaid ?? 0, created);
    } else if (sent.kind === 'trial_will_end') {
      trialWillEnd = Math.max(trialWillEnd ?? 0, created);
    }
  }
  const failures = mine.flatMap((s) => (s.kind === 'invoice' && s.outcome === 'failed' && (lastPaid === null || s.event.created > lastPaid) ? [s.event.created] : []));
  if (!state) throw new Error('a history always creates its subscriptions');
  return {
    status: state.s.status,
    stateEventId: state.key[2],
    cancelAtPeriodEnd: state.s.cancelAtPeriodEnd ?? false,
    currentPeriodEnd: state.s.periodEnd,
    lastPaymentStatus: payment?.outcome ?? null,
    invoiceEventId: payment?.key[2] ?? null,
    paymentFailedAt: failures.length > 0 ? Math.min(...failures) : null,
    trialWillEndAt: trialWillEnd,
  };
}

interface Row {
  stripe_subscription_id: string;
  user_id: string | null;
  status: string;
  state_event_id: string;
  cancel_at_period_end: boolean;
  current_period_end: Date;
  last_payment_status: string | null;
  invoice_event_id: string | null;
  payment_failed_at: Date | null;
  trial_will_end_at: Date | null;
}

/** Asserts that the database holds what the newest events of `history` say. */
export async function expectStored(history: History, where: string): Promise<void> {
  const recorded = await query<{ id: string }>('select id from stripe_events where id = any($1)', [history.sent.map((s) => s.event.id)]);
  expect(recorded.length, `${where}: each event recorded once`).toBe(history.sent.length);
  const failed = await query<{ id: string; reason: string }>("select id, reason from stripe_events where id = any($1) and outcome = 'failed'", [history.sent.map((s) => s.event.id)]);
  expect(failed, `${where}: no event failed`).toEqual([]);

  const rows = await query<Row>('select * from billing_subscriptions where stripe_subscription_id = any($1)', [history.subscriptionIds]);
  expect(rows.length, where).toBe(history.subscriptionIds.length);
  for (const row of rows) {
    const expected = expectedState(history, row.stripe_subscription_id);
    expect(
      {
        userId: row.user_id,
        status: row.status,
        stateEventId: row.state_event_id,
        cancelAtPeriodEnd: row.cancel_at_period_end,
        currentPeriodEnd: row.current_period_end.getTime() / 1000,
        lastPaymentStatus: row.last_payment_status,
        invoiceEventId: row.invoice_event_id,
        paymentFailedAt: row.payment_failed_at ? row.payment_failed_at.getTime() / 1000 : null,
        trialWillEndAt: row.trial_will_end_at ? row.trial_will_end_at.getTime() / 1000 : null,
      },
      `${where}: subscription ${row.stripe_subscription_id}`,
    ).toEqual({ userId: history.userId, ...expected });
  }

  // What the SQL access functions read (billing_subject_state, kept by triggers) is what
  // billing_accounts says, after any delivery order.
  const facts = 'status, cancel_at_period_end, current_period_start, current_period_end, payment_failed_at, features';
  const view = await query(`select ${facts} from billing_accounts where user_id = $1`, [history.userId]);
  const state = await query(`select ${facts} from billing_subject_state where subject_id = $1`, [history.userId]);
  expect(view, `${where}: the account`).toHaveLength(1);
  expect(state, `${where}: billing_subject_state equals billing_accounts`).toEqual(view);

  const deleted = history.sent.some((s) => s.kind === 'customer_deleted');
  const link = await query('select 1 from billing_customers where user_id = $1', [history.userId]);
  expect(link.length, `${where}: customer link`).toBe(deleted ? 0 : 1);
  if (deleted) {
    const [account] = await query<{ status: string }>('select status from billing_accounts where user_id = $1', [history.userId]);
    expect(account?.status, `${where}: a deleted customer's subscription reads as canceled`).toBe('canceled');
  }
}
