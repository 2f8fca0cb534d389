// The local stack's stand-in for a product's teams: membership is the product's own
// table, public.billing_team_members, written by the product's server with the service
// role (docs/teams.md), so the example dashboard has nothing to call to make a team.
// These routes play that server for the local test users, beside the test sign-in:
//
//   GET    /__dev/teams                          the caller's teams {teams: [{id, name, role, members}]}
//   POST   /__dev/teams {"name"}                 a new team, the caller its owner (201 {team})
//   GET    /__dev/teams/<id>/members             its members {members: [{userId, email, role}]} (members only)
//   POST   /__dev/teams/<id>/members {"email", "role"}   adds a test user (owners and admins; 201 {member})
//   DELETE /__dev/teams/<id>/members/<userId>    removes one (owners and admins, or the member themselves)
//
// The caller is the user of an access token of this stack (Authorization: Bearer, as
// the billing API takes it). Rows are written through PostgREST as service_role, as a
// product's server would; the database's own rules hold (a team keeps an owner: 409).
// Team names and members' emails are not billing data: they are kept in memory, so a
// restart shows a team as "Team <id>" and a member by user id until they sign in again.
//
// It lives in the gateway with the sign-in, which only runs in the local stack: nothing
// under netlify/, src/ or public/ serves it, so no deploy has it.

import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { localUserId } from '../lib/tokens.ts';
import { emailOf } from './dev-auth.ts';
import { callerOf, createServiceRest, devHandler, jsonBody, Refusal, UUID, type DevRouteOptions } from './dev-routes.ts';

export const DEV_TEAMS_PATH = '/__dev/teams';

const ROLES = ['owner', 'admin', 'member'] as const;
type Role = (typeof ROLES)[number];
const MAX_NAME = 80;

export type DevTeamsOptions = DevRouteOptions;

export interface DevTeam {
  id: string;
  name: string;
  /** The caller's role. */
  role: Role;
  members: number;
}

export interface DevMember {
  userId: string;
  email: string | null;
  role: Role;
}

interface MemberRow {
  team_id: string;
  user_id: string;
  role: Role;
}

