// npm run stripe-mock:install: builds the pinned stripe-mock into .local/bin now, rather
// than on the first start of the local stack. CI runs it so a build failure is named.
import { fileURLToPath } from 'node:url';
import { ensureStripeMockBinary, STRIPE_MOCK_VERSION } from './stack/stripe-mock.ts';

const bin = await ensureStripeMockBinary(fileURLToPath(new URL('../', import.meta.url)), (line) => console.log(line));
console.log(`stripe-mock ${STRIPE_MOCK_VERSION}: ${bin}`);
