// The catalog file's shared syntax: its keys (features, plans, limits, meters) and objects.

/** Lowercase letters, digits and _, 40 at most: a key code and SQL can both use. */
export const KEY = /^[a-z][a-z0-9_]{0,39}$/;

export const isObject = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value);
