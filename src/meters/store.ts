// The meter outbox in the database (supabase/migrations/20261204800000_meters.sql): the
// SQL decides what is due, what a window's difference with Stripe means, and every
// state change of a row; this file only calls it and shapes what it returns.

import type { StoreConfig } from '../config/config.ts';
import type { Json } from '../database/database.types.ts';
import { nodeFetch } from '../core/node-fetch.ts';
import { createDatabaseClient, eventArgs, StoreError, type EventReceipt } from '../database/store.ts';

/** A meter event to send, as its outbox row holds it. */
export interface MeterRow {
  /** Deterministic: subject, meter, hour and the hour's sequence number. */
  identifier: string;
  subject: string;
  meter: string;
  hour: string;
  kind: 'usage' | 'reconcile';
  customer: string;
  value: number;
  /** Unix seconds: the hour, or the earliest time Stripe still takes. */
  timestamp: number;
  /** The hour was older than Stripe takes; it is sent at `timestamp` instead. */
  late: boolean;
  /** Claims of this row so far (1: its first send). */
  attempts: number;
}

export interface Claim {
  rows: MeterRow[];
  /** Subjects read, and billed meters among them. */
  subjects: number;
  meters: number;
  /** The last subject read: the next batch starts after it. */
  last: string | null;
}

export interface ReconcileWindow {
  subject: string;
  meter: string;
  customer: string;
  windowStart: string;
  windowEnd: string;
  /** A row is still being sent, or was sent too recently for Stripe's summaries. */
  inFlight: boolean;
  settling: boolean;
  /** The usage Stripe accepted from us for this window. */
  expected: number;
}

export type ReconcileDecision =
  | { decision: 'match'; difference: 0; stripe: number; expected: number; confirmed: string[]; voided: string[] }
  /** Stripe is short, but a repair of this window younger than 23 h was not counted either. */
  | { decision: 'unrepaired'; difference: number; stripe: number; expected: number; confirmed: string[]; voided: string[] }
  | { decision: 'repair'; difference: number; stripe: number; expected: number; confirmed: string[]; voided: string[]; repair: MeterRow }
  | {
    decision: 'cancel' | 'excess';
    difference: number;
    stripe: number;
    expected: number;
    confirmed: string[];
    voided: string[];
    /** Our repairs, sent within 23 h, to cancel; `excess` is what is left after them. */
    cancel: { identifier: string; value: number }[];
    excess: number;
  };

export interface MeterStore {
  /** What is due for a batch of subjects (after `after`), or for one customer (`customer`:
   *  the invoice flush, the current hour included), claimed for `holder`. */
  claim(query: { holder: string; leaseSeconds: number; after: string | null; limit: number; customer?: string }): Promise<Claim>;
  /** Stripe accepted these. */
  sent(identifiers: readonly string[]): Promise<number>;
  /** A send that did not get through: `failed` (Stripe refused it) ends the row; otherwise
   *  the next claim after `retrySeconds` resends it. */
  release(identifier: string, error: string, failed: boolean, retrySeconds: number): Promise<void>;
  /** The windows of a page of subjects (after `after`, in id order); `last`: the page's
   *  last subject, where the next page starts. */
  reconcileWindows(query: { settleSeconds: number; after: string | null; limit: number }): Promise<{ windows: ReconcileWindow[]; subjects: number; last: string | null }>;
  reconcileDecide(window: ReconcileWindow, stripeTotal: number, holder: string, leaseSeconds: number): Promise<ReconcileDecision>;
  /** Stripe canceled these (meter event adjustments). */
  void(identifiers: readonly string[], reason: string): Promise<void>;
  /** An invoice.created in the inbox: 'applied' (its usage flushed) or 'skipped'. */
  recordFlush(event: EventReceipt, outcome: 'applied' | 'skipped', reason: string | null): Promise<string>;
}

