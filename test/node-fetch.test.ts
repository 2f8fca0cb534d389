// fetch over node:http (src/core/node-fetch.ts) against a local node:http server: what a
// server answers, however odd, ends as the promise's answer or its rejection; nothing is
// thrown inside the socket's listeners, where it would kill the process.

import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { nodeFetch } from '../src/core/node-fetch.ts';

/** Answers per path: /status/<n> with a body; /raw/<n> written on the socket itself (a
 *  status line node's own writeHead would refuse). */
const server = http.createServer((req, res) => {
  const [, kind = '', code = '200'] = (req.url ?? '').split('/');
  if (kind === 'status') {
    res.writeHead(Number(code), { 'content-type': 'application/json' });
    res.end('{"ok":true}');
  } else if (kind === 'raw') {
    res.socket?.end(`HTTP/1.1 ${code} Odd\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}`);
  } else {
    res.writeHead(404);
    res.end();
  }
});
let base = '';

beforeAll(async () => {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(async () => {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
});

/** The promise's outcome: its Response, or what it rejected with. */
const outcome = (path: string) => nodeFetch(`${base}${path}`).then((response) => ({ response }), (error: unknown) => ({ error }));

describe('nodeFetch', () => {
  it('answers a 200 with its body and headers', async () => {
    const response = await nodeFetch(`${base}/status/200`);
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toBe('application/json');
    expect(await response.json()).toEqual({ ok: true });
  });

  it.each([204, 205, 304])('answers a %i with no body, whatever the server sent', async (status) => {
    const { response, error } = await outcome(`/status/${status}`) as { response?: Response; error?: unknown };
    expect(error).toBeUndefined();
    expect(response?.status).toBe(status);
    expect(response?.body).toBeNull();
    expect(await response?.text()).toBe('');
  });

  it.each([600, 999])('rejects a status outside 200–599 (%i), naming it, rather than throwing in the listener', async (status) => {
    const { error } = await outcome(`/raw/${status}`) as { error?: unknown };
    expect(error).toBeInstanceOf(TypeError);
    expect((error as TypeError).message).toBe('fetch failed');
    expect(String((error as TypeError).cause)).toContain(`status ${status}`);
    expect(String((error as TypeError).cause)).toContain('200–599');
  });

  it('still answers after all of those: the process and the server are alive', async () => {
    expect((await nodeFetch(`${base}/status/201`)).status).toBe(201);
  });
});
