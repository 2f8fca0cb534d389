// The example dashboard's usage bars in Chromium, walked as a person would with `npm run
// dev`: a free user reports pageviews with the local-only buttons (POST /__dev/usage:
// billing_track), ends usage windows and waits out the grace period by moving the local
// billing clock (/__dev/clock), sees warning, over, grace and locked in words and on the
// bar, then upgrades at the local Checkout and is unlocked.
// The clock is the database's, so this file runs on a stack of its own (devClock), with a
// netlify dev of its own pointed at it; the shared test stack's clock never moves.
// Screenshots go to test-results/screenshots/ (usage-*.png).

import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pushCatalog } from '../scripts/lib/local-catalog.ts';
import { startNetlifyDev, type NetlifyDev } from '../scripts/lib/netlify-dev.ts';
import { getFreePort } from '../scripts/stack/index.ts';
import { startThrowawayStack, type ThrowawayStack } from '../scripts/stack/throwaway.ts';
import { chromiumToLaunch, stubStripe } from './support/browser.ts';
import { CATALOG_FILE, catalogEnv } from './support/catalog.ts';
import { calendarMonth } from './support/usage.ts';

const SCREENSHOTS = path.resolve(import.meta.dirname, '../test-results/screenshots');

let own: ThrowawayStack;
let netlify: NetlifyDev;
let browser: Browser;

beforeAll(async () => {
  own = await startThrowawayStack('browser-usage', { ownDatabase: true, devClock: true });
  await pushCatalog(own.env);
  const port = await getFreePort();
  const inherited = Object.fromEntries(Object.entries(process.env).filter((entry): entry is [string, string] => entry[1] !== undefined));
  netlify = await startNetlifyDev({ port, env: { ...inherited, ...own.env, ...catalogEnv(), URL: `http://localhost:${port}` }, isolated: true });
  // As `npm run dev` does: this app's Checkout sessions open the local pages.
  const registered = await fetch(`${own.env['STRIPE_API_BASE'] ?? ''}/__bridge/apps`, {
    method: 'POST',
    body: JSON.stringify({
      origin: netlify.url,
      webhookUrl: `${netlify.url}/api/stripe/webhook`,
      webhookSecret: own.env['STRIPE_WEBHOOK_SECRET'],
      databaseUrl: own.env['DATABASE_URL'],
      catalogFile: CATALOG_FILE,
    }),
  });
  expect(registered.status).toBe(200);
  await mkdir(SCREENSHOTS, { recursive: true });
  browser = await chromium.launch(await chromiumToLaunch());
}, 180_000);

afterAll(async () => {
  await browser?.close();
  await netlify?.stop();
  await own?.stop();
});

const longDate = new Intl.DateTimeFormat('en', { dateStyle: 'long', timeZone: 'UTC' });
/** The first of the month `months` after the current one (UTC), as the page writes a date. */
const monthStart = (months: number) => {
  const now = new Date();
  return longDate.format(new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + months, 1)));
};

