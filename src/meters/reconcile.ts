// The meter reconcile (netlify/functions/stripe-meter-reconcile.mts, hourly): per
// customer, meter and usage window of the past 34 days, compares what Stripe holds
// (GET /v1/billing/meters/{id}/event_summaries) with the usage Stripe accepted from us,
// and lets the database decide (billing_meter_reconcile_decide): pending rows older than
// Stripe's 24 h of deduplication are settled as arrived or not; what Stripe lacks is sent
// as a repair event with a new identifier; what it has too much of is canceled with
// meter event adjustments while our repairs are younger than 24 h, and logged at error
// when it cannot be (Stripe takes no usage back after that). Every difference is logged.
// Repairs go out through the meter event sender, as every meter event does; the reads and
// the adjustments use the SDK (this function's bundle carries it, the webhook's does not).

import type Stripe from 'stripe';
import { runLeasedPass, type JobStore, type PassSummary } from '../database/jobs.ts';
import type { StripeLoader } from '../stripe/client.ts';
import { ROW_LEASE_SECONDS, SEND_GRACE_MS, type MeterDeps } from './report.ts';
import { addCounts, emptyCounts, sendRows, type SendCounts } from './send.ts';
import type { ReconcileWindow } from './store.ts';

export const METER_RECONCILE_JOB = 'stripe-meter-reconcile';
export const RECONCILE_BUDGET_MS = 20_000;
/** Subjects per page. */
export const RECONCILE_PAGE = 50;
/** Stripe's summaries trail its events: a window with a send younger than this waits. */
export const SETTLE_SECONDS = 15 * 60;

export interface ReconcileDeps extends MeterDeps {
  jobs: JobStore;
  /** For the meters, their event summaries and cancel adjustments. */
  stripe: StripeLoader;
}

export interface ReconcileOptions {
  holder: string;
  budgetMs?: number;
  settleSeconds?: number;
  pageSize?: number;
  now?: () => Date;
  sleep?: (ms: number) => Promise<void>;
}

export interface ReconcileSummary extends SendCounts, PassSummary {
  windows: number;
  /** Left for a later run: a row in flight, or sent too recently. */
  waiting: number;
  matched: number;
  repaired: number;
  canceled: number;
  /** Windows where Stripe holds more than we sent and nothing can take it back. */
  excess: number;
  /** Windows Stripe is still short of after a repair younger than 23 h. */
  unrepaired: number;
  confirmed: number;
  voided: number;
  /** Windows of a meter Stripe does not have (billing:setup not run for it). */
  noMeter: number;
}

export async function reconcileMeters(deps: ReconcileDeps, options: ReconcileOptions): Promise<ReconcileSummary> {
  const budgetMs = options.budgetMs ?? RECONCILE_BUDGET_MS;
  const pageSize = options.pageSize ?? RECONCILE_PAGE;
  const now = options.now ?? (() => new Date());
  const summary: ReconcileSummary = {
    status: 'done', windows: 0, waiting: 0, matched: 0, repaired: 0, canceled: 0, excess: 0, unrepaired: 0, confirmed: 0, voided: 0, noMeter: 0,
    ...emptyCounts(), durationMs: 0,
  };
  const job = { name: METER_RECONCILE_JOB, holder: options.holder, leaseSeconds: Math.ceil(budgetMs / 1000) + 60, budgetMs };
  return runLeasedPass(deps.jobs, job, summary, (saved, deadline) => {
    let after = typeof saved === 'object' && saved !== null && !Array.isArray(saved) && typeof saved['after'] === 'string' ? saved['after'] : null;
    let client: Stripe | undefined;
    let meterIdsOf: Map<string, string> | undefined;
    return {
      state: () => ({ after }),
      async next() {
        const stripe = (client ??= await deps.stripe());
        const meterIds = (meterIdsOf ??= await stripeMeterIds(stripe));
        const page = await deps.store.reconcileWindows({ settleSeconds: options.settleSeconds ?? SETTLE_SECONDS, after, limit: pageSize });
        // A page is finished whole (its cursor is its last subject); pages are small.
        for (const window of page.windows) {
          summary.windows += 1;
          if (window.inFlight || window.settling) {
            summary.waiting += 1;
            continue;
          }
          const meterId = meterIds.get(window.meter);
          if (!meterId) {
            summary.noMeter += 1;
            deps.log.error('meter reconcile: Stripe has no meter for this event name', { meter: window.meter, subject: window.subject });
            continue;
          }
          await reconcileWindow(deps, window, meterId, stripe, now(), options, summary, deadline);
        }
        if (page.last === null || page.subjects < pageSize) {
          after = null;
          return 'done';
        }
        after = page.last;
        return 'more';
      },
    };
  });
}

