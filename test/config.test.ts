import { describe, expect, it } from 'vitest';
import { LOCAL_STRIPE_WEBHOOK_SECRET as LOCAL_DEVELOPMENT_WEBHOOK_SECRET } from '../scripts/lib/local-defaults.ts';
import { exampleEnv } from './support/stack.ts';
import { ConfigError, loadCheckoutConfig, loadJobConfig, loadPlansConfig, loadPortalConfig, loadSeatsConfig, loadStatusConfig, loadSyncConfig, loadWebhookConfig } from '../src/config/config.ts';

const EXAMPLE_WEBHOOK_SECRET = exampleEnv('STRIPE_WEBHOOK_SECRET');

const complete = {
  STRIPE_SECRET_KEY: 'sk_test_abc',
  STRIPE_PRICE_ID: 'price_abc',
  STRIPE_WEBHOOK_SECRET: 'whsec_fake+endpoint+secret+for+config+tests=',
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

  it.each([
    ['a newline', 'sk_live_abc\nX-Injected: 1'],
    ['a carriage return', 'rk_test_abc\rdef'],
    ['a space', 'sk_test_abc def'],
    ['a NUL', 'sk_test_abc\u0000'],
    ['a non-ASCII letter', 'sk_test_abcé'],
    ['punctuation', 'sk_test_abc-def'],
  ])('refuses a STRIPE_SECRET_KEY holding %s (a header cannot carry it), naming the variable but not the key', (_what, key) => {
    const error = configError(() => loadCheckoutConfig({ ...complete, STRIPE_SECRET_KEY: key }));
    expect(error.variables).toEqual(['STRIPE_SECRET_KEY']);
    expect(error.message).toContain('letters, digits and _');
    expect(error.message).not.toContain(key.trim());
    expect(error.message).not.toContain('abc');
  });

  it('takes the keys the local stack and the tests use (letters, digits and _ after the prefix)', () => {
    for (const key of ['sk_test_123', 'sk_test_catchup0a1b2c3d4e5f', 'rk_live_51Abc_DEF', 'sk_live_abc']) {
      expect(loadCheckoutConfig({ ...complete, STRIPE_SECRET_KEY: key }).stripe.secretKey).toBe(key);
    }
  });

  it('asks each endpoint only for what it uses', () => {
    const { SUPABASE_JWT_SECRET: _jwt, URL: _url, ...webhookOnly } = complete;
    expect(loadWebhookConfig(webhookOnly).webhookSecrets).toEqual(['whsec_fake+endpoint+secret+for+config+tests=']);
    const { STRIPE_WEBHOOK_SECRET: _secret, STRIPE_PRICE_ID: _p, ...portalOnly } = complete;
    expect(loadPortalConfig(portalOnly).appUrl.href).toBe('https://analytics.example.com/');
  });

  describe('STRIPE_WEBHOOK_SECRET fails closed: one bad entry refuses the whole list', () => {
    const real = 'whsec_fake+real+looking+secret+0123456789=';
    const deployed = { ...complete, STRIPE_WEBHOOK_SECRET: real };
    const local = { ...deployed, SUPABASE_URL: 'http://127.0.0.1:54321' };

    it.each([
      ['the .env.example placeholder', `${real},${EXAMPLE_WEBHOOK_SECRET}`],
      ['the local development secret', `${LOCAL_DEVELOPMENT_WEBHOOK_SECRET}, ${real}`],
      ['an empty secret', `${real},whsec_`],
      ['an empty entry', `${real},,whsec_another_real_secret_0123`],
      ['an empty list', ','],
    ])('on a deploy: refuses %s, naming the variable but not the secrets', (_name, list) => {
      const error = configError(() => loadWebhookConfig({ ...deployed, STRIPE_WEBHOOK_SECRET: list }));
      expect(error.variables).toContain('STRIPE_WEBHOOK_SECRET');
      expect(error.message).not.toContain(real);
    });

    it('with a live key, even on a local Supabase', () => {
      const live = { ...local, STRIPE_SECRET_KEY: 'sk_live_abc' };
      expect(configError(() => loadWebhookConfig({ ...live, STRIPE_WEBHOOK_SECRET: `${real},${EXAMPLE_WEBHOOK_SECRET}` })).variables).toEqual(['STRIPE_WEBHOOK_SECRET']);
      expect(loadWebhookConfig(live).webhookSecrets).toEqual([real]);
    });

    it('a local stack (SUPABASE_URL on loopback, a test key) may use the published secrets, never an empty one', () => {
      for (const host of ['http://127.0.0.1:54321', 'http://localhost:54321', 'http://[::1]:54321']) {
        const config = loadWebhookConfig({ ...local, SUPABASE_URL: host, STRIPE_WEBHOOK_SECRET: `${LOCAL_DEVELOPMENT_WEBHOOK_SECRET},${EXAMPLE_WEBHOOK_SECRET}` });
        expect(config.webhookSecrets).toEqual([LOCAL_DEVELOPMENT_WEBHOOK_SECRET, EXAMPLE_WEBHOOK_SECRET]);
      }
      expect(configError(() => loadWebhookConfig({ ...local, STRIPE_WEBHOOK_SECRET: `${real},whsec_` })).variables).toEqual(['STRIPE_WEBHOOK_SECRET']);
      // A host that merely looks local is a deploy.
      expect(() => loadWebhookConfig({ ...local, SUPABASE_URL: 'https://127.0.0.1.example.com', STRIPE_WEBHOOK_SECRET: LOCAL_DEVELOPMENT_WEBHOOK_SECRET })).toThrow(ConfigError);
    });

    it.each(['whsec_…', 'whsec_...', 'whsec_abc', 'whsec_XXXX', 'whsec_test_secret_for_signatures'])(
      'on a deploy: refuses %s beside a real secret (not a Stripe signing secret)',
      (odd) => {
        expect(configError(() => loadWebhookConfig({ ...deployed, STRIPE_WEBHOOK_SECRET: `${real},${odd}` })).variables).toEqual(['STRIPE_WEBHOOK_SECRET']);
        expect(loadWebhookConfig({ ...local, STRIPE_WEBHOOK_SECRET: `${real},${odd}` }).webhookSecrets).toEqual([real, odd]);
      },
    );

    it('several real secrets, a rolled one and its successor, still load', () => {
      const next = 'whsec_fake+next+secret+abcdefghij+0123456789=';
      expect(loadWebhookConfig({ ...deployed, STRIPE_WEBHOOK_SECRET: ` ${real} , ${next} ` }).webhookSecrets).toEqual([real, next]);
    });
  });

  it('SUPABASE_URL must be https, but for a Supabase on this machine', () => {
    expect(configError(() => loadStatusConfig({ ...complete, SUPABASE_URL: 'http://abcd.supabase.co' })).variables).toEqual(['SUPABASE_URL']);
    expect(loadStatusConfig({ ...complete, SUPABASE_URL: 'http://127.0.0.1:54321' }).auth.jwksUrl.protocol).toBe('http:');
  });

  describe('STRIPE_API_BASE: the secret key travels to it, so a deploy sends it over TLS only', () => {
    const local = { ...complete, SUPABASE_URL: 'http://127.0.0.1:54321' };
    const mock = 'http://stripe-mock.internal:12111';
    const loaders = [loadCheckoutConfig, loadPortalConfig, loadSyncConfig, loadWebhookConfig, loadJobConfig, loadPlansConfig, loadSeatsConfig];

    it.each(loaders.map((load) => [load.name, load] as const))('%s: on a deploy (SUPABASE_URL off this machine) refuses plain http off loopback, naming the variable', (_name, load) => {
      const error = configError(() => load({ ...complete, STRIPE_API_BASE: mock }));
      expect(error.variables).toEqual(['STRIPE_API_BASE']);
      expect(error.message).toContain('https');
      expect(error.message).not.toContain('sk_test_abc');
    });

    it('with a live key, even on a local Supabase, and even without SUPABASE_URL (plans)', () => {
      const live = { ...local, STRIPE_SECRET_KEY: 'sk_live_abc' };
      expect(configError(() => loadCheckoutConfig({ ...live, STRIPE_API_BASE: mock })).variables).toEqual(['STRIPE_API_BASE']);
      expect(configError(() => loadPlansConfig({ STRIPE_SECRET_KEY: 'sk_live_abc', STRIPE_API_BASE: mock })).variables).toEqual(['STRIPE_API_BASE']);
      expect(configError(() => loadPlansConfig({ STRIPE_SECRET_KEY: 'sk_test_abc', STRIPE_API_BASE: mock })).variables).toEqual(['STRIPE_API_BASE']);
    });

    it('takes https anywhere, and plain http on loopback, whatever the key', () => {
      for (const env of [complete, local, { ...complete, STRIPE_SECRET_KEY: 'rk_live_abc' }]) {
        expect(loadCheckoutConfig({ ...env, STRIPE_API_BASE: 'https://stripe-proxy.example.com' }).stripe.apiBase?.protocol).toBe('https:');
        for (const host of ['http://127.0.0.1:12111', 'http://localhost:12111', 'http://[::1]:12111']) {
          expect(loadCheckoutConfig({ ...env, STRIPE_API_BASE: host }).stripe.apiBase?.protocol).toBe('http:');
        }
      }
      // A host that merely looks local is not.
      expect(configError(() => loadCheckoutConfig({ ...complete, STRIPE_API_BASE: 'http://127.0.0.1.example.com' })).variables).toEqual(['STRIPE_API_BASE']);
    });

    it('a local stack (SUPABASE_URL on loopback, a test key) may reach a stripe-mock on another host over plain http', () => {
      expect(loadCheckoutConfig({ ...local, STRIPE_API_BASE: mock }).stripe.apiBase?.host).toBe('stripe-mock.internal:12111');
    });
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
    const { CONFIG_VARIABLES } = await import('../src/config/config.ts');
    expect(names).toEqual([...CONFIG_VARIABLES]);
  });

  it("its webhook secret is the placeholder a deploy refuses", () => {
    expect(EXAMPLE_WEBHOOK_SECRET).toMatch(/^whsec_/);
    expect(() => loadWebhookConfig({ ...complete, STRIPE_WEBHOOK_SECRET: `whsec_a_real_one_0123456789,${EXAMPLE_WEBHOOK_SECRET}` })).toThrow(ConfigError);
  });
});
