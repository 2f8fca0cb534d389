// The part of the database schema (supabase/migrations) that this code calls, in the
// shape `supabase gen types typescript` produces, so supabase-js calls are typed.
// Type aliases, not interfaces: supabase-js matches them against index signatures.

import type { SubscriptionStatus } from './access.ts';
import type { PaymentOutcome } from './store.ts';

export type Json = string | number | boolean | null | { [key: string]: Json | undefined } | Json[];

export type BillingAccountRow = {
  user_id: string;
  stripe_customer_id: string | null;
  deleted_customer_id: string | null;
  stripe_subscription_id: string | null;
  status: SubscriptionStatus | null;
  price_id: string | null;
  product_id: string | null;
  /** The subscription item's quantity as Stripe last reported it (a per-seat plan's seats). */
  quantity: number | null;
  current_period_start: string | null;
  current_period_end: string | null;
  cancel_at_period_end: boolean | null;
  trial_end: string | null;
  payment_failed_at: string | null;
  last_payment_status: PaymentOutcome | null;
  last_payment_at: string | null;
  last_payment_amount: number | null;
  last_payment_currency: string | null;
  hosted_invoice_url: string | null;
  next_payment_attempt: string | null;
  plan: string | null;
  price_interval: string | null;
  scheduled_price_id: string | null;
  scheduled_change_at: string | null;
  scheduled_plan: string | null;
  scheduled_interval: string | null;
  features: string[];
  had_trial: boolean;
};

export type StripeEventRow = {
  id: string;
  type: string;
  livemode: boolean;
  api_version: string | null;
  stripe_created_at: string;
  first_received_at: string;
  last_received_at: string;
  attempts: number;
  outcome: string;
  reason: string | null;
  stripe_customer_id: string | null;
  processed_at: string;
};

/** What every function that records a verified event takes first (stripe_events' columns). */
type EventArgs = {
  p_event_id: string;
  p_event_type: string;
  p_event_created: string;
  p_livemode: boolean;
  p_api_version: string | null;
};

export type Database = {
  __InternalSupabase: { PostgrestVersion: '12' };
  public: {
    Tables: {
      stripe_events: { Row: StripeEventRow; Insert: never; Update: never; Relationships: [] };
    };
    Views: {
      billing_accounts: { Row: BillingAccountRow; Relationships: [] };
    };
    Functions: {
      billing_link_customer: {
        Args: { p_user_id: string; p_stripe_customer_id: string; p_email: string | null };
        Returns: string;
      };
      billing_apply_event: { Args: EventArgs & { p_change: Json }; Returns: Json };
      billing_apply_subscription_event: { Args: EventArgs & { p_change: Json }; Returns: Json };
      billing_apply_entitlements: { Args: EventArgs & { p_customer_id: string; p_features: string[] }; Returns: Json };
      billing_sync_catalog: {
        Args: { p_catalog: Json };
        Returns: undefined;
      };
      billing_apply_schedule: { Args: EventArgs & { p_change: Json }; Returns: Json };
      billing_record_event: { Args: EventArgs & { p_customer_id: string | null; p_outcome: string; p_reason: string }; Returns: string };
      billing_events_known: { Args: { p_event_ids: string[] }; Returns: string[] };
      billing_offer_trial: { Args: { p_buyer: string; p_subject: string; p_seconds: number }; Returns: boolean };
      billing_request_context: {
        Args: {
          p_caller: string;
          p_team: string | null;
          p_action: string | null;
          p_limit: number | null;
          p_window_seconds: number | null;
          p_event_id: string | null;
          p_plan?: string | null;
          p_plan_trial?: boolean;
        };
        Returns: Json;
      };
      billing_forget_team_customers: { Args: { p_user: string }; Returns: Json };
      billing_forget_team_email: { Args: { p_team: string; p_customer: string; p_emails: string[] }; Returns: boolean };
      billing_seat_claim: { Args: { p_team: string; p_holder: string; p_lease_seconds: number; p_plans: Json }; Returns: Json };
      billing_seat_release: { Args: { p_subscription: string; p_holder: string; p_error: string | null; p_retry_seconds: number }; Returns: undefined };
      billing_seats_due: { Args: { p_plans: Json; p_subscriptions: string[] | null; p_limit: number }; Returns: string[] };
      billing_usage_fold: { Args: Record<never, never>; Returns: Json };
      billing_meter_claim: {
        Args: { p_holder: string; p_lease_seconds: number; p_after: string | null; p_limit: number; p_customer: string | null };
        Returns: Json;
      };
      billing_meter_sent: { Args: { p_identifiers: string[] }; Returns: number };
      billing_meter_release: { Args: { p_identifier: string; p_error: string; p_failed: boolean; p_retry_seconds: number }; Returns: undefined };
      billing_meter_reconcile_windows: { Args: { p_settle_seconds: number; p_after: string | null; p_limit: number }; Returns: Json };
      billing_meter_reconcile_decide: {
        Args: {
          p_subject: string; p_meter: string; p_customer: string; p_window_start: string; p_window_end: string;
          p_stripe: number; p_holder: string; p_lease_seconds: number;
        };
        Returns: Json;
      };
      billing_meter_void: { Args: { p_identifiers: string[]; p_reason: string }; Returns: undefined };
      billing_meter_record_flush: { Args: EventArgs & { p_customer_id: string | null; p_outcome: string; p_reason: string | null }; Returns: string };
      billing_job_acquire: { Args: { p_name: string; p_holder: string; p_lease_seconds: number }; Returns: Json | null };
      billing_job_save: {
        Args: { p_name: string; p_holder: string; p_state: Json; p_summary: Json | null; p_release: boolean };
        Returns: boolean | null;
      };
    };
    Enums: Record<never, never>;
    CompositeTypes: Record<never, never>;
  };
};
