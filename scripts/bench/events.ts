// Realistic, signed Stripe events for the benchmark: the fixtures of test/fixtures/events
// (one real-shaped event per type) with fresh ids, so every delivery is new to the
// database, signed the way Stripe signs them.

import { createHmac, randomBytes, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';

/** The ids the fixtures use, replaced in every copy. */
const FIXTURE = {
  userId: '5b0c3f5e-8f4a-4c1e-9d1b-2f6a7c8d9e01',
  customerId: 'cus_TUq3pLrV0aXk9Z',
  subscriptionId: 'sub_1SXqAzLkdIwHu7ixR4tYb8Qp',
  email: 'ada@example.com',
};

export const HANDLED_TYPES = [
  'checkout.session.completed',
  'customer.subscription.created',
  'customer.subscription.updated',
  'customer.subscription.deleted',
  'customer.subscription.paused',
  'customer.subscription.resumed',
  'customer.subscription.trial_will_end',
  'invoice.paid',
  'invoice.payment_failed',
  'invoice.payment_action_required',
  'customer.deleted',
] as const;

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

export class EventFactory {
  readonly #templates = new Map<string, string>();
  readonly #dir: string;

  constructor(fixturesDir: string) {
    this.#dir = fixturesDir;
  }

  #template(type: string): string {
    let text = this.#templates.get(type);
    if (text === undefined) {
      text = readFileSync(path.join(this.#dir, `${type}.json`), 'utf8');
      this.#templates.set(type, text);
    }
    return text;
  }

  /** A fresh event of `type` for `customer`, created at `created` (seconds). */
  event(type: string, customer: Customer, created: number): StripeEventShape {
    const text = this.#template(type)
      .replaceAll(FIXTURE.userId, customer.userId)
      .replaceAll(FIXTURE.customerId, customer.customerId)
      .replaceAll(FIXTURE.subscriptionId, customer.subscriptionId)
      .replaceAll(FIXTURE.email, customer.email);
    const event = JSON.parse(text) as StripeEventShape;
    event.id = `evt_bench${randomBytes(12).toString('hex')}`;
    event.created = created;
    const object = event.data.object;
    // Objects with an id of their own (invoices, sessions) get a fresh one too.
    if (typeof object['id'] === 'string' && object['id'] !== customer.customerId && object['id'] !== customer.subscriptionId) {
      object['id'] = `${String(object['id']).split('_').slice(0, -1).join('_') || 'obj'}_bench${randomBytes(8).toString('hex')}`;
    }
    return event;
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

/** Stripe's signature header: t=<seconds>,v1=<HMAC-SHA256 of "t.payload" with the secret>. */
export function signPayload(payload: string, secret: string, timestamp = Math.floor(Date.now() / 1000)): string {
  const signature = createHmac('sha256', secret).update(`${timestamp}.${payload}`, 'utf8').digest('hex');
  return `t=${timestamp},v1=${signature}`;
}

/** What Stripe sends: pretty-printed JSON (the bytes the signature covers). */
export const payloadOf = (event: StripeEventShape): string => JSON.stringify(event, null, 2);
