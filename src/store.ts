// The product's record of billing, in Supabase (PostgREST in front of Postgres).
// All writes go through SQL functions (supabase/migrations) so that each one is a
// single atomic statement; this file only calls them and shapes what they return.

import { createClient, type SupabaseClient } from '@supabase/supabase-js';
import type { StoreConfig } from './config.ts';
import type { BillingAccountRow, Database, Json } from './database.types.ts';
import type { SubscriptionStatus } from './billing/access.ts';

/** Per database call; a slow database must not hold a function until Netlify kills it. */
export const STORE_TIMEOUT_MS = 5_000;

export interface StoredSubscription {
  stripeSubscriptionId: string;
  status: SubscriptionStatus;
  priceId: string | null;
  currentPeriodEnd: string | null;
  cancelAtPeriodEnd: boolean;
  trialEnd: string | null;
  paymentFailedAt: string | null;
}

export interface BillingAccount {
  userId: string;
  /** The user's Stripe customer, if one was created or linked. */
  stripeCustomerId: string | null;
  /** The subscription that matters now: a live one if any, else the newest. */
  subscription: StoredSubscription | null;
}

/** What one Stripe event changes, reduced to what we store. Built by billing/events.ts. */
export type StateChange =
  | { kind: 'checkout_completed'; user_id: string; customer_id: string; subscription_id: string; email: string | null };

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


const ACCOUNT_COLUMNS =
  'user_id,stripe_customer_id,stripe_subscription_id,status,price_id,current_period_end,cancel_at_period_end,trial_end,payment_failed_at';

const APPLY_OUTCOMES: readonly unknown[] = ['applied', 'stale', 'ignored', 'duplicate'] satisfies ApplyOutcome[];

function isApplyOutcome(value: unknown): value is ApplyOutcome {
  return APPLY_OUTCOMES.includes(value);
}

export function createStore(config: StoreConfig, fetchImpl: typeof fetch = fetch): BillingStore {
  const db: SupabaseClient<Database> = createClient<Database>(config.supabaseUrl.href, config.serviceRoleKey, {
    auth: { persistSession: false, autoRefreshToken: false, detectSessionInUrl: false },
    // postgrest-js retries reads for up to 7 s (1 s, 2 s, 4 s); a function has 10 s in
    // all, so fail fast and let the dashboard, or Stripe's redelivery, try again.
    db: { retry: false },
    global: {
      fetch: (input, init) => fetchImpl(input, { ...init, signal: init?.signal ?? AbortSignal.timeout(STORE_TIMEOUT_MS) }),
    },
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
    subscription:
      row.stripe_subscription_id && row.status
        ? {
            stripeSubscriptionId: row.stripe_subscription_id,
            status: row.status,
            priceId: row.price_id,
            currentPeriodEnd: row.current_period_end,
            cancelAtPeriodEnd: row.cancel_at_period_end ?? false,
            trialEnd: row.trial_end,
            paymentFailedAt: row.payment_failed_at,
          }
        : null,
  };
}
