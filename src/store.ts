// The product's record of billing, in Supabase (PostgREST in front of Postgres).
// All writes go through SQL functions (supabase/migrations) so that each one is a
// single atomic statement; this file only calls them and shapes what they return.

import { PostgrestClient } from '@supabase/postgrest-js';
import type { StoreConfig } from './config.ts';
import type { BillingAccountRow, Database, Json } from './database.types.ts';
import type { AccessFacts, SubscriptionStatus } from './billing/access.ts';
import { nodeFetch } from './node-fetch.ts';

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
  trialEnd: string | null;
  lastPayment: LastPayment | null;
}

export interface BillingAccount {
  userId: string;
  /** The user's Stripe customer, if one was created or linked and still exists. */
  stripeCustomerId: string | null;
  /** A customer of theirs that was deleted in Stripe; the next one is created after it. */
  deletedCustomerId: string | null;
  /** The subscription that matters now: a live one if any, else the newest. */
  subscription: StoredSubscription | null;
}

/** A subscription as an event showed it. Times are ISO 8601 strings. */
// Type aliases, not interfaces, so they are assignable to Json (the RPC argument).
export type SubscriptionSnapshot = {
  id: string;
  customer_id: string;
  /** From the subscription's metadata.userId, when it is a valid user id. */
  user_id: string | null;
  status: SubscriptionStatus;
  price_id: string | null;
  quantity: number | null;
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

/** What one Stripe event changes, reduced to what we store. Built by billing/events.ts;
 *  applied by billing_apply_event (supabase/migrations). */
export type StateChange =
  | { kind: 'checkout_completed'; user_id: string; customer_id: string; subscription_id: string; email: string | null }
  | { kind: 'subscription'; subscription: SubscriptionSnapshot }
  | { kind: 'invoice'; invoice: InvoiceOutcome }
  | { kind: 'trial_will_end'; subscription_id: string; customer_id: string }
  | { kind: 'customer_deleted'; customer_id: string };

export interface EventToApply {
  id: string;
  type: string;
  created: number;
  livemode: boolean;
  change: StateChange;
}

/** 'duplicate': the event id was processed before, and nothing was written now. */
export type ApplyOutcome = 'applied' | 'stale' | 'ignored' | 'duplicate';

export interface BillingStore {
  getAccount(userId: string): Promise<BillingAccount | null>;
  /** Stores the user's customer unless one is stored already; returns the stored one. */
  linkCustomer(userId: string, stripeCustomerId: string, email: string | undefined): Promise<string>;
  applyEvent(event: EventToApply): Promise<ApplyOutcome>;
}

export class StoreError extends Error {
  constructor(operation: string, detail: string) {
    super(`billing store: ${operation} failed: ${detail}`);
    this.name = 'StoreError';
  }
}


// One literal, so supabase-js can type the selected row.
const ACCOUNT_COLUMNS =
  'user_id,stripe_customer_id,deleted_customer_id,stripe_subscription_id,status,price_id,current_period_start,current_period_end,cancel_at_period_end,trial_end,payment_failed_at,last_payment_status,last_payment_at,last_payment_amount,last_payment_currency,hosted_invoice_url,next_payment_attempt';

const APPLY_OUTCOMES: readonly unknown[] = ['applied', 'stale', 'ignored', 'duplicate'] satisfies ApplyOutcome[];

function isApplyOutcome(value: unknown): value is ApplyOutcome {
  return APPLY_OUTCOMES.includes(value);
}

/** fetchImpl: node:http by default (src/node-fetch.ts: a cold start skips loading undici's client). */
export function createStore(config: StoreConfig, fetchImpl: typeof fetch = nodeFetch): BillingStore {
  // supabase-js's database client, on its own: createClient() would also load the auth,
  // storage, realtime and functions clients (about 1 MB) on every cold start, and a
  // service-role server needs none of them. It talks to <SUPABASE_URL>/rest/v1 with the
  // same headers supabase-js sends.
  const db = new PostgrestClient<Database>(config.restUrl.href, {
    headers: { apikey: config.serviceRoleKey, Authorization: `Bearer ${config.serviceRoleKey}` },
    // postgrest-js retries reads for up to 7 s (1 s, 2 s, 4 s); a function has 10 s in
    // all, so fail fast and let the dashboard, or Stripe's redelivery, try again.
    retry: false,
    fetch: (input, init) => fetchImpl(input, { ...init, signal: init?.signal ?? AbortSignal.timeout(STORE_TIMEOUT_MS) }),
  });

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
      const { data, error } = await db.rpc('billing_apply_event', {
        p_event_id: event.id,
        p_event_type: event.type,
        p_event_created: new Date(event.created * 1000).toISOString(),
        p_livemode: event.livemode,
        p_change: event.change satisfies Json,
      });
      if (error) throw new StoreError('applyEvent', error.message);
      if (!isApplyOutcome(data)) throw new StoreError('applyEvent', `unexpected outcome ${JSON.stringify(data)}`);
      return data;
    },
  };
}

function toAccount(row: BillingAccountRow): BillingAccount {
  return {
    userId: row.user_id,
    stripeCustomerId: row.stripe_customer_id,
    deletedCustomerId: row.deleted_customer_id,
    subscription:
      row.stripe_subscription_id && row.status
        ? {
            stripeSubscriptionId: row.stripe_subscription_id,
            status: row.status,
            priceId: row.price_id,
            currentPeriodStart: row.current_period_start,
            currentPeriodEnd: row.current_period_end,
            cancelAtPeriodEnd: row.cancel_at_period_end ?? false,
            trialEnd: row.trial_end,
            paymentFailedAt: row.payment_failed_at,
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
