import type Stripe from 'stripe';
import type { WebhookConfig } from '../config.ts';
import { InvalidEventError, InvalidSignatureError } from '../errors.ts';
import type { ApplyOutcome, BillingStore } from '../store.ts';
import { reduceEvent } from './events.ts';
import { checkStripeSignature } from './signature.ts';

/** Stripe's own default: a signature older than this is a replay. */
export const SIGNATURE_TOLERANCE_SECONDS = 300;
/** Stripe's events are far smaller; anything bigger is not from Stripe. */
export const MAX_EVENT_BYTES = 1024 * 1024;

export interface WebhookDeps {
  config: WebhookConfig;
  store: BillingStore;
}

export interface WebhookResult {
  eventId: string;
  eventType: string;
  outcome: ApplyOutcome | 'skipped';
  reason?: string;
  /** Deserves a warning in the log. */
  warn?: boolean;
}

/** Verifies the signature over the raw body, then applies the event at most once. */
export async function receiveStripeEvent(
  deps: WebhookDeps,
  rawBody: string,
  signature: string | null,
): Promise<WebhookResult> {
  if (!signature) throw new InvalidSignatureError('Missing stripe-signature header');
  if (checkStripeSignature(rawBody, signature, deps.config.webhookSecret, SIGNATURE_TOLERANCE_SECONDS) !== null) {
    throw new InvalidSignatureError();
  }
  let event: unknown;
  try {
    event = JSON.parse(rawBody);
  } catch {
    throw new InvalidEventError(); // a valid signature over something that is not JSON
  }
  if (!isEvent(event)) throw new InvalidEventError();

  // A test-mode event reaching a live deploy (or the reverse) is somebody's
  // misconfigured endpoint: acknowledge it so Stripe stops, and never apply it.
  if (event.livemode !== (deps.config.stripe.mode === 'live')) {
    return { eventId: event.id, eventType: event.type, outcome: 'skipped', reason: 'livemode does not match STRIPE_SECRET_KEY', warn: true };
  }

  const reduction = reduceEvent(event);
  if (reduction.action === 'skip') {
    return { eventId: event.id, eventType: event.type, outcome: 'skipped', reason: reduction.reason };
  }
  const outcome = await deps.store.applyEvent({
    id: event.id,
    type: event.type,
    created: event.created,
    livemode: event.livemode,
    change: reduction.change,
  });
  return { eventId: event.id, eventType: event.type, outcome };
}

/** The parts of an event this code relies on; the signature proves who sent it, not its shape. */
function isEvent(value: unknown): value is Stripe.Event {
  if (typeof value !== 'object' || value === null) return false;
  const event = value as Record<string, unknown>;
  const data = event['data'];
  return (
    typeof event['id'] === 'string' &&
    event['id'].startsWith('evt_') &&
    event['object'] === 'event' &&
    typeof event['type'] === 'string' &&
    typeof event['created'] === 'number' &&
    typeof event['livemode'] === 'boolean' &&
    typeof data === 'object' &&
    data !== null &&
    typeof (data as Record<string, unknown>)['object'] === 'object'
  );
}
