// Stripe's webhook signature, checked with node:crypto alone. The webhook needs nothing
// else from the Stripe SDK, whose megabyte of code would otherwise load on every cold
// start. The scheme (Stripe's docs, "Verify the events that Stripe sends"): the header
// `Stripe-Signature: t=<unix seconds>,v1=<hex>[,v1=<hex>…]` carries HMAC-SHA256 of
// `<t>.<raw body>` under the endpoint secret; several v1 entries appear while a secret
// is being rolled. Tests sign with the SDK's own generateTestHeaderString.

import { createHmac, timingSafeEqual } from 'node:crypto';

export type SignatureProblem = 'malformed header' | 'no matching signature' | 'timestamp outside tolerance';

/** `rawBody`: the bytes Stripe sent (a string is taken as its UTF-8 bytes). */
export function checkStripeSignature(
  rawBody: Uint8Array | string,
  header: string,
  secret: string,
  toleranceSeconds: number,
  nowSeconds: number = Date.now() / 1000,
): SignatureProblem | null {
  let timestamp: number | undefined;
  const signatures: Buffer[] = [];
  for (const part of header.split(',')) {
    const [key, value] = part.split('=', 2).map((s) => s.trim());
    if (key === 't' && value && /^\d+$/.test(value)) timestamp = Number(value);
    else if (key === 'v1' && value && /^[0-9a-f]{64}$/i.test(value)) signatures.push(Buffer.from(value, 'hex'));
  }
  if (timestamp === undefined || signatures.length === 0) return 'malformed header';

  const expected = createHmac('sha256', secret).update(`${timestamp}.`, 'utf8').update(rawBody).digest();
  if (!signatures.some((signature) => timingSafeEqual(signature, expected))) return 'no matching signature';
  // Checked after the signature, so an old but genuine delivery is told apart from a forgery.
  if (Math.abs(nowSeconds - timestamp) > toleranceSeconds) return 'timestamp outside tolerance';
  return null;
}
