// Limits and usage as the status body shows them: the database's numbers for the subject,
// read in the request's one round trip (billing_request_context), never recomputed here.

/** A limit key the catalog declares: the subject's limit now (null: unlimited) and how
 *  many it stores (null when no table is attached for the key: nothing counts it). */
export interface LimitView {
  limit: number | null;
  used: number | null;
}

export const USAGE_STATES = ['ok', 'warning', 'over', 'grace', 'locked'] as const;
export type UsageState = (typeof USAGE_STATES)[number];

/** A meter the catalog declares: the subject's use in the current window, against the plan. */
export interface UsageView {
  used: number;
  /** Per window; null: unlimited. */
  included: number | null;
  window: { start: string; end: string };
  state: UsageState;
  /** When grace ends (state grace) or ended (state locked); null otherwise. */
  graceEndsAt: string | null;
  /** A meter the subject's plan bills (overage "bill") only: what the current window's
   *  use past the included amount costs so far, as Stripe will bill it (the database's
   *  billing_usage_status computes it). */
  overage?: OverageView;
}

/** An estimate of a billed meter's overage in the current window. */
export interface OverageView {
  /** Units past the included amount. */
  units: number;
  /** In the currency's smallest unit: whole packages, a started one counted. */
  amount: number;
  currency: string;
}
