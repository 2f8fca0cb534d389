import type { AuthUser } from '../http/auth.ts';
import type { PortalConfig } from '../config/config.ts';
import { NoSubscriptionError } from '../core/errors.ts';
import { jsonObjectBody } from '../http/body.ts';
import type { BillingStore } from '../database/store.ts';
import type { StripeLoader } from '../stripe/client.ts';
import { openSubject, teamIdFrom } from '../teams/subject.ts';
import { dashboardUrl } from './urls.ts';

export interface PortalDeps {
  config: PortalConfig;
  stripe: StripeLoader;
  store: BillingStore;
}

/** The optional body: none, `{}`, or `{"team": "<uuid>"}`. Anything else sent must be a
 *  JSON object (400 otherwise): a broken `{"team": …}` must not open the caller's own. */
export function parsePortalBody(text: string): { team: string | null } {
  return { team: teamIdFrom(jsonObjectBody(text)['team']) };
}

/** Opens the Stripe billing portal for a user, or a team they manage, who has (or had)
 *  a subscription. */
export async function openPortal(deps: PortalDeps, user: AuthUser, team: string | null = null): Promise<{ url: string }> {
  // Load the Stripe SDK while the database answers.
  const loading = deps.stripe();
  loading.catch(() => {}); // awaited below, unless there is nothing to manage
  const { account } = await openSubject(deps.store, user, { team, need: 'manager', action: 'portal' });
  // A customer without any subscription has nothing to manage yet: checkout is the way in.
  if (!account?.subscription || !account.stripeCustomerId) throw new NoSubscriptionError();

  const session = await (await loading).billingPortal.sessions.create({
    customer: account.stripeCustomerId,
    return_url: dashboardUrl(deps.config.appUrl),
  });
  return { url: session.url };
}
