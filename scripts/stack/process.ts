// Child-process plumbing for the local stack: spawn with output captured line by
// line, remember the last lines for error messages, stop with SIGTERM then SIGKILL,
// and make sure nothing we started outlives this Node process.

import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';

export type LogFn = (line: string) => void;

/** Keeps the last `max` lines written to it, and forwards each to a log with a prefix. */
export class OutputTail {
  readonly #lines: string[] = [];
  readonly #partial = new Map<string, string>();
  readonly #name: string;
  readonly #log: LogFn | undefined;
  readonly #max: number;

  constructor(name: string, log: LogFn | undefined, max = 40) {
    this.#name = name;
    this.#log = log;
    this.#max = max;
  }

  /** Feed a chunk from a stream; `stream` keeps partial lines of stdout and stderr apart. */
  write(chunk: string, stream = 'out'): void {
    const text = (this.#partial.get(stream) ?? '') + chunk;
    const lines = text.split(/\r?\n/);
    this.#partial.set(stream, lines.pop() ?? '');
    for (const line of lines) this.line(line);
  }

  line(line: string): void {
    if (line.trim() === '') return;
    this.#lines.push(line);
    if (this.#lines.length > this.#max) this.#lines.shift();
    this.#log?.(`[${this.#name}] ${line}`);
  }

  flush(): void {
    for (const [stream, rest] of this.#partial) {
      this.#partial.set(stream, '');
      this.line(rest);
    }
  }

  /** The last lines, indented, for an error message; empty if there were none. */
  text(): string {
    this.flush();
    return this.#lines.length === 0 ? '' : `\n--- last output of ${this.#name} ---\n${this.#lines.join('\n')}`;
  }
}

// ---------------------------------------------------------------------------
// Last-resort cleanup. Node emits 'exit' on process.exit(), an uncaught exception
// and a drained event loop (not when killed by a signal: callers handle SIGINT and
// SIGTERM themselves and call stop()). Only synchronous work is possible there, so
// we just signal every process still registered.

const killOnExit = new Map<number, NodeJS.Signals>();
let exitHookInstalled = false;

/** Send `signal` to `pid` if this Node process exits first. Returns the unregister function. */
export function registerKillOnExit(pid: number, signal: NodeJS.Signals): () => void {
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.on('exit', () => {
      for (const [registered, sig] of killOnExit) {
        try {
          process.kill(registered, sig);
        } catch {
          // already gone
        }
      }
    });
  }
  killOnExit.set(pid, signal);
  return () => {
    killOnExit.delete(pid);
  };
}

// ---------------------------------------------------------------------------

export interface ManagedProcess {
  readonly name: string;
  readonly child: ChildProcess;
  readonly output: OutputTail;
  /** Resolves when the process has exited, with a description like "exit code 1". */
  readonly exited: Promise<string>;
  /** Whether it has exited already. */
  hasExited(): boolean;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves once it is gone. Idempotent. */
  stop(graceMs?: number): Promise<void>;
}

export interface SpawnOptions {
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  log?: LogFn | undefined;
}

export function spawnManaged(name: string, command: string, args: readonly string[], opts: SpawnOptions = {}): ManagedProcess {
  const output = new OutputTail(name, opts.log);
  const child = spawn(command, args, {
    env: opts.env ?? process.env,
    cwd: opts.cwd,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stdout?.setEncoding('utf8').on('data', (chunk: string) => output.write(chunk, 'out'));
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => output.write(chunk, 'err'));

  let done = false;
  let unregister = () => {};
  const exited = new Promise<string>((resolve) => {
    // 'error' without a pid means it never started (ENOENT, EACCES); 'close' follows otherwise.
    child.once('error', (err) => {
      output.line(`failed to run ${command}: ${err.message}`);
      if (child.pid === undefined) finish(`spawn error: ${err.message}`);
    });
    child.once('close', (code, signal) => finish(signal ? `signal ${signal}` : `exit code ${code}`));
    function finish(how: string) {
      if (done) return;
      done = true;
      unregister();
      output.flush();
      resolve(how);
    }
  });
  if (child.pid !== undefined) unregister = registerKillOnExit(child.pid, 'SIGKILL');

  let stopping: Promise<void> | undefined;
  const stop = (graceMs = 5000): Promise<void> => {
    stopping ??= (async () => {
      if (done) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      await exited;
      clearTimeout(timer);
    })();
    return stopping;
  };

  return { name, child, output, exited, hasExited: () => done, stop };
}

// ---------------------------------------------------------------------------

export { sleep };

/** `promise`, or a rejection with `message` after `ms`; the timer never outlives it. */
export async function withTimeout<T>(promise: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(message)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** Whether a process with this pid exists (and may be signalled by us). */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/**
 * Polls `check` until it returns true. Fails early if `proc` exits, and on timeout;
 * both errors carry the process's last output lines.
 */
export async function waitUntil(
  what: string,
  check: () => Promise<boolean>,
  opts: { timeoutMs: number; proc?: ManagedProcess; intervalMs?: number },
): Promise<void> {
  const deadline = Date.now() + opts.timeoutMs;
  let interval = opts.intervalMs ?? 50;
  for (;;) {
    if (opts.proc?.hasExited()) {
      const how = await opts.proc.exited;
      throw new Error(`${what}: ${opts.proc.name} exited during startup (${how})${opts.proc.output.text()}`);
    }
    if (await check().catch(() => false)) return;
    if (Date.now() > deadline) {
      throw new Error(`${what}: not ready after ${opts.timeoutMs} ms${opts.proc?.output.text() ?? ''}`);
    }
    await sleep(interval);
    interval = Math.min(interval * 2, 250);
  }
}

/** Waits until `proc` answers `url` with a status `ok` accepts; stops it and throws if it never does. */
export async function waitUntilServing(proc: ManagedProcess, url: string, ok: (status: number) => boolean, init: RequestInit = {}): Promise<void> {
  await waitUntil(proc.name, () => httpAnswers(url, init, ok), { timeoutMs: 30_000, proc }).catch(async (err: unknown) => {
    await proc.stop();
    throw err;
  });
}

/** True if something answers HTTP at `url` with a status accepted by `ok` (default: any status). */
export async function httpAnswers(url: string, init: RequestInit = {}, ok: (status: number) => boolean = () => true): Promise<boolean> {
  try {
    const res = await fetch(url, { ...init, signal: AbortSignal.timeout(2000) });
    await res.body?.cancel();
    return ok(res.status);
  } catch {
    return false;
  }
}

/**
 * A TCP port that was free on 127.0.0.1 a moment ago. Another process could take it
 * before ours binds it; for servers in this process, prefer listening on port 0.
 */
export function getFreePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => {
        if (address && typeof address === 'object') resolve(address.port);
        else reject(new Error('could not determine a free port'));
      });
    });
  });
}
