// Serves function handlers over plain HTTP: each request becomes a web `Request`, the
// handler's `Response` is written back. This is what the Netlify runtime does around a
// modern function, without `netlify dev`'s emulator, which runs every invocation as a
// fresh cold start in a new worker thread (scripts/lib/warm-site.ts). For load tests,
// benchmarks and `npm run dev -- --warm`.

import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Readable } from 'node:stream';

export type Handler = (req: Request) => Promise<Response>;

export interface FunctionServer {
  url: string;
  close(): Promise<void>;
}

export interface FunctionServerOptions {
  port?: number;
  /** Default 127.0.0.1; `::` for every address (localhost as ::1 or 127.0.0.1). */
  host?: string;
  /** The handler of a path that routes does not name (npm run dev -- --warm: netlify.toml's routes). */
  resolve?: (url: URL) => Handler | undefined;
  /** Answers a path with no handler (static files); default: 404 in the API's shape. */
  fallback?: (url: URL, outgoing: http.ServerResponse) => Promise<void>;
}

export async function startFunctionServer(routes: Record<string, Handler>, options: FunctionServerOptions = {}): Promise<FunctionServer> {
  const host = options.host ?? '127.0.0.1';
  const server = http.createServer((incoming, outgoing) => {
    void (async () => {
      const url = new URL(incoming.url ?? '/', `http://${incoming.headers.host ?? 'localhost'}`);
      const handler = routes[url.pathname] ?? options.resolve?.(url);
      if (!handler) {
        if (options.fallback) {
          await options.fallback(url, outgoing).catch((error: unknown) => {
            if (!outgoing.headersSent) outgoing.writeHead(500, { 'content-type': 'text/plain' });
            outgoing.end(String(error));
          });
          return;
        }
        outgoing.writeHead(404, { 'content-type': 'application/json' }).end('{"error":"Not found"}');
        return;
      }
      const headers = new Headers();
      for (const [name, value] of Object.entries(incoming.headers)) {
        if (typeof value === 'string') headers.set(name, value);
        else if (Array.isArray(value)) for (const v of value) headers.append(name, v);
      }
      const hasBody = incoming.method !== 'GET' && incoming.method !== 'HEAD';
      const request = new Request(url, {
        method: incoming.method ?? 'GET',
        headers,
        ...(hasBody && { body: Readable.toWeb(incoming), duplex: 'half' }),
      } as RequestInit);
      try {
        const response = await handler(request);
        outgoing.writeHead(response.status, Object.fromEntries(response.headers));
        outgoing.end(Buffer.from(await response.arrayBuffer()));
      } catch (error) {
        outgoing.writeHead(500, { 'content-type': 'application/json' }).end(JSON.stringify({ error: String(error) }));
      }
    })();
  });
  server.keepAliveTimeout = 5_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, host, () => resolve());
  });
  return {
    url: `http://${host === '::' ? 'localhost' : host}:${(server.address() as AddressInfo).port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
