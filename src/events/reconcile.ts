// Reconciliation: re-read every subscription from Stripe and write each one through the
// same forward-only path as a webhook, so state lost to a missed webhook (Stripe stops
// retrying a delivery after three days) is recovered. No HTTP, no process, no console:
// scripts/reconcile.ts is the command line around it.
//
// Ordering. Each subscription is applied as a synthetic event
//   { id: reconcile_<subscription id>_<fetch ms>, type: reconcile.subscription,
//     created: <fetch time, seconds> - 1, change: { kind: 'subscription', … } }
// and billing_apply_event keeps, per subscription, the state with the greatest
// (created, status rank, event id) — see the header of
// supabase/migrations/20261125010000_subscription_lifecycle.sql. Using the time the
// page was fetched as `created` is correct because the snapshot IS the subscription as
// of that moment:
//   * a webhook event created before it describes an older state, which the snapshot
//     already includes, so the snapshot replaces it (this is the recovery);
//   * a webhook event created after it describes a change Stripe made after our read,
//     so it wins over the snapshot, whether it arrives before or after this run writes;
//   * an event created in the same second as the read may be from before or after it;
//     the snapshot takes the second before the read, so such an event always wins over
//     the snapshot (if it came before the read, the snapshot says the same anyway). An
//     event from that earlier second ties and is broken as any tie (rank, then id);
//     it happened before the read, so either result is the state the snapshot shows.
// The clock is read just BEFORE each page request, never after the response: the read
// happens after that instant, so no change Stripe made after our read can carry an
// older `created` than the snapshot (reading the clock after the response could make
// an older snapshot beat a newer, already-applied webhook). This assumes the host's
// clock roughly agrees with Stripe's; run it on a machine with NTP.
//
// So it is safe while webhooks arrive (each write is one atomic, ordered upsert; the
// database decides, not the order in which the writes land) and safe to run twice:
// every run has fresh event ids (the fetch time is in the id, so a rerun is never
// 'duplicate'), and a rerun writes the same state again or finds it 'stale'.
// Each synthetic event is recorded in stripe_events like a real one.
//
// Seats. A team's per-seat subscription whose quantity the read shows to differ from the
// team's member count (changed in Stripe's Dashboard, or a change never sent) is set
// right after its page is written, by the seat sync's own code (src/teams/seats.ts).

import { randomUUID } from 'node:crypto';
import Stripe from 'stripe';
import type { ApplyOutcome, BillingStore } from '../database/store.ts';
import { seatPlanMins, syncDueSeats, REQUEST_BUDGET_MS } from '../teams/seats.ts';
import { snapshotOf } from '../database/snapshot.ts';
import type { ProductScope } from '../catalog/product-scope.ts';
import { readSubscription, UnreadableObjectError } from '../stripe/objects.ts';

export const RECONCILE_EVENT_TYPE = 'reconcile.subscription';
/** Stripe's maximum page size. */
export const RECONCILE_PAGE_SIZE = 100;
export const DEFAULT_MAX_RATE_LIMIT_RETRIES = 5;
/** Backoff after a 429: 1 s, 2 s, 4 s, … up to this. */
export const RATE_LIMIT_BASE_DELAY_MS = 1_000;
export const RATE_LIMIT_MAX_DELAY_MS = 30_000;
/** Writes failing one after another mean the store is down: stop rather than time out on every subscription. */
export const MAX_CONSECUTIVE_APPLY_FAILURES = 10;

export interface ReconcileDeps {
  stripe: Stripe;
  store: BillingStore;
  /** The mode of the Stripe key (config.stripe.mode === 'live'); recorded on each event. */
  livemode: boolean;
  /** What this backend sells: decides which subscriptions are the user's here. */
  scope: ProductScope;
}

