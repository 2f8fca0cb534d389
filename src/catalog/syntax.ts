// The catalog file's shared syntax: its keys (features, plans, limits, meters), Stripe's
// identifiers it names, and objects.

/** Lowercase letters, digits and _, 40 at most: a key code and SQL can both use. */
export const KEY = /^[a-z][a-z0-9_]{0,39}$/;

// Stripe: lookup keys up to 200 characters; product ids are letters, digits, _ and -.
export const LOOKUP_KEY = /^[A-Za-z0-9_.-]{1,200}$/;
export const PRODUCT_ID = /^[A-Za-z0-9_-]{1,100}$/;
export const CURRENCY = /^[a-z]{3}$/;

export const isObject = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value);
