// The example dashboard in a real browser: headless Chromium (the system's, or else the
// one the @sparticuz/chromium package ships; driven by playwright-core) against `netlify
// dev` serving public/ and the functions, with the test stack as Supabase and Stripe,
// and the local Checkout and portal pages (scripts/stack/hosted-pages.ts) playing
// Stripe, as with `npm run dev`.
// Screenshots of each step go to test-results/screenshots/ (CI keeps them).
//
// Also here, because it needs the same `netlify dev`: the site as deployed has no way
// to mint a token (the local sign-in lives in the local stack's gateway only), and none
// of the local Stripe pages.

import { mkdir } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import path from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startNetlifyDev, type NetlifyDev } from '../scripts/lib/netlify-dev.ts';
import { localUserId } from '../scripts/lib/tokens.ts';
import { getFreePort } from '../scripts/stack/index.ts';
import { chromiumToLaunch, stubStripe } from './support/browser.ts';
import { CATALOG_FILE, catalogEnv } from './support/catalog.ts';
import { checkoutCompletedEvent, subscriptionEvent } from './support/events.ts';
import { env, newUser, postStripeObject, query, stripeRequests } from './support/stack.ts';
import { runTrigger } from './support/trigger.ts';
import { calendarMonth, untouchedUsage } from './support/usage.ts';

const SCREENSHOTS = path.resolve(import.meta.dirname, '../test-results/screenshots');

let netlify: NetlifyDev;

beforeAll(async () => {
  const port = await getFreePort();
  const env = Object.fromEntries(Object.entries(process.env).filter((entry): entry is [string, string] => entry[1] !== undefined));
  // Checkout and the portal return to this netlify dev, as they return to the site's URL.
  // isolated: its own .netlify/ build folder, beside test/netlify-dev.test.ts's netlify dev (or npm run dev).
  netlify = await startNetlifyDev({ port, env: { ...env, ...catalogEnv(), URL: `http://localhost:${port}` }, isolated: true });
  // As `npm run dev` does: this app's Checkout and portal sessions open the local pages.
  const registered = await fetch(`${env['STRIPE_API_BASE'] ?? ''}/__bridge/apps`, {
    method: 'POST',
    body: JSON.stringify({
      origin: netlify.url,
      webhookUrl: `${netlify.url}/api/stripe/webhook`,
      webhookSecret: env['STRIPE_WEBHOOK_SECRET'],
      databaseUrl: env['DATABASE_URL'],
      catalogFile: CATALOG_FILE,
    }),
  });
  expect(registered.status).toBe(200);
});

afterAll(async () => {
  await netlify?.stop();
});

