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
