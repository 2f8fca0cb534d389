// Any other path under /api/stripe/ (netlify.toml sends them here): a 404 in the API's
// error shape, with CORS, instead of the site's HTML 404 page.
import { NotFoundError } from '../../src/core/errors.ts';
import { defineEndpoint } from '../../src/http/endpoint.ts';

export default defineEndpoint({
  name: 'not-found',
  // Every method: the path is what does not exist.
  methods: ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE'],
  envVars: [],
  deps: () => null,
  run: () => Promise.reject(new NotFoundError()),
});
