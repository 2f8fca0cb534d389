// The limits and usage a status body shows under the shipped catalog (billing-catalog.json,
// which the test stack holds: test/global-setup.ts), for a subject that has tracked
// nothing: what the tests asserting whole status bodies expect beside `subscription`
// (docs/usage.md, "In the API"). Read from the catalog file, so a change of its numbers
// needs no change here.

import { readFileSync } from 'node:fs';
import { CATALOG_FILE } from './catalog.ts';

interface ShippedCatalog {
  plans: Record<string, { limits?: Record<string, number | null>; usage?: Record<string, { included: number }> }>;
  free?: { limits?: Record<string, number | null>; usage?: Record<string, { included: number }> };
}

const shipped = JSON.parse(readFileSync(CATALOG_FILE, 'utf8')) as ShippedCatalog;
const entries = [...Object.values(shipped.plans), shipped.free ?? {}];
const LIMIT_KEYS = [...new Set(entries.flatMap((entry) => Object.keys(entry.limits ?? {})))];
const METERS = [...new Set(entries.flatMap((entry) => Object.keys(entry.usage ?? {})))];
/** The limits a table is attached for in the shipped schema: the member cap, on billing_team_members. */
const COUNTED = new Set(['members']);

export interface UsageWindow {
  start: string;
  end: string;
}

/** The calendar month (UTC) containing `at`: the window of a subject without a subscription. */
export function calendarMonth(at: Date = new Date()): UsageWindow {
  return {
    start: new Date(Date.UTC(at.getUTCFullYear(), at.getUTCMonth(), 1)).toISOString(),
    end: new Date(Date.UTC(at.getUTCFullYear(), at.getUTCMonth() + 1, 1)).toISOString(),
  };
}

/** `anchor` plus `months` months, on the anchor's day, or the month's last day when shorter. */
function addMonths(anchor: Date, months: number): Date {
  const first = new Date(Date.UTC(anchor.getUTCFullYear(), anchor.getUTCMonth() + months, 1));
  const last = new Date(Date.UTC(first.getUTCFullYear(), first.getUTCMonth() + 1, 0)).getUTCDate();
  first.setUTCDate(Math.min(anchor.getUTCDate(), last));
  first.setUTCHours(anchor.getUTCHours(), anchor.getUTCMinutes(), anchor.getUTCSeconds(), anchor.getUTCMilliseconds());
  return first;
}

/** The month anchored on `anchor` that contains `at`: the window of a time outside the
 *  subscription's recorded period. */
export function anchoredMonth(anchor: Date, at: Date = new Date()): UsageWindow {
  let k = (at.getUTCFullYear() - anchor.getUTCFullYear()) * 12 + at.getUTCMonth() - anchor.getUTCMonth();
  if (addMonths(anchor, k) > at) k -= 1;
  return { start: addMonths(anchor, k).toISOString(), end: addMonths(anchor, k + 1).toISOString() };
}

/**
 * `limits` and `usage` of a status body: the entry of `plan` (the free entry for null),
 * nothing used, `members` counted (a team's members; 0 for a user).
 */
export function untouchedUsage(plan: string | null, window: UsageWindow, members = 0): { limits: Record<string, unknown>; usage: Record<string, unknown> } {
  const entry = plan === null ? shipped.free : shipped.plans[plan];
  if (!entry) throw new Error(`no plan ${plan ?? 'free'} in the shipped catalog`);
  // A key the plan omits is unlimited; one the free entry omits is 0 (docs/usage.md).
  const omitted = plan === null ? 0 : null;
  return {
    limits: Object.fromEntries(LIMIT_KEYS.map((key) => [key, { limit: entry.limits?.[key] ?? (key in (entry.limits ?? {}) ? null : omitted), used: COUNTED.has(key) ? members : null }])),
    usage: Object.fromEntries(
      METERS.map((meter) => [meter, { used: 0, included: entry.usage?.[meter]?.included ?? omitted, window, state: 'ok', graceEndsAt: null }]),
    ),
  };
}
