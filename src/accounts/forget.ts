// Ending a user's billing when they delete their account: the email taken out of the
// metadata of their Stripe customer's subscriptions and Checkout Sessions (checkout wrote
// it there), every live subscription canceled now, the customer deleted in Stripe, and
// locally the customer laid to rest as customer.deleted would (the link, which holds the
// email, is removed; the subscription rows stay, reading as canceled). In the teams they
// bought for, whose billing goes on, only the user leaves: their id and email out of the
// metadata of what they bought there, and out of the team's customer when they created
// it; nothing there is canceled or deleted. What Stripe keeps, and why rows are kept
// rather than erased: docs/SECURITY.md, "Account deletion". Safe to run again: what is
// already canceled, deleted or scrubbed is skipped.

import type Stripe from 'stripe';
import type { BillingStore, TeamCustomer } from '../database/store.ts';

export const FORGET_EVENT_TYPE = 'forget.customer';
/** Statuses Stripe will not cancel again. Their metadata is left alone: a canceled
 *  subscription changes only its cancellation_details (incomplete_expired taken as alike). */
const ENDED = new Set<string>(['canceled', 'incomplete_expired']);

export interface ForgetDeps {
  stripe: Stripe;
  store: BillingStore;
  livemode: boolean;
}

export interface ForgetReport {
  userId: string;
  customerId: string | null;
  /** Subscriptions whose metadata no longer holds the email (scrubbed before canceling). */
  scrubbedSubscriptions: string[];
  canceledSubscriptions: string[];
  /** Ended before this run with the email in their metadata: Stripe lets a canceled
   *  subscription change only its cancellation_details, so it stays there. */
  unscrubbedSubscriptions: string[];
  scrubbedCheckoutSessions: string[];
  /** Sessions whose metadata update Stripe refused: they keep the email. */
  unscrubbedCheckoutSessions: string[];
  customerDeleted: 'deleted' | 'already deleted' | 'no customer';
  /** The team customers where the user had bought or started a checkout, with what of
   *  theirs was there; none where nothing of theirs is left. */
  teams: TeamForgetReport[];
}

/** One team's Stripe customer: what of the user's left it. Nothing is canceled there. */
export interface TeamForgetReport {
  teamId: string;
  customerId: string;
  /** Live subscriptions the user bought for the team: userId and email out of their metadata. */
  scrubbedSubscriptions: string[];
  scrubbedCheckoutSessions: string[];
  /** Out of the team's customer: metadata.userId when the user created it, and its email
   *  when that was still theirs (not when the team had changed it). */
  customerScrubbed: ('metadata.userId' | 'email')[];
  /** The user's email cleared from the team's link in the database. */
  storedEmailCleared: boolean;
  /** Still naming the user: subscriptions that had ended (Stripe refuses their metadata)
   *  and sessions whose update Stripe refused. */
  kept: string[];
}

/** Stripe removes a metadata key set to the empty string. userId stays: it names nobody
 *  once the user is deleted, and events map a subscription to its user by it. */
const SCRUB = { metadata: { email: '' } };
/** A team's objects stay live and the team's, so the buyer's id leaves them too: the
 *  team's subscriptions are the team's through its customer's link, and their buyer is
 *  recorded already (billing_subscriptions.buyer_id, set once). */
const TEAM_SCRUB = { metadata: { userId: '', email: '' } };
/** The team's customer keeps its teamId; its creator's id goes. */
const TEAM_SCRUB_CUSTOMER = { metadata: { userId: '' } };

export async function forgetUser(deps: ForgetDeps, userId: string, now: () => Date = () => new Date()): Promise<ForgetReport> {
  const own = await forgetOwnBilling(deps, userId, now);
  const teams: TeamForgetReport[] = [];
  for (const team of await deps.store.teamCustomersOf(userId)) {
    const done = await forgetInTeam(deps, userId, team);
    if (done) teams.push(done);
  }
  return { ...own, teams };
}

