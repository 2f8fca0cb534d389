// Serves function handlers over plain HTTP: each request becomes a web `Request`, the
// handler's `Response` is written back. This is what the Netlify runtime does around a
// modern function, without `netlify dev`'s emulator, whose local invocations do not
// take concurrent load (it stalled at concurrency 50). For load tests and benchmarks.

import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Readable } from 'node:stream';

export type Handler = (req: Request) => Promise<Response>;

export interface FunctionServer {
  url: string;
  close(): Promise<void>;
}

export async function startFunctionServer(routes: Record<string, Handler>, port = 0): Promise<FunctionServer> {
  const server = http.createServer((incoming, outgoing) => {
    void (async () => {
      const url = new URL(incoming.url ?? '/', `http://${incoming.headers.host ?? 'localhost'}`);
      const handler = routes[url.pathname];
      if (!handler) {
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
    server.listen(port, '127.0.0.1', () => resolve());
  });
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
