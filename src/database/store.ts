// The product's record of billing, in Supabase (PostgREST in front of Postgres).
// All writes go through SQL functions (supabase/migrations) so that each one is a
// single atomic statement; this file only calls them and shapes what they return.

import { PostgrestClient } from '@supabase/postgrest-js';
import type { StoreConfig } from '../config/config.ts';
import type { BillingAccountRow, Database, Json } from './database.types.ts';
import type { AccessDecision, AccessFacts, AccessReason, SubscriptionStatus } from './access.ts';
import { USAGE_STATES, type LimitView, type OverageView, type UsageState, type UsageView } from '../usage/view.ts';
import { nodeFetch } from '../core/node-fetch.ts';

/** Per database call; a slow database must not hold a function until Netlify kills it. */
export const STORE_TIMEOUT_MS = 5_000;

export interface LastPayment {
  status: PaymentOutcome;
  at: string;
  /** Minor units of `currency`. */
  amount: number | null;
  currency: string | null;
  invoiceUrl: string | null;
  nextPaymentAttempt: string | null;
}

export interface StoredSubscription extends AccessFacts {
  stripeSubscriptionId: string;
  priceId: string | null;
  productId: string | null;
  /** The item's quantity as Stripe last reported it: a per-seat plan's billed seats. */
  quantity: number | null;
  trialEnd: string | null;
  lastPayment: LastPayment | null;
  /** The catalog plan of its product (null without a catalog, or for another price). */
  plan: string | null;
  interval: string | null;
  /** The plan's features, or Stripe's newer entitlement summary; whether the user has
   *  them now is the database's to say (RequestContext's decision). */
  features: string[];
  /** What a subscription schedule will change next (a downgrade at the period's end). */
  scheduledChange: { priceId: string; plan: string | null; interval: string | null; at: string } | null;
}

export interface BillingAccount {
  userId: string;
  /** The user's Stripe customer, if one was created or linked and still exists. */
  stripeCustomerId: string | null;
  /** A customer of theirs that was deleted in Stripe; the next one is created after it. */
  deletedCustomerId: string | null;
  /** The subscription that matters now: a live one if any, else the newest. */
  subscription: StoredSubscription | null;
  /** Whether any subscription of theirs to this product ever had a trial. */
  hadTrial: boolean;
}

/** A subscription as an event showed it. Times are ISO 8601 strings. */
// Type aliases, not interfaces, so they are assignable to Json (the RPC argument).
export type SubscriptionSnapshot = {
  id: string;
  customer_id: string;
  /** From the subscription's metadata.userId, when it is a valid user id and no team's;
   *  otherwise the customer's link says whose it is. */
  user_id: string | null;
  /** Who bought it: metadata.userId, for a team's subscription too. */
  buyer_id: string | null;
  status: SubscriptionStatus;
  price_id: string | null;
  product_id: string | null;
  quantity: number | null;
  /** The id of that item (of this product's item, when there is one): what a quantity
   *  update names. Absent in snapshots made before it was read. */
  item_id?: string | null;
  /** Whether it is a subscription to what this backend sells (product-scope.ts); only
   *  such a subscription is the user's subscription here. */
  for_this_product: boolean;
  current_period_start: string | null;
  current_period_end: string | null;
  cancel_at_period_end: boolean;
  cancel_at: string | null;
  canceled_at: string | null;
  ended_at: string | null;
  trial_start: string | null;
  trial_end: string | null;
  created: string;
};

export type PaymentOutcome = 'paid' | 'failed' | 'action_required';

export type InvoiceOutcome = {
  id: string;
  customer_id: string;
  subscription_id: string;
  outcome: PaymentOutcome;
  /** Minor units: amount paid for a payment, amount due for a failure. */
  amount: number;
  currency: string;
  hosted_invoice_url: string | null;
  next_payment_attempt: string | null;
};

/** What one Stripe event changes, reduced to what we store. Built by events/reduce.ts;
 *  applied by billing_apply_event (supabase/migrations). */
export type StateChange =
  /** user_id: the subject (a user, or with `team` a team whose stored customer it must be). */
  | { kind: 'checkout_completed'; user_id: string; customer_id: string; subscription_id: string; email: string | null; team?: boolean }
  | { kind: 'subscription'; subscription: SubscriptionSnapshot }
  | { kind: 'invoice'; invoice: InvoiceOutcome }
  | { kind: 'trial_will_end'; subscription_id: string; customer_id: string }
  | { kind: 'customer_deleted'; customer_id: string }
  /** Stripe's list of the customer's active features (their lookup keys). */
  | { kind: 'entitlements'; customer_id: string; features: string[] }
  | { kind: 'schedule'; schedule: ScheduledChange };

