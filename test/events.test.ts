import type Stripe from 'stripe';
import { describe, expect, it } from 'vitest';
import { reduceEvent as reduceWithScope, type EventEnvelope } from '../src/events/reduce.ts';
import { productScope } from '../src/catalog/product-scope.ts';
import { FIXTURE_IDS } from '../scripts/lib/stripe-events.ts';
import { loadEvent } from './support/stack.ts';

/** What the tests' webhook sells: the fixtures' price. */
const SCOPE = productScope([FIXTURE_IDS.priceId]);
const reduceEvent = (event: EventEnvelope) => reduceWithScope(event, SCOPE);

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

  it('reads expanded objects', () => {
    const reduction = reduceEvent(
      checkoutEvent((s) => {
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

  it.each([
    ['a Payment Link session, whose buyer set client_reference_id', (s: Record<string, unknown>) => {
      s['payment_link'] = 'plink_1SXq0aLkdIwHu7ixLink';
      s['metadata'] = {};
    }],
    ['a session whose metadata names another user than client_reference_id', (s: Record<string, unknown>) => {
      s['client_reference_id'] = '0d6f6c1e-1111-4c1e-9d1b-2f6a7c8d9e01';
    }],
    ['a session with a user id in metadata only', (s: Record<string, unknown>) => {
      s['client_reference_id'] = null;
    }],
    ['a Payment Link session even with our metadata', (s: Record<string, unknown>) => {
      s['payment_link'] = 'plink_1SXq0aLkdIwHu7ixLink';
    }],
  ])('does not link %s: not created by our checkout', (_name, edit) => {
    expect(reduceEvent(checkoutEvent(edit))).toEqual({ action: 'skip', reason: 'checkout session not created by this backend' });
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
            product_id: 'prod_TUq1Analytics',
            quantity: 1,
            for_this_product: true,
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

  it('invoice.created of a subscription flushes its customer\'s meter usage; of anything else, nothing', () => {
    expect(reduceEvent(loadEvent('invoice.created'))).toEqual({ action: 'flush', customerId: 'cus_TUq3pLrV0aXk9Z', invoiceId: 'in_1SZ8kQLkdIwHu7ixRenewal01' });
    const oneOff = structuredClone(loadEvent('invoice.created'));
    oneOff.data.object['parent'] = null;
    expect(reduceEvent(oneOff)).toEqual({ action: 'skip', reason: 'invoice not for a subscription' });
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

describe('reduceEvent: subscriptions to other products', () => {
  const otherProduct = (event: Stripe.Event) => {
    const sub = event.data.object as unknown as Stripe.Subscription;
    const item = sub.items.data[0];
    if (!item) throw new Error('fixture has an item');
    Object.assign(item.price, { id: 'price_other_product', product: 'prod_other' });
    return event;
  };

  it('records a subscription to another product on the same account, marked as not ours', () => {
    const event = otherProduct(structuredClone(loadEvent('customer.subscription.created')));
    expect(reduceEvent(event)).toMatchObject({
      action: 'apply',
      change: { subscription: { price_id: 'price_other_product', product_id: 'prod_other', for_this_product: false } },
    });
  });

  it('counts any price of a product in STRIPE_PRODUCT_ID, so a new price keeps its subscribers', () => {
    const event = otherProduct(structuredClone(loadEvent('customer.subscription.created')));
    const byProduct = reduceWithScope(event, productScope(['price_new'], ['prod_other']));
    expect(byProduct).toMatchObject({ change: { subscription: { for_this_product: true } } });
  });

  it('stores the item of this product when the subscription has several', () => {
    const event = structuredClone(loadEvent('customer.subscription.updated'));
    const items = (event.data.object as unknown as Stripe.Subscription).items.data;
    const ours = items[0];
    if (!ours) throw new Error('fixture has an item');
    items.unshift({ ...ours, id: 'si_addon', price: { ...ours.price, id: 'price_addon', product: 'prod_addon' } });
    expect(reduceEvent(event)).toMatchObject({
      change: { subscription: { price_id: FIXTURE_IDS.priceId, for_this_product: true } },
    });
  });
});

describe('reduceEvent: verified but unreadable', () => {
  it.each([
    ['a subscription with no billing period anywhere', 'customer.subscription.updated', (o: Record<string, unknown>) => {
      for (const item of (o['items'] as { data: Record<string, unknown>[] }).data) {
        delete item['current_period_start'];
        delete item['current_period_end'];
      }
    }, 'no billing period'],
    ['a subscription in a status this code does not know', 'customer.subscription.updated', (o: Record<string, unknown>) => void (o['status'] = 'suspended'), 'unknown status "suspended"'],
    ['a period that is not a time', 'customer.subscription.created', (o: Record<string, unknown>) => {
      const [item] = (o['items'] as { data: Record<string, unknown>[] }).data;
      if (item) item['current_period_end'] = 1e300;
    }, 'current_period_end is not a number'],
    ['an invoice without a customer', 'invoice.payment_failed', (o: Record<string, unknown>) => void (o['customer'] = null), 'customer is missing'],
    ['an invoice whose amount is missing', 'invoice.paid', (o: Record<string, unknown>) => void delete o['amount_paid'], 'amount_paid is missing'],
  ])('%s is unreadable, with a reason naming the field', (_name, type, edit, reason) => {
    const event = structuredClone(loadEvent(type));
    edit(event.data.object);
    const reduction = reduceEvent(event);
    expect(reduction.action).toBe('unreadable');
    expect(reduction.action === 'unreadable' && reduction.reason).toContain(reason);
  });
});

describe('reduceEvent: subscription schedules (a downgrade at the period end)', () => {
  it('an active schedule: the next phase\'s price, from when the current phase ends', () => {
    expect(reduceEvent(loadEvent('subscription_schedule.created'))).toEqual({
      action: 'apply',
      change: {
        kind: 'schedule',
        schedule: {
          schedule_id: 'sub_sched_1SZAb3LkdIwHu7ixDowngrade',
          subscription_id: FIXTURE_IDS.subscriptionId,
          customer_id: FIXTURE_IDS.customerId,
          status: 'active',
          next_price_id: 'price_1SXq0aLkdIwHu7ixProMonth',
          next_change_at: new Date(1766663940 * 1000).toISOString(),
        },
      },
    });
  });

  it.each(['subscription_schedule.canceled', 'subscription_schedule.completed', 'subscription_schedule.aborted', 'subscription_schedule.released'])('%s: nothing comes next', (type) => {
    expect(reduceEvent(loadEvent(type))).toMatchObject({
      action: 'apply',
      change: { schedule: { subscription_id: FIXTURE_IDS.subscriptionId, next_price_id: null, next_change_at: null } },
    });
  });

  it('a schedule for a subscription that does not exist yet is not ours to show', () => {
    const event = structuredClone(loadEvent('subscription_schedule.created'));
    Object.assign(event.data.object, { subscription: null, status: 'not_started', current_phase: null });
    expect(reduceEvent(event)).toEqual({ action: 'skip', reason: 'schedule of a subscription that does not exist yet' });
  });

  it('in its last phase: nothing comes next', () => {
    const event = structuredClone(loadEvent('subscription_schedule.updated'));
    event.data.object['current_phase'] = { start_date: 1766663940, end_date: 1769342340 };
    expect(reduceEvent(event)).toMatchObject({ change: { schedule: { status: 'active', next_price_id: null } } });
  });
});
