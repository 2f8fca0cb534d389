// npm run token -- --sub <uuid> --email a@example.com [--expires-in 3600]
// Prints a signed access token for the local stack (or any project whose JWT secret
// is in SUPABASE_JWT_SECRET and URL in SUPABASE_URL).

import { randomUUID } from 'node:crypto';
import { parseArgs } from 'node:util';
import { DEV_PORTS, LOCAL_JWT_SECRET } from './lib/local-defaults.ts';
import { issuerFor, mintAccessToken } from './lib/tokens.ts';

const { values } = parseArgs({
  options: {
    sub: { type: 'string' },
    email: { type: 'string' },
    'expires-in': { type: 'string', default: '3600' },
  },
});

const sub = values.sub ?? randomUUID();
const secret = process.env['SUPABASE_JWT_SECRET'] ?? LOCAL_JWT_SECRET;
const supabaseUrl = process.env['SUPABASE_URL'] ?? `http://127.0.0.1:${DEV_PORTS.gateway}`;
const expiresIn = Number(values['expires-in']);
if (!Number.isInteger(expiresIn) || expiresIn <= 0) {
  console.error('--expires-in must be a positive number of seconds');
  process.exit(2);
}

const token = mintAccessToken({ sub, secret, issuer: issuerFor(supabaseUrl), expiresIn, ...(values.email && { email: values.email }) });
console.error(`# user ${sub}${values.email ? ` <${values.email}>` : ''}, valid ${expiresIn} s`);
console.log(token);
