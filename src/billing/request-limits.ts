// How often a subject may ask for what costs a Stripe call on their behalf. Far above
// what a dashboard sends (a click, a return from Checkout); low enough that one
// account cannot turn an endpoint into a stream of Stripe requests. Counted in Postgres
// (billing_count_request), so every function instance sees the same count.

import { TooManyRequestsError } from '../errors.ts';
import type { BillingStore } from '../store.ts';

export const REQUEST_LIMITS = {
  checkout: { limit: 30, windowSeconds: 60 },
  portal: { limit: 30, windowSeconds: 60 },
  sync: { limit: 30, windowSeconds: 60 },
} as const;

export type LimitedAction = keyof typeof REQUEST_LIMITS;

/** Counts the request; past the limit, a 429 with the seconds until the window ends. */
export async function admitRequest(store: BillingStore, subjectId: string, action: LimitedAction): Promise<void> {
  const { limit, windowSeconds } = REQUEST_LIMITS[action];
  const retryAfter = await store.countRequest(subjectId, action, limit, windowSeconds);
  if (retryAfter > 0) throw new TooManyRequestsError(retryAfter);
}
