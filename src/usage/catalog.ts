// Limits and usage: what the catalog says (per plan, a plan's trial, and the free entry),
// checked here; the database enforces it (supabase/migrations/20261204600000_limits_and_usage.sql,
// docs/usage.md).

import { isObject, KEY } from '../billing/catalog-syntax.ts';

/** What a meter does past its included amount. ("bill" comes with Stripe Meters.) */
export const OVERAGES = ['block', 'allow'] as const;
export type Overage = (typeof OVERAGES)[number];

/** Key -> the most a subject may store; null: explicitly unlimited. */
export type Limits = Readonly<Record<string, number | null>>;

export interface Meter {
  /** Per usage window. */
  included: number;
  overage: Overage;
  /** Over-use tolerated before a window counts towards grace, in % of included.
   *  This and the two below: absent, the database's defaults (10, 2, 7; docs/usage.md). */
  marginPercent?: number;
  /** Windows in a row ending above included + margin that start a grace period. */
  windowsOver?: number;
  /** Days of grace before the meter is locked. */
  graceDays?: number;
}
export type Meters = Readonly<Record<string, Meter>>;

type At = (where: string, problem: string) => void;

export function parseLimits(raw: unknown, where: string, at: At): Limits {
  if (raw === undefined) return {};
  if (!isObject(raw)) {
    at(where, 'must be an object of key -> count');
    return {};
  }
  const limits: Record<string, number | null> = {};
  for (const [key, limit] of Object.entries(raw)) {
    if (!KEY.test(key)) at(`${where}.${key}`, 'is not a key (lowercase letters, digits, _; 40 at most)');
    if (limit !== null && !isCount(limit)) at(`${where}.${key}`, 'must be a whole number of 0 or more, or null (unlimited)');
    limits[key] = limit as number | null;
  }
  return limits;
}

export function parseMeters(raw: unknown, where: string, at: At): Meters {
  if (raw === undefined) return {};
  if (!isObject(raw)) {
    at(where, 'must be an object of meter -> {included, overage}');
    return {};
  }
  const meters: Record<string, Meter> = {};
  for (const [key, meter] of Object.entries(raw)) {
    const mw = `${where}.${key}`;
    if (!KEY.test(key)) at(mw, 'is not a key (lowercase letters, digits, _; 40 at most)');
    if (!isObject(meter)) {
      at(mw, 'must be an object');
      continue;
    }
    const { included, overage } = meter;
    if (!isCount(included)) at(`${mw}.included`, 'must be a whole number of 0 or more');
    if (!(OVERAGES as readonly unknown[]).includes(overage)) at(`${mw}.overage`, `must be one of ${OVERAGES.join(', ')}`);
    const options: Pick<Meter, 'marginPercent' | 'windowsOver' | 'graceDays'> = {};
    for (const option of ['marginPercent', 'windowsOver', 'graceDays'] as const) {
      const value = meter[option];
      if (value === undefined) continue;
      if (!isCount(value) || (option === 'windowsOver' && value < 1)) at(`${mw}.${option}`, `must be a whole number of ${option === 'windowsOver' ? 1 : 0} or more`);
      else options[option] = value;
    }
    meters[key] = { included: Number(included), overage: overage as Overage, ...options };
  }
  return meters;
}

const isCount = (value: unknown): value is number => typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
