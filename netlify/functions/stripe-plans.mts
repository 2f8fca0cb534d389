// GET /api/stripe/plans: the catalog's plans and prices, for a pricing table. No auth;
// cacheable for as long as the prices are (one Stripe read per period at most).
import { listPlans } from '../../src/accounts/plans.ts';
import { catalogPrices, PRICES_TTL_MS } from '../../src/catalog/prices.ts';
import { CONFIG_VARIABLES, loadPlansConfig } from '../../src/config/config.ts';
import { defineEndpoint } from '../../src/http/endpoint.ts';
import { lazyStripe } from '../../src/stripe/client.ts';

const CACHE_CONTROL = `public, max-age=${PRICES_TTL_MS / 1000}`;

export default defineEndpoint({
  name: 'plans',
  methods: ['GET'],
  envVars: CONFIG_VARIABLES,
  deps: (env, log) => {
    const config = loadPlansConfig(env);
    return { config, prices: config.catalog ? catalogPrices(lazyStripe(config.stripe), config.catalog, { log }) : null };
  },
  run: async (_req, deps, scope) => {
    const body = await listPlans(deps);
    scope.annotate({ plans: body.plans.length });
    return { body, headers: { 'Cache-Control': CACHE_CONTROL } };
  },
});