/** What a subscription schedule will change next: the price from a time (ISO 8601);
 *  both null when it will change nothing (released, canceled, completed, or its last phase). */
export type ScheduledChange = {
  schedule_id: string;
  subscription_id: string;
  customer_id: string;
  status: string;
  next_price_id: string | null;
  next_change_at: string | null;
};

/** A verified event, as recorded in stripe_events whatever becomes of it. */
export interface EventReceipt {
  id: string;
  type: string;
  created: number;
  livemode: boolean;
  /** The API version the event was rendered in; null for our own synthetic events. */
  apiVersion: string | null;
  /** The Stripe customer it is about, when its object names one. */
  customerId: string | null;
}

/** The database finds the customer in the change itself. */
export interface EventToApply extends Omit<EventReceipt, 'customerId'> {
  change: StateChange;
}

/** 'duplicate': the event id was processed before, and nothing was written now.
 *  'skipped': the database refused it on purpose; `reason` says why. */
export type ApplyOutcome = 'applied' | 'stale' | 'ignored' | 'duplicate' | 'skipped';

export interface ApplyResult {
  outcome: ApplyOutcome;
  reason?: string;
}

export interface BillingStore {
  getAccount(userId: string): Promise<BillingAccount | null>;
  /** Stores the user's customer unless one is stored already; returns the stored one. */
  linkCustomer(userId: string, stripeCustomerId: string, email: string | undefined): Promise<string>;
  applyEvent(event: EventToApply): Promise<ApplyResult>;
  /** Records a verified event that was not applied, with why: 'skipped' (not ours to
   *  act on) or 'failed' (for a replay: a later apply of the same id still applies it,
   *  once). Returns the outcome now on record ('applied' if it was applied before). */
  recordEvent(event: EventReceipt, outcome: 'skipped' | 'failed', reason: string, options?: { timeoutMs?: number }): Promise<string>;
  /** What an endpoint needs before it calls Stripe, in one round trip: see RequestContext. */
  requestContext(query: ContextQuery): Promise<RequestContext>;
  /** Records that the buyer's checkout for the subject offers a trial for `seconds`; false
   *  (offer none) while an offer of theirs for another subject is open. */
  offerTrial(buyerId: string, subjectId: string, seconds: number): Promise<boolean>;
  /** Of these event ids, those the ledger holds as done (anything but failed). */
  knownEventIds(ids: readonly string[]): Promise<Set<string>>;
  listEvents(filter: EventFilter): Promise<RecordedEvent[]>;
  /** Takes a scheduled job's lease; its saved state, or null while another run holds it. */
  acquireJob(name: string, holder: string, leaseSeconds: number): Promise<Json | null>;
  /** Saves the job's state (and summary); `release` ends the lease. False if the lease was lost. */
  saveJob(name: string, holder: string, state: Json, summary: Json | null, release: boolean): Promise<boolean>;
  /** The catalog as it is in Stripe (billing:setup): plans, their features, price ids. */
  syncCatalog(catalog: StoredCatalog): Promise<void>;
  /** billing:forget: the team customers that may hold a purchase of the user's. */
  teamCustomersOf(userId: string): Promise<TeamCustomer[]>;
  /** billing:forget: clears the email stored on the team's link when it is one of
   *  `emails` (compared without case); true when it did. */
  clearTeamEmail(teamId: string, customerId: string, emails: readonly string[]): Promise<boolean>;
  /** A team's seats, and the lease to update them when Stripe's quantity is not the
   *  wanted one (see billing_seat_claim); a holder's lease ends when it is. */
  seatClaim(query: SeatClaimQuery): Promise<SeatState>;
  /** Ends the holder's lease before the quantity is right; with an error, a failure the
   *  scheduled run retries after a backoff. */
  seatRelease(subscriptionId: string, holder: string, failure: { error: string; retrySeconds: number } | null): Promise<void>;
  /** Teams whose per-seat quantity is not their wanted one, not leased, not backing off. */
  seatsDue(query: { plans: SeatPlanMins; subscriptions: readonly string[] | null; limit: number }): Promise<string[]>;
  /** Usage upkeep (billing_usage_fold): idempotency keys older than 48 hours into the
   *  hourly totals; hours past 35 days and windows nothing reads any more removed. */
  foldUsage(): Promise<UsageFold>;
}

