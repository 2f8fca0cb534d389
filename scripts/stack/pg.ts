// The `pg` client, as the stack uses it.

import pg from 'pg';

export type PgClient = pg.Client;
export type PgError = pg.DatabaseError;

/** A connected client; connection errors after connecting are logged, not thrown. */
export async function connect(connectionString: string, onError: (err: Error) => void): Promise<PgClient> {
  const client = new pg.Client({ connectionString, connectionTimeoutMillis: 10_000 });
  client.on('error', onError);
  await client.connect();
  return client;
}
