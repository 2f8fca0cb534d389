// Teams as the product makes them: rows in billing_team_members, written with the
// service role (docs/teams.md).

import { randomUUID } from 'node:crypto';
import { newUser, query, type TestUser } from './stack.ts';

export type Role = 'owner' | 'admin' | 'member';

/** A team of new users, one per role given (the first must be an owner). */
export async function team(...roles: Role[]): Promise<{ id: string; users: TestUser[] }> {
  const id = randomUUID();
  const users = roles.map(() => newUser());
  await query(
    `insert into billing_team_members (team_id, user_id, role) select $1, u, r from unnest($2::uuid[], $3::text[]) as x(u, r)`,
    [id, users.map((u) => u.id), roles],
  );
  return { id, users };
}