/** What one billing_usage_fold did. */
export type UsageFold = { keysFolded: number; hoursRemoved: number; windowsRemoved: number };

/** A team's Stripe customer where a user bought, or may have started a checkout. */
export interface TeamCustomer {
  teamId: string;
  customerId: string;
  /** The email on the team's link (its first buyer's); null once cleared, or when the
   *  link is gone (the customer deleted). */
  storedEmail: string | null;
}

/** The per-seat plans, by Stripe product id: their minimum number of seats. */
export type SeatPlanMins = { [productId: string]: number };

export interface SeatClaimQuery {
  team: string;
  holder: string;
  leaseSeconds: number;
  plans: SeatPlanMins;
}

export interface SeatState {
  /** The team's subscription that matters, if any. */
  subscriptionId: string | null;
  /** Its product (which plan, so which proration). */
  productId: string | null;
  /** Its item of our product, when known. */
  itemId: string | null;
  /** A live subscription of a per-seat plan. Everything below the members is for it. */
  perSeat: boolean;
  /** The quantity Stripe last reported. */
  billed: number | null;
  members: number;
  /** max(members, the plan's minimum); null when not per seat. */
  wanted: number | null;
  /** The team's membership version. */
  version: number;
  /** Whether the caller holds the lease to send `wanted` now. */
  claimed: boolean;
  /** Which send for this version it is (1 for the first): the idempotency key's suffix. */
  send: number | null;
}

export interface ContextQuery {
  /** The signed-in user. */
  caller: string;
  /** The team they act for; null for their own billing. */
  team: string | null;
  /** Count this request against the caller's limit for the action. */
  limit?: { action: string; limit: number; windowSeconds: number };
  /** For sync: also say whose customer this event was applied for. */
  eventId?: string;
  /** For checkout: the plan bought (its key) and whether it offers a trial; the context
   *  then says which of its limits, or its trial's, the subject already passes. */
  plan?: { key: string; trial: boolean };
}

export type TeamRole = 'owner' | 'admin' | 'member';

export interface RequestContext {
  /** Past the caller's request limit: the seconds until its window ends (nothing else is read). */
  retryAfter: number;
  /** The caller's role in the team; null for their own billing, or when they are not a member. */
  role: TeamRole | null;
  /** The team's member count (null for a user's own billing). */
  members: number | null;
  /** The subject's account: the team's, or the caller's own. */
  account: BillingAccount | null;
  /** The database's access decision for the subject now. */
  decision: AccessDecision;
  /** The subject's limits and meters, per key the catalog declares; null when it declares none. */
  limits: Record<string, LimitView> | null;
  usage: Record<string, UsageView> | null;
  /** Whether the caller ever bought a trial, for themselves or for a team. */
  callerHadTrial: boolean;
  /** The subject whose customer `eventId` was applied for, if it was. */
  eventSubject: string | null;
  /** For a checkout (ContextQuery's plan): the limit keys the subject's counts already pass. */
  exceededLimits: ExceededLimits;
}

/** Limit keys the subject's counts pass (sorted by key): on the plan, and in its trial,
 *  whose own limits apply first (none when it offers no trial). The database decides
 *  (billing_exceeded_limits). */
export interface ExceededLimits {
  plan: string[];
  trial: string[];
}

export interface EventFilter {
  outcome?: string;
  type?: string;
  /** ISO 8601; events created at or after. */
  since?: string;
  customerIds?: readonly string[];
  limit: number;
}

/** A row of the event inbox (stripe_events). */
export interface RecordedEvent {
  id: string;
  type: string;
  apiVersion: string | null;
  created: string;
  firstReceivedAt: string;
  lastReceivedAt: string;
  attempts: number;
  outcome: string;
  reason: string | null;
  customerId: string | null;
}

type StoredLimits = Record<string, number | null>;
type StoredMeters = Record<
  string,
  {
    included: number;
    overage: string;
    marginPercent?: number;
    windowsOver?: number;
    graceDays?: number;
    /** A billed meter's price (amount per package of `per` units); lookupKeys are not read. */
    price?: { amount: number; currency: string; per: number; lookupKeys: Record<string, string> };
  }
