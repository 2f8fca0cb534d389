// How often a user may ask for what costs a Stripe call on their behalf. Far above what
// a dashboard sends (a click, a return from Checkout); low enough that one account
// cannot turn an endpoint into a stream of Stripe requests. Counted in Postgres
// (billing_count_request, called by billing_request_context), so every function
// instance sees the same count.

export const REQUEST_LIMITS = {
  checkout: { limit: 30, windowSeconds: 60 },
  portal: { limit: 30, windowSeconds: 60 },
  sync: { limit: 30, windowSeconds: 60 },
  // Twice the others: an admin who edits a team's members one by one calls it after each.
  seats: { limit: 60, windowSeconds: 60 },
} as const;

export type LimitedAction = keyof typeof REQUEST_LIMITS;
