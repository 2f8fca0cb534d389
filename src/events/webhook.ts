import type { WebhookConfig } from '../config/config.ts';
import { flushCustomerUsage, type MeterDeps } from '../meters/report.ts';
import type { MeterStore } from '../meters/store.ts';
import { InvalidEventError, InvalidSignatureError } from '../core/errors.ts';
import { strictUtf8Text } from '../http/body.ts';
import type { ApplyOutcome, ApplyResult, BillingStore, EventReceipt } from '../database/store.ts';
import { reduceEvent, type Reduction } from './reduce.ts';
import { customerIdOf } from '../stripe/objects.ts';
import { checkStripeSignature } from '../stripe/signature.ts';

/** Stripe's own default: a signature older than this is a replay. */
export const SIGNATURE_TOLERANCE_SECONDS = 300;
/** Stripe's events are far smaller; anything bigger is not from Stripe. */
export const MAX_EVENT_BYTES = 1024 * 1024;
/** Recording a failed attempt on the way to a 500 must not push the answer past
 *  Netlify's 10 s: the apply already had up to STORE_TIMEOUT_MS. */
const FAILURE_RECORD_TIMEOUT_MS = 1_000;

/** What applying an event needs: the key's mode, what we sell, and the store. The
 *  webhook, the catch-up and replays share it. */
export interface ApplyDeps {
  config: Pick<WebhookConfig, 'stripe' | 'scope'>;
  store: BillingStore;
  /** For invoice.created: the meter outbox and Stripe, to flush a customer's usage. */
  meters: MeterDeps;
}

export interface WebhookDeps extends ApplyDeps {
  config: WebhookConfig;
}

/** A verified delivery: the envelope this code relies on, its object still unread. */
export interface VerifiedEvent extends EventReceipt {
  data: { object: unknown };
}

export interface WebhookResult {
  outcome: ApplyOutcome | 'skipped' | 'failed';
  reason?: string;
  /** Deserves a line of its own in the log, at this level. */
  alert?: 'warn' | 'error';
}

/** Checks the signature over the bytes Stripe sent (400 if it fails), then reads them
 *  as UTF-8 JSON (400 if they are not) and returns the event. */
export function verifyStripeEvent(config: WebhookConfig, rawBody: Uint8Array, signature: string | null): VerifiedEvent {
  if (!signature) throw new InvalidSignatureError('Missing stripe-signature header');
  // Any one secret verifying is enough: a rolled secret, or a second endpoint.
  const verified = config.webhookSecrets.some(
    (secret) => checkStripeSignature(rawBody, signature, secret, SIGNATURE_TOLERANCE_SECONDS) === null,
  );
  if (!verified) throw new InvalidSignatureError();
  // Decoded only now, and strictly: text decoded leniently (a byte-order mark dropped,
  // bad bytes replaced) would differ from what was signed.
  const text = strictUtf8Text(rawBody);
  if (text === null) throw new InvalidEventError();
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new InvalidEventError(); // a valid signature over something that is not JSON
  }
  const event = envelopeOf(parsed);
  if (!event) throw new InvalidEventError();
  return event;
}

/**
 * Applies a verified event at most once. Throws only for what a retry can fix (the
 * database down, a lock timeout): the webhook then answers 500 and Stripe redelivers.
 * An event that cannot be read is acknowledged and recorded as failed, with why.
 */
export async function applyStripeEvent(deps: ApplyDeps, event: VerifiedEvent): Promise<WebhookResult> {
  const { data: _data, ...receipt } = event;
  // A test-mode event reaching a live deploy (or the reverse) is somebody's
  // misconfigured endpoint: acknowledge it so Stripe stops, and never apply it.
  const misdirected = event.livemode !== (deps.config.stripe.mode === 'live');
  const reduction: Reduction = misdirected
    ? { action: 'skip', reason: 'livemode does not match STRIPE_SECRET_KEY' }
    : reduceEvent(event, deps.config.scope);
  if (reduction.action === 'skip') {
    await deps.store.recordEvent(receipt, 'skipped', reduction.reason);
    return { outcome: 'skipped', reason: reduction.reason, ...(misdirected && { alert: 'warn' as const }) };
  }
  if (reduction.action === 'unreadable') {
    await deps.store.recordEvent(receipt, 'failed', reduction.reason);
    return { outcome: 'failed', reason: reduction.reason, alert: 'error' };
  }
  if (reduction.action === 'flush') return flushInvoiceUsage(deps, receipt, reduction.customerId);
  let result: ApplyResult;
  try {
    result = await deps.store.applyEvent({ ...receipt, change: reduction.change });
  } catch (error) {
    // Nothing was applied (the transaction rolled back). Say so where it can be found,
    // if the database still answers; Stripe's redelivery then applies the event.
    const reason = error instanceof Error ? error.message : String(error);
    await deps.store.recordEvent(receipt, 'failed', reason, { timeoutMs: FAILURE_RECORD_TIMEOUT_MS }).catch(() => {});
    throw error;
  }
  return result.reason === undefined ? { outcome: result.outcome } : { outcome: result.outcome, reason: result.reason, alert: 'warn' };
}

/** invoice.created: the customer's unsent meter usage, sent before the draft is final.
 *  A failure to send all of it throws (500: Stripe delivers the event again). */
async function flushInvoiceUsage(deps: ApplyDeps, receipt: EventReceipt, customerId: string): Promise<WebhookResult> {
  const meters: MeterStore = deps.meters.store;
  let flushed;
  try {
    flushed = await flushCustomerUsage(deps.meters, customerId, { holder: `invoice-${receipt.id}` });
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    await deps.store.recordEvent(receipt, 'failed', reason, { timeoutMs: FAILURE_RECORD_TIMEOUT_MS }).catch(() => {});
    throw error;
  }
  if (flushed.meters === 0) {
    const reason = 'no meter billed for this customer';
    await meters.recordFlush(receipt, 'skipped', reason);
    return { outcome: 'skipped', reason };
  }
  const outcome = await meters.recordFlush(receipt, 'applied', `${flushed.sent} meter events flushed`);
  return { outcome: outcome === 'applied' ? 'applied' : 'skipped', reason: `${flushed.sent} meter events flushed` };
}

/** An event read back from Stripe's Events API (catch-up, replay): the same envelope. */
export function eventFromStripe(value: unknown): VerifiedEvent | null {
  return envelopeOf(value);
}

/** The parts of an event this code relies on; the signature proves who sent it, not its shape. */
function envelopeOf(value: unknown): VerifiedEvent | null {
  if (typeof value !== 'object' || value === null) return null;
  const event = value as Record<string, unknown>;
  const data = event['data'];
  const { id, type, created, livemode } = event;
  if (
    typeof id !== 'string' ||
    !id.startsWith('evt_') ||
    event['object'] !== 'event' ||
    typeof type !== 'string' ||
    typeof created !== 'number' ||
    !Number.isSafeInteger(created) ||
    typeof livemode !== 'boolean' ||
    typeof data !== 'object' ||
    data === null ||
    typeof (data as Record<string, unknown>)['object'] !== 'object'
  ) {
    return null;
  }
  const apiVersion = typeof event['api_version'] === 'string' ? event['api_version'] : null;
  const object = (data as Record<string, unknown>)['object'];
  return { id, type, created, livemode, apiVersion, customerId: customerIdOf(object), data: { object } };
}