>;

export type StoredCatalog = {
  plans: {
    plan: string;
    product_id: string;
    name: string;
    features: string[];
    limits: StoredLimits;
    trial_limits: StoredLimits;
    usage: StoredMeters;
  }[];
  prices: { price_id: string; plan: string; lookup_key: string; interval: string; amount: number; currency: string }[];
  /** null: no free entry (a subject without access gets 0 of every declared key). */
  free: { limits: StoredLimits; usage: StoredMeters } | null;
};

export class StoreError extends Error {
  constructor(operation: string, detail: string) {
    super(`billing store: ${operation} failed: ${detail}`);
    this.name = 'StoreError';
  }
}


const EVENT_COLUMNS = 'id,type,api_version,stripe_created_at,first_received_at,last_received_at,attempts,outcome,reason,stripe_customer_id';

// One literal, so supabase-js can type the selected row.
const ACCOUNT_COLUMNS =
  'user_id,stripe_customer_id,deleted_customer_id,stripe_subscription_id,status,price_id,product_id,quantity,current_period_start,current_period_end,cancel_at_period_end,trial_end,payment_failed_at,last_payment_status,last_payment_at,last_payment_amount,last_payment_currency,hosted_invoice_url,next_payment_attempt,plan,price_interval,features,had_trial,scheduled_price_id,scheduled_change_at,scheduled_plan,scheduled_interval';

const APPLY_OUTCOMES: readonly unknown[] = ['applied', 'stale', 'ignored', 'duplicate', 'skipped'] satisfies ApplyOutcome[];

function toApplyResult(value: unknown): ApplyResult | null {
  if (typeof value !== 'object' || value === null) return null;
  const { outcome, reason } = value as Record<string, unknown>;
  if (!APPLY_OUTCOMES.includes(outcome)) return null;
  return { outcome: outcome as ApplyOutcome, ...(typeof reason === 'string' && { reason }) };
}

/** The database through PostgREST, as the service role. fetchImpl: node:http by default
 *  (src/core/node-fetch.ts: a cold start skips loading undici's client). */
export function createDatabaseClient(config: StoreConfig, fetchImpl: typeof fetch = nodeFetch): PostgrestClient<Database> {
  // supabase-js's database client, on its own: createClient() would also load the auth,
  // storage, realtime and functions clients (about 1 MB) on every cold start, and a
  // service-role server needs none of them. It talks to <SUPABASE_URL>/rest/v1 with the
  // same headers supabase-js sends.
  return new PostgrestClient<Database>(config.restUrl.href, {
    headers: { apikey: config.serviceRoleKey, Authorization: `Bearer ${config.serviceRoleKey}` },
    // postgrest-js retries reads for up to 7 s (1 s, 2 s, 4 s); a function has 10 s in
    // all, so fail fast and let the dashboard, or Stripe's redelivery, try again.
    retry: false,
    fetch: (input, init) => fetchImpl(input, { ...init, signal: init?.signal ?? AbortSignal.timeout(STORE_TIMEOUT_MS) }),
  });
}

