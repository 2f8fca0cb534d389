// CORS as the billing API documents it: any origin (the API is called with a bearer
// token, never with cookies), the methods an endpoint serves, and the two headers the
// dashboard sends. Built once per endpoint, when the endpoint is defined.

export type HttpMethod = 'GET' | 'HEAD' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';

export interface Cors {
  /** Headers for every response, errors included. */
  readonly headers: Readonly<Record<string, string>>;
  /** Extra headers for an OPTIONS preflight answer. */
  readonly preflight: Readonly<Record<string, string>>;
  /** The Allow header value for a 405. */
  readonly allow: readonly string[];
}

export function createCors(methods: readonly HttpMethod[]): Cors {
  const allow = [...methods, 'OPTIONS'];
  const headers = {
    'Access-Control-Allow-Origin': '*',
    'Access-Control-Allow-Methods': allow.join(', '),
    'Access-Control-Allow-Headers': 'Content-Type, Authorization',
  };
  return {
    headers,
    preflight: { 'Access-Control-Max-Age': '86400' },
    allow,
  };
}