async function reconcileWindow(
  deps: ReconcileDeps,
  window: ReconcileWindow,
  meterId: string,
  stripe: Stripe,
  now: Date,
  options: ReconcileOptions,
  summary: ReconcileSummary,
  deadline: number,
): Promise<void> {
  const stripeTotal = await summarized(stripe, meterId, window, now);
  const decision = await deps.store.reconcileDecide(window, stripeTotal, options.holder, ROW_LEASE_SECONDS);
  summary.confirmed += decision.confirmed.length;
  summary.voided += decision.voided.length;
  const about = {
    subject: window.subject, meter: window.meter, customer: window.customer, windowStart: window.windowStart, windowEnd: window.windowEnd,
    stripe: decision.stripe, expected: decision.expected, difference: decision.difference,
  };
  if (decision.confirmed.length > 0 || decision.voided.length > 0) {
    deps.log.warn('meter reconcile: settled events unconfirmed after 23 h', { ...about, confirmed: decision.confirmed.length, voided: decision.voided.length });
  }
  switch (decision.decision) {
    case 'match':
      summary.matched += 1;
      return;
    case 'unrepaired':
      summary.unrepaired += 1;
      deps.log.error('meter reconcile: Stripe still lacks usage after a repair (see the meter error events)', about);
      return;
    case 'repair': {
      summary.repaired += 1;
      deps.log.warn('meter reconcile: Stripe lacks usage, repair sent', { ...about, identifier: decision.repair.identifier, value: decision.repair.value });
      // Left unsent, it is pending: the reporter's next claim sends it (same identifier).
      addCounts(summary, await sendRows(deps, [decision.repair], {
        deadline: Math.max(deadline, performance.now()) + SEND_GRACE_MS, ...(options.sleep && { sleep: options.sleep }),
      }));
      return;
    }
    case 'cancel':
    case 'excess': {
      const canceled: string[] = [];
      for (const repair of decision.cancel) {
        await stripe.billing.meterEventAdjustments.create({ event_name: window.meter, type: 'cancel', cancel: { identifier: repair.identifier } });
        canceled.push(repair.identifier);
      }
      await deps.store.void(canceled, 'canceled by the reconcile (Stripe held more than was sent)');
      summary.canceled += canceled.length;
      if (canceled.length > 0) deps.log.warn('meter reconcile: Stripe holds more than was sent, repairs canceled', { ...about, canceled: canceled.length });
      if (decision.decision === 'excess') {
        summary.excess += 1;
        deps.log.error('meter reconcile: Stripe holds more usage than was sent and cannot take it back', { ...about, excess: decision.excess });
      }
      return;
    }
  }
}

/** Stripe's total for the window: its summaries' bounds are whole minutes; our events
 *  are dated on the hour (or at the earliest time Stripe takes), so rounding the
 *  window's bounds up to the minute keeps exactly its events. */
async function summarized(stripe: Stripe, meterId: string, window: ReconcileWindow, now: Date): Promise<number> {
  const ceilMinute = (iso: string | Date) => Math.ceil(new Date(iso).getTime() / 60_000) * 60;
  const start = ceilMinute(window.windowStart);
  const end = Math.min(ceilMinute(window.windowEnd), ceilMinute(now) + 60);
  let total = 0;
  for await (const summary of stripe.billing.meters.listEventSummaries(meterId, { customer: window.customer, start_time: start, end_time: end, limit: 100 })) {
    total += summary.aggregated_value;
  }
  return total;
}

/** Our meters' ids by event name (a meter's event name is its catalog key). */
async function stripeMeterIds(stripe: Stripe): Promise<Map<string, string>> {
  const ids = new Map<string, string>();
  for await (const meter of stripe.billing.meters.list({ status: 'active', limit: 100 })) ids.set(meter.event_name, meter.id);
  return ids;
}