/** fetchImpl: node:http by default (src/core/node-fetch.ts: a cold start skips loading undici's client). */
export function createStore(config: StoreConfig, fetchImpl: typeof fetch = nodeFetch): BillingStore {
  const db = createDatabaseClient(config, fetchImpl);

  return {
    async getAccount(userId) {
      const { data, error } = await db
        .from('billing_accounts')
        .select(ACCOUNT_COLUMNS)
        .eq('user_id', userId)
        .maybeSingle();
      if (error) throw new StoreError('getAccount', error.message);
      return data ? toAccount(data) : null;
    },

    async linkCustomer(userId, stripeCustomerId, email) {
      const { data, error } = await db.rpc('billing_link_customer', {
        p_user_id: userId,
        p_stripe_customer_id: stripeCustomerId,
        p_email: email ?? null,
      });
      if (error) throw new StoreError('linkCustomer', error.message);
      if (typeof data !== 'string') throw new StoreError('linkCustomer', 'no customer id returned');
      return data;
    },

    async applyEvent(event) {
      const change = event.change;
      // Entitlement summaries and schedules have functions of their own (20261201100000);
      // a subscription's snapshot also carries its item (20261204300000).
      const { data, error } = change.kind === 'entitlements'
        ? await db.rpc('billing_apply_entitlements', {
          ...eventArgs(event),
          p_customer_id: change.customer_id,
          p_features: change.features,
        })
        : await db.rpc(change.kind === 'schedule' ? 'billing_apply_schedule' : change.kind === 'subscription' ? 'billing_apply_subscription_event' : 'billing_apply_event', {
          ...eventArgs(event),
          p_change: event.change satisfies Json,
        });
      if (error) throw new StoreError('applyEvent', error.message);
      const result = toApplyResult(data);
      if (!result) throw new StoreError('applyEvent', `unexpected outcome ${JSON.stringify(data)}`);
      return result;
    },

    async recordEvent(event, outcome, reason, options = {}) {
      const call = db.rpc('billing_record_event', {
        ...eventArgs(event),
        p_customer_id: event.customerId,
        p_outcome: outcome,
        p_reason: reason,
      });
      const { data, error } = await (options.timeoutMs === undefined ? call : call.abortSignal(AbortSignal.timeout(options.timeoutMs)));
      if (error) throw new StoreError('recordEvent', error.message);
      if (typeof data !== 'string') throw new StoreError('recordEvent', 'no outcome returned');
      return data;
    },

    async requestContext(query) {
      const { data, error } = await db.rpc('billing_request_context', {
        p_caller: query.caller,
        p_team: query.team,
        p_action: query.limit?.action ?? null,
        p_limit: query.limit?.limit ?? null,
        p_window_seconds: query.limit?.windowSeconds ?? null,
        p_event_id: query.eventId ?? null,
        ...(query.plan && { p_plan: query.plan.key, p_plan_trial: query.plan.trial }),
      });
      if (error) throw new StoreError('requestContext', error.message);
      return toRequestContext(data);
    },

    async offerTrial(buyerId, subjectId, seconds) {
      const { data, error } = await db.rpc('billing_offer_trial', { p_buyer: buyerId, p_subject: subjectId, p_seconds: seconds });
      if (error) throw new StoreError('offerTrial', error.message);
      return data === true;
    },

    async knownEventIds(ids) {
      if (ids.length === 0) return new Set();
      const { data, error } = await db.rpc('billing_events_known', { p_event_ids: [...ids] });
      if (error) throw new StoreError('knownEventIds', error.message);
      return new Set((data ?? []).map(String));
    },

    async listEvents(filter) {
      let q = db.from('stripe_events').select(EVENT_COLUMNS);
      if (filter.outcome) q = q.eq('outcome', filter.outcome);
      if (filter.type) q = q.eq('type', filter.type);
      if (filter.since) q = q.gte('stripe_created_at', filter.since);
      if (filter.customerIds) q = q.in('stripe_customer_id', [...filter.customerIds]);
      const { data, error } = await q.order('stripe_created_at', { ascending: false }).order('id').limit(filter.limit);
      if (error) throw new StoreError('listEvents', error.message);
      return data.map(
        (row): RecordedEvent => ({
          id: row.id,
          type: row.type,
          apiVersion: row.api_version,
          created: new Date(row.stripe_created_at).toISOString(),
          firstReceivedAt: new Date(row.first_received_at).toISOString(),
          lastReceivedAt: new Date(row.last_received_at).toISOString(),
          attempts: row.attempts,
          outcome: row.outcome,
          reason: row.reason,
          customerId: row.stripe_customer_id,
        }),
      );
    },

    async acquireJob(name, holder, leaseSeconds) {
      const { data, error } = await db.rpc('billing_job_acquire', { p_name: name, p_holder: holder, p_lease_seconds: leaseSeconds });
      if (error) throw new StoreError('acquireJob', error.message);
      return data ?? null;
    },

    async saveJob(name, holder, state, summary, release) {
      const { data, error } = await db.rpc('billing_job_save', { p_name: name, p_holder: holder, p_state: state, p_summary: summary, p_release: release });
      if (error) throw new StoreError('saveJob', error.message);
      return data === true;
    },

    async syncCatalog(catalog) {
      const { error } = await db.rpc('billing_sync_catalog', { p_catalog: catalog satisfies Json });
      if (error) throw new StoreError('syncCatalog', error.message);
    },

    async teamCustomersOf(userId) {
      const { data, error } = await db.rpc('billing_forget_team_customers', { p_user: userId });
      if (error) throw new StoreError('teamCustomersOf', error.message);
      if (!Array.isArray(data)) throw new StoreError('teamCustomersOf', 'no list returned');
      return data.map((row) => {
        const { team_id: teamId, customer_id: customerId, email } = (row ?? {}) as Record<string, unknown>;
        if (typeof teamId !== 'string' || typeof customerId !== 'string') throw new StoreError('teamCustomersOf', `unexpected row ${JSON.stringify(row)}`);
        return { teamId, customerId, storedEmail: typeof email === 'string' ? email : null };
      });
    },

    async clearTeamEmail(teamId, customerId, emails) {
      const { data, error } = await db.rpc('billing_forget_team_email', { p_team: teamId, p_customer: customerId, p_emails: [...emails] });
      if (error) throw new StoreError('clearTeamEmail', error.message);
      return data === true;
    },
    async seatClaim(query) {
      const { data, error } = await db.rpc('billing_seat_claim', {
        p_team: query.team,
        p_holder: query.holder,
        p_lease_seconds: query.leaseSeconds,
        p_plans: query.plans satisfies Json,
      });
      if (error) throw new StoreError('seatClaim', error.message);
      return toSeatState(data);
    },

    async seatRelease(subscriptionId, holder, failure) {
      const { error } = await db.rpc('billing_seat_release', {
        p_subscription: subscriptionId,
        p_holder: holder,
        p_error: failure?.error ?? null,
        p_retry_seconds: failure?.retrySeconds ?? 0,
      });
      if (error) throw new StoreError('seatRelease', error.message);
    },

    async foldUsage() {
      const { data, error } = await db.rpc('billing_usage_fold', {});
      if (error) throw new StoreError('foldUsage', error.message);
      const row = typeof data === 'object' && data !== null && !Array.isArray(data) ? data : {};
      return { keysFolded: Number(row['keys_folded']), hoursRemoved: Number(row['hours_removed']), windowsRemoved: Number(row['windows_removed']) };
    },

    async seatsDue(query) {
      const { data, error } = await db.rpc('billing_seats_due', {
        p_plans: query.plans satisfies Json,
        p_subscriptions: query.subscriptions && [...query.subscriptions],
        p_limit: query.limit,
      });
      if (error) throw new StoreError('seatsDue', error.message);
      return (data ?? []).map(String);
    },
  };
}

