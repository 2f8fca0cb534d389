// Values for the local stack only (npm run dev, tests). They are public, well-known
// test values and never a fallback for production code, which has no defaults.

/** The JWT secret the Supabase CLI uses for local projects. */
export const LOCAL_JWT_SECRET = 'super-secret-jwt-token-with-at-least-32-characters-long';
/** stripe-mock accepts any key of the form sk_test_…. */
export const LOCAL_STRIPE_SECRET_KEY = 'sk_test_123';
export const LOCAL_STRIPE_PRICE_ID = 'price_local_monthly';
/** The product of the fixtures' prices (test/fixtures/events): any of its prices counts as ours. */
export const LOCAL_STRIPE_PRODUCT_ID = 'prod_TUq1Analytics';
/** Published, so a deployed webhook refuses it (src/config/config.ts, PUBLISHED_WEBHOOK_SECRET_DIGESTS). */
export const LOCAL_STRIPE_WEBHOOK_SECRET = 'whsec_local_development_only';

export const DEV_PORTS = { netlify: 8888, gateway: 54321, postgres: 54322, postgrest: 54323, stripeMock: 12111, stripeBridge: 12110 };

/** Stripe's variables of the functions, as the local stack runs them (tests, dev, bench, fuzz). */
export const LOCAL_STRIPE_ENV = {
  STRIPE_SECRET_KEY: LOCAL_STRIPE_SECRET_KEY,
  STRIPE_PRICE_ID: LOCAL_STRIPE_PRICE_ID,
  STRIPE_PRODUCT_ID: LOCAL_STRIPE_PRODUCT_ID,
  STRIPE_WEBHOOK_SECRET: LOCAL_STRIPE_WEBHOOK_SECRET,
} as const;