export interface ReconcileOptions {
  /** Only this customer's subscriptions. */
  customerId?: string;
  /** Fetch and count, write nothing. */
  dryRun?: boolean;
  now?: () => Date;
  onProgress?: (progress: ReconcileProgress) => void;
  sleep?: (ms: number) => Promise<void>;
  /** Retries of one page after HTTP 429, with exponential backoff; default 5. */
  maxRateLimitRetries?: number;
  /** Go on from here (a run that stopped at its budget left it in `resumeAfter`). */
  startingAfter?: string;
  /** Start no new page after this long; the report's `resumeAfter` says where to go on. */
  budgetMs?: number;
}

export interface ReconcileCounts {
  pages: number;
  /** Subscriptions listed by Stripe. */
  seen: number;
  applied: number;
  stale: number;
  duplicate: number;
  ignored: number;
  /** Not writable: the subscription could not be read (each is also a 'read' failure). */
  skipped: number;
  /** Dry run only: snapshots that would have been written. */
  planned: number;
  /** Retries after HTTP 429. */
  rateLimitRetries: number;
  /** Quantity updates sent to heal per-seat subscriptions whose seats differed. */
  seatUpdates: number;
}

export interface ReconcileFailure {
  /** 'list': a page could not be fetched, and the run stopped there. 'seats': a quantity
   *  could not be set (the scheduled seat sync retries it). */
  stage: 'list' | 'read' | 'apply' | 'seats';
  subscriptionId: string | null;
  message: string;
}

export interface ReconcileReport extends ReconcileCounts {
  dryRun: boolean;
  customerId: string | null;
  /** Every page was read (false when listing failed or the run stopped early). */
  complete: boolean;
  /** Set when the run stopped at its budget: the last subscription it finished. */
  resumeAfter: string | null;
  failures: ReconcileFailure[];
}

export type ReconcileProgress =
  | ({ type: 'page'; page: number; failed: number } & ReconcileCounts)
  | { type: 'rate_limited'; page: number; attempt: number; delayMs: number };

const defaultSleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

export function rateLimitDelayMs(attempt: number): number {
  return Math.min(RATE_LIMIT_BASE_DELAY_MS * 2 ** (attempt - 1), RATE_LIMIT_MAX_DELAY_MS);
}