export function createMeterStore(config: StoreConfig, fetchImpl: typeof fetch = nodeFetch): MeterStore {
  const db = createDatabaseClient(config, fetchImpl);
  return {
    async claim(query) {
      const { data, error } = await db.rpc('billing_meter_claim', {
        p_holder: query.holder,
        p_lease_seconds: query.leaseSeconds,
        p_after: query.after,
        p_limit: query.limit,
        p_customer: query.customer ?? null,
      });
      if (error) throw new StoreError('meter claim', error.message);
      const row = record(data, 'meter claim');
      return {
        rows: list(row['rows']).map((r) => toRow(r, 'meter claim')),
        subjects: Number(row['subjects'] ?? 0),
        meters: Number(row['meters'] ?? 0),
        last: typeof row['last'] === 'string' ? row['last'] : null,
      };
    },

    async sent(identifiers) {
      if (identifiers.length === 0) return 0;
      const { data, error } = await db.rpc('billing_meter_sent', { p_identifiers: [...identifiers] });
      if (error) throw new StoreError('meter sent', error.message);
      return Number(data ?? 0);
    },

    async release(identifier, message, failed, retrySeconds) {
      const { error } = await db.rpc('billing_meter_release', { p_identifier: identifier, p_error: message, p_failed: failed, p_retry_seconds: retrySeconds });
      if (error) throw new StoreError('meter release', error.message);
    },

    async reconcileWindows(query) {
      const { data, error } = await db.rpc('billing_meter_reconcile_windows', { p_settle_seconds: query.settleSeconds, p_after: query.after, p_limit: query.limit });
      if (error) throw new StoreError('meter reconcile windows', error.message);
      const page = record(data, 'meter reconcile windows');
      const windows = list(page['windows']).map((raw) => {
        const w = record(raw, 'meter reconcile windows');
        return {
          subject: str(w['subject']),
          meter: str(w['meter']),
          customer: str(w['customer']),
          windowStart: str(w['windowStart']),
          windowEnd: str(w['windowEnd']),
          inFlight: w['inFlight'] === true,
          settling: w['settling'] === true,
          expected: Number(w['expected'] ?? 0),
        };
      });
      return { windows, subjects: Number(page['subjects'] ?? 0), last: typeof page['last'] === 'string' ? page['last'] : null };
    },

    async reconcileDecide(window, stripeTotal, holder, leaseSeconds) {
      const { data, error } = await db.rpc('billing_meter_reconcile_decide', {
        p_subject: window.subject,
        p_meter: window.meter,
        p_customer: window.customer,
        p_window_start: window.windowStart,
        p_window_end: window.windowEnd,
        p_stripe: stripeTotal,
        p_holder: holder,
        p_lease_seconds: leaseSeconds,
      });
      if (error) throw new StoreError('meter reconcile decide', error.message);
      const d = record(data, 'meter reconcile decide');
      const common = {
        difference: Number(d['difference'] ?? 0),
        stripe: Number(d['stripe'] ?? 0),
        expected: Number(d['expected'] ?? 0),
        confirmed: list(d['confirmed']).map(str),
        voided: list(d['voided']).map(str),
      };
      switch (d['decision']) {
        case 'match':
          return { decision: 'match', ...common, difference: 0 };
        case 'unrepaired':
          return { decision: 'unrepaired', ...common };
        case 'repair':
          return { decision: 'repair', ...common, repair: toRow(d['repair'], 'meter reconcile decide') };
        case 'cancel':
        case 'excess':
          return {
            decision: d['decision'],
            ...common,
            cancel: list(d['cancel']).map((c) => {
              const r = record(c, 'meter reconcile decide');
              return { identifier: str(r['identifier']), value: Number(r['value']) };
            }),
            excess: Number(d['excess'] ?? 0),
          };
        default:
          throw new StoreError('meter reconcile decide', `unexpected decision ${JSON.stringify(d['decision'])}`);
      }
    },

    async void(identifiers, reason) {
      if (identifiers.length === 0) return;
      const { error } = await db.rpc('billing_meter_void', { p_identifiers: [...identifiers], p_reason: reason });
      if (error) throw new StoreError('meter void', error.message);
    },

    async recordFlush(event, outcome, reason) {
      const { data, error } = await db.rpc('billing_meter_record_flush', {
        ...eventArgs(event),
        p_customer_id: event.customerId,
        p_outcome: outcome,
        p_reason: reason,
      });
      if (error) throw new StoreError('meter record flush', error.message);
      return String(data);
    },
  };
}

function record(value: unknown, operation: string): Record<string, Json | undefined> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new StoreError(operation, `unexpected answer ${JSON.stringify(value)}`);
  return value as Record<string, Json | undefined>;
}

/** A text field of a row the SQL built (a non-text value is a bug there: an empty string
 *  then fails the caller's checks rather than passing "[object Object]" on). */
function str(value: unknown): string {
  return typeof value === 'string' ? value : typeof value === 'number' ? String(value) : '';
}

function list(value: unknown): unknown[] {
  return Array.isArray(value) ? value : [];
}

function toRow(value: unknown, operation: string): MeterRow {
  const r = record(value, operation);
  const { identifier, subject, meter, hour, kind, customer, value: amount, timestamp, late, attempts } = r;
  if (typeof identifier !== 'string' || typeof subject !== 'string' || typeof meter !== 'string' || typeof customer !== 'string'
    || typeof amount !== 'number' || typeof timestamp !== 'number' || (kind !== 'usage' && kind !== 'reconcile')) {
    throw new StoreError(operation, `unexpected row ${JSON.stringify(value)}`);
  }
  return {
    identifier, subject, meter, customer, kind, value: amount, timestamp,
    hour: str(hour), late: late === true, attempts: typeof attempts === 'number' ? attempts : 1,
  };
}
