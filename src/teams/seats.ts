// Seats: a per-seat plan's Stripe quantity follows its team's membership. A catalog plan
// with "seats": {"min": n} bills a team's subscription for max(members, n) seats; after
// a membership change the subscription item's quantity is set to that number, as an
// absolute value, by whoever gets there first: POST /api/stripe/seats (the product, or
// the dashboard, right after changing members), the scheduled stripe-seat-sync (every
// minute: what was missed) or the reconcile (a quantity changed in Stripe). The database
// decides who sends and what (billing_seat_claim, 20261204300000_seats.sql): one update
// in flight per subscription, the holder sending again until the count it last read is
// billed. No HTTP here.

import type Stripe from 'stripe';
import type { AuthUser } from '../http/auth.ts';
import { planOfProduct, type Catalog, type Plan } from '../catalog/catalog.ts';
import { snapshotOf } from '../database/snapshot.ts';
import type { ProductScope } from '../catalog/product-scope.ts';
import { readSubscription } from '../stripe/objects.ts';
import type { SeatsConfig } from '../config/config.ts';
import { jsonObjectBody } from '../http/body.ts';
import { InvalidRequestError, NoPerSeatSubscriptionError } from '../core/errors.ts';
import type { BillingStore, SeatPlanMins, SeatState } from '../database/store.ts';
import type { StripeLoader } from '../stripe/client.ts';
import { openSubject, teamIdFrom, type Subject } from './subject.ts';

/** Longer than any run holds it (a request's 10 s, a scheduled run's 30 s): a holder that
 *  died frees it after this. */
export const SEAT_LEASE_SECONDS = 40;
/** A request starts no new send after this; the scheduled run finishes what is left. */
export const REQUEST_BUDGET_MS = 3_000;
/** Of a scheduled function's 30 s. */
export const SCHEDULED_BUDGET_MS = 20_000;
/** Teams a scheduled run looks at. */
export const SCHEDULED_LIMIT = 100;
/** After a failed send, the scheduled run waits this long, doubled per further failure. */
export const RETRY_AFTER_FAILURE_SECONDS = 30;
/** A 429: wait 250 ms, 500 ms, 1 s, … before the next send. */
export const RATE_LIMIT_BASE_DELAY_MS = 250;
/** A 5xx or a lost connection: the next send (with a key of its own) after this. */
export const SERVER_ERROR_DELAY_MS = 100;
/** The synthetic event an update's answer is applied as (see applySnapshot). */
export const SEAT_EVENT_TYPE = 'seats.subscription';

export interface SeatsView {
  /** The quantity Stripe last reported (null before it reported any). */
  billed: number | null;
  members: number;
}

/** The per-seat plans' minimums by product: how the database's seat functions know them. */
export function seatPlanMins(catalog: Catalog | null): SeatPlanMins {
  return Object.fromEntries((catalog?.plans ?? []).flatMap((plan) => (plan.seats ? [[plan.productId, plan.seats.min]] : [])));
}

/** The key of a quantity update: one per membership version; a further send for the same
 *  version (Stripe keeps a 500 under its key, and a drifted quantity needs a real update)
 *  gets a suffix. */
export function seatIdempotencyKey(subscriptionId: string, version: number, send: number): string {
  const key = `billing-seats-${subscriptionId}-v${version}`;
  return send > 1 ? `${key}-${send}` : key;
}

/** Checkout's quantity: a team buying a per-seat plan starts with its members (at least
 *  the plan's minimum); a user buying it for themselves, and any other plan, with one. */
export function seatsAtCheckout(plan: Plan | null, subject: Subject): number {
  return plan?.seats && subject.team ? Math.max(subject.team.members, plan.seats.min) : 1;
}

// Syncing one team ---------------------------------------------------------------------

export interface SeatSyncDeps {
  stripe: StripeLoader;
  store: BillingStore;
  /** What this backend sells; its catalog says which plans are per seat. */
  scope: ProductScope;
  /** The key's mode, recorded on the synthetic events. */
  livemode: boolean;
}

export interface SeatSyncOptions {
  /** Who syncs (a request or run id), for the lease. */
  holder: string;
  /** No new send is started after this long. */
  budgetMs: number;
  now?: () => Date;
  sleep?: (ms: number) => Promise<void>;
}

/** 'busy': another holder is sending; it sends this change too. 'unfinished': out of
 *  budget, the lease let go for the scheduled run. */
