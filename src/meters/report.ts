// Meters: each subject's overage of a billed meter ("overage": "bill") reaches Stripe
// Billing Meters exactly once. This folder owns the meter outbox (billing_meter_reports),
// the scheduled reporter, the invoice.created flush and the meter reconcile
// (docs/meters.md). It may import config, log, store (the database client) and Stripe's
// types; nothing of HTTP, and nothing of src/events (the webhook calls in, not out).
// Meter events go out through the SDK-free sender (src/stripe/meter-events.ts): the
// webhook bundles this module, and a bundle holds whatever it may import, even lazily.
//
// The reporter (netlify/functions/stripe-meter-report.mts) walks the subjects with a
// Stripe customer in id order, a batch at a time: the database claims what each one's
// completed hours owe (billing_meter_claim) and this module sends it. A pass may span
// runs; its cursor lives in billing_jobs with the lease that keeps runs from overlapping.

import type { StoreConfig, StripeConfig } from '../config/config.ts';
import type { Json } from '../database/database.types.ts';
import { createLogger, type Logger } from '../core/log.ts';
import { nodeFetch } from '../core/node-fetch.ts';
import { runLeasedPass, type JobStore, type PassSummary } from '../database/jobs.ts';
import type { StripeConnection } from '../stripe/connection.ts';
import { createMeterEventSender, type MeterEventSender } from '../stripe/meter-events.ts';
import { addCounts, emptyCounts, sendRows, type SendCounts } from './send.ts';
import { createMeterStore, type MeterStore } from './store.ts';

export const METER_REPORT_JOB = 'stripe-meter-report';
/** Of a scheduled function's 30 s: no new batch is claimed after this. */
export const REPORT_BUDGET_MS = 20_000;
/** A batch claimed before the budget ran out is still sent for this long after it, so
 *  that its rows do not wait for the next pass. */
export const SEND_GRACE_MS = 5_000;
/** Subjects per claim: one database call each. */
export const REPORT_BATCH = 200;
/** A claimed row is resent by another run only after this (a run that died). */
export const ROW_LEASE_SECONDS = 60;
/** The invoice.created flush: within a webhook's answer. */
export const FLUSH_BUDGET_MS = 6_000;

export interface MeterDeps {
  store: MeterStore;
  sendMeterEvent: MeterEventSender;
  log: Logger;
}

/** The outbox, the meter event sender and a logger named for `fn`. */
export function createMeterDeps(config: { store: StoreConfig; stripe: StripeConfig }, fn: string): MeterDeps {
  return { store: createMeterStore(config.store), sendMeterEvent: meterEventSender(config.stripe), log: createLogger({ fn }) };
}

/** Meter events over node:http (core/node-fetch.ts), as the store talks to PostgREST: a
 *  cold webhook's flush does not compile undici's parser for its first send. */
export function meterEventSender(config: StripeConnection, options: { timeoutMs?: number; maxNetworkRetries?: number } = {}): MeterEventSender {
  return createMeterEventSender(config, { fetch: nodeFetch, ...options });
}

export interface ReportDeps extends MeterDeps {
  /** billing_jobs: the run's lease and the pass's cursor. */
  jobs: JobStore;
}

export interface ReportOptions {
  holder: string;
  budgetMs?: number;
  batch?: number;
  leaseSeconds?: number;
  sleep?: (ms: number) => Promise<void>;
}

/** Its status 'failed': a database or Stripe failure stopped the run (the rows stay pending). */
export interface ReportSummary extends SendCounts, PassSummary {
  batches: number;
  subjects: number;
  meters: number;
  /** Rows claimed (new, and pending ones resent). */
  claimed: number;
  resent: number;
  late: number;
}

export async function reportUsage(deps: ReportDeps, options: ReportOptions): Promise<ReportSummary> {
  const budgetMs = options.budgetMs ?? REPORT_BUDGET_MS;
  const batch = options.batch ?? REPORT_BATCH;
  const summary: ReportSummary = {
    status: 'done', batches: 0, subjects: 0, meters: 0, claimed: 0, resent: 0, late: 0, ...emptyCounts(), durationMs: 0,
  };
  const job = { name: METER_REPORT_JOB, holder: options.holder, leaseSeconds: Math.ceil((budgetMs + SEND_GRACE_MS) / 1000) + 60, budgetMs };
  return runLeasedPass(deps.jobs, job, summary, (saved, deadline) => {
    let after = cursorOf(saved);
    return {
      state: () => ({ after }),
      async next() {
        const claim = await deps.store.claim({
          holder: options.holder, leaseSeconds: options.leaseSeconds ?? ROW_LEASE_SECONDS, after, limit: batch,
        });
        summary.batches += 1;
        summary.subjects += claim.subjects;
        summary.meters += claim.meters;
        summary.claimed += claim.rows.length;
        summary.resent += claim.rows.filter((row) => row.attempts > 1).length;
        summary.late += claim.rows.filter((row) => row.late).length;
        addCounts(summary, await sendRows(deps, claim.rows, {
          deadline: Math.max(deadline, performance.now()) + SEND_GRACE_MS, ...(options.sleep && { sleep: options.sleep }),
        }));
        if (claim.last === null || claim.subjects < batch) {
          after = null;
          return 'done';
        }
        after = claim.last;
        return 'more';
      },
    };
  });
}

export interface FlushResult extends SendCounts {
  /** Billed meters of the customer's subject (0: nothing of theirs is billed by meter). */
  meters: number;
  claimed: number;
}

/** Raised when a flush could not send everything: the webhook answers 500 and Stripe
 *  delivers invoice.created again (the invoice stays a draft for an hour). */
export class MeterFlushError extends Error {
  constructor(customerId: string, counts: SendCounts) {
    super(`meter flush for ${customerId}: ${counts.unsent} unsent, ${counts.failed} refused`);
    this.name = 'MeterFlushError';
  }
}

/** invoice.created: sends the customer's subject's unsent usage now, the current hour
 *  included, so that the draft invoice's period is complete before Stripe finalizes it. */
export async function flushCustomerUsage(
  deps: MeterDeps,
  customerId: string,
  options: { holder: string; budgetMs?: number; sleep?: (ms: number) => Promise<void> },
): Promise<FlushResult> {
  const deadline = performance.now() + (options.budgetMs ?? FLUSH_BUDGET_MS);
  const claim = await deps.store.claim({ holder: options.holder, leaseSeconds: ROW_LEASE_SECONDS, after: null, limit: 1, customer: customerId });
  if (claim.rows.length === 0) return { meters: claim.meters, claimed: 0, ...emptyCounts() };
  const counts = await sendRows(deps, claim.rows, {
    deadline, ...(options.sleep && { sleep: options.sleep }),
  });
  if (counts.unsent > 0) throw new MeterFlushError(customerId, counts);
  return { meters: claim.meters, claimed: claim.rows.length, ...counts };
}

function cursorOf(saved: Json): string | null {
  if (typeof saved !== 'object' || saved === null || Array.isArray(saved)) return null;
  const after = saved['after'];
  return typeof after === 'string' ? after : null;
}