describe('usage in the example dashboard', () => {
  it('a free user: warning, over, grace, locked (banner), then an upgrade at the local Checkout unlocks', async () => {
    const context = await browser.newContext({ viewport: { width: 900, height: 1300 }, locale: 'en-US', timezoneId: 'UTC' });
    const stripeVisits = await stubStripe(context);
    const page: Page = await context.newPage();
    const pageErrors: string[] = [];
    page.on('pageerror', (error) => pageErrors.push(error.message));
    const email = `usage-${Date.now()}@example.com`;
    const title = page.locator('#status-title');
    const amounts = page.locator('#meter-pageviews-amounts');
    const state = page.locator('#meter-pageviews-state');
    const bar = page.getByRole('progressbar', { name: 'Pageviews' });
    const banner = page.locator('#usage-lock');
    const notice = page.locator('#notice');
    const press = async (name: string, said: RegExp) => {
      await page.getByRole('button', { name }).click();
      await expect.poll(() => notice.textContent(), { timeout: 20_000 }).toMatch(said);
    };
    const shows = async (text: string, words: string) => {
      await expect.poll(() => amounts.textContent(), { timeout: 20_000 }).toBe(text);
      expect(await state.textContent()).toBe(words);
    };
    const shot = (name: string) => page.screenshot({ path: path.join(SCREENSHOTS, `usage-${name}.png`), fullPage: true });

    try {
      await page.goto(`${netlify.url}/dashboard?supabase=${encodeURIComponent(own.env['SUPABASE_URL'] ?? '')}`);
      await page.getByLabel('Email', { exact: true }).fill(email);
      await page.getByRole('button', { name: 'Sign in as a test user' }).click();
      await expect.poll(() => title.textContent(), { timeout: 20_000 }).toBe('No subscription');

      // The free entry: 10,000 pageviews a calendar month, one site; the bar is a progressbar with its numbers.
      await shows('0 of 10,000 (0 %)', 'OK: Within your plan.');
      expect(await page.locator('#meter-list .meter-window').textContent()).toBe(`This usage window ends on ${longDate.format(new Date(calendarMonth().end))}.`);
      expect(await page.locator('#limit-list').textContent()).toBe('SitesUp to 1');
      expect(await bar.getAttribute('max')).toBe('10000');
      expect(await page.locator('#usage-clock').textContent()).toMatch(/^Billing clock: \w+ \d{1,2}, \d{4} \(the real time\)\.$/);
      expect(await banner.isVisible()).toBe(false);
      await shot('01-free');

      await press('Add 5,000 pageviews', /^Added 5,000 pageviews: 5,000 used this window\.$/);
      await shows('5,000 of 10,000 (50 %)', 'OK: Within your plan.');
      expect(await bar.getAttribute('value')).toBe('5000');
      await press('Add 5,000 pageviews', /^Added 5,000 pageviews: 10,000 used this window\.$/);
      await shows('10,000 of 10,000 (100 %)', 'Warning: 100 % of the included pageviews used this window.');
      expect(await page.locator('.meter').getAttribute('data-state')).toBe('warning');
      await shot('02-warning');
      await press('Add 5,000 pageviews', /^Added 5,000 pageviews: 15,000 used this window\.$/);
      await shows('15,000 of 10,000 (150 %)', 'Over: 5,000 pageviews above the 10,000 included this window.');
      expect(await bar.getAttribute('value')).toBe('10000');
      await shot('03-over');

      // The window ends 50 % over (above the 10 % margin): one such window is not grace yet.
      await press('End this usage window', new RegExp(`^Billing clock moved to ${monthStart(1)}\\.$`));
      await shows('0 of 10,000 (0 %)', 'OK: Within your plan.');
      expect(await page.locator('#meter-list .meter-window').textContent()).toBe(`This usage window ends on ${monthStart(2)}.`);
      expect(await page.locator('#usage-clock').textContent()).toMatch(new RegExp(`^Billing clock: ${monthStart(1)} \\([\\d.]+ days ahead\\)\\.$`));
      for (const used of ['5,000', '10,000', '15,000']) await press('Add 5,000 pageviews', new RegExp(`: ${used} used this window\\.$`));
      await shows('15,000 of 10,000 (150 %)', 'Over: 5,000 pageviews above the 10,000 included this window.');

      // A second window in a row ends over: 7 days of grace from its end.
      const now = new Date();
      const graceEnds = longDate.format(new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + 2, 1 + 7)));
      await press('End this usage window', new RegExp(`^Billing clock moved to ${monthStart(2)}\\.$`));
      await shows('0 of 10,000 (0 %)', `Grace period: Usage windows in a row ended over the plan. Upgrade by ${graceEnds}, or the dashboard locks.`);
      expect(await page.locator('.meter').getAttribute('data-state')).toBe('grace');
      expect(await banner.isVisible()).toBe(false);
      await shot('04-grace');

      // Past the grace period: locked, and the dashboard says what that means here.
      await press('Move the clock a week on', /^Billing clock moved to /);
      await shows('0 of 10,000 (0 %)', `Locked: Since ${graceEnds}: usage stayed over the plan after its grace period. Your data is still collected; upgrade to unlock the dashboard.`);
      expect(await banner.textContent()).toBe('Dashboard locked: pageviews stayed over the plan after the grace period. Your data is still collected; upgrade to unlock.');
      expect(await banner.isVisible()).toBe(true);
      // Still collected while locked (overage: allow).
      await press('Add 5,000 pageviews', /^Added 5,000 pageviews: 5,000 used this window\.$/);
      await shows('5,000 of 10,000 (50 %)', `Locked: Since ${graceEnds}: usage stayed over the plan after its grace period. Your data is still collected; upgrade to unlock the dashboard.`);
      await shot('05-locked');

      // The upgrade: Analytics Pro's trial at the local Checkout (no card needed); its plan includes enough.
      await page.getByRole('button', { name: 'Choose Analytics Pro, monthly' }).click();
      await page.waitForURL((url) => url.pathname.startsWith('/checkout/cs_test_'), { timeout: 30_000 });
      await page.getByRole('button', { name: 'Start trial' }).click();
      await page.waitForURL((url) => url.origin === netlify.url && url.pathname === '/dashboard', { timeout: 30_000 });
      await expect.poll(() => title.textContent(), { timeout: 30_000 }).toBe('Free trial');
      await expect.poll(() => state.textContent(), { timeout: 20_000 }).toBe('OK: Within your plan.');
      expect(await amounts.textContent()).toMatch(/^[\d,]+ of 100,000 \(\d+ %\)$/);
      expect(await bar.getAttribute('max')).toBe('100000');
      expect(await banner.isVisible()).toBe(false);
      expect(await page.locator('#limit-list').textContent()).toBe('SitesUnlimited');
      await shot('06-upgraded');

      expect(stripeVisits).toEqual([]);
      expect(pageErrors).toEqual([]);
    } catch (error) {
      await shot('failure').catch(() => {});
      throw error;
    } finally {
      await context.close();
    }
  }, 240_000);
});
