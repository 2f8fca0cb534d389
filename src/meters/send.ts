// Sending claimed outbox rows to Stripe as meter events, and recording what became of
// each. A row is already in the outbox (pending) when it gets here; after Stripe accepts
// it, it is marked sent. Whatever happens between the two (a timeout, a 500, a crash),
// the row stays pending and its next send carries the same identifier, which Stripe
// deduplicates: a unit is neither lost nor counted twice.

import type { Logger } from '../core/log.ts';
import type { MeterEventParams, MeterEventSender } from '../stripe/meter-events.ts';
import type { MeterRow, MeterStore } from './store.ts';

/** Stripe allows 1,000 meter event calls a second per account (v1); this many at once
 *  from one run stays far below it while the round trip dominates. */
export const SEND_CONCURRENCY = 16;
/** A 429: everyone waits 250 ms, 500 ms, 1 s, … before the next send. */
export const RATE_LIMIT_BASE_DELAY_MS = 250;
/** A 5xx or no answer: the same identifier again after this. */
export const SERVER_ERROR_DELAY_MS = 200;
/** Sends of one row within one run, before it is left for the next run. */
export const MAX_SENDS_PER_RUN = 4;
/** A row left unsent is claimable again after this: by the next run (or a flush), which
 *  sends the same identifier. */
export const RETRY_AFTER_SECONDS = 0;

export interface SendDeps {
  sendMeterEvent: MeterEventSender;
  store: MeterStore;
  log: Logger;
}

export interface SendOptions {
  /** No send starts after this (performance.now() time). */
  deadline: number;
  sleep?: (ms: number) => Promise<void>;
  concurrency?: number;
}

export interface SendCounts {
  sent: number;
  /** Left pending for the next run (out of tries or time). */
  unsent: number;
  /** Refused by Stripe (a 400): not retried, logged at error. */
  failed: number;
  rateLimitRetries: number;
  serverRetries: number;
  /** Units sent. */
  units: number;
}

type Outcome = { kind: 'sent' } | { kind: 'rate limit' | 'server'; error: string } | { kind: 'refused'; error: string };

const defaultSleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

export function emptyCounts(): SendCounts {
  return { sent: 0, unsent: 0, failed: 0, rateLimitRetries: 0, serverRetries: 0, units: 0 };
}

export function addCounts(into: SendCounts, from: SendCounts): void {
  for (const key of Object.keys(from) as (keyof SendCounts)[]) into[key] += from[key];
}

/** The meter event a row stands for. */
export function meterEventParams(row: MeterRow): MeterEventParams {
  return {
    event_name: row.meter,
    identifier: row.identifier,
    timestamp: row.timestamp,
    payload: { stripe_customer_id: row.customer, value: String(row.value) },
  };
}

/** Sends the rows, a few at a time, and records each outcome; one database call marks
 *  the accepted ones sent. */
export async function sendRows(deps: SendDeps, rows: readonly MeterRow[], options: SendOptions): Promise<SendCounts> {
  const sleep = options.sleep ?? defaultSleep;
  const counts = emptyCounts();
  const accepted: string[] = [];
  // One backoff for all workers: a 429 is about the account, not the row.
  let pauseUntil = 0;
  let rateLimits = 0;
  let next = 0;

  for (const row of rows) {
    if (row.late) {
      deps.log.warn('meter usage older than Stripe takes, sent at the earliest time it does', {
        identifier: row.identifier, subject: row.subject, meter: row.meter, hour: row.hour,
        sentAt: new Date(row.timestamp * 1000).toISOString(), value: row.value,
      });
    }
  }

  const worker = async () => {
    for (;;) {
      const row = rows[next++];
      if (!row) return;
      let last: Outcome | null = null;
      for (let send = 1; send <= MAX_SENDS_PER_RUN; send += 1) {
        const wait = pauseUntil - performance.now();
        if (wait > 0) await sleep(wait);
        if (performance.now() > options.deadline) break;
        last = await sendOne(deps.sendMeterEvent, row);
        if (last.kind === 'sent' || last.kind === 'refused') break;
        if (last.kind === 'rate limit') {
          counts.rateLimitRetries += 1;
          rateLimits += 1;
          pauseUntil = Math.max(pauseUntil, performance.now() + RATE_LIMIT_BASE_DELAY_MS * 2 ** Math.min(rateLimits - 1, 5));
        } else {
          counts.serverRetries += 1;
          await sleep(SERVER_ERROR_DELAY_MS);
        }
      }
      if (last?.kind === 'sent') {
        rateLimits = 0;
        accepted.push(row.identifier);
        counts.sent += 1;
        counts.units += row.value;
      } else if (last?.kind === 'refused') {
        counts.failed += 1;
        deps.log.error('meter event refused by Stripe', { identifier: row.identifier, subject: row.subject, meter: row.meter, customer: row.customer, value: row.value, error: last.error });
        await deps.store.release(row.identifier, last.error, true, 0);
      } else {
        counts.unsent += 1;
        // Pending still: the next run resends the same identifier.
        await deps.store.release(row.identifier, last?.error ?? 'out of time', false, RETRY_AFTER_SECONDS);
      }
    }
  };

  await Promise.all(Array.from({ length: Math.min(options.concurrency ?? SEND_CONCURRENCY, rows.length) }, worker));
  await deps.store.sent(accepted);
  return counts;
}

async function sendOne(sendMeterEvent: MeterEventSender, row: MeterRow): Promise<Outcome> {
  try {
    await sendMeterEvent(meterEventParams(row));
    return { kind: 'sent' };
  } catch (error) {
    return classify(error);
  }
}

/** Stripe's answer to an identifier it already holds (within its 24 hours): a 400 with
 *  no error code, only this message ("An event already exists with identifier …"). */
const ALREADY_RECORDED = /an event already exists with identifier/i;

/** A 400 saying Stripe already holds the identifier means an earlier send got through
 *  (its answer lost: a timeout, a crash before the record): sent. A 429 waits; a 5xx, a
 *  409, an api_error or no answer is sent again (same identifier); any other 400 (an
 *  unknown customer, a timestamp out of range) will not get better. Reads the sender's
 *  StripeRequestError (src/stripe/meter-events.ts: Stripe's error type, e.g. api_error)
 *  and the SDK's errors alike (the SDK's class name, e.g. StripeAPIError). */
export function classify(error: unknown): Outcome {
  const message = error instanceof Error ? error.message : String(error);
  const type = error instanceof Error && 'type' in error ? error.type : undefined;
  const status = error instanceof Error && 'statusCode' in error ? error.statusCode : undefined;
  if (status === 400 && ALREADY_RECORDED.test(message)) return { kind: 'sent' };
  if (type === 'StripeRateLimitError' || status === 429) return { kind: 'rate limit', error: message };
  if (type === 'StripeConnectionError' || type === 'StripeAPIError' || type === 'api_error' || status === undefined) return { kind: 'server', error: message };
  if (typeof status === 'number' && (status >= 500 || status === 409)) return { kind: 'server', error: message };
  return { kind: 'refused', error: message };
}