function toSeatState(value: unknown): SeatState {
  if (typeof value !== 'object' || value === null) throw new StoreError('seatClaim', 'no state returned');
  const row = value as Record<string, unknown>;
  const text = (key: string) => (typeof row[key] === 'string' ? row[key] : null);
  const count = (key: string) => (typeof row[key] === 'number' ? row[key] : null);
  return {
    subscriptionId: text('subscription_id'),
    productId: text('product_id'),
    itemId: text('item_id'),
    perSeat: row['per_seat'] === true,
    billed: count('billed'),
    members: count('members') ?? 0,
    wanted: count('wanted'),
    version: count('version') ?? 0,
    claimed: row['claimed'] === true,
    send: count('send'),
  };
}

/** The arguments every SQL function that records an event starts with. */
export function eventArgs(event: Omit<EventReceipt, 'customerId'>) {
  return {
    p_event_id: event.id,
    p_event_type: event.type,
    p_event_created: new Date(event.created * 1000).toISOString(),
    p_livemode: event.livemode,
    p_api_version: event.apiVersion,
  };
}

const TEAM_ROLES: readonly unknown[] = ['owner', 'admin', 'member'] satisfies TeamRole[];

function toRequestContext(value: unknown): RequestContext {
  if (typeof value !== 'object' || value === null) throw new StoreError('requestContext', 'no context returned');
  const row = value as Record<string, unknown>;
  const retryAfter = typeof row['retry_after'] === 'number' ? row['retry_after'] : 0;
  const role = TEAM_ROLES.includes(row['role']) ? (row['role'] as TeamRole) : null;
  const account = row['account'];
  return {
    retryAfter,
    role,
    members: typeof row['members'] === 'number' ? row['members'] : null,
    account: typeof account === 'object' && account !== null ? toAccount(account as BillingAccountRow) : null,
    decision: toDecision(row['decision']),
    limits: toLimitViews(row['limits']),
    usage: toUsageViews(row['usage']),
    callerHadTrial: row['caller_had_trial'] === true,
    eventSubject: typeof row['event_subject'] === 'string' ? row['event_subject'] : null,
    exceededLimits: toExceededLimits(row['exceeded_limits']),
  };
}

