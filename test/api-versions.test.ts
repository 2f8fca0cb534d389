// Every API version a live webhook endpoint may still use, from 2024-06-20 to the one
// the SDK pins: the same events, and the same histories, rendered in each, read and
// store the same. (The convergence property test renders its histories in them too.)

import { readFileSync } from 'node:fs';
import type Stripe from 'stripe';
import { describe, expect, it } from 'vitest';
import { catalogScope, parseCatalog } from '../src/catalog/catalog.ts';
import { HANDLED_EVENT_TYPES, reduceEvent } from '../src/events/reduce.ts';
import { productScope } from '../src/catalog/product-scope.ts';
import { CATALOG_FILE } from './support/catalog.ts';
import { API_VERSIONS, FIXTURE_IDS, fixtureEvent, PINNED_API_VERSION, renderInVersion, type ApiVersion } from '../scripts/lib/stripe-events.ts';
import { deliverConcurrently, deliveries, expectStored, generateHistory, random, renderHistory, type History } from './support/histories.ts';
import { newUser, query } from './support/stack.ts';

// With the shipped catalog, so that the features of an entitlement summary count too.
const SCOPE = catalogScope(parseCatalog(JSON.parse(readFileSync(CATALOG_FILE, 'utf8')), CATALOG_FILE), productScope([FIXTURE_IDS.priceId]));
/** One fixture per handled type (test/fixtures/events). */
const HANDLED_FIXTURES: readonly string[] = [...HANDLED_EVENT_TYPES];

type Obj = Record<string, unknown>;
const objectOf = (event: Stripe.Event) => event.data.object as unknown as Obj;

describe('the versions rendered', () => {
  it('are the releases from 2024-06-20 to the pinned one, which the fixtures are in', () => {
    expect(API_VERSIONS).toEqual(expect.arrayContaining(['2024-06-20', '2024-09-30.acacia', '2025-03-31.basil', '2025-09-30.clover', PINNED_API_VERSION]));
    expect(fixtureEvent('customer.subscription.updated').api_version).toBe(PINNED_API_VERSION);
  });

  it('before 2025-03-31.basil: the period is the subscription\'s, an invoice names its subscription at the top', () => {
    const sub = objectOf(renderInVersion(fixtureEvent('customer.subscription.updated'), '2024-06-20'));
    const [item] = (sub['items'] as { data: Obj[] }).data;
    expect(item).not.toHaveProperty('current_period_end');
    expect(sub['current_period_end']).toEqual(expect.any(Number));

    const invoice = objectOf(renderInVersion(fixtureEvent('invoice.payment_failed'), '2024-09-30.acacia'));
    expect(invoice).not.toHaveProperty('parent');
    expect(invoice['subscription']).toBe(FIXTURE_IDS.subscriptionId);
    expect(invoice['paid']).toBe(false);

    const basil = objectOf(renderInVersion(fixtureEvent('invoice.payment_failed'), '2025-03-31.basil'));
    expect(basil).not.toHaveProperty('subscription');
    expect(basil['parent']).toMatchObject({ subscription_details: { subscription: FIXTURE_IDS.subscriptionId } });
  });

  it('before 2026-03-25.dahlia: Checkout\'s ui_mode has its old name', () => {
    expect(objectOf(renderInVersion(fixtureEvent('checkout.session.completed'), '2025-09-30.clover'))['ui_mode']).toBe('hosted');
    expect(objectOf(fixtureEvent('checkout.session.completed'))['ui_mode']).toBe('hosted_page');
  });
});

describe('every handled event reduces the same in every version', () => {
  const pinned = Object.fromEntries(HANDLED_FIXTURES.map((type) => [type, reduceEvent(fixtureEvent(type), SCOPE)]));

  it.each(API_VERSIONS.flatMap((version) => HANDLED_FIXTURES.map((type) => [version, type] as const)))('%s: %s', (version, type) => {
    const reduction = reduceEvent(renderInVersion(fixtureEvent(type), version), SCOPE);
    // invoice.created stores nothing: it flushes meter usage to Stripe (src/meters).
    expect(reduction.action).toBe(type === 'invoice.created' ? 'flush' : 'apply');
    expect(reduction).toEqual(pinned[type]);
  });
});

describe('the same histories in every version end in the same stored state', () => {
  const SEEDS = [11, 12, 13, 14, 15, 16, 17, 18];

  /** What a history leaves, without its ids (which are new for every rendering). */
  async function storedShape(userId: string) {
    return query(
      `select status, cancel_at_period_end, current_period_end, last_payment_status, payment_failed_at, trial_will_end_at, for_this_product
         from billing_subscriptions where user_id = $1 order by stripe_created_at, current_period_end`,
      [userId],
    );
  }

  /** The same history for another user, every id tagged: the same length and order, so
   *  ties between events of one second break the same way. */
  function copyFor(history: History, userId: string, tag: string): History {
    const ids = [history.customerId, ...history.subscriptionIds, ...history.sent.map((s) => s.event.id)];
    let text = JSON.stringify(history).replaceAll(history.userId, userId);
    for (const id of ids) text = text.replaceAll(`"${id}"`, `"${id}${tag}"`);
    return JSON.parse(text) as History;
  }

  it.each(SEEDS)('seed %i', async (seed) => {
    const story = generateHistory(random(seed), newUser().id);
    const shapes = new Map<ApiVersion, unknown>();
    for (const [i, version] of API_VERSIONS.entries()) {
      const user = newUser();
      const history = renderHistory(random(seed), copyFor(story, user.id, `v${i}`), version);
      expect(history.versions).toEqual([version]);
      const where = `seed ${seed}, ${version}: ${history.steps.join(' → ')}`;
      const rand = random(seed);
      const statuses = await deliverConcurrently(rand, deliveries(rand, history));
      expect(statuses.every((s) => s === 200), where).toBe(true);
      await expectStored(history, where);
      shapes.set(version, await storedShape(user.id));
    }
    const pinnedShape = shapes.get(PINNED_API_VERSION);
    expect(pinnedShape).not.toEqual([]);
    for (const [version, shape] of shapes) expect(shape, version).toEqual(pinnedShape);
  });
});