async function forgetOwnBilling(deps: ForgetDeps, userId: string, now: () => Date): Promise<Omit<ForgetReport, 'teams'>> {
  const account = await deps.store.getAccount(userId);
  const customerId = account?.stripeCustomerId ?? account?.deletedCustomerId ?? null;
  const report: Omit<ForgetReport, 'teams'> = {
    userId,
    customerId,
    scrubbedSubscriptions: [],
    canceledSubscriptions: [],
    unscrubbedSubscriptions: [],
    scrubbedCheckoutSessions: [],
    unscrubbedCheckoutSessions: [],
    customerDeleted: 'no customer',
  };
  if (!customerId) return report;

  // Everything Stripe has for the customer, not only what we know of, listed while the
  // customer still exists (a deleted one has none left).
  const live: string[] = [];
  const sessions: string[] = [];
  try {
    for await (const subscription of deps.stripe.subscriptions.list({ customer: customerId, status: 'all', limit: 100 })) {
      if (!ENDED.has(subscription.status)) live.push(subscription.id);
      else if (subscription.metadata['email']) report.unscrubbedSubscriptions.push(subscription.id);
    }
    for await (const session of deps.stripe.checkout.sessions.list({ customer: customerId, limit: 100 })) sessions.push(session.id);
  } catch (error) {
    if (!isMissing(error)) throw error;
  }

  // Scrubbed whether or not the key is there (an absent key set to '' changes nothing), and
  // before canceling: Stripe refuses metadata on a canceled subscription.
  for (const id of live) {
    try {
      await deps.stripe.subscriptions.update(id, SCRUB, { idempotencyKey: `billing-forget-scrub-${id}` });
      report.scrubbedSubscriptions.push(id);
    } catch (error) {
      if (!isMissing(error)) throw error;
    }
  }
  for (const id of sessions) {
    try {
      await deps.stripe.checkout.sessions.update(id, SCRUB, { idempotencyKey: `billing-forget-scrub-${id}` });
      report.scrubbedCheckoutSessions.push(id);
    } catch (error) {
      // Not documented to happen for metadata; if Stripe refuses a session, say so, go on.
      if (!isInvalidRequest(error)) throw error;
      report.unscrubbedCheckoutSessions.push(id);
    }
  }
  for (const id of live) {
    try {
      await deps.stripe.subscriptions.cancel(id, {}, { idempotencyKey: `billing-forget-${id}` });
      report.canceledSubscriptions.push(id);
    } catch (error) {
      if (!isMissing(error)) throw error;
    }
  }

  try {
    await deps.stripe.customers.del(customerId);
    report.customerDeleted = 'deleted';
  } catch (error) {
    if (!isMissing(error)) throw error;
    report.customerDeleted = 'already deleted';
  }

  // What Stripe's customer.deleted will say, applied now: the same write, the same
  // tombstone, so whichever comes first the result is one.
  await deps.store.applyEvent({
    id: `forget_${customerId}`,
    type: FORGET_EVENT_TYPE,
    created: Math.floor(now().getTime() / 1000),
    livemode: deps.livemode,
    apiVersion: null,
    change: { kind: 'customer_deleted', customer_id: customerId },
  });
  return report;
}

/** billing:forget's one line: the user's own billing, then each team's customer. */
export function forgetSummary(report: ForgetReport): string {
  const canceled = report.canceledSubscriptions;
  const kept = [...report.unscrubbedSubscriptions, ...report.unscrubbedCheckoutSessions];
  const own = report.customerId
    ? `forgot user ${report.userId}: customer ${report.customerId} ${report.customerDeleted}, ${canceled.length} subscription(s) canceled${canceled.length ? ` (${canceled.join(', ')})` : ''}` +
      `, email removed from the metadata of ${report.scrubbedSubscriptions.length} subscription(s) and ${report.scrubbedCheckoutSessions.length} checkout session(s)` +
      (kept.length ? `; Stripe keeps it in ${kept.join(', ')} (docs/SECURITY.md, "Account deletion")` : '')
    : report.teams.length
      ? `forgot user ${report.userId}: no Stripe customer of their own`
      : `user ${report.userId} has no Stripe customer: nothing to end`;
  const teams = report.teams.map((team) => {
    const customer = team.customerScrubbed.length ? `its ${team.customerScrubbed.join(' and ')} removed` : 'untouched';
    return (
      `team ${team.teamId} (customer ${team.customerId} ${customer}${team.storedEmailCleared ? ', stored email cleared' : ''}): ` +
      `id and email removed from the metadata of ${team.scrubbedSubscriptions.length} subscription(s) and ${team.scrubbedCheckoutSessions.length} checkout session(s), none canceled` +
      (team.kept.length ? `, Stripe keeps them in ${team.kept.join(', ')}` : '')
    );
  });
  return teams.length ? `${own}; in ${teams.length} team(s) they bought for: ${teams.join('; ')}` : own;
}

