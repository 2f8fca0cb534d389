// fetch() over node:http, for the store's calls to PostgREST. Node's own fetch (undici)
// compiles its HTTP parser (WebAssembly) and builds its connection machinery on first
// use: on a cold start that is 10–15 ms before the first database answer, in every
// function (docs/benchmarks.md). node:http's parser is built into Node. This covers what
// postgrest-js sends (a URL, a method, headers, a string body, a signal) and hands
// anything else to the global fetch.

import http from 'node:http';
import https from 'node:https';

export const nodeFetch: typeof fetch = (input, init = {}) => {
  const body = init.body;
  if (input instanceof Request || (body !== undefined && body !== null && typeof body !== 'string')) return fetch(input, init);
  const url = new URL(input);
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return fetch(input, init);
  const signal = init.signal ?? undefined;
  if (signal?.aborted) return Promise.reject(signal.reason as Error);
  const method = (init.method ?? 'GET').toUpperCase();
  const headers: Record<string, string> = {};
  new Headers(init.headers).forEach((value, name) => (headers[name] = value));
  if (typeof body === 'string') headers['content-length'] = String(Buffer.byteLength(body));

  return new Promise<Response>((resolve, reject) => {
    // The modules' request() read when called: Netlify's bootstrap wraps it (CDN-Loop).
    const request = (url.protocol === 'https:' ? https : http).request(url, { method, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.once('error', fail);
      res.once('end', () => {
        signal?.removeEventListener('abort', onAbort);
        // Whatever the answer holds, it settles the promise: a throw in this listener
        // would be uncaught and end the process.
        try {
          resolve(toResponse(method, res, chunks));
        } catch (error) {
          fail(error);
        }
      });
    });
    function fail(error: unknown): void {
      signal?.removeEventListener('abort', onAbort);
      // As fetch does: a network failure is a TypeError with the cause attached.
      reject(signal?.aborted ? (signal.reason as Error) : new TypeError('fetch failed', { cause: error }));
    }
    function onAbort(): void {
      request.destroy(signal?.reason as Error);
    }
    signal?.addEventListener('abort', onAbort, { once: true });
    request.once('error', fail);
    request.end(body ?? undefined);
  });
};

/** Statuses whose answer has no body (the Fetch standard's null body statuses). */
const NULL_BODY_STATUSES = new Set([101, 103, 204, 205, 304]);

/** The Response for an answer; throws for one a Response cannot hold. */
function toResponse(method: string, res: http.IncomingMessage, chunks: Buffer[]): Response {
  const status = res.statusCode ?? 0;
  if (status < 200 || status > 599) throw new RangeError(`the server answered with HTTP status ${status}, outside 200–599`);
  const headers = new Headers();
  for (let i = 0; i + 1 < res.rawHeaders.length; i += 2) headers.append(res.rawHeaders[i] ?? '', res.rawHeaders[i + 1] ?? '');
  const empty = method === 'HEAD' || NULL_BODY_STATUSES.has(status);
  return new Response(empty ? null : Buffer.concat(chunks), { status, statusText: res.statusMessage ?? '', headers });
}
