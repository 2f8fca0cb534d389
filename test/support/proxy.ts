// A forwarding HTTP proxy that stands in front of one of the stack's services for the
// tests of one file: it answers what `intercept` takes, forwards the rest, and is put in
// place of the service by swapping an environment variable until `close()`.

import http from 'node:http';
import type { AddressInfo } from 'node:net';

/** Handles the request and returns true, or returns false to let it through. */
export type Intercept = (req: http.IncomingMessage, res: http.ServerResponse) => boolean;

export interface Proxy {
  close(): Promise<void>;
}

export async function proxyInPlaceOf(variable: string, intercept: Intercept): Promise<Proxy> {
  const saved = process.env[variable];
  if (!saved) throw new Error(`test environment lacks ${variable}`);
  const upstream = new URL(saved);
  const server = http.createServer((req, res) => {
    if (intercept(req, res)) return;
    const forward = http.request({ host: upstream.hostname, port: upstream.port, path: req.url, method: req.method, headers: req.headers }, (answer) => {
      res.writeHead(answer.statusCode ?? 502, answer.headers);
      answer.pipe(res);
    });
    req.pipe(forward);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  process.env[variable] = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    close: async () => {
      process.env[variable] = saved;
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}