describe('the site as netlify dev serves it (netlify.toml, public/, netlify/functions)', () => {
  it('serves the dashboard at /dashboard, with / pointing to it', async () => {
    const root = await fetch(`${netlify.url}/`, { redirect: 'manual' });
    expect(root.status).toBe(302);
    expect(root.headers.get('location')).toBe('/dashboard');
    for (const file of ['/dashboard', '/dashboard/dashboard.js', '/dashboard/dashboard.css']) {
      const response = await fetch(`${netlify.url}${file}`);
      expect(response.status, file).toBe(200);
    }
  });

  it('has none of the local Stripe pages: Checkout, the portal and the bridge are the local stack\'s', async () => {
    for (const target of ['/checkout/cs_test_a1b2c3', '/billing/bps_a1b2c3', '/checkout/cs_test_a1b2c3/cancel', '/__bridge/apps', '/__bridge/objects']) {
      const get = await fetch(`${netlify.url}${target}`);
      expect(get.status, `GET ${target}`).toBe(404);
      expect(await get.text()).not.toMatch(/Local Stripe|card number/i);
      const post = await fetch(`${netlify.url}${target}`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'card=4242424242424242&action=advance' });
      expect([404, 405], `POST ${target}`).toContain(post.status);
    }
  });

  it('has no route that mints a token or makes a team: the local sign-in and teams are not part of the site', async () => {
    for (const target of ['/auth/v1/dev/token', '/.netlify/functions/dev-token', '/api/auth/dev/token', '/api/stripe/dev/token', '/__dev/teams', '/api/__dev/teams']) {
      const get = await fetch(`${netlify.url}${target}`);
      expect(get.status, `GET ${target}`).toBe(404);
      const post = await fetch(`${netlify.url}${target}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"email":"ada@example.com"}' });
      expect([404, 405], `POST ${target}`).toContain(post.status);
      expect(await post.text()).not.toContain('access_token');
    }
  });
});

// In Chromium ---------------------------------------------------------------------------

let browser: Browser;

async function shot(page: Page, name: string): Promise<void> {
  await page.screenshot({ path: path.join(SCREENSHOTS, `${name}.png`), fullPage: true });
}

describe('the example dashboard in Chromium', () => {
  beforeAll(async () => {
    await mkdir(SCREENSHOTS, { recursive: true });
    browser = await chromium.launch(await chromiumToLaunch());
  });

  afterAll(async () => {
    await browser?.close();
  });

  it('the whole loop with no terminal: plans, local Checkout (4242), trial, renewal, annual, downgrade, cancel, resume, failed renewal', async () => {
    const context = await browser.newContext({ viewport: { width: 900, height: 1000 }, locale: 'en-US' });
    const stripeVisits = await stubStripe(context);
    const page = await context.newPage();
    const pageErrors: string[] = [];
    page.on('pageerror', (error) => pageErrors.push(error.message));
    const email = `browser-${Date.now()}@example.com`;
    const userId = localUserId(email);
    const title = page.locator('#status-title');
    const details = page.locator('#status-details');
    const onDashboard = () => page.waitForURL((url) => url.origin === netlify.url && url.pathname === '/dashboard', { timeout: 30_000 });
    const onPortal = () => page.waitForURL((url) => url.pathname.startsWith('/billing/'), { timeout: 30_000 });
    const openPortal = async () => {
      await page.getByRole('button', { name: 'Manage billing' }).click();
      await onPortal();
    };
    const inPortal = async (button: string, notice: RegExp) => {
      await page.getByRole('button', { name: button }).click();
      await expect.poll(() => page.locator('#notice').textContent(), { timeout: 30_000 }).toMatch(notice);
    };
    const backFromPortal = async () => {
      await page.getByRole('link', { name: '← Return to Analytics Pro' }).click();
      await onDashboard();
    };

    try {
      await page.goto(`${netlify.url}/?supabase=${encodeURIComponent(env('SUPABASE_URL'))}`);
      expect(new URL(page.url()).pathname).toBe('/dashboard');
      await page.getByLabel('Email').fill(email);
      await page.getByRole('button', { name: 'Sign in as a test user' }).click();
      await expect.poll(() => title.textContent(), { timeout: 20_000 }).toBe('No subscription');
      expect(await page.locator('#who-id').textContent()).toBe(userId);

      // The plans from GET /api/stripe/plans, monthly, then annual.
      const plans = page.getByRole('region', { name: 'Plans' });
      await expect.poll(() => plans.locator('.plan-price').allTextContents(), { timeout: 20_000 }).toEqual(['€9.00 per month', '€29.00 per month']);
      expect(await plans.locator('h3').allTextContents()).toEqual(['Analytics Pro', 'Analytics Business']);
      expect(await plans.locator('.plan').nth(1).textContent()).toContain('API access');
      await shot(page, '01-plans-monthly');
      await page.getByLabel('Annual').check();
      await expect.poll(() => plans.locator('.plan-price').allTextContents()).toEqual(['€90.00 per year', '€290.00 per year']);
      await shot(page, '02-plans-annual');
      await page.getByLabel('Monthly').check();

      // The local Checkout: what Stripe Checkout shows. Back first (the cancel URL), then pay.
      await page.getByRole('button', { name: 'Choose Analytics Business, monthly' }).click();
      await page.waitForURL((url) => url.pathname.startsWith('/checkout/cs_test_'), { timeout: 30_000 });
      expect(new URL(page.url()).hostname).toBe('127.0.0.1');
      await page.getByRole('heading', { name: 'Subscribe to Analytics Business' }).waitFor();
      expect(await page.locator('#price').textContent()).toBe('14 days free, then €29.00 per month');
      expect(await page.locator('#trial').textContent()).toBe('Free trial: 14 days. Your card is charged when the trial ends.');
      expect(await page.getByLabel('Promotion code').isVisible()).toBe(true);
      await shot(page, '03-local-checkout');
      await page.getByRole('link', { name: '← Back to Analytics Pro' }).click();
      await onDashboard();
      await expect.poll(() => page.locator('#notice').textContent(), { timeout: 20_000 }).toBe('Checkout canceled: nothing was charged.');

      await page.getByRole('button', { name: 'Choose Analytics Business, monthly' }).click();
      await page.waitForURL((url) => url.pathname.startsWith('/checkout/cs_test_'), { timeout: 30_000 });
      await page.getByLabel('Promotion code').fill('NOPE');
      await page.getByLabel('Card number').fill('4242 4242 4242 4242');
      await page.getByRole('button', { name: 'Start trial' }).click();
      await expect.poll(() => page.getByRole('alert').textContent(), { timeout: 30_000 }).toBe('This code is invalid.');
      await page.getByLabel('Card number').fill('4242 4242 4242 4242');
      await page.getByRole('button', { name: 'Start trial' }).click();
      await onDashboard();
      await expect.poll(() => title.textContent(), { timeout: 30_000 }).toBe('Free trial');
      await expect.poll(() => page.locator('#notice').textContent(), { timeout: 20_000 }).toBe('Payment confirmed: your subscription is active.');
      await expect.poll(() => details.textContent(), { timeout: 10_000 }).toContain('PlanAnalytics Business, monthly');
      expect(await page.locator('#features li').allTextContents()).toContain('API access');
      expect(await plans.locator('.plan[data-current="true"] h3').textContent()).toBe('Analytics Business');
      await shot(page, '04-trial-with-features');

      // The portal: the trial ends and the card pays (Stripe's test clock, played).
      await openPortal();
      expect(await page.locator('#current-plan').textContent()).toContain('Analytics Business: €29.00 per month (trialing)');
      await shot(page, '05-local-portal');
      await inPortal('Advance to the next renewal', /^Renewed: the next period is paid\.$/);
      await backFromPortal();
      await expect.poll(() => title.textContent(), { timeout: 30_000 }).toBe('Active');
      await expect.poll(() => details.textContent(), { timeout: 10_000 }).toMatch(/Last payment€29\.00, paid on /);
      expect(await page.locator('#features li').allTextContents()).toEqual([
        'Unlimited tracked sites', 'Real-time dashboard', 'Custom event tracking', 'Advanced filtering and segmentation', 'Shared dashboard access', 'API access',
      ]);
      await shot(page, '06-active');

      // Switch to annual: an upgrade, now and prorated.
      await openPortal();
      await inPortal('Switch to Analytics Business, €290.00 per year', /^Switched to Analytics Business, €290\.00 per year\.$/);
      await backFromPortal();
      await expect.poll(() => details.textContent(), { timeout: 30_000 }).toContain('PlanAnalytics Business, annual');
      await shot(page, '07-annual');

      // A downgrade waits for the period's end, then the renewal is on the new price.
      await openPortal();
      await inPortal('Switch to Analytics Pro, €9.00 per month', /^Analytics Pro \(monthly\) starts when this period ends\.$/);
      expect(await page.locator('#scheduled').textContent()).toMatch(/^Switches to Analytics Pro, €9\.00 per month, on /);
      await shot(page, '08-downgrade-scheduled');
      await backFromPortal();
      await expect.poll(() => details.textContent(), { timeout: 30_000 }).toMatch(/ScheduledChanges to Analytics Pro, monthly on \w+ \d{1,2}, \d{4}/);
      expect(await details.textContent()).toContain('PlanAnalytics Business, annual');
      await shot(page, '09-downgrade-on-the-dashboard');
      await openPortal();
      await inPortal('Advance to the next renewal', /^Renewed on Analytics Pro, monthly\.$/);
      await backFromPortal();
      await expect.poll(() => details.textContent(), { timeout: 30_000 }).toContain('PlanAnalytics Pro, monthly');
      expect(await page.locator('#features li').allTextContents()).not.toContain('API access');
      expect(await details.textContent()).not.toContain('Scheduled');
      await shot(page, '10-downgraded-at-renewal');

      // Cancel at period end, then resume.
      await openPortal();
      await inPortal('Cancel subscription', /^Your subscription cancels at the end of the period\.$/);
      await backFromPortal();
      await expect.poll(() => title.textContent(), { timeout: 30_000 }).toMatch(/^Active until \w+ \d{1,2}, \d{4}$/);
      expect(await page.locator('#status-summary').textContent()).toMatch(/^You canceled: your subscription will not renew\./);
      await shot(page, '11-canceling');
      await openPortal();
      await inPortal('Renew subscription', /^Your subscription renews again\.$/);
      await backFromPortal();
      await expect.poll(() => title.textContent(), { timeout: 30_000 }).toBe('Active');
      await shot(page, '12-resumed');

      // A failing card, then the renewal: past due, in the grace period, still with access.
      await openPortal();
      await inPortal('Replace with a failing card (0341)', /^Card replaced: Visa •••• 0341\./);
      await inPortal('Advance to the next renewal', /^The renewal payment was declined\.$/);
      await backFromPortal();
      await expect.poll(() => title.textContent(), { timeout: 30_000 }).toBe('Payment failed');
      expect(await page.locator('#status-summary').textContent()).toMatch(/^We could not charge your card\. Update it in Manage billing: you keep access until \w+ \d{1,2}, \d{4}\.$/);
      expect(await details.textContent()).toMatch(/Last payment€9\.00, failed on .*; next attempt on /);
      await shot(page, '13-grace-period');

      // Every event came signed through the webhook, none refused, none stale.
      const [{ stripe_customer_id: customerId } = { stripe_customer_id: '' }] = await query<{ stripe_customer_id: string }>(
        'select stripe_customer_id from billing_customers where user_id = $1',
        [userId],
      );
      const events = await query<{ type: string; outcome: string }>('select type, outcome from stripe_events where stripe_customer_id = $1 and type not like $2', [customerId, 'sync.%']);
      expect(events.length).toBeGreaterThanOrEqual(12);
      expect(events.filter((e) => e.outcome !== 'applied')).toEqual([]);
      expect(stripeVisits).toEqual([]);
      expect(pageErrors).toEqual([]);
    } catch (error) {
      await shot(page, 'failure-walk').catch(() => {});
      throw error;
    } finally {
      await context.close();
    }
  }, 240_000);

  // Needs the seats contract (branch `seats`): a per-seat business plan in the shipped
  // catalog (`seats` in /plans), POST /api/stripe/seats, the bridge's answer to a quantity
  // update, and `subscription.seats` in the status. Those assertions are soft (marked
  // SEATS): a wrong seat count fails the test, and the walk still goes on to check the
  // member's access and their removal.
  it('a team: created in the switcher, subscribed per seat at the local Checkout, a member added (seats 2, their access), removed (seats 1, no access)', async () => {
    const context = await browser.newContext({ viewport: { width: 900, height: 1100 }, locale: 'en-US' });
    const stripeVisits = await stubStripe(context);
    const page = await context.newPage();
    const pageErrors: string[] = [];
    page.on('pageerror', (error) => pageErrors.push(error.message));
    const owner = `team-owner-${Date.now()}@example.com`;
    const member = `team-member-${Date.now()}@example.com`;
    const title = page.locator('#status-title');
    const details = page.locator('#status-details');
    const notice = page.locator('#notice');
    const switcher = page.getByLabel('Billing for');
    const memberList = page.locator('#member-list li');
    /** Polls until `read` gives `wanted` (or the time is up), and says what it last gave. */
    const settled = async (read: () => Promise<string | null>, wanted: (text: string) => boolean, timeout = 20_000): Promise<string> => {
      const until = Date.now() + timeout;
      let text = (await read()) ?? '';
      while (!wanted(text) && Date.now() < until) {
        await new Promise((resolve) => setTimeout(resolve, 250));
        text = (await read()) ?? '';
      }
      return text;
    };
    const signInAs = async (email: string) => {
      if (await page.getByRole('button', { name: 'Sign out' }).isVisible()) await page.getByRole('button', { name: 'Sign out' }).click();
      await page.getByLabel('Email', { exact: true }).fill(email);
      await page.getByRole('button', { name: 'Sign in as a test user' }).click();
      await expect.poll(() => page.locator('#who-email').textContent(), { timeout: 20_000 }).toBe(email);
      await expect.poll(() => page.locator('#status').getAttribute('aria-busy'), { timeout: 20_000 }).toBe('false');
      expect(await title.textContent()).not.toBe('Loading…');
    };
    /** The team's status as the billing API answers the member (their own token, from the local sign-in). */
    const memberReads = async (teamId: string) => {
      const signedIn = (await (await fetch(`${env('SUPABASE_URL')}/auth/v1/dev/token`, { method: 'POST', body: JSON.stringify({ email: member }) })).json()) as { access_token: string };
      const response = await fetch(`${netlify.url}/api/stripe/subscription?team=${teamId}`, { headers: { authorization: `Bearer ${signedIn.access_token}` } });
      return { status: response.status, body: (await response.json()) as { subscription?: { access: boolean } | null; team?: { role: string; members: number } } };
    };

    try {
      await page.goto(`${netlify.url}/dashboard?supabase=${encodeURIComponent(env('SUPABASE_URL'))}`);
      await signInAs(owner);
      expect(await switcher.locator('option').allTextContents()).toEqual(['Personal (you)']);

      // A team, made in the switcher: its owner is the signed-in user.
      await page.getByLabel('New team').fill('Analytics crew');
      await page.getByRole('button', { name: 'Create team' }).click();
      await expect.poll(() => page.locator('#account-heading').textContent(), { timeout: 20_000 }).toBe('Subscription of Analytics crew');
      const teamId = await switcher.inputValue();
      expect(await switcher.locator('option').allTextContents()).toEqual(['Personal (you)', 'Analytics crew (owner)']);
      expect(await title.textContent()).toBe('No subscription');
      expect(await page.locator('#status-summary').textContent()).toBe('This team is on the free plan. Its owners and admins can subscribe it.');
      expect(await memberList.allTextContents()).toEqual([`${owner} (you)owner`]);
      expect(await query('select user_id, role from billing_team_members where team_id = $1', [teamId])).toEqual([{ user_id: localUserId(owner), role: 'owner' }]);
      await shot(page, '20-team-created');

      // Per seat: the business plan, for the team, at the local Checkout with its quantity.
      const business = page.getByRole('region', { name: 'Plans' }).locator('.plan').nth(1);
      expect.soft(await business.locator('.plan-seats').allTextContents(), 'SEATS: the business plan is per seat').toEqual(['Per seat: a team pays for each member.']);
      await page.getByRole('button', { name: 'Choose Analytics Business, monthly' }).click();
      await page.waitForURL((url) => url.pathname.startsWith('/checkout/cs_test_'), { timeout: 30_000 });
      expect(await page.locator('#quantity').textContent()).toBe('Quantity: 1 (€29.00 each)');
      expect(await page.locator('#price').textContent()).toBe('14 days free, then €29.00 per month');
      await shot(page, '21-team-checkout');
      const [sent] = await stripeRequests((r) => r.method === 'POST' && r.path === '/v1/checkout/sessions' && r.params['metadata[teamId]'] === teamId);
      expect(sent?.params).toMatchObject({ 'line_items[0][quantity]': '1', 'metadata[userId]': localUserId(owner) });
      await page.getByLabel('Card number').fill('4242 4242 4242 4242');
      await page.getByRole('button', { name: 'Start trial' }).click();
      await page.waitForURL((url) => url.origin === netlify.url && url.pathname === '/dashboard', { timeout: 30_000 });
      await expect.poll(() => title.textContent(), { timeout: 30_000 }).toBe('Free trial');
      await expect.poll(() => notice.textContent(), { timeout: 20_000 }).toBe('Payment confirmed: your subscription is active.');
      // Back on the team it paid for, which has the plan (the buyer does not).
      expect(await switcher.inputValue()).toBe(teamId);
      expect(await details.textContent()).toContain('PlanAnalytics Business, monthly');
      const [paid] = await query<{ user_id: string; quantity: number }>(
        "select user_id, quantity from billing_subscriptions where user_id = $1 and status = 'trialing'",
        [teamId],
      );
      expect(paid).toMatchObject({ user_id: teamId, quantity: 1 });
      expect(await query('select 1 from billing_subscriptions where user_id = $1', [localUserId(owner)])).toEqual([]);
      await shot(page, '22-team-trial');

      // A member joins: the seats follow (POST /api/stripe/seats), and they have the team's access.
      await page.getByLabel('Add a member').fill(member);
      await page.getByRole('button', { name: 'Add member' }).click();
      await expect.poll(() => memberList.allTextContents(), { timeout: 20_000 }).toEqual([`${owner} (you)owner`, `${member}memberRemove`]);
      expect.soft(await settled(() => notice.textContent(), (t) => t.includes('Seats')), 'SEATS: the seats call answers').toBe(`${member} joined the team. Seats: 2 billed for 2 members.`);
      expect.soft(await settled(() => details.textContent(), (t) => t.includes('Seats')), 'SEATS: the status shows the seats').toContain('Seats2 billed for 2 members');
      await shot(page, '23-member-added');
      expect(await memberReads(teamId)).toMatchObject({ status: 200, body: { subscription: { access: true }, team: { role: 'member', members: 2 } } });

      // The member, signed in on the same page: the team is in their switcher, with its access.
      await signInAs(member);
      expect(await switcher.locator('option').allTextContents()).toEqual(['Personal (you)', 'Analytics crew (member)']);
      expect(await title.textContent()).toBe('No subscription');
      await switcher.selectOption({ label: 'Analytics crew (member)' });
      await expect.poll(() => title.textContent(), { timeout: 20_000 }).toBe('Free trial');
      expect(await details.textContent()).toMatch(/^AccessYes/);
      expect(await page.locator('#features li').allTextContents()).toContain('API access');
      expect(await page.locator('#team-summary').textContent()).toBe('2 members. You are a member; its owners and admins manage its members and billing.');
      expect(await page.locator('#member-form').isHidden()).toBe(true);
      expect(await page.getByRole('button', { name: /^Remove / }).count()).toBe(0);
      await shot(page, '24-member-sees-the-team');

      // The owner removes them: one seat again, and the member loses the team.
      await signInAs(owner);
      await switcher.selectOption({ label: 'Analytics crew (owner)' });
      await expect.poll(() => memberList.count(), { timeout: 20_000 }).toBe(2);
      await page.getByRole('button', { name: `Remove ${member}` }).click();
      await expect.poll(() => memberList.allTextContents(), { timeout: 20_000 }).toEqual([`${owner} (you)owner`]);
      expect.soft(await settled(() => notice.textContent(), (t) => t.includes('Seats')), 'SEATS: the seats call answers').toBe(`${member} left the team. Seats: 1 billed for 1 member.`);
      expect.soft(await settled(() => details.textContent(), (t) => t.includes('Seats1')), 'SEATS: the status shows the seats').toContain('Seats1 billed for 1 member');
      await shot(page, '25-member-removed');
      expect(await memberReads(teamId)).toEqual({ status: 403, body: { error: 'Not a member of this team' } });

      await signInAs(member);
      expect(await switcher.locator('option').allTextContents()).toEqual(['Personal (you)']);
      expect(await page.locator('#team').isHidden()).toBe(true);
      expect(stripeVisits).toEqual([]);
      expect(pageErrors).toEqual([]);
    } catch (error) {
      await shot(page, 'failure-team').catch(() => {});
      throw error;
    } finally {
      await context.close();
    }
  }, 180_000);

  it('a declined card and 3-D Secure at the local Checkout: declined, authentication failed, then authenticated', async () => {
    const context = await browser.newContext({ viewport: { width: 900, height: 900 }, locale: 'en-US' });
    await stubStripe(context);
    const page = await context.newPage();
    const email = `browser-cards-${Date.now()}@example.com`;
    const userId = localUserId(email);
    const title = page.locator('#status-title');
    const webhook = `${netlify.url}/api/stripe/webhook`;
    try {
      await page.goto(`${netlify.url}/dashboard?supabase=${encodeURIComponent(env('SUPABASE_URL'))}`);
      await page.getByLabel('Email').fill(email);
      await page.getByRole('button', { name: 'Sign in as a test user' }).click();
      await expect.poll(() => title.textContent(), { timeout: 20_000 }).toBe('No subscription');
      // A user who had a trial (its customer made by our checkout): no second trial, so
      // Checkout charges now.
      await page.getByRole('button', { name: 'Choose Analytics Pro, monthly' }).click();
      await page.waitForURL((url) => url.pathname.startsWith('/checkout/cs_test_'), { timeout: 30_000 });
      expect(await page.locator('#trial').textContent()).toBe('Free trial: 14 days. No card needed today.');
      for (const flow of ['trial', 'cancel']) {
        const played = await runTrigger(webhook, flow, '--email', email);
        expect(played.code, played.stderr).toBe(0);
      }
      await page.getByRole('link', { name: '← Back to Analytics Pro' }).click();
      await expect.poll(() => title.textContent(), { timeout: 30_000 }).toBe('Canceled');
      await page.getByRole('button', { name: 'Choose Analytics Pro, monthly' }).click();
      await page.waitForURL((url) => url.pathname.startsWith('/checkout/cs_test_'), { timeout: 30_000 });
      expect(await page.locator('#price').textContent()).toBe('€9.00 per month');
      expect(await page.locator('#trial').count()).toBe(0);

      await page.getByLabel('Card number').fill('4000 0000 0000 0341');
      await page.getByRole('button', { name: 'Subscribe' }).click();
      await expect.poll(() => page.getByRole('alert').textContent(), { timeout: 30_000 }).toBe('Your card was declined.');
      await shot(page, '14-checkout-declined');

      await page.getByLabel('Card number').fill('4000 0027 6000 3184');
      await page.getByRole('button', { name: 'Subscribe' }).click();
      await page.getByRole('heading', { name: 'Authenticate this payment' }).waitFor({ timeout: 30_000 });
      await shot(page, '15-checkout-3ds');
      await page.getByRole('button', { name: 'Fail authentication' }).click();
      await expect.poll(() => page.getByRole('alert').textContent(), { timeout: 30_000 }).toMatch(/^We are unable to authenticate your payment method\./);
      await shot(page, '16-checkout-3ds-failed');

      await page.getByLabel('Card number').fill('4000 0027 6000 3184');
      await page.getByRole('button', { name: 'Subscribe' }).click();
      await page.getByRole('button', { name: 'Authenticate' }).click({ timeout: 30_000 });
      await page.waitForURL((url) => url.origin === netlify.url && url.pathname === '/dashboard', { timeout: 30_000 });
      await expect.poll(() => title.textContent(), { timeout: 30_000 }).toBe('Active');
      await shot(page, '17-active-after-3ds');

      // One subscription, one first invoice: declined, action required twice, failed, paid.
      const [{ stripe_customer_id: customerId } = { stripe_customer_id: '' }] = await query<{ stripe_customer_id: string }>(
        'select stripe_customer_id from billing_customers where user_id = $1',
        [userId],
      );
      const events = await query<{ type: string; outcome: string }>(
        "select type, outcome from stripe_events where stripe_customer_id = $1 and type like 'invoice.%'",
        [customerId],
      );
      expect(events.map((e) => e.type)).toEqual(expect.arrayContaining(['invoice.payment_failed', 'invoice.payment_action_required', 'invoice.paid']));
      expect(events.filter((e) => e.type === 'invoice.payment_action_required')).toHaveLength(2);
      expect(events.filter((e) => e.type === 'invoice.payment_failed')).toHaveLength(2);
      const subscriptions = await query<{ stripe_subscription_id: string; status: string }>(
        'select stripe_subscription_id, status from billing_subscriptions where stripe_customer_id = $1 and status <> $2',
        [customerId, 'canceled'],
      );
      expect(subscriptions.map((s) => s.status)).toEqual(['active']);
    } catch (error) {
      await shot(page, 'failure-cards').catch(() => {});
      throw error;
    } finally {
      await context.close();
    }
  }, 120_000);

  it('back from Checkout, the page is active before any webhook: it asks POST /api/stripe/sync', async () => {
    const context = await browser.newContext({ viewport: { width: 900, height: 900 }, locale: 'en-US' });
    await stubStripe(context);
    const page = await context.newPage();
    const email = `browser-sync-${Date.now()}@example.com`;
    const userId = localUserId(email);
    const title = page.locator('#status-title');
    try {
      await page.goto(`${netlify.url}/dashboard?supabase=${encodeURIComponent(env('SUPABASE_URL'))}`);
      await page.getByLabel('Email').fill(email);
      await page.getByRole('button', { name: 'Sign in as a test user' }).click();
      await expect.poll(() => title.textContent(), { timeout: 10_000 }).toBe('No subscription');
      await page.getByRole('button', { name: 'Subscribe' }).click();
      await page.waitForURL((url) => url.pathname.startsWith('/checkout/cs_test_'), { timeout: 30_000 });

      // The user pays elsewhere; Stripe holds the complete session (served by the bridge),
      // and sends the browser back before any webhook is delivered.
      const [link] = await query<{ stripe_customer_id: string }>('select stripe_customer_id from billing_customers where user_id = $1', [userId]);
      const ids = { userId, customerId: link?.stripe_customer_id ?? '', subscriptionId: `sub_browser${Date.now()}` };
      const now = Math.floor(Date.now() / 1000);
      const session = checkoutCompletedEvent(ids, now).data.object as unknown as Record<string, unknown>;
      session['subscription'] = subscriptionEvent('customer.subscription.created', ids, now, { status: 'active', periodStart: now, periodEnd: now + 30 * 86_400 }).data.object;
      await postStripeObject(`/v1/checkout/sessions/${String(session['id'])}`, session);

      await page.goto(`${netlify.url}/dashboard?checkout=success&session_id=${String(session['id'])}`);
      await expect.poll(() => title.textContent(), { timeout: 15_000 }).toBe('Active');
      await expect.poll(() => page.locator('#notice').textContent(), { timeout: 10_000 }).toBe('Payment confirmed: your subscription is active.');
      await shot(page, '18-active-by-sync');
      const delivered = await query("select type from stripe_events where stripe_customer_id = $1 and type not like 'sync.%'", [ids.customerId]);
      expect(delivered).toEqual([]);
      expect(await stripeRequests((r) => r.method === 'GET' && r.path === `/v1/checkout/sessions/${String(session['id'])}`)).toHaveLength(1);
    } finally {
      await context.close();
    }
  });

  it('calls the API from another origin with the seed\'s fetch code: CORS and its preflight, in the browser', async () => {
    const user = newUser();
    const api = netlify.url;
    const port = await getFreePort();
    const origin = `http://127.0.0.1:${port}`;
    // A dashboard on another origin, with the seed's snippet (only the API's origin added).
    const html = `<!doctype html><html lang="en"><title>Another origin</title><body style="font:16px system-ui;margin:2rem">
<h1>A dashboard on ${origin}</h1><pre id="out">running…</pre>
<script type="module">
const token = ${JSON.stringify(user.token)};
const results = {};
async function call(name, path, init) {
  try {
    const response = await fetch('${api}' + path, init);
    results[name] = { status: response.status, body: await response.json() };
  } catch (error) {
    results[name] = { failed: String(error) };
  }
}
await call('checkout', '/api/stripe/checkout', {
  method: 'POST',
  headers: {
    'Authorization': \`Bearer \${token}\`,
    'Content-Type': 'application/json'
  }
});
await call('portal', '/api/stripe/portal', {
  method: 'POST',
  headers: {
    'Authorization': \`Bearer \${token}\`,
    'Content-Type': 'application/json'
  }
});
await call('subscription', '/api/stripe/subscription', { headers: { 'Authorization': \`Bearer \${token}\` } });
// Control: the same kind of call to a path without CORS headers is refused by the browser.
await call('noCors', '/dashboard/', { headers: { 'Authorization': \`Bearer \${token}\` } });
document.getElementById('out').textContent = JSON.stringify(results, null, 2);
window.results = results;
</script></body></html>`;
    const server: Server = createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      res.end(html);
    });
    await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
    const context = await browser.newContext({ viewport: { width: 900, height: 900 } });
    const page = await context.newPage();

    // What the browser sent on the wire, preflights included (DevTools' network log).
    const cdp = await context.newCDPSession(page);
    await cdp.send('Network.enable');
    const sent = new Map<string, { method: string; url: string; headers: Record<string, string>; status?: number }>();
    cdp.on('Network.requestWillBeSent', (event) => {
      const headers = Object.fromEntries(Object.entries(event.request.headers).map(([name, value]) => [name.toLowerCase(), String(value)]));
      sent.set(event.requestId, { method: event.request.method, url: event.request.url, headers });
    });
    cdp.on('Network.responseReceived', (event) => {
      const request = sent.get(event.requestId);
      if (request) request.status = event.response.status;
    });

    try {
      await page.goto(`${origin}/`);
      await page.waitForFunction(() => 'results' in window, undefined, { timeout: 15_000 });
      const results = (await page.evaluate(() => (window as unknown as { results: unknown }).results)) as Record<string, { status?: number; body?: { url?: string; error?: string }; failed?: string }>;
      await shot(page, '19-cors-from-another-origin');

      expect(results['checkout']?.status).toBe(200);
      expect(results['checkout']?.body?.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/checkout\/cs_test_\w+$/);
      // An error is readable across origins too, in the API's own words.
      expect(results['portal']).toEqual({ status: 400, body: { error: 'No active subscription' } });
      expect(results['subscription']).toEqual({ status: 200, body: { subscription: null, ...untouchedUsage(null, calendarMonth()) } });
      expect(results['noCors']?.failed).toMatch(/TypeError: Failed to fetch/);

      // Authorization is not a CORS-safelisted header: each call was preflighted, and the
      // function's 204 let the real request through.
      for (const [path, method] of [['/api/stripe/checkout', 'POST'], ['/api/stripe/portal', 'POST'], ['/api/stripe/subscription', 'GET']] as const) {
        const calls = [...sent.values()].filter((r) => r.url === `${api}${path}`);
        // (DevTools may report the preflight after the request it clears.)
        expect(calls.map((r) => `${r.method} ${r.status}`).sort(), path).toEqual(['OPTIONS 204', `${method} ${results[path.split('/').at(-1) ?? '']?.status}`].sort());
        const preflight = calls.find((r) => r.method === 'OPTIONS');
        expect(preflight?.headers, path).toMatchObject({ origin, 'access-control-request-method': method });
        expect(preflight?.headers['access-control-request-headers']).toMatch(/authorization/);
      }
    } finally {
      await context.close();
      await new Promise((resolve) => server.close(resolve));
    }
  }, 60_000);
});
