// What supabase-js needs of Supabase's Kong gateway: /rest/v1/* forwarded to
// PostgREST with the prefix stripped, bodies streamed both ways. With `devAuth`, also
// the local stack's test sign-in at /auth/v1/dev/token (dev-auth.ts) and the teams a
// product's server would keep, at /__dev/teams (dev-teams.ts), and usage reports and the
// movable billing clock at /__dev/usage and /__dev/clock (dev-usage.ts), which no Supabase
// project has. Everything else is a 404. Like Kong, the messages are JSON.

import { createServer, request, type IncomingHttpHeaders, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createDevAuth, DEV_TOKEN_PATH } from './dev-auth.ts';
import { createDevTeams, isDevTeamsPath } from './dev-teams.ts';
import { createDevUsage, isDevUsagePath } from './dev-usage.ts';
import { issuerFor } from '../lib/tokens.ts';

export interface Gateway {
  port: number;
  /** http://127.0.0.1:<port>: SUPABASE_URL. */
  url: string;
  close(): Promise<void>;
}

const REST_PREFIX = '/rest/v1';

// Per-connection headers (RFC 9110 §7.6.1) are not forwarded; Node sets its own.
// `host` goes too, so PostgREST sees its own address, as with Kong's preserve_host=false.
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'host']);

function forwardable(headers: IncomingHttpHeaders): IncomingHttpHeaders {
  return Object.fromEntries(Object.entries(headers).filter(([name]) => !HOP_BY_HOP.has(name)));
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8' });
  res.end(JSON.stringify(body));
}

export interface GatewayOptions {
  port: number;
  postgrestPort: number;
  /** Serve the test sign-in, POST /auth/v1/dev/token, with tokens signed by this secret,
   *  the test users' teams at /__dev/teams, and usage and the clock at /__dev/usage and /__dev/clock. */
  devAuth?: { jwtSecret: string };
}

export function startGateway(opts: GatewayOptions): Promise<Gateway> {
  // Known once listening (the port may be 0); the dev sign-in needs it as its issuer.
  let devAuth: ReturnType<typeof createDevAuth> | undefined;
  let devTeams: ReturnType<typeof createDevTeams> | undefined;
  let devUsage: ReturnType<typeof createDevUsage> | undefined;

  const server = createServer((req, res) => {
    const url = req.url ?? '/';
    const path = url.split('?')[0] ?? '/';
    if (devAuth && path === DEV_TOKEN_PATH) {
      devAuth(req, res);
      return;
    }
    if (devTeams && isDevTeamsPath(path)) {
      devTeams(req, res);
      return;
    }
    if (devUsage && isDevUsagePath(path)) {
      devUsage(req, res);
      return;
    }
    const rest = url.startsWith(REST_PREFIX) ? url.slice(REST_PREFIX.length) : undefined;
    // "/rest/v1", "/rest/v1/…" and "/rest/v1?…" are PostgREST's; "/rest/v1x" is not.
    if (rest === undefined || !(rest === '' || rest.startsWith('/') || rest.startsWith('?'))) {
      sendJson(res, 404, { message: 'no Route matched with those values' });
      return;
    }
    const upstream = request(
      {
        host: '127.0.0.1',
        port: opts.postgrestPort,
        method: req.method,
        path: rest.startsWith('/') ? rest : `/${rest}`,
        headers: forwardable(req.headers),
      },
      (upstreamRes) => {
        res.writeHead(upstreamRes.statusCode ?? 502, upstreamRes.statusMessage, forwardable(upstreamRes.headers));
        upstreamRes.pipe(res);
      },
    );
    upstream.on('error', (err) => {
      if (!res.headersSent) {
        sendJson(res, 502, { message: 'An invalid response was received from the upstream server', error: err.message });
      } else {
        res.destroy(err);
      }
    });
    // The client went away before the response was complete: drop the upstream request too.
    res.on('close', () => {
      if (!res.writableFinished) upstream.destroy();
    });
    req.pipe(upstream);
  });

  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, '127.0.0.1', () => {
      server.off('error', reject);
      const port = (server.address() as AddressInfo).port;
      const url = `http://127.0.0.1:${port}`;
      try {
        if (opts.devAuth) {
          devAuth = createDevAuth({ jwtSecret: opts.devAuth.jwtSecret, supabaseUrl: url });
          const routes = { jwtSecret: opts.devAuth.jwtSecret, issuer: issuerFor(url), postgrestUrl: `http://127.0.0.1:${opts.postgrestPort}` };
          devTeams = createDevTeams(routes);
          devUsage = createDevUsage(routes);
        }
      } catch (error) {
        server.close();
        reject(error instanceof Error ? error : new Error(String(error)));
        return;
      }
      let closing: Promise<void> | undefined;
      resolve({
        port,
        url,
        close: () => {
          closing ??= new Promise<void>((done) => {
            server.close(() => done());
            server.closeAllConnections();
          });
          return closing;
        },
      });
    });
  });
}