/**
 * The user's purchases in one team's customer: only the objects whose metadata.userId is
 * theirs (another member's stay as they are). The order makes a second run finish what
 * a first left: the customer's email, then the link's, while the customer still names
 * its creator and the objects still hold their emails (how we know the email is the
 * user's); then the customer's userId; the objects last. Null when nothing of theirs is there.
 */
async function forgetInTeam(deps: ForgetDeps, userId: string, team: TeamCustomer): Promise<TeamForgetReport | null> {
  const { stripe } = deps;
  const report: TeamForgetReport = {
    teamId: team.teamId,
    customerId: team.customerId,
    scrubbedSubscriptions: [],
    scrubbedCheckoutSessions: [],
    customerScrubbed: [],
    storedEmailCleared: false,
    kept: [],
  };
  const theirs = (metadata: Stripe.Metadata | null) => metadata?.['userId'] === userId;
  // The user's emails, as checkout wrote them on what they bought here.
  const emails = new Set<string>();
  const noteEmail = (metadata: Stripe.Metadata | null) => {
    const email = metadata?.['email'];
    if (email) emails.add(email.toLowerCase());
  };

  let customer: Stripe.Customer | null = null;
  const live: string[] = [];
  const sessions: string[] = [];
  try {
    const found = await stripe.customers.retrieve(team.customerId);
    if (!found.deleted) customer = found;
    for await (const subscription of stripe.subscriptions.list({ customer: team.customerId, status: 'all', limit: 100 })) {
      if (!theirs(subscription.metadata)) continue;
      noteEmail(subscription.metadata);
      if (ENDED.has(subscription.status)) report.kept.push(subscription.id);
      else live.push(subscription.id);
    }
    for await (const session of stripe.checkout.sessions.list({ customer: team.customerId, limit: 100 })) {
      if (!theirs(session.metadata)) continue;
      noteEmail(session.metadata);
      sessions.push(session.id);
    }
  } catch (error) {
    if (!isMissing(error)) throw error;
  }

  // False when the customer was deleted since it was read: nothing left there to scrub.
  const updateCustomer = async (params: Stripe.CustomerUpdateParams, idempotencyKey: string) => {
    try {
      await stripe.customers.update(team.customerId, params, { idempotencyKey });
      return true;
    } catch (error) {
      if (!isMissing(error)) throw error;
      return false;
    }
  };
  // The team's link holds the email its creator checked out with (checkout.ts).
  const creator = customer !== null && theirs(customer.metadata);
  if (creator && team.storedEmail) emails.add(team.storedEmail.toLowerCase());
  if (customer?.email && emails.has(customer.email.toLowerCase())) {
    // An empty email sets it to null (Stripe allows it on customers since 2013-08-12).
    if (await updateCustomer({ email: '' }, `billing-forget-team-email-${team.customerId}-${userId}`)) report.customerScrubbed.push('email');
  }
  if (team.storedEmail && emails.has(team.storedEmail.toLowerCase())) {
    report.storedEmailCleared = await deps.store.clearTeamEmail(team.teamId, team.customerId, [...emails]);
  }
  if (creator && (await updateCustomer(TEAM_SCRUB_CUSTOMER, `billing-forget-team-buyer-${team.customerId}-${userId}`))) {
    report.customerScrubbed.push('metadata.userId');
  }

  for (const id of live) {
    try {
      await stripe.subscriptions.update(id, TEAM_SCRUB, { idempotencyKey: `billing-forget-team-scrub-${id}` });
      report.scrubbedSubscriptions.push(id);
    } catch (error) {
      if (!isMissing(error)) throw error;
    }
  }
  for (const id of sessions) {
    try {
      await stripe.checkout.sessions.update(id, TEAM_SCRUB, { idempotencyKey: `billing-forget-team-scrub-${id}` });
      report.scrubbedCheckoutSessions.push(id);
    } catch (error) {
      if (!isInvalidRequest(error)) throw error;
      report.kept.push(id);
    }
  }

  const touched = report.scrubbedSubscriptions.length + report.scrubbedCheckoutSessions.length + report.customerScrubbed.length + report.kept.length > 0;
  return touched || report.storedEmailCleared ? report : null;
}

function isMissing(error: unknown): boolean {
  return (error as { code?: unknown }).code === 'resource_missing';
}

/** A 4xx Stripe answers about the request itself (a missing object is one). */
function isInvalidRequest(error: unknown): boolean {
  return (error as { rawType?: unknown }).rawType === 'invalid_request_error';
}
