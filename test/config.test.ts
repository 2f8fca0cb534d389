import { describe, expect, it } from 'vitest';
import { ConfigError, loadCheckoutConfig, loadPortalConfig, loadStatusConfig, loadSyncConfig, loadWebhookConfig } from '../src/config.ts';

const complete = {
  STRIPE_SECRET_KEY: 'sk_test_abc',
  STRIPE_PRICE_ID: 'price_abc',
  STRIPE_WEBHOOK_SECRET: 'whsec_abc',
  URL: 'https://analytics.example.com',
  SUPABASE_URL: 'https://abcd.supabase.co',
  SUPABASE_SERVICE_ROLE_KEY: 'service-role-key',
  SUPABASE_JWT_SECRET: 'jwt-secret',
};

function configError(load: () => unknown): ConfigError {
  try {
    load();
  } catch (error) {
    if (error instanceof ConfigError) return error;
    throw error;
  }
  throw new Error('expected a ConfigError');
}

describe('config', () => {
  it('loads a complete checkout config, typed', () => {
    const config = loadCheckoutConfig(complete);
    expect(config.priceId).toBe('price_abc');
    expect(config.stripe.mode).toBe('test');
    expect(config.stripe.apiBase).toBeUndefined();
    expect(config.appUrl.href).toBe('https://analytics.example.com/');
    expect(config.auth.issuer).toBe('https://abcd.supabase.co/auth/v1');
    expect(config.auth.jwksUrl.href).toBe('https://abcd.supabase.co/auth/v1/.well-known/jwks.json');
    expect(config.auth.jwtSecret).toBe('jwt-secret');
  });

  it('names every missing variable in one error', () => {
    const error = configError(() => loadCheckoutConfig({}));
    expect([...error.variables].sort()).toEqual(
      ['STRIPE_PRICE_ID', 'STRIPE_SECRET_KEY', 'SUPABASE_SERVICE_ROLE_KEY', 'SUPABASE_URL', 'URL'].sort(),
    );
    expect(error.message).toContain('STRIPE_PRICE_ID is not set');
  });

  it('SUPABASE_JWT_SECRET is optional: a project may sign with asymmetric keys only', () => {
    const { SUPABASE_JWT_SECRET: _secret, ...asymmetricOnly } = complete;
    expect(loadCheckoutConfig(asymmetricOnly).auth.jwtSecret).toBeUndefined();
  });

  it('refuses BILLING_GRACE_DAYS, which moved to the database, naming where it lives now', () => {
    for (const load of [loadStatusConfig, loadSyncConfig]) {
      const error = configError(() => load({ ...complete, BILLING_GRACE_DAYS: '10' }));
      expect(error.variables).toEqual(['BILLING_GRACE_DAYS']);
      expect(error.message).toContain('public.billing_settings.grace_days');
    }
    expect(loadStatusConfig(complete)).not.toHaveProperty('graceDays');
  });

  it('treats blank values as missing', () => {
    expect(configError(() => loadWebhookConfig({ ...complete, STRIPE_WEBHOOK_SECRET: '  ' })).variables).toEqual(['STRIPE_WEBHOOK_SECRET']);
  });

  it('rejects malformed values without echoing secrets', () => {
    const error = configError(() =>
      loadWebhookConfig({ ...complete, STRIPE_SECRET_KEY: 'pk_test_publishable', STRIPE_WEBHOOK_SECRET: 'secret', SUPABASE_URL: 'not a url' }),
    );
    expect([...error.variables].sort()).toEqual(['STRIPE_SECRET_KEY', 'STRIPE_WEBHOOK_SECRET', 'SUPABASE_URL']);
    expect(error.message).not.toContain('pk_test_publishable');
  });

  it('asks each endpoint only for what it uses', () => {
    const { SUPABASE_JWT_SECRET: _jwt, URL: _url, ...webhookOnly } = complete;
    expect(loadWebhookConfig(webhookOnly).webhookSecrets).toEqual(['whsec_abc']);
    const { STRIPE_WEBHOOK_SECRET: _secret, STRIPE_PRICE_ID: _p, ...portalOnly } = complete;
    expect(loadPortalConfig(portalOnly).appUrl.href).toBe('https://analytics.example.com/');
  });

  it('knows live keys from test keys, and reads STRIPE_API_BASE', () => {
    const config = loadCheckoutConfig({ ...complete, STRIPE_SECRET_KEY: 'sk_live_abc', STRIPE_API_BASE: 'http://localhost:12111' });
    expect(config.stripe.mode).toBe('live');
    expect(config.stripe.apiBase?.port).toBe('12111');
  });
});

describe('.env.example', () => {
  it('documents exactly the variables the loaders read, in the same order', async () => {
    const { readFile } = await import('node:fs/promises');
    const text = await readFile(new URL('../.env.example', import.meta.url), 'utf8');
    const names = [...text.matchAll(/^([A-Z_]+)=/gm)].map((m) => m[1]);
    const { CONFIG_VARIABLES } = await import('../src/config.ts');
    expect(names).toEqual([...CONFIG_VARIABLES]);
  });
});
