import type Stripe from 'stripe';
import { describe, expect, it } from 'vitest';
import { reduceEvent } from '../src/billing/events.ts';
import { loadEvent } from './support/stack.ts';

function checkoutEvent(edit: (session: Record<string, unknown>) => void = () => {}): Stripe.Event {
  const event = structuredClone(loadEvent('checkout.session.completed'));
  edit(event.data.object);
  return event;
}

describe('reduceEvent', () => {
  it('reduces checkout.session.completed to the user, customer and subscription', () => {
    expect(reduceEvent(checkoutEvent())).toEqual({
      action: 'apply',
      change: {
        kind: 'checkout_completed',
        user_id: '5b0c3f5e-8f4a-4c1e-9d1b-2f6a7c8d9e01',
        customer_id: 'cus_TUq3pLrV0aXk9Z',
        subscription_id: 'sub_1SXqAzLkdIwHu7ixR4tYb8Qp',
        email: 'ada@example.com',
      },
    });
  });

  it('falls back to metadata.userId and reads expanded objects', () => {
    const reduction = reduceEvent(
      checkoutEvent((s) => {
        s['client_reference_id'] = null;
        s['customer'] = { id: 'cus_expanded' };
        s['subscription'] = { id: 'sub_expanded' };
      }),
    );
    expect(reduction).toMatchObject({
      action: 'apply',
      change: { user_id: '5b0c3f5e-8f4a-4c1e-9d1b-2f6a7c8d9e01', customer_id: 'cus_expanded', subscription_id: 'sub_expanded' },
    });
  });

  it.each([
    ['a payment-mode checkout', (s: Record<string, unknown>) => void (s['mode'] = 'payment')],
    ['a checkout without a user id', (s: Record<string, unknown>) => {
      s['client_reference_id'] = null;
      s['metadata'] = {};
    }],
    ['a checkout with a user id that is not a UUID', (s: Record<string, unknown>) => {
      s['client_reference_id'] = 'user_123';
      s['metadata'] = {};
    }],
    ['a checkout without a subscription', (s: Record<string, unknown>) => void (s['subscription'] = null)],
  ])('skips %s', (_name, edit) => {
    expect(reduceEvent(checkoutEvent(edit))).toMatchObject({ action: 'skip' });
  });

  it('skips types it does not handle', () => {
    expect(reduceEvent(loadEvent('product.updated'))).toEqual({ action: 'skip', reason: 'unhandled event type' });
  });
});

describe('reduceEvent: one fixture per handled type', () => {
  it('customer.subscription.* reduce to a snapshot, periods from the items (API 2025-03-31+)', () => {
    for (const type of [
      'customer.subscription.created',
      'customer.subscription.updated',
      'customer.subscription.deleted',
      'customer.subscription.paused',
      'customer.subscription.resumed',
    ]) {
      const event = loadEvent(type);
      const subscription = event.data.object as unknown as Stripe.Subscription;
      const item = subscription.items.data[0];
      const reduction = reduceEvent(event);
      expect(reduction, type).toMatchObject({
        action: 'apply',
        change: {
          kind: 'subscription',
          subscription: {
            id: 'sub_1SXqAzLkdIwHu7ixR4tYb8Qp',
            customer_id: 'cus_TUq3pLrV0aXk9Z',
            user_id: '5b0c3f5e-8f4a-4c1e-9d1b-2f6a7c8d9e01',
            status: subscription.status,
            price_id: 'price_1SXq0aLkdIwHu7ixMonthly',
            quantity: 1,
            current_period_start: new Date((item?.current_period_start ?? 0) * 1000).toISOString(),
            current_period_end: new Date((item?.current_period_end ?? 0) * 1000).toISOString(),
            cancel_at_period_end: subscription.cancel_at_period_end,
          },
        },
      });
    }
  });

  it('a subscription spanning several items takes the earliest start and the latest end', () => {
    const event = structuredClone(loadEvent('customer.subscription.updated'));
    const items = (event.data.object as unknown as Stripe.Subscription).items.data;
    const first = items[0];
    if (!first) throw new Error('fixture has an item');
    items.push({ ...first, id: 'si_second', current_period_start: first.current_period_start - 10, current_period_end: first.current_period_end + 10 });
    expect(reduceEvent(event)).toMatchObject({
      change: {
        subscription: {
          current_period_start: new Date((first.current_period_start - 10) * 1000).toISOString(),
          current_period_end: new Date((first.current_period_end + 10) * 1000).toISOString(),
        },
      },
    });
  });

  it.each([
    ['invoice.paid', 'paid', 900],
    ['invoice.payment_failed', 'failed', 900],
    ['invoice.payment_action_required', 'action_required', 900],
  ])('%s reduces to the payment outcome of its subscription (invoice.parent)', (type, outcome, amount) => {
    expect(reduceEvent(loadEvent(type))).toMatchObject({
      action: 'apply',
      change: {
        kind: 'invoice',
        invoice: { subscription_id: 'sub_1SXqAzLkdIwHu7ixR4tYb8Qp', customer_id: 'cus_TUq3pLrV0aXk9Z', outcome, amount, currency: 'eur' },
      },
    });
  });

  it('skips an invoice that is not for a subscription', () => {
    const event = structuredClone(loadEvent('invoice.paid'));
    event.data.object['parent'] = { quote_details: null, subscription_details: null, type: 'quote_details' };
    expect(reduceEvent(event)).toMatchObject({ action: 'skip' });
  });

  it('customer.subscription.trial_will_end and customer.deleted', () => {
    expect(reduceEvent(loadEvent('customer.subscription.trial_will_end'))).toEqual({
      action: 'apply',
      change: { kind: 'trial_will_end', subscription_id: 'sub_1SXqAzLkdIwHu7ixR4tYb8Qp', customer_id: 'cus_TUq3pLrV0aXk9Z' },
    });
    expect(reduceEvent(loadEvent('customer.deleted'))).toEqual({ action: 'apply', change: { kind: 'customer_deleted', customer_id: 'cus_TUq3pLrV0aXk9Z' } });
  });

  it('ignores a subscription whose metadata.userId is not a user id, but keeps the subscription', () => {
    const event = structuredClone(loadEvent('customer.subscription.created'));
    event.data.object['metadata'] = { userId: 'user_123' };
    expect(reduceEvent(event)).toMatchObject({ action: 'apply', change: { subscription: { user_id: null } } });
  });
});