export function isRateLimit(error: unknown): boolean {
  return (
    error instanceof Stripe.errors.StripeRateLimitError ||
    (error instanceof Error && (error as { type?: unknown }).type === 'StripeRateLimitError')
  );
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** The Stripe customer whose subscriptions are the user's: the live one, else the deleted one. */
export async function customerOfUser(store: BillingStore, userId: string): Promise<string | null> {
  const account = await store.getAccount(userId);
  return account?.stripeCustomerId ?? account?.deletedCustomerId ?? null;
}

export async function reconcileSubscriptions(deps: ReconcileDeps, options: ReconcileOptions = {}): Promise<ReconcileReport> {
  const now = options.now ?? (() => new Date());
  const sleep = options.sleep ?? defaultSleep;
  const maxRetries = options.maxRateLimitRetries ?? DEFAULT_MAX_RATE_LIMIT_RETRIES;
  const dryRun = options.dryRun ?? false;
  const report: ReconcileReport = {
    dryRun,
    customerId: options.customerId ?? null,
    complete: false,
    resumeAfter: null,
    pages: 0,
    seen: 0,
    applied: 0,
    stale: 0,
    duplicate: 0,
    ignored: 0,
    skipped: 0,
    planned: 0,
    rateLimitRetries: 0,
    seatUpdates: 0,
    failures: [],
  };
  const counts = (): ReconcileCounts => {
    const { pages, seen, applied, stale, duplicate, ignored, skipped, planned, rateLimitRetries, seatUpdates } = report;
    return { pages, seen, applied, stale, duplicate, ignored, skipped, planned, rateLimitRetries, seatUpdates };
  };
  const seatPlans = seatPlanMins(deps.scope.catalog);
  const seatHolder = `reconcile-${randomUUID()}`;

  // Paginated by hand (starting_after) rather than with `for await`, because the
  // auto-paginator hides the per-page calls, and a page that hits a rate limit must be
  // retried on its own without starting over.
  const fetchPage = async (page: number, startingAfter: string | undefined) => {
    const params: Stripe.SubscriptionListParams = {
      status: 'all',
      limit: RECONCILE_PAGE_SIZE,
      ...(options.customerId && { customer: options.customerId }),
      ...(startingAfter && { starting_after: startingAfter }),
    };
    for (let attempt = 1; ; attempt += 1) {
      const fetchedAt = now(); // before the request: see "Ordering" above
      try {
        return { list: await deps.stripe.subscriptions.list(params), fetchedAt };
      } catch (error) {
        if (!isRateLimit(error) || attempt > maxRetries) throw error;
        const delayMs = rateLimitDelayMs(attempt);
        report.rateLimitRetries += 1;
        options.onProgress?.({ type: 'rate_limited', page, attempt, delayMs });
        await sleep(delayMs);
      }
    }
  };

  let startingAfter: string | undefined = options.startingAfter;
  const started = performance.now();
  let consecutiveFailures = 0;
  for (let page = 1; ; page += 1) {
    let fetched: Awaited<ReturnType<typeof fetchPage>>;
    try {
      fetched = await fetchPage(page, startingAfter);
    } catch (error) {
      report.failures.push({ stage: 'list', subscriptionId: null, message: `page ${page}: ${messageOf(error)}` });
      return report;
    }
    const { list, fetchedAt } = fetched;
    report.pages += 1;
    // The second before the read: see "Ordering" above.
    const created = Math.floor(fetchedAt.getTime() / 1000) - 1;
    const perSeat: string[] = [];

    for (const subscription of list.data) {
      report.seen += 1;
      let snapshot;
      try {
        snapshot = snapshotOf(readSubscription(subscription), deps.scope);
      } catch (error) {
        if (!(error instanceof UnreadableObjectError)) throw error;
        report.skipped += 1;
        report.failures.push({ stage: 'read', subscriptionId: subscription.id, message: error.message });
        continue;
      }
      if (dryRun) {
        report.planned += 1;
        continue;
      }
      if (snapshot.for_this_product && snapshot.product_id !== null && Object.hasOwn(seatPlans, snapshot.product_id)) perSeat.push(snapshot.id);
      let outcome: ApplyOutcome;
      try {
        outcome = (await deps.store.applyEvent({
          id: `reconcile_${subscription.id}_${fetchedAt.getTime()}`,
          type: RECONCILE_EVENT_TYPE,
          created,
          livemode: deps.livemode,
          apiVersion: null,
          change: { kind: 'subscription', subscription: snapshot },
        })).outcome;
      } catch (error) {
        report.failures.push({ stage: 'apply', subscriptionId: subscription.id, message: messageOf(error) });
        consecutiveFailures += 1;
        if (consecutiveFailures >= MAX_CONSECUTIVE_APPLY_FAILURES) {
          report.failures.push({
            stage: 'apply',
            subscriptionId: null,
            message: `stopped after ${consecutiveFailures} failed writes in a row`,
          });
          return report;
        }
        continue;
      }
      consecutiveFailures = 0;
      report[outcome] += 1;
    }

    if (perSeat.length > 0) {
      const seats = await syncDueSeats(
        { stripe: () => Promise.resolve(deps.stripe), store: deps.store, scope: deps.scope, livemode: deps.livemode },
        { holder: seatHolder, subscriptions: perSeat, budgetMs: REQUEST_BUDGET_MS },
      ).catch((error: unknown) => ({ updates: 0, error: `seats: ${messageOf(error)}` }));
      report.seatUpdates += seats.updates;
      if (seats.error !== null) report.failures.push({ stage: 'seats', subscriptionId: null, message: seats.error });
    }

    options.onProgress?.({ type: 'page', page, failed: report.failures.length, ...counts() });
    const last = list.data.at(-1);
    if (!list.has_more || !last) break;
    startingAfter = last.id;
    if (options.budgetMs !== undefined && performance.now() - started > options.budgetMs) {
      report.resumeAfter = last.id;
      return report;
    }
  }
  report.complete = true;
  return report;
}

// On a schedule -------------------------------------------------------------------------
//
// The full reconcile, once a day, with no one at the keyboard: a Netlify Scheduled
// Function (netlify/functions/stripe-reconcile.mts) runs hourly; a run starts a pass
// when the last one finished a day ago or more, or goes on with the pass in progress
// from where the last run stopped (a scheduled run has 30 s). A lease in billing_jobs
// keeps two runs apart. Every run that holds the lease also does the hourly usage
// upkeep (billing_usage_fold: idempotency keys older than 48 hours into the hourly
// totals), whether or not a pass is due.

export const RECONCILE_JOB = 'stripe-reconcile';
export const RECONCILE_EVERY_MS = 24 * 3600 * 1000;
export const SCHEDULED_BUDGET_MS = 20_000;

// A type alias, not an interface, so it is a Json value (it is saved as the job's summary).
export type ScheduledReconcileSummary = {
  /** 'not due': the last pass finished less than a day ago. 'busy': another run holds the lease. */
  status: 'done' | 'paused' | 'not due' | 'busy' | 'failed';
  seen: number;
  applied: number;
  stale: number;
  skipped: number;
  failed: number;
  /** The first failure's message, for the log line. */
  error: string | null;
  /** Idempotency keys folded into the hourly usage totals (billing_usage_fold). */
  usageKeysFolded: number;
};

export async function reconcileOnSchedule(
  deps: ReconcileDeps,
  options: { holder: string; budgetMs?: number; now?: () => Date },
): Promise<ScheduledReconcileSummary> {
  const now = options.now ?? (() => new Date());
  const budgetMs = options.budgetMs ?? SCHEDULED_BUDGET_MS;
  const summary: ScheduledReconcileSummary = { status: 'busy', seen: 0, applied: 0, stale: 0, skipped: 0, failed: 0, error: null, usageKeysFolded: 0 };
  const saved = await deps.store.acquireJob(RECONCILE_JOB, options.holder, Math.ceil(budgetMs / 1000) + 60);
  if (saved === null) return summary;
  summary.usageKeysFolded = (await deps.store.foldUsage()).keysFolded;
  const record = typeof saved === 'object' && saved !== null && !Array.isArray(saved) ? saved : {};
  const state = {
    passStartedAt: typeof record['passStartedAt'] === 'string' ? record['passStartedAt'] : null,
    startingAfter: typeof record['startingAfter'] === 'string' ? record['startingAfter'] : null,
    lastCompletedAt: typeof record['lastCompletedAt'] === 'string' ? record['lastCompletedAt'] : null,
  };
  const save = () => deps.store.saveJob(RECONCILE_JOB, options.holder, state, summary, true);

  if (state.passStartedAt === null) {
    if (state.lastCompletedAt !== null && now().getTime() - new Date(state.lastCompletedAt).getTime() < RECONCILE_EVERY_MS) {
      summary.status = 'not due';
      await save();
      return summary;
    }
    state.passStartedAt = now().toISOString();
    state.startingAfter = null;
  }

  const report = await reconcileSubscriptions(deps, {
    budgetMs,
    now,
    ...(state.startingAfter !== null && { startingAfter: state.startingAfter }),
  });
  Object.assign(summary, { seen: report.seen, applied: report.applied, stale: report.stale, skipped: report.skipped, failed: report.failures.length });
  summary.error = report.failures[0]?.message ?? null;
  if (report.complete) {
    Object.assign(state, { passStartedAt: null, startingAfter: null, lastCompletedAt: now().toISOString() });
    summary.status = report.failures.length > 0 ? 'failed' : 'done';
  } else if (report.resumeAfter !== null) {
    state.startingAfter = report.resumeAfter;
    summary.status = report.failures.length > 0 ? 'failed' : 'paused';
  } else {
    summary.status = 'failed'; // a page could not be read: the next run tries it again
  }
  await save();
  return summary;
}
