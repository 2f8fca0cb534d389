import type { AuthUser } from '../http/auth.ts';
import type { StatusConfig } from '../config/config.ts';
import type { BillingStore, LastPayment } from '../database/store.ts';
import type { SeatsView } from '../teams/seats.ts';
import { openSubject, type SubjectContext, type TeamView } from '../teams/subject.ts';
import type { LimitView, UsageView } from '../usage/view.ts';
import type { AccessReason, SubscriptionStatus } from '../database/access.ts';
import { planOfProduct, type Catalog } from '../catalog/catalog.ts';

export interface StatusDeps {
  config: StatusConfig;
  store: BillingStore;
}

/** What the dashboard shows: the subscription, whether it gives access now, and why. */
export interface SubscriptionView {
  status: SubscriptionStatus;
  access: boolean;
  accessReason: AccessReason;
  priceId: string | null;
  currentPeriodEnd: string | null;
  cancelAtPeriodEnd: boolean;
  trialEnd: string | null;
  graceUntil: string | null;
  lastPayment: LastPayment | null;
  /** The catalog plan (null without a catalog, or for a price outside it). */
  plan: string | null;
  interval: string | null;
  /** The feature keys the user has now: the plan's (or Stripe's newer entitlement
   *  summary), and none without access, as the database decided (billing_features' rule). */
  features: string[];
  /** A change already decided for a coming date: a downgrade at the period's end. */
  scheduledChange: { priceId: string; plan: string | null; interval: string | null; at: string } | null;
  /** A team's subscription to a per-seat plan only: the seats Stripe bills (as it last
   *  reported them) and the team's members now. Absent otherwise. */
  seats?: SeatsView;
}

/** The status body: the subject's subscription, its limits and usage (when the catalog
 *  declares any), and for a team, the team as the caller sees it. */
export interface StatusBody {
  subscription: SubscriptionView | null;
  limits?: Record<string, LimitView>;
  usage?: Record<string, UsageView>;
  team?: TeamView;
}

/** The status of the user's own billing, or of a team they are a member of. */
export async function subscriptionStatus(deps: StatusDeps, user: AuthUser, team: string | null = null, now: Date = new Date()): Promise<StatusBody> {
  const context = await openSubject(deps.store, user, { team, need: 'member', action: null });
  return statusOf(context, now, deps.config.catalog);
}

/** The status body of a subject whose account and decision were read. */
export function statusOf(context: SubjectContext, now: Date, catalog: Catalog | null): StatusBody {
  const { subject } = context;
  const subscription = subscriptionView(context, now, catalog);
  // The hosted invoice shows the team's billing details and takes a payment: it is for
  // those who manage the team's billing, not every member.
  if (subscription?.lastPayment && subject.team?.role === 'member') subscription.lastPayment.invoiceUrl = null;
  return { subscription, ...limitsAndUsage(context), ...(subject.team && { team: subject.team }) };
}

/** Both, or neither: a catalog that declares no limit and no meter leaves the body as it
 *  was before limits existed. */
function limitsAndUsage({ limits, usage }: SubjectContext): Pick<StatusBody, 'limits' | 'usage'> {
  if (limits === null && usage === null) return {};
  const meters = Object.entries(usage ?? {}).map(([key, meter]): [string, UsageView] => [
    key,
    { ...meter, window: { start: iso(meter.window.start), end: iso(meter.window.end) }, graceEndsAt: isoOrNull(meter.graceEndsAt) },
  ]);
  return { limits: limits ?? {}, usage: Object.fromEntries(meters) };
}

function subscriptionView({ subject, account, decision }: SubjectContext, now: Date, catalog: Catalog | null): SubscriptionView | null {
  const subscription = account?.subscription ?? null;
  if (!account || !subscription) return null;
  return {
    status: subscription.status,
    access: decision.access,
    accessReason: decision.reason,
    priceId: subscription.priceId,
    currentPeriodEnd: isoOrNull(subscription.currentPeriodEnd),
    cancelAtPeriodEnd: subscription.cancelAtPeriodEnd,
    trialEnd: isoOrNull(subscription.trialEnd),
    graceUntil: isoOrNull(decision.graceUntil),
    lastPayment: subscription.lastPayment && {
      ...subscription.lastPayment,
      at: new Date(subscription.lastPayment.at).toISOString(),
      nextPaymentAttempt: isoOrNull(subscription.lastPayment.nextPaymentAttempt),
    },
    plan: subscription.plan,
    interval: subscription.interval,
    features: decision.features,
    scheduledChange: upcoming(subscription.scheduledChange, now),
    ...(subject.team && planOfProduct(catalog, subscription.productId)?.seats && { seats: { billed: subscription.quantity, members: subject.team.members } }),
  };
}

/** A change whose time has passed happened (or was let go): it is no longer to come. */
function upcoming(change: SubscriptionView['scheduledChange'], now: Date): SubscriptionView['scheduledChange'] {
  if (!change || new Date(change.at) <= now) return null;
  return { ...change, at: new Date(change.at).toISOString() };
}

/** PostgREST returns timestamptz as "2026-11-25T12:00:00+00:00"; the API speaks ISO 8601 UTC with Z. */
function isoOrNull(value: string | null): string | null {
  return value === null ? null : iso(value);
}

function iso(value: string): string {
  return new Date(value).toISOString();
}