const keysOf = (value: unknown): string[] => (Array.isArray(value) ? value.filter((k): k is string => typeof k === 'string') : []);

/** The `exceeded_limits` of billing_request_context (absent without a plan: none). */
function toExceededLimits(value: unknown): ExceededLimits {
  if (!isRecord(value)) return { plan: [], trial: [] };
  return { plan: keysOf(value['plan']), trial: keysOf(value['trial']) };
}

const NO_DECISION: AccessDecision = { access: false, reason: 'no_subscription', graceUntil: null, features: [] };

/** The `decision` of billing_request_context (absent when it stopped early: no access). */
function toDecision(value: unknown): AccessDecision {
  if (typeof value !== 'object' || value === null) return NO_DECISION;
  const row = value as Record<string, unknown>;
  const features = row['features'];
  return {
    access: row['access'] === true,
    reason: typeof row['reason'] === 'string' ? (row['reason'] as AccessReason) : 'no_subscription',
    graceUntil: typeof row['grace_until'] === 'string' ? row['grace_until'] : null,
    features: Array.isArray(features) ? features.filter((f): f is string => typeof f === 'string') : [],
  };
}

const isRecord = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value);
const numberOrNull = (value: unknown): number | null => (typeof value === 'number' ? value : null);
const stringOrNull = (value: unknown): string | null => (typeof value === 'string' ? value : null);

function toLimitViews(value: unknown): Record<string, LimitView> | null {
  if (!isRecord(value)) return null;
  const views: Record<string, LimitView> = {};
  for (const [key, raw] of Object.entries(value)) {
    const row = isRecord(raw) ? raw : {};
    views[key] = { limit: numberOrNull(row['limit']), used: numberOrNull(row['used']) };
  }
  return views;
}

function toUsageViews(value: unknown): Record<string, UsageView> | null {
  if (!isRecord(value)) return null;
  const views: Record<string, UsageView> = {};
  for (const [key, raw] of Object.entries(value)) {
    const row = isRecord(raw) ? raw : {};
    const window = isRecord(row['window']) ? row['window'] : {};
    const state = row['state'];
    views[key] = {
      used: numberOrNull(row['used']) ?? 0,
      included: numberOrNull(row['included']),
      window: { start: stringOrNull(window['start']) ?? '', end: stringOrNull(window['end']) ?? '' },
      state: (USAGE_STATES as readonly unknown[]).includes(state) ? (state as UsageState) : 'ok',
      graceEndsAt: stringOrNull(row['grace_ends_at']),
      ...(isRecord(row['overage']) && { overage: toOverageView(row['overage']) }),
    };
  }
  return views;
}

function toOverageView(row: Record<string, unknown>): OverageView {
  return { units: numberOrNull(row['units']) ?? 0, amount: numberOrNull(row['amount']) ?? 0, currency: stringOrNull(row['currency']) ?? '' };
}

function toAccount(row: BillingAccountRow): BillingAccount {
  return {
    userId: row.user_id,
    stripeCustomerId: row.stripe_customer_id,
    deletedCustomerId: row.deleted_customer_id,
    hadTrial: row.had_trial,
    subscription:
      row.stripe_subscription_id && row.status
        ? {
            stripeSubscriptionId: row.stripe_subscription_id,
            status: row.status,
            priceId: row.price_id,
            productId: row.product_id,
            quantity: row.quantity,
            currentPeriodStart: row.current_period_start,
            currentPeriodEnd: row.current_period_end,
            cancelAtPeriodEnd: row.cancel_at_period_end ?? false,
            trialEnd: row.trial_end,
            paymentFailedAt: row.payment_failed_at,
            plan: row.plan,
            interval: row.price_interval,
            features: row.features,
            scheduledChange:
              row.scheduled_price_id && row.scheduled_change_at
                ? { priceId: row.scheduled_price_id, plan: row.scheduled_plan, interval: row.scheduled_interval, at: row.scheduled_change_at }
                : null,
            lastPayment:
              row.last_payment_status && row.last_payment_at
                ? {
                    status: row.last_payment_status,
                    at: row.last_payment_at,
                    amount: row.last_payment_amount,
                    currency: row.last_payment_currency,
                    invoiceUrl: row.hosted_invoice_url,
                    nextPaymentAttempt: row.next_payment_attempt,
                  }
                : null,
          }
        : null,
  };
}
