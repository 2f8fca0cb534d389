// The event inbox (stripe_events): what came, what became of it, and replays. A replay
// fetches the event from Stripe's Events API (so it is Stripe's own copy, not ours)
// and applies it through the webhook's own path: exactly once, in any order.

import type Stripe from 'stripe';
import type { BillingStore, EventFilter, RecordedEvent } from '../database/store.ts';
import { applyStripeEvent, eventFromStripe, type ApplyDeps, type WebhookResult } from './webhook.ts';

export interface InboxQuery {
  failedOnly?: boolean;
  type?: string;
  since?: Date;
  /** Only the events about this user's customers (the live one and a deleted one). */
  userId?: string;
  limit?: number;
}

export const DEFAULT_LIST_LIMIT = 50;
/** A replay of "everything failed since" takes at most this many at once. */
export const MAX_REPLAY = 1000;

export async function listInbox(store: BillingStore, query: InboxQuery): Promise<RecordedEvent[]> {
  const filter: EventFilter = {
    limit: query.limit ?? DEFAULT_LIST_LIMIT,
    ...(query.failedOnly && { outcome: 'failed' }),
    ...(query.type && { type: query.type }),
    ...(query.since && { since: query.since.toISOString() }),
  };
  if (query.userId !== undefined) {
    const account = await store.getAccount(query.userId);
    const customers = [account?.stripeCustomerId, account?.deletedCustomerId].filter((id): id is string => typeof id === 'string');
    if (customers.length === 0) return [];
    filter.customerIds = customers;
  }
  return store.listEvents(filter);
}

export interface ReplayDeps extends ApplyDeps {
  stripe: Stripe;
}

export type ReplayResult =
  | ({ eventId: string; eventType: string } & WebhookResult)
  | { eventId: string; eventType: null; outcome: 'failed'; reason: string };

/** Fetches each event from Stripe and applies it; one result per id, in order. */
export async function replayEvents(
  deps: ReplayDeps,
  eventIds: readonly string[],
  onResult: (result: ReplayResult) => void = () => {},
): Promise<ReplayResult[]> {
  const results: ReplayResult[] = [];
  for (const eventId of eventIds) {
    let result: ReplayResult;
    try {
      const event = eventFromStripe(await deps.stripe.events.retrieve(eventId));
      if (!event) throw new Error('Stripe answered with something that is not an event');
      result = { eventId, eventType: event.type, ...(await applyStripeEvent(deps, event)) };
    } catch (error) {
      result = { eventId, eventType: null, outcome: 'failed', reason: error instanceof Error ? error.message : String(error) };
    }
    results.push(result);
    onResult(result);
  }
  return results;
}

/** The ids of the events recorded as failed, created since `since`, oldest first. */
export async function failedEventIds(store: BillingStore, since: Date | undefined): Promise<string[]> {
  const failed = await listInbox(store, { failedOnly: true, limit: MAX_REPLAY, ...(since && { since }) });
  return failed.reverse().map((event) => event.id);
}
