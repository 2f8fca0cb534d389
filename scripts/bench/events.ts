// Signed Stripe events for the benchmark, from the shared builder
// (scripts/lib/stripe-events.ts) with fresh ids, so every delivery is new to the
// database, signed the way Stripe signs them (node:crypto: the bench's webhook process
// must not load the Stripe SDK to make its load).

import { createHmac, randomBytes, randomUUID } from 'node:crypto';
import {
  checkoutSessionCompletedEvent,
  customerDeletedEvent,
  entitlementSummaryEvent,
  FIXTURE_IDS,
  fixtureEvent,
  invoiceEvent,
  stripeId,
  subscriptionEvent,
  subscriptionScheduleEvent,
  type Parties,
  type SubscriptionState,
} from '../lib/stripe-events.ts';
import { HANDLED_EVENT_TYPES } from '../../src/events/reduce.ts';

/** The handled types the bench measures: all but the entitlement summary, which only a
 *  catalog's deploy applies (the bench runs without one, as the seed's deploy does), and
 *  invoice.created, which stores no state (it flushes meter usage to Stripe). */
export const HANDLED_TYPES: readonly string[] = [...HANDLED_EVENT_TYPES].filter(
  (type) => type !== 'entitlements.active_entitlement_summary.updated' && type !== 'invoice.created',
);

/** A type we acknowledge without a write. */
export const UNHANDLED_TYPE = 'product.updated';

export interface Customer {
  userId: string;
  customerId: string;
  subscriptionId: string;
  email: string;
}

export interface StripeEventShape {
  id: string;
  type: string;
  created: number;
  livemode: boolean;
  data: { object: Record<string, unknown> };
}

export function newCustomer(): Customer {
  const tag = randomBytes(9).toString('hex');
  const userId = randomUUID();
  return { userId, customerId: `cus_bench${tag}`, subscriptionId: `sub_bench${tag}`, email: `bench-${userId.slice(0, 8)}@example.com` };
}

const DAY = 86_400;
const AMOUNT = 900;

export class EventFactory {
  /** A fresh event of `type` for `customer`, created at `created` (seconds). */
  event(type: string, customer: Customer, created: number): StripeEventShape {
    const parties: Parties = { ...customer, priceId: FIXTURE_IDS.priceId, amount: AMOUNT, currency: 'eur' };
    const state: SubscriptionState = {
      status: type === 'customer.subscription.deleted' ? 'canceled' : type === 'customer.subscription.paused' ? 'paused' : 'active',
      created: created - DAY,
      periodStart: created - DAY,
      periodEnd: created + 29 * DAY,
      cancelAtPeriodEnd: false,
      canceledAt: type === 'customer.subscription.deleted' ? created : null,
      endedAt: type === 'customer.subscription.deleted' ? created : null,
      trialStart: null,
      trialEnd: null,
      latestInvoice: null,
    };
    const invoice = {
      id: stripeId('in'),
      billingReason: 'subscription_cycle' as const,
      periodStart: created - DAY,
      periodEnd: created + 29 * DAY,
      amount: AMOUNT,
      attemptCount: 1,
      nextPaymentAttempt: type === 'invoice.payment_failed' ? created + 3 * DAY : null,
    };
    switch (type) {
      case 'checkout.session.completed':
        return shape(checkoutSessionCompletedEvent(parties, created, { invoiceId: invoice.id, amountTotal: AMOUNT }));
      case 'customer.subscription.created':
      case 'customer.subscription.updated':
      case 'customer.subscription.deleted':
      case 'customer.subscription.paused':
      case 'customer.subscription.resumed':
      case 'customer.subscription.trial_will_end':
        return shape(subscriptionEvent(type, parties, created, state));
      case 'invoice.paid':
      case 'invoice.payment_failed':
      case 'invoice.payment_action_required':
        return shape(invoiceEvent(type, parties, created, invoice));
      case 'customer.deleted':
        return shape(customerDeletedEvent(parties, created));
      case 'entitlements.active_entitlement_summary.updated':
        return shape(entitlementSummaryEvent(customer.customerId, created, ['unlimited_sites']));
      case 'subscription_schedule.created':
      case 'subscription_schedule.updated':
      case 'subscription_schedule.released':
      case 'subscription_schedule.canceled':
      case 'subscription_schedule.completed':
      case 'subscription_schedule.aborted': {
        // A downgrade at the period's end: this price until then, another after.
        const phases = [
          { priceId: FIXTURE_IDS.priceId, start: state.periodStart, end: state.periodEnd },
          { priceId: `${FIXTURE_IDS.priceId}Lower`, start: state.periodEnd, end: state.periodEnd + 30 * DAY },
        ];
        const status = type === 'subscription_schedule.created' || type === 'subscription_schedule.updated' ? 'active' : type === 'subscription_schedule.released' ? 'released' : type === 'subscription_schedule.completed' ? 'completed' : 'canceled';
        const current = status === 'active' ? { start: state.periodStart, end: state.periodEnd } : null;
        return shape(subscriptionScheduleEvent(type, parties, created, { id: stripeId('sub_sched'), status, phases, currentPhase: current }));
      }
      default: {
        const event = fixtureEvent(type);
        event.id = stripeId('evt');
        event.created = created;
        return shape(event);
      }
    }
  }

  /** A new customer's first events, as Stripe sends them around a paid checkout. */
  history(customer: Customer, created: number): StripeEventShape[] {
    return [
      this.event('checkout.session.completed', customer, created),
      this.event('customer.subscription.created', customer, created),
      this.event('invoice.paid', customer, created),
      this.event('customer.subscription.updated', customer, created + 1),
    ];
  }
}

function shape(event: { id: string; type: string; created: number; livemode: boolean; data: unknown }): StripeEventShape {
  return event as StripeEventShape;
}

/** Stripe's signature header: t=<seconds>,v1=<HMAC-SHA256 of "t.payload" with the secret>. */
export function signPayload(payload: string, secret: string, timestamp = Math.floor(Date.now() / 1000)): string {
  const signature = createHmac('sha256', secret).update(`${timestamp}.${payload}`, 'utf8').digest('hex');
  return `t=${timestamp},v1=${signature}`;
}

/** What Stripe sends: pretty-printed JSON (the bytes the signature covers). */
export const payloadOf = (event: StripeEventShape): string => JSON.stringify(event, null, 2);
