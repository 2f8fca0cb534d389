// Limits and usage: what the catalog says (per plan, a plan's trial, and the free entry),
// checked here; the database enforces it (supabase/migrations/20261204600000_limits_and_usage.sql,
// docs/usage.md).

import { CURRENCY, isObject, KEY, LOOKUP_KEY } from './syntax.ts';

/** What a meter does past its included amount: refuse it, tolerate it (with the grace
 *  rule), or bill it through a Stripe meter and a metered price (src/setup/setup.ts). */
export const OVERAGES = ['block', 'allow', 'bill'] as const;
export type Overage = (typeof OVERAGES)[number];

/** What a billed meter charges for the units past its included amount in a usage window.
 *  One Stripe meter per meter key (event_name = the key); one metered price per plan and
 *  interval the plan sells, since every recurring item of a subscription shares its
 *  interval (docs/usage.md, "Billed overage"). */
export interface MeterPrice {
  /** In the currency's smallest unit, per package of `per` units. */
  amount: number;
  /** The plan's prices' currency. */
  currency: string;
  /** Units per package: Stripe's transform_quantity divide_by, rounded up (a started
   *  package is paid). 1: per unit. */
  per: number;
  /** The metered price's Stripe lookup key for each interval the plan sells. */
  lookupKeys: Readonly<Record<string, string>>;
}

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
  /** overage "bill" only, and required there. */
  price?: MeterPrice;
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
    const price = overage === 'bill' ? parseMeterPrice(meter['price'], `${mw}.price`, at) : undefined;
    if (overage !== 'bill' && meter['price'] !== undefined) at(`${mw}.price`, 'is for a meter whose overage is "bill"');
    meters[key] = { included: Number(included), overage: overage as Overage, ...options, ...(price && { price }) };
  }
  return meters;
}

/** The shape of a billed meter's price; its plan's checks (currency, intervals, unique
 *  lookup keys) are the catalog's (src/catalog/catalog.ts). */
function parseMeterPrice(raw: unknown, where: string, at: At): MeterPrice | undefined {
  if (!isObject(raw)) {
    at(where, 'must be an object {amount, currency, per?, lookupKeys} for a meter whose overage is "bill"');
    return undefined;
  }
  const { amount, currency, per, lookupKeys } = raw;
  if (!isCount(amount)) at(`${where}.amount`, 'must be a whole number of cents');
  if (typeof currency !== 'string' || !CURRENCY.test(currency)) at(`${where}.currency`, 'must be a lowercase ISO currency code');
  if (per !== undefined && (!isCount(per) || per < 1)) at(`${where}.per`, 'must be a whole number of 1 or more (units per package)');
  const keys: Record<string, string> = {};
  if (!isObject(lookupKeys) || Object.keys(lookupKeys).length === 0) at(`${where}.lookupKeys`, 'must be an object of interval -> lookup key');
  else {
    for (const [interval, lookupKey] of Object.entries(lookupKeys)) {
      if (typeof lookupKey !== 'string' || !LOOKUP_KEY.test(lookupKey)) at(`${where}.lookupKeys.${interval}`, 'must be a lookup key');
      else keys[interval] = lookupKey;
    }
  }
  return { amount: Number(amount), currency: String(currency), per: typeof per === 'number' ? per : 1, lookupKeys: keys };
}

const isCount = (value: unknown): value is number => typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
