// Meters: each subject's overage of a billed meter ("overage": "bill") reaches Stripe
// Billing Meters exactly once. This folder owns the meter outbox (billing_meter_reports),
// the scheduled reporter, the invoice.created flush and the meter reconcile
// (docs/meters.md). It may import config, log, store (the database client) and Stripe's
// types; nothing of HTTP, and nothing of src/events (the webhook calls in, not out).
//
// The reporter (netlify/functions/stripe-meter-report.mts) walks the subjects with a
// Stripe customer in id order, a batch at a time: the database claims what each one's
// completed hours owe (billing_meter_claim) and this module sends it. A pass may span
// runs; its cursor lives in billing_jobs with the lease that keeps runs from overlapping.

import type { StoreConfig, StripeConfig } from '../config/config.ts';
import type { Json } from '../database/database.types.ts';
import { createLogger, type Logger } from '../core/log.ts';
import type { BillingStore } from '../database/store.ts';
import type { StripeLoader } from '../stripe/client.ts';
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
  stripe: StripeLoader;
  log: Logger;
}

/** The outbox, a Stripe client built on first use, and a logger named for `fn`. */
export function createMeterDeps(config: { store: StoreConfig; stripe: StripeConfig }, fn: string, stripe?: StripeLoader): MeterDeps {
  return { store: createMeterStore(config.store), stripe: stripe ?? deferredStripe(config.stripe), log: createLogger({ fn }) };
}

/** A Stripe client whose SDK is loaded on first use: the webhook needs one only for an
 *  invoice.created of a customer with billed usage, and its cold start should not pay
 *  for evaluating the SDK (src/stripe/client.ts measures that cost). */
function deferredStripe(config: StripeConfig): StripeLoader {
  let client: ReturnType<StripeLoader> | undefined;
  return () =>
    (client ??= import('../stripe/client.ts').then(({ createStripe }) => createStripe(config)).catch((error: unknown) => {
      client = undefined;
      throw error;
    }));
}

export interface ReportDeps extends MeterDeps {
  /** billing_jobs: the run's lease and the pass's cursor. */
  jobs: Pick<BillingStore, 'acquireJob' | 'saveJob'>;
}

export interface ReportOptions {
  holder: string;
  budgetMs?: number;
  batch?: number;
  leaseSeconds?: number;
  sleep?: (ms: number) => Promise<void>;
}

export interface ReportSummary extends SendCounts {
  /** 'paused': out of budget mid-pass (the next run goes on); 'busy': another run held
   *  the lease; 'failed': a database or Stripe failure stopped it (the rows stay pending). */
  status: 'done' | 'paused' | 'busy' | 'failed';
  batches: number;
  subjects: number;
  meters: number;
  /** Rows claimed (new, and pending ones resent). */
  claimed: number;
  resent: number;
  late: number;
  error?: string;
  durationMs: number;
}

export async function reportUsage(deps: ReportDeps, options: ReportOptions): Promise<ReportSummary> {
  const started = performance.now();
  const budgetMs = options.budgetMs ?? REPORT_BUDGET_MS;
  const deadline = started + budgetMs;
  const summary: ReportSummary = {
    status: 'done', batches: 0, subjects: 0, meters: 0, claimed: 0, resent: 0, late: 0, ...emptyCounts(), durationMs: 0,
  };
  const finish = (status: ReportSummary['status']) => {
    summary.status = status;
    summary.durationMs = Math.round(performance.now() - started);
    return summary;
  };

  const saved = await deps.jobs.acquireJob(METER_REPORT_JOB, options.holder, Math.ceil((budgetMs + SEND_GRACE_MS) / 1000) + 60);
  if (saved === null) return finish('busy');
  let after = cursorOf(saved);
  const save = (release: boolean) =>
    deps.jobs.saveJob(METER_REPORT_JOB, options.holder, { after } satisfies Json, release ? (summary as unknown as Json) : null, release);

  try {
    const stripe = await deps.stripe();
    for (;;) {
      const claim = await deps.store.claim({
        holder: options.holder, leaseSeconds: options.leaseSeconds ?? ROW_LEASE_SECONDS, after, limit: options.batch ?? REPORT_BATCH,
      });
      summary.batches += 1;
      summary.subjects += claim.subjects;
      summary.meters += claim.meters;
      summary.claimed += claim.rows.length;
      summary.resent += claim.rows.filter((row) => row.attempts > 1).length;
      summary.late += claim.rows.filter((row) => row.late).length;
      addCounts(summary, await sendRows({ stripe, store: deps.store, log: deps.log }, claim.rows, {
        deadline: Math.max(deadline, performance.now()) + SEND_GRACE_MS, ...(options.sleep && { sleep: options.sleep }),
      }));
      if (claim.last === null || claim.subjects < (options.batch ?? REPORT_BATCH)) {
        after = null;
        await save(true);
        return finish('done');
      }
      after = claim.last;
      if (performance.now() > deadline) {
        await save(true);
        return finish('paused');
      }
      await save(false);
    }
  } catch (error) {
    summary.error = error instanceof Error ? error.message : String(error);
    await save(true).catch(() => {});
    return finish('failed');
  }
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
  const counts = await sendRows({ stripe: await deps.stripe(), store: deps.store, log: deps.log }, claim.rows, {
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
