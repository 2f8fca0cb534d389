/** The Stripe API version this code is written for: the one the `stripe` package (23.1.0)
 *  pins, in which the event fixtures are written and webhook endpoints are created
 *  (billing:setup). Older versions are read too (src/stripe/objects.ts). */
export const PINNED_API_VERSION = '2026-10-28.endive';
