import type { AuthUser } from '../auth.ts';
import type { PortalConfig } from '../config.ts';
import { NoSubscriptionError } from '../errors.ts';
import type { BillingStore } from '../store.ts';
import type { StripeLoader } from '../stripe-client.ts';
import { admitRequest } from './request-limits.ts';
import { dashboardUrl } from './urls.ts';

export interface PortalDeps {
  config: PortalConfig;
  stripe: StripeLoader;
  store: BillingStore;
}

/** Opens the Stripe billing portal for a user who has (or had) a subscription. */
export async function openPortal(deps: PortalDeps, user: AuthUser): Promise<{ url: string }> {
  // Load the Stripe SDK while the database answers.
  const loading = deps.stripe();
  loading.catch(() => {}); // awaited below, unless there is nothing to manage
  const [account] = await Promise.all([deps.store.getAccount(user.id), admitRequest(deps.store, user.id, 'portal')]);
  // A customer without any subscription has nothing to manage yet: checkout is the way in.
  if (!account?.subscription || !account.stripeCustomerId) throw new NoSubscriptionError();

  const session = await (await loading).billingPortal.sessions.create({
    customer: account.stripeCustomerId,
    return_url: dashboardUrl(deps.config.appUrl),
  });
  return { url: session.url };
}