export function createDevTeams(opts: DevTeamsOptions): (req: IncomingMessage, res: ServerResponse) => void {
  const names = new Map<string, string>();
  const emails = new Map<string, string>();
  const serviceRest = createServiceRest(opts);

  const rest = async (method: string, path: string, body?: unknown): Promise<MemberRow[]> => {
    const answer = await serviceRest(method, path, body);
    if (!answer.error) return (answer.body ?? []) as MemberRow[];
    // The database's rules, in the words a product's server would use.
    if (answer.error.code === '23505') throw new Refusal(409, 'Already a member of this team');
    if (answer.error.code === '23514' && answer.error.message?.startsWith('Plan limit reached')) throw new Refusal(409, `${answer.error.message}: the team's plan caps its members`);
    if (answer.error.code === '23514') throw new Refusal(409, 'A team needs an owner: make another member owner first');
    throw new Error(`PostgREST answered ${answer.status}: ${answer.error.message ?? JSON.stringify(answer.body)}`);
  };

  /** The caller, from a token of this stack, or a 401; their email is remembered. */
  const caller = (req: IncomingMessage): string => {
    const { id, email } = callerOf(req, opts);
    if (email) emails.set(id, email);
    return id;
  };

  const nameOf = (teamId: string) => names.get(teamId) ?? `Team ${teamId.slice(0, 8)}`;
  const membersOf = (teamId: string) => rest('GET', `/billing_team_members?team_id=eq.${teamId}&select=team_id,user_id,role&order=created_at,user_id`);
  const roleIn = (rows: readonly MemberRow[], userId: string) => rows.find((row) => row.user_id === userId)?.role ?? null;

  const listTeams = async (userId: string): Promise<DevTeam[]> => {
    const mine = await rest('GET', `/billing_team_members?user_id=eq.${userId}&select=team_id,user_id,role&order=created_at,team_id`);
    if (mine.length === 0) return [];
    const all = await rest('GET', `/billing_team_members?team_id=in.(${mine.map((row) => row.team_id).join(',')})&select=team_id,user_id,role`);
    return mine.map((row) => ({ id: row.team_id, name: nameOf(row.team_id), role: row.role, members: all.filter((m) => m.team_id === row.team_id).length }));
  };

  const createTeam = async (userId: string, body: Record<string, unknown>): Promise<DevTeam> => {
    const name = typeof body['name'] === 'string' ? body['name'].trim() : '';
    if (name === '' || name.length > MAX_NAME) throw new Refusal(400, `Send {"name": "<1 to ${MAX_NAME} characters>"}`);
    const id = randomUUID();
    await rest('POST', '/billing_team_members', { team_id: id, user_id: userId, role: 'owner' });
    names.set(id, name);
    return { id, name, role: 'owner', members: 1 };
  };

  const addMember = async (userId: string, teamId: string, body: Record<string, unknown>): Promise<DevMember> => {
    const rows = await membersOf(teamId);
    const role = roleIn(rows, userId);
    if (role === null) throw new Refusal(403, 'Not a member of this team');
    if (role === 'member') throw new Refusal(403, 'Only owners and admins add members');
    const email = emailOf(body['email']);
    const wanted = body['role'] ?? 'member';
    if (!email || !ROLES.includes(wanted as Role)) throw new Refusal(400, 'Send {"email": "<an email address>", "role": "member" | "admin" | "owner"}');
    // Only an owner makes another owner, as products with roles usually have it.
    if (wanted === 'owner' && role !== 'owner') throw new Refusal(403, 'Only owners add owners');
    const member = localUserId(email);
    await rest('POST', '/billing_team_members', { team_id: teamId, user_id: member, role: wanted });
    emails.set(member, email);
    return { userId: member, email, role: wanted as Role };
  };

  const removeMember = async (userId: string, teamId: string, member: string): Promise<DevMember> => {
    const rows = await membersOf(teamId);
    const role = roleIn(rows, userId);
    if (role === null) throw new Refusal(403, 'Not a member of this team');
    const theirs = roleIn(rows, member);
    if (theirs === null) throw new Refusal(404, 'Not a member of this team');
    // Anyone may leave; owners remove anyone, admins anyone but an owner.
    const allowed = member === userId || role === 'owner' || (role === 'admin' && theirs !== 'owner');
    if (!allowed) throw new Refusal(403, 'Not allowed to remove this member');
    await rest('DELETE', `/billing_team_members?team_id=eq.${teamId}&user_id=eq.${member}`);
    return { userId: member, email: emails.get(member) ?? null, role: theirs };
  };

  const route = async (req: IncomingMessage, path: string): Promise<[number, unknown]> => {
    const parts = path.slice(DEV_TEAMS_PATH.length).split('/').filter(Boolean);
    const [teamId, sub, member] = parts;
    if (parts.length > 3 || (teamId !== undefined && !UUID.test(teamId)) || (sub !== undefined && sub !== 'members') || (member !== undefined && !UUID.test(member))) {
      throw new Refusal(404, 'No such route');
    }
    const method = req.method ?? 'GET';
    const allowed = teamId === undefined ? ['GET', 'POST'] : sub === undefined ? [] : member === undefined ? ['GET', 'POST'] : ['DELETE'];
    if (!allowed.includes(method)) throw new Refusal(allowed.length === 0 ? 404 : 405, allowed.length === 0 ? 'No such route' : 'Method not allowed');
    const userId = caller(req);
    const body = method === 'POST' ? await jsonBody(req) : {};
    if (teamId === undefined) return method === 'GET' ? [200, { teams: await listTeams(userId) }] : [201, { team: await createTeam(userId, body) }];
    if (member !== undefined) return [200, { removed: await removeMember(userId, teamId.toLowerCase(), member.toLowerCase()) }];
    if (method === 'POST') return [201, { member: await addMember(userId, teamId.toLowerCase(), body) }];
    const rows = await membersOf(teamId.toLowerCase());
    if (roleIn(rows, userId) === null) throw new Refusal(403, 'Not a member of this team');
    return [200, { members: rows.map((row): DevMember => ({ userId: row.user_id, email: emails.get(row.user_id) ?? null, role: row.role })) }];
  };

  return devHandler(route);
}

/** Whether a request's path is one of these routes. */
export function isDevTeamsPath(path: string): boolean {
  return path === DEV_TEAMS_PATH || path.startsWith(`${DEV_TEAMS_PATH}/`);
}
