// Catch-up: read Stripe's event log and apply what the ledger lacks, so an endpoint
// that was down, disabled or misconfigured heals itself with no one at the keyboard.
// Runs as a Netlify Scheduled Function (netlify/functions/stripe-catch-up.mts).
//
// Stripe lists events newest first (GET /v1/events, 30 days kept). A pass reads every
// handled event created since the cursor, page by page, and sends those the ledger
// does not hold as done (never seen, or failed) through the webhook's own apply; order
// does not matter, because every write is forward-only. A scheduled run may take 30 s,
// so a run stops before its budget is spent and saves where it was (the last event id
// of the last page it finished); the next run goes on from there. When a pass reaches
// the end, the cursor moves to when that pass began, less an overlap, and the next pass
// starts from the newest event again. Events seen twice are 'known' and skipped without
// a write. Runs never overlap: each holds a lease in billing_jobs.

import type Stripe from 'stripe';
import type { Json } from '../database/database.types.ts';
import type { ApplyOutcome } from '../database/store.ts';
import { HANDLED_EVENT_TYPES } from './reduce.ts';
import { rateLimitDelayMs, isRateLimit } from './reconcile.ts';
import { applyStripeEvent, eventFromStripe, type ApplyDeps } from './webhook.ts';

export const CATCH_UP_JOB = 'stripe-catch-up';
/** Stripe keeps 30 days of events; a first pass reads them all (less a margin). */
export const FIRST_PASS_LOOKBACK_SECONDS = 29 * 86_400;
/** An event becomes listable a little after its `created`; read a little before the cursor. */
export const CURSOR_OVERLAP_SECONDS = 15 * 60;
export const CATCH_UP_PAGE_SIZE = 100;
/** Of a scheduled function's 30 s: stop starting pages after this, so the run ends in time. */
export const DEFAULT_BUDGET_MS = 20_000;
export const DEFAULT_MAX_RATE_LIMIT_RETRIES = 4;

export interface CatchUpDeps extends ApplyDeps {
  stripe: Stripe;
}

export interface CatchUpOptions {
  /** Who runs, for the lease (e.g. the request id). */
  holder: string;
  budgetMs?: number;
  pageSize?: number;
  now?: () => Date;
  sleep?: (ms: number) => Promise<void>;
  maxRateLimitRetries?: number;
}

/** What is saved between runs. Times in Unix seconds. */
interface CatchUpState {
  /** Events created before this were all seen by an earlier, finished pass. */
  cursor: number | null;
  /** The pass in progress: when it began, and the last event id it finished at. */
  passStartedAt: number | null;
  startingAfter: string | null;
}

export interface CatchUpSummary {
  /** 'busy': another run held the lease, and this one did nothing. */
  status: 'done' | 'paused' | 'busy' | 'failed';
  pages: number;
  seen: number;
  known: number;
  applied: number;
  stale: number;
  duplicate: number;
  ignored: number;
  skipped: number;
  failed: number;
  rateLimitRetries: number;
  /** The oldest `created` this pass reads from (ISO 8601). */
  since: string | null;
  error?: string;
  durationMs: number;
}

const defaultSleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

