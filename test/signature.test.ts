// Our signature check agrees with Stripe's own signer and verifier.
import Stripe from 'stripe';
import { describe, expect, it } from 'vitest';
import { checkStripeSignature } from '../src/stripe/signature.ts';

const secret = 'whsec_test_secret_for_signatures';
const payload = JSON.stringify({ id: 'evt_1', object: 'event', type: 'invoice.paid' });
const now = Math.floor(Date.now() / 1000);
const sign = (options: { payload?: string; secret?: string; timestamp?: number } = {}) =>
  Stripe.webhooks.generateTestHeaderString({ payload: options.payload ?? payload, secret: options.secret ?? secret, timestamp: options.timestamp ?? now });

describe('checkStripeSignature', () => {
  it("accepts what Stripe signs, as Stripe's own verifier does", () => {
    const header = sign();
    expect(checkStripeSignature(payload, header, secret, 300, now)).toBeNull();
    expect(Stripe.webhooks.constructEvent(payload, header, secret).id).toBe('evt_1');
  });

  it('accepts a header with several v1 signatures (a secret being rolled) if one matches', () => {
    const other = sign({ secret: 'whsec_the_old_secret' }).split(',')[1];
    const header = `${sign()},${other},v0=${'0'.repeat(64)}`;
    expect(checkStripeSignature(payload, header, secret, 300, now)).toBeNull();
  });

  it.each([
    ['another secret', () => sign({ secret: 'whsec_someone_else' }), 'no matching signature'],
    ['another body', () => sign({ payload: `${payload} ` }), 'no matching signature'],
    ['an old timestamp', () => sign({ timestamp: now - 301 }), 'timestamp outside tolerance'],
    ['a timestamp far in the future', () => sign({ timestamp: now + 301 }), 'timestamp outside tolerance'],
    ['no timestamp', () => sign().split(',').filter((p) => !p.startsWith('t=')).join(','), 'malformed header'],
    ['only a v0 signature', () => sign().replace('v1=', 'v0='), 'malformed header'],
    ['a truncated signature', () => sign().slice(0, -2), 'malformed header'],
    ['garbage', () => 'not a signature header', 'malformed header'],
  ])('refuses %s', (_name, header, problem) => {
    expect(checkStripeSignature(payload, header(), secret, 300, now)).toBe(problem);
  });
});
