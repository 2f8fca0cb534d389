// Eager sync after checkout: the dashboard, back on its return URL, asks for the
// session it just paid, so the page shows the subscription at once instead of waiting
// for the webhook. The session and its subscription are read from Stripe and applied
// through the same forward-only write as a webhook (and as reconcile: a snapshot is
// ordered at the second before it was read, so any webhook of a later change wins).

import type Stripe from 'stripe';
import type { AuthUser } from '../http/auth.ts';
import type { SyncConfig } from '../config/config.ts';
import { CheckoutNotCompleteError, CheckoutSessionNotFoundError, ForbiddenError, InvalidRequestError } from '../core/errors.ts';
import type { BillingStore } from '../database/store.ts';
import type { StripeLoader } from '../stripe/client.ts';
import { isOurCheckoutSession, teamOfSession } from '../events/reduce.ts';
import { snapshotOf } from '../database/snapshot.ts';
import { openSubject, type SubjectContext } from '../teams/subject.ts';
import { statusOf, subscriptionStatus, type StatusBody } from './status.ts';
import { readCheckoutSession, readSubscription } from '../stripe/objects.ts';

export const SYNC_EVENT_TYPE = 'sync.checkout_session';
const SESSION_ID = /^cs_(test|live)_[A-Za-z0-9]{1,200}$/;

export interface SyncDeps {
  config: SyncConfig;
  stripe: StripeLoader;
  store: BillingStore;
}

/** The request body: `{"sessionId": "cs_…"}`. */
export function sessionIdFrom(body: string): string {
  let parsed: unknown;
  try {
    parsed = body === '' ? {} : JSON.parse(body);
  } catch {
    throw new InvalidRequestError('Body must be JSON: {"sessionId": "cs_…"}');
  }
  const sessionId = typeof parsed === 'object' && parsed !== null ? (parsed as Record<string, unknown>)['sessionId'] : undefined;
  if (typeof sessionId !== 'string' || !SESSION_ID.test(sessionId)) throw new InvalidRequestError('sessionId must be a Checkout Session id (cs_…)');
  return sessionId;
}

export async function syncCheckoutSession(
  deps: SyncDeps,
  user: AuthUser,
  sessionId: string,
  now: () => Date = () => new Date(),
): Promise<StatusBody> {
  const loading = deps.stripe();
  loading.catch(() => {}); // awaited below, unless nothing needs Stripe
  const own = await openSubject(deps.store, user, { team: null, need: 'member', action: 'sync', eventId: syncEventId(sessionId) });

  // Applied before, for the caller or a team they manage: whatever changed since came by
  // webhook, so the answer is the stored state, and Stripe is not asked again (a
  // dashboard that reloads its return URL, or a client that loops, costs a database read).
  const appliedFor = own.eventSubject;
  if (appliedFor === user.id && own.account?.subscription) return statusOf(own, now(), deps.config.catalog);
  if (appliedFor !== null && appliedFor !== user.id) {
    const team = await managedTeam(deps, user, appliedFor);
    if (team?.account?.subscription) return statusOf(team, now(), deps.config.catalog);
  }
  const stripe = await loading;

  const fetchedAt = now(); // before the read: see src/events/reconcile.ts, "Ordering"
  const session = await retrieveSession(stripe, sessionId);
  const facts = readCheckoutSession(session);
  // Not the caller's (another user's, a team they do not manage, or made elsewhere): as
  // if it did not exist. A team's session counts only through the team's stored customer.
  const teamId = teamOfSession(facts);
  const target = teamId === null ? own : await managedTeam(deps, user, teamId);
  const customerId = facts.customerId;
  const mine =
    isOurCheckoutSession(facts) && facts.clientReferenceId === user.id && customerId !== null && target !== null && customerId === target.account?.stripeCustomerId;
  if (!mine || facts.mode !== 'subscription') throw new CheckoutSessionNotFoundError();
  if (session.status !== 'complete' || !facts.subscriptionId) throw new CheckoutNotCompleteError();

  const subscription =
    typeof session.subscription === 'object' && session.subscription !== null
      ? session.subscription
      : await stripe.subscriptions.retrieve(facts.subscriptionId);
  const created = Math.floor(fetchedAt.getTime() / 1000) - 1;
  const livemode = deps.config.stripe.mode === 'live';
  const receipt = { type: SYNC_EVENT_TYPE, created, livemode, apiVersion: null };
  const subject = target.subject;
  await deps.store.applyEvent({
    ...receipt,
    id: syncEventId(facts.id),
    change: {
      kind: 'checkout_completed',
      user_id: subject.id,
      customer_id: customerId,
      subscription_id: facts.subscriptionId,
      email: facts.email,
      ...(subject.team && { team: true }),
    },
  });
  await deps.store.applyEvent({
    ...receipt,
    id: `sync_${subscription.id}_${fetchedAt.getTime()}`,
    change: { kind: 'subscription', subscription: snapshotOf(readSubscription(subscription), deps.config.scope) },
  });
  return subscriptionStatus(deps, user, subject.team ? subject.id : null, now());
}

/** The team's context when the caller is one of its owners or admins now; else null. */
async function managedTeam(deps: SyncDeps, user: AuthUser, teamId: string): Promise<SubjectContext | null> {
  try {
    return await openSubject(deps.store, user, { team: teamId, need: 'manager', action: null });
  } catch (error) {
    if (error instanceof ForbiddenError) return null;
    throw error;
  }
}

/** The inbox id of a session's checkout, as sync applies it. */
function syncEventId(sessionId: string): string {
  return `sync_${sessionId}`;
}

async function retrieveSession(stripe: Stripe, sessionId: string): Promise<Stripe.Checkout.Session> {
  try {
    return await stripe.checkout.sessions.retrieve(sessionId, { expand: ['subscription'] });
  } catch (error) {
    if ((error as { code?: unknown }).code === 'resource_missing') throw new CheckoutSessionNotFoundError();
    throw error;
  }
}