export type SeatSyncResult = 'matched' | 'updated' | 'busy' | 'unfinished' | 'not per seat';

export interface SeatSync {
  result: SeatSyncResult;
  /** The seats as the last claim read them (after the last update was applied). */
  state: SeatState;
  /** Quantity updates Stripe accepted. */
  updates: number;
  /** Sends tried again after a 429 or a server error. */
  retries: number;
}

const defaultSleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

type Transient = 'rate limit' | 'server';

/** Worth another send: Stripe's 429, a 409 (a concurrent request on the object), a 5xx,
 *  or no answer. Anything else (a 400) will not get better by itself. */
function transient(error: unknown): Transient | null {
  if (!(error instanceof Error)) return null;
  const type = 'type' in error ? error.type : undefined;
  const statusCode = 'statusCode' in error ? error.statusCode : undefined;
  if (type === 'StripeRateLimitError' || statusCode === 429) return 'rate limit';
  if (type === 'StripeConnectionError' || type === 'StripeAPIError') return 'server';
  return typeof statusCode === 'number' && (statusCode >= 500 || statusCode === 409) ? 'server' : null;
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/**
 * Makes Stripe's quantity the team's wanted seats, if this caller gets the lease; else
 * leaves it to the holder. Throws what Stripe or the store threw once it gives up (the
 * failure recorded, the lease let go).
 */
export async function syncTeamSeats(deps: SeatSyncDeps, teamId: string, options: SeatSyncOptions): Promise<SeatSync> {
  const now = options.now ?? (() => new Date());
  const sleep = options.sleep ?? defaultSleep;
  const plans = seatPlanMins(deps.scope.catalog);
  const started = performance.now();
  let updates = 0;
  let retries = 0;
  let itemRead = false;
  // The last send's failure, while no send has succeeded since: out of time, it is the answer.
  let failure: Error | null = null;
  const done = (result: SeatSyncResult, state: SeatState): SeatSync => ({ result, state, updates, retries });

  for (;;) {
    const state = await deps.store.seatClaim({ team: teamId, holder: options.holder, leaseSeconds: SEAT_LEASE_SECONDS, plans });
    if (!state.perSeat) return done('not per seat', state);
    if (state.billed === state.wanted) return done(updates > 0 ? 'updated' : 'matched', state);
    const { subscriptionId, wanted, send } = state;
    if (!state.claimed || subscriptionId === null || wanted === null || send === null) return done('busy', state);

    const release = (failed: { error: string; retrySeconds: number } | null) => deps.store.seatRelease(subscriptionId, options.holder, failed);
    try {
      if (performance.now() - started > options.budgetMs) {
        if (failure !== null) throw failure;
        await release(null);
        return done('unfinished', state);
      }
      const stripe = await deps.stripe();
      if (state.itemId === null) {
        // A subscription stored before its item was: Stripe says which it is.
        if (itemRead) throw new Error(`subscription ${subscriptionId} has no item of a per-seat plan`);
        itemRead = true;
        const fetchedAt = now();
        await applySnapshot(deps, await stripe.subscriptions.retrieve(subscriptionId), fetchedAt);
        continue;
      }
      const proration = planOfProduct(deps.scope.catalog, state.productId)?.seats?.proration ?? 'create_prorations';
      const fetchedAt = now();
      let updated: Stripe.Subscription;
      try {
        updated = await stripe.subscriptions.update(
          subscriptionId,
          { items: [{ id: state.itemId, quantity: wanted }], proration_behavior: proration },
          { idempotencyKey: seatIdempotencyKey(subscriptionId, state.version, send) },
        );
      } catch (error) {
        const kind = transient(error);
        const delay = kind === 'rate limit' ? RATE_LIMIT_BASE_DELAY_MS * 2 ** retries : SERVER_ERROR_DELAY_MS;
        if (kind === null || !(error instanceof Error) || performance.now() - started + delay > options.budgetMs) throw error;
        failure = error;
        retries += 1;
        await sleep(delay);
        continue; // the next claim keeps the lease and numbers the next send
      }
      failure = null;
      updates += 1;
      await applySnapshot(deps, updated, fetchedAt);
    } catch (error) {
      // The lease would run out by itself; letting go now lets the scheduled run retry sooner.
      await release({ error: messageOf(error), retrySeconds: RETRY_AFTER_FAILURE_SECONDS }).catch(() => {});
      throw error;
    }
  }
}

/** Stripe's answer is the subscription as of after the update: applied through the
 *  webhook's forward-only write, ordered the second before the request (as sync and the
 *  reconcile do), so that the stored quantity is the billed one before the webhook comes
 *  and any event of a later change wins. */
async function applySnapshot(deps: SeatSyncDeps, subscription: Stripe.Subscription, fetchedAt: Date): Promise<void> {
  await deps.store.applyEvent({
    id: `seats_${subscription.id}_${fetchedAt.getTime()}`,
    type: SEAT_EVENT_TYPE,
    created: Math.floor(fetchedAt.getTime() / 1000) - 1,
    livemode: deps.livemode,
    apiVersion: null,
    change: { kind: 'subscription', subscription: snapshotOf(readSubscription(subscription), deps.scope) },
  });
}

// POST /api/stripe/seats ------------------------------------------------------------------

export interface SeatsDeps {
  config: SeatsConfig;
  stripe: StripeLoader;
  store: BillingStore;
}

/** The body: `{"team": "<uuid>"}`. */
export function parseSeatsBody(text: string): string {
  const team = teamIdFrom(jsonObjectBody(text)['team']);
  if (team === null) throw new InvalidRequestError('Invalid team');
  return team;
}

/** For any member of the team: its seats now, Stripe's quantity set first if it differs
 *  (or left to whoever is setting it). No Stripe call when it already matches. */
export async function updateSeats(deps: SeatsDeps, user: AuthUser, teamId: string, holder: string): Promise<{ seats: SeatsView; sync: SeatSync }> {
  await openSubject(deps.store, user, { team: teamId, need: 'member', action: 'seats' });
  const sync = await syncTeamSeats(
    { stripe: deps.stripe, store: deps.store, scope: deps.config.scope, livemode: deps.config.stripe.mode === 'live' },
    teamId,
    { holder, budgetMs: REQUEST_BUDGET_MS },
  );
  if (sync.result === 'not per seat') throw new NoPerSeatSubscriptionError();
  return { seats: { billed: sync.state.billed, members: sync.state.members }, sync };
}

// What was missed: the scheduled run, and the reconcile ----------------------------------

// A type alias, not an interface: the scheduled function logs it flat.
export type SeatSyncSummary = {
  /** 'paused': out of budget, the next run goes on. 'failed': a team's send failed. */
  status: 'done' | 'paused' | 'failed';
  /** Teams whose quantity differed. */
  due: number;
  updated: number;
  /** Right by the time their turn came (another holder, a webhook). */
  matched: number;
  busy: number;
  failed: number;
  updates: number;
  /** The first failure's message, for the log line. */
  error: string | null;
};

/** Syncs the teams whose quantity is not their wanted one: all of them (the scheduled
 *  run), or those of these subscriptions (the reconcile, after reading them). */
export async function syncDueSeats(
  deps: SeatSyncDeps,
  options: { holder: string; budgetMs?: number; subscriptions?: readonly string[]; limit?: number },
): Promise<SeatSyncSummary> {
  const summary: SeatSyncSummary = { status: 'done', due: 0, updated: 0, matched: 0, busy: 0, failed: 0, updates: 0, error: null };
  const plans = seatPlanMins(deps.scope.catalog);
  if (Object.keys(plans).length === 0 || options.subscriptions?.length === 0) return summary;
  const budgetMs = options.budgetMs ?? SCHEDULED_BUDGET_MS;
  const started = performance.now();
  const teams = await deps.store.seatsDue({
    plans,
    subscriptions: options.subscriptions ?? null,
    limit: options.limit ?? options.subscriptions?.length ?? SCHEDULED_LIMIT,
  });
  summary.due = teams.length;
  for (const team of teams) {
    const left = budgetMs - (performance.now() - started);
    if (left <= 0) {
      summary.status = 'paused';
      break;
    }
    try {
      const sync = await syncTeamSeats(deps, team, { holder: options.holder, budgetMs: Math.min(left, REQUEST_BUDGET_MS) });
      summary.updates += sync.updates;
      if (sync.result === 'updated') summary.updated += 1;
      else if (sync.result === 'busy') summary.busy += 1;
      else if (sync.result === 'unfinished') summary.status = 'paused';
      else summary.matched += 1;
    } catch (error) {
      summary.failed += 1;
      summary.error ??= `team ${team}: ${messageOf(error)}`;
    }
  }
  if (summary.failed > 0) summary.status = 'failed';
  return summary;
}