export async function catchUpEvents(deps: CatchUpDeps, options: CatchUpOptions): Promise<CatchUpSummary> {
  const now = options.now ?? (() => new Date());
  const sleep = options.sleep ?? defaultSleep;
  const budgetMs = options.budgetMs ?? DEFAULT_BUDGET_MS;
  const started = performance.now();
  const summary: CatchUpSummary = {
    status: 'done', pages: 0, seen: 0, known: 0, applied: 0, stale: 0, duplicate: 0, ignored: 0, skipped: 0, failed: 0,
    rateLimitRetries: 0, since: null, durationMs: 0,
  };
  const finish = (status: CatchUpSummary['status']) => {
    summary.status = status;
    summary.durationMs = Math.round(performance.now() - started);
    return summary;
  };

  // The lease outlives the budget by enough for the last page to finish.
  const saved = await deps.store.acquireJob(CATCH_UP_JOB, options.holder, Math.ceil(budgetMs / 1000) + 60);
  if (saved === null) return finish('busy');
  const state = readState(saved);
  const nowSeconds = Math.floor(now().getTime() / 1000);
  if (state.passStartedAt === null) {
    state.passStartedAt = nowSeconds;
    state.startingAfter = null;
  }
  const since = (state.cursor ?? nowSeconds - FIRST_PASS_LOOKBACK_SECONDS) - CURSOR_OVERLAP_SECONDS;
  summary.since = new Date(since * 1000).toISOString();

  const save = (release: boolean) =>
    deps.store.saveJob(CATCH_UP_JOB, options.holder, state as unknown as Json, release ? (summary as unknown as Json) : null, release);

  try {
    for (;;) {
      const page = await listPage(deps.stripe, since, state.startingAfter, options, sleep, summary);
      summary.pages += 1;
      await applyPage(deps, page.data, summary);
      const last = page.data.at(-1);
      if (!page.has_more || !last) {
        // The pass is complete: everything before it began has been seen.
        state.cursor = state.passStartedAt;
        state.passStartedAt = null;
        state.startingAfter = null;
        await save(true);
        return finish('done');
      }
      state.startingAfter = last.id;
      if (performance.now() - started > budgetMs) {
        await save(true);
        return finish('paused');
      }
      await save(false);
    }
  } catch (error) {
    summary.error = error instanceof Error ? error.message : String(error);
    // What was finished stays finished; the next run retries the rest.
    await save(true).catch(() => {});
    return finish('failed');
  }
}

async function listPage(
  stripe: Stripe,
  since: number,
  startingAfter: string | null,
  options: CatchUpOptions,
  sleep: (ms: number) => Promise<void>,
  summary: CatchUpSummary,
): Promise<Stripe.ApiList<Stripe.Event>> {
  const params: Stripe.EventListParams = {
    types: [...HANDLED_EVENT_TYPES],
    created: { gte: since },
    limit: options.pageSize ?? CATCH_UP_PAGE_SIZE,
    ...(startingAfter && { starting_after: startingAfter }),
  };
  const maxRetries = options.maxRateLimitRetries ?? DEFAULT_MAX_RATE_LIMIT_RETRIES;
  for (let attempt = 1; ; attempt += 1) {
    try {
      return await stripe.events.list(params);
    } catch (error) {
      if (!isRateLimit(error) || attempt > maxRetries) throw error;
      summary.rateLimitRetries += 1;
      await sleep(rateLimitDelayMs(attempt));
    }
  }
}

/** Applies, through the webhook's own path, the events of a page the ledger lacks. */
async function applyPage(deps: ApplyDeps, events: readonly Stripe.Event[], summary: CatchUpSummary): Promise<void> {
  summary.seen += events.length;
  const known = await deps.store.knownEventIds(events.map((event) => event.id));
  summary.known += known.size;
  for (const raw of events) {
    if (known.has(raw.id)) continue;
    const event = eventFromStripe(raw);
    if (!event) {
      summary.failed += 1;
      continue;
    }
    const result = await applyStripeEvent(deps, event);
    const outcome: ApplyOutcome | 'failed' = result.outcome;
    summary[outcome] += 1;
  }
}

function readState(saved: Json): CatchUpState {
  const record = typeof saved === 'object' && saved !== null && !Array.isArray(saved) ? saved : {};
  const numberOrNull = (value: unknown) => (typeof value === 'number' && Number.isFinite(value) ? value : null);
  return {
    cursor: numberOrNull(record['cursor']),
    passStartedAt: numberOrNull(record['passStartedAt']),
    startingAfter: typeof record['startingAfter'] === 'string' ? record['startingAfter'] : null,
  };
}
