// npm run dev: the whole backend on this machine, with no .env needed.
//   PostgreSQL + PostgREST (as Supabase, with a local test sign-in) and stripe-mock (as
//   Stripe), then `netlify dev` on http://localhost:8888 serving the functions through
//   netlify.toml's routes and the example dashboard from public/. The functions are built
//   as they ship (npm run build), again on every change. The shipped plan catalog
//   (billing-catalog.json) is pushed to the local Stripe at every start (the mock keeps
//   nothing), and Checkout and the portal open local pages that play Stripe
//   (scripts/stack/hosted-pages.ts).
// Ctrl-C stops everything this started. Data persists in .local/dev-db between runs.
//
// --warm: the same build and routes without netlify dev, each function loaded once
//   (scripts/lib/warm-site.ts): netlify dev makes every request a cold start in a new
//   worker thread, and a burst of 50 concurrent requests takes seconds each.

import { fileURLToPath } from 'node:url';
import { DEV_PORTS, LOCAL_JWT_SECRET, LOCAL_STRIPE_ENV, LOCAL_STRIPE_WEBHOOK_SECRET } from './lib/local-defaults.ts';
import { pushCatalog, SHIPPED_CATALOG } from './lib/local-catalog.ts';
import { startNetlifyDev, type NetlifyDev } from './lib/netlify-dev.ts';
import { startWarmSite, type WarmSite } from './lib/warm-site.ts';
import { startLocalStack, type LocalStack } from './stack/index.ts';
import { startStripeMockBridge, type StripeMockBridge } from './stack/stripe-mock-bridge.ts';

const root = (path: string) => fileURLToPath(new URL(`../${path}`, import.meta.url));
const verbose = process.argv.includes('--verbose');
const warm = process.argv.includes('--warm');
const say = (line: string) => console.log(`[dev] ${line}`);

let stack: LocalStack | undefined;
let bridge: StripeMockBridge | undefined;
let netlify: NetlifyDev | WarmSite | undefined;
let stopping = false;

async function shutdown(code: number): Promise<never> {
  if (!stopping) {
    stopping = true;
    say('stopping…');
    await netlify?.stop().catch(() => {});
    await bridge?.close().catch(() => {});
    await stack?.stop().catch((error: unknown) => console.error(error));
  }
  process.exit(code);
}
process.on('SIGINT', () => void shutdown(0));
process.on('SIGTERM', () => void shutdown(0));

try {
  say('starting PostgreSQL, PostgREST and stripe-mock…');
  stack = await startLocalStack({
    dataDir: root('.local/dev-db'),
    ports: { postgres: DEV_PORTS.postgres, gateway: DEV_PORTS.gateway, postgrest: DEV_PORTS.postgrest, stripeMock: DEV_PORTS.stripeMock },
    jwtSecret: LOCAL_JWT_SECRET,
    migrationsDir: root('supabase/migrations'),
    // The billing SQL's clock moves forward on request (npm run usage:add -- --advance-days),
    // to walk usage windows and grace periods: this stack only (scripts/stack/dev-clock.sql).
    devClock: true,
    log: verbose ? (line) => console.log(line) : (line) => {
      if (line.startsWith('[stack]')) console.log(line);
    },
  });
  const appUrl = `http://localhost:${DEV_PORTS.netlify}`;
  // Checkout and the portal of this app open the bridge's local pages, which send the
  // events they play to this app's webhook.
  bridge = await startStripeMockBridge(stack.env.STRIPE_API_BASE, DEV_PORTS.stripeBridge, {
    apps: [{ origin: appUrl, webhookUrl: `${appUrl}/api/stripe/webhook`, webhookSecret: LOCAL_STRIPE_WEBHOOK_SECRET, databaseUrl: stack.env.DATABASE_URL, catalogFile: SHIPPED_CATALOG }],
  });

  const functionEnv = {
    ...stack.env,
    STRIPE_API_BASE: bridge.url,
    ...LOCAL_STRIPE_ENV,
    BILLING_CATALOG: SHIPPED_CATALOG,
    URL: appUrl,
  };
  say('pushing the plan catalog (billing-catalog.json) to the local Stripe…');
  await pushCatalog(functionEnv);
  if (warm) {
    say('starting the warm local server (functions loaded once; --warm)…');
    // The functions read their variables from this process, as they would on Netlify.
    Object.assign(process.env, functionEnv);
    netlify = await startWarmSite({ port: DEV_PORTS.netlify, log: (line) => console.log(line) });
  } else {
    say('starting netlify dev…');
    netlify = await startNetlifyDev({ port: DEV_PORTS.netlify, env: functionEnv, inheritOutput: true, watch: true });
  }

  const api = `${netlify.url}/api/stripe`;
  console.log(`
  Dashboard        ${netlify.url}/dashboard   (example page: sign in as a test user, pick a plan, pay on the local Checkout, manage billing)
  Billing API      ${api}/checkout   ${api}/portal   ${api}/subscription   ${api}/webhook
  Supabase (local) ${stack.env.SUPABASE_URL}/rest/v1   (PostgREST; database ${stack.env.DATABASE_URL.replace(/:[^:@/]*@/, ':***@')})
                   ${stack.env.SUPABASE_URL}/auth/v1/dev/token   (test sign-in: POST {"email": "…"}; local stack only)
                   ${stack.env.SUPABASE_URL}/__dev/teams   (the test users' teams, with their token: GET, POST {"name"}, …/<team>/members; local stack only)
  Stripe (local)   stripe-mock at ${stack.env.STRIPE_API_BASE}, through the recording bridge at ${bridge.url}
                   (its local Checkout and portal pages: ${bridge.url}/checkout/…, ${bridge.url}/billing/…)

  Get a token:     TOKEN=$(npm run --silent token -- --sub "$(node -e 'console.log(crypto.randomUUID())')" --email you@example.com)
  Checkout:        curl -s -X POST -H "Authorization: Bearer $TOKEN" ${api}/checkout
  Pay (webhooks):  npm run stripe:trigger -- subscribe --token "$TOKEN"    (or --user <id>; flows: npm run stripe:trigger -- --help)
  Portal:          curl -s -X POST -H "Authorization: Bearer $TOKEN" ${api}/portal

  Ctrl-C stops everything.
`);
} catch (error) {
  console.error(error instanceof Error ? error.message : error);
  await shutdown(1);
}
