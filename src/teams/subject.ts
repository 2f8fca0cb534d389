// Who a request is about: the caller's own billing, or that of a team they are in.
// Teams are the product's (billing_team_members, written by its server); here a team
// is only a billing subject whose members may read it and whose owners and admins may
// manage it. One database round trip (billing_request_context) counts the request
// against the caller's limit, checks their role and reads the subject's account.

import type { AuthUser } from '../http/auth.ts';
import { ForbiddenError, InvalidRequestError, TooManyRequestsError } from '../core/errors.ts';
import { REQUEST_LIMITS, type LimitedAction } from '../http/request-limits.ts';
import type { AccessDecision } from '../database/access.ts';
import type { BillingAccount, BillingStore, ExceededLimits, TeamRole } from '../database/store.ts';
import type { LimitView, UsageView } from '../usage/view.ts';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export interface TeamView {
  id: string;
  /** The caller's role in it. */
  role: TeamRole;
  /** How many members it has now. */
  members: number;
}

export interface Subject {
  /** The id its billing rows are keyed by: the user's own, or the team's. */
  id: string;
  team: TeamView | null;
}

export interface SubjectContext {
  subject: Subject;
  account: BillingAccount | null;
  /** Whether the subject has access now, and its features: the database's decision. */
  decision: AccessDecision;
  /** Its limits and meters, per key the catalog declares; null when it declares none. */
  limits: Record<string, LimitView> | null;
  usage: Record<string, UsageView> | null;
  /** Whether the caller ever bought a trial, for themselves or for a team. */
  callerHadTrial: boolean;
  /** For sync: the subject an already applied session was for. */
  eventSubject: string | null;
  /** For checkout: the plan's limits, and its trial's, the subject's counts pass. */
  exceededLimits: ExceededLimits;
}

/** `{"team": …}` or `?team=…`: a team's id, or null (absent) for the caller's own billing. */
export function teamIdFrom(value: unknown): string | null {
  if (value === undefined || value === null) return null;
  if (typeof value !== 'string' || !UUID.test(value)) throw new InvalidRequestError('Invalid team');
  return value.toLowerCase();
}

/** What the caller must be in the team: any member (to read), or an owner or admin (to buy, manage). */
export type TeamNeed = 'member' | 'manager';

const REFUSALS: Record<TeamNeed, string> = {
  member: 'Not a member of this team',
  manager: "Not allowed to manage this team's billing",
};

export interface SubjectRequest {
  /** The team asked for; null for the caller's own billing. */
  team: string | null;
  need: TeamNeed;
  /** Counted against the caller's limit for it (429 past it); null counts nothing. */
  action: LimitedAction | null;
  eventId?: string;
  /** For checkout: the plan bought, and whether it offers a trial (RequestContext's exceededLimits). */
  plan?: { key: string; trial: boolean };
}

/** The request's subject and its account; 429 past the caller's limit, 403 for a team
 *  the caller may not act for as asked (a non-member, or an unknown team, alike). */
export async function openSubject(store: BillingStore, user: AuthUser, request: SubjectRequest): Promise<SubjectContext> {
  const context = await store.requestContext({
    caller: user.id,
    team: request.team,
    ...(request.action && { limit: { action: request.action, ...REQUEST_LIMITS[request.action] } }),
    ...(request.eventId !== undefined && { eventId: request.eventId }),
    ...(request.plan && { plan: request.plan }),
  });
  if (context.retryAfter > 0) throw new TooManyRequestsError(context.retryAfter);
  const { account, decision, limits, usage, callerHadTrial, eventSubject, exceededLimits } = context;
  const read = { account, decision, limits, usage, callerHadTrial, eventSubject, exceededLimits };
  if (request.team === null) return { subject: { id: user.id, team: null }, ...read };
  const allowed = context.role !== null && (request.need === 'member' || context.role !== 'member');
  if (!allowed || context.role === null) throw new ForbiddenError(REFUSALS[request.need]);
  const team = { id: request.team, role: context.role, members: context.members ?? 0 };
  return { subject: { id: request.team, team }, ...read };
}
