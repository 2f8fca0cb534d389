// Reduces a verified Stripe event to the state change we store, or to nothing when the
// event is not one we act on. Pure: no I/O, so every rule here is unit-testable.

import type Stripe from 'stripe';
import type { StateChange } from '../store.ts';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** The event types this backend applies. Everything else is acknowledged and ignored. */
export const HANDLED_EVENT_TYPES: ReadonlySet<Stripe.Event.Type> = new Set<Stripe.Event.Type>([
  'checkout.session.completed',
]);

export type Reduction =
  | { action: 'apply'; change: StateChange }
  /** Acknowledged without a write; `reason` is for the log. */
  | { action: 'skip'; reason: string };

export function reduceEvent(event: Stripe.Event): Reduction {
  if (!HANDLED_EVENT_TYPES.has(event.type)) return { action: 'skip', reason: 'unhandled event type' };
  switch (event.type) {
    case 'checkout.session.completed':
      return reduceCheckoutCompleted(event.data.object);
    default:
      return { action: 'skip', reason: 'unhandled event type' };
  }
}

function reduceCheckoutCompleted(session: Stripe.Checkout.Session): Reduction {
  if (session.mode !== 'subscription') return { action: 'skip', reason: 'not a subscription checkout' };
  const userId = session.client_reference_id ?? session.metadata?.['userId'] ?? null;
  if (!userId || !UUID.test(userId)) {
    // A Payment Link or a session made elsewhere: not ours to link to a user.
    return { action: 'skip', reason: 'checkout session has no user id' };
  }
  const customerId = idOf(session.customer);
  const subscriptionId = idOf(session.subscription);
  if (!customerId || !subscriptionId) return { action: 'skip', reason: 'checkout session has no customer or subscription' };
  return {
    action: 'apply',
    change: {
      kind: 'checkout_completed',
      user_id: userId.toLowerCase(),
      customer_id: customerId,
      subscription_id: subscriptionId,
      email: session.customer_details?.email ?? session.customer_email ?? session.metadata?.['email'] ?? null,
    },
  };
}

/** Stripe fields that hold either an id or the expanded object. */
function idOf(value: string | { id: string } | null | undefined): string | null {
  if (!value) return null;
  return typeof value === 'string' ? value : value.id;
}
