-- The part of a Supabase database that this project's migrations and PostgREST rely on,
-- for a plain PostgreSQL server. Mirrors supabase/postgres
-- (migrations/db/init-scripts/00000000000000-initial-schema.sql and later role
-- migrations) and supabase/auth (migrations/20240624145325_recreate_auth_functions).
--
-- Idempotent: the local stack applies it on every start, before the migrations.
-- The authenticator's password is set by the stack right after this file
-- (scripts/stack/postgres.ts), so it is not written here.
--
-- Deliberately left out: Supabase's default privileges (`alter default privileges in
-- schema public grant all on tables ... to anon, authenticated, service_role`). Our
-- migrations grant explicitly, so a migration that forgets a grant fails here too.

-- API roles. PostgREST logs in as authenticator and switches to the role named in the
-- request's JWT (`role` claim), or to anon when there is no JWT.
do $$
begin
  if not exists (select from pg_roles where rolname = 'anon') then
    create role anon nologin noinherit;
  end if;
  if not exists (select from pg_roles where rolname = 'authenticated') then
    create role authenticated nologin noinherit;
  end if;
  if not exists (select from pg_roles where rolname = 'service_role') then
    create role service_role nologin noinherit bypassrls;
  end if;
  if not exists (select from pg_roles where rolname = 'authenticator') then
    create role authenticator login noinherit;
  end if;
end
$$;

-- supabase/postgres 20230529180330_alter_api_roles_for_inherit: the API roles have
-- been INHERIT since 2023 (authenticator stays NOINHERIT). No effect here, as they
-- are members of no other role, but it keeps pg_roles identical to Supabase's.
alter role anon inherit;
alter role authenticated inherit;
alter role service_role inherit;
alter role service_role bypassrls;
alter role authenticator login noinherit;

do $$
begin
  if not pg_has_role('authenticator', 'anon', 'member') then
    grant anon to authenticator;
  end if;
  if not pg_has_role('authenticator', 'authenticated', 'member') then
    grant authenticated to authenticator;
  end if;
  if not pg_has_role('authenticator', 'service_role', 'member') then
    grant service_role to authenticator;
  end if;
end
$$;

-- Supabase's timeouts for API requests.
alter role anon set statement_timeout = '3s';
alter role authenticated set statement_timeout = '8s';
alter role authenticator set statement_timeout = '8s';
alter role authenticator set lock_timeout = '8s';

grant usage on schema public to anon, authenticated, service_role;

-- Extensions live in their own schema on Supabase; migrations may call
-- extensions.gen_random_bytes() or extensions.uuid_generate_v4().
create schema if not exists extensions;
grant usage on schema extensions to anon, authenticated, service_role;
do $$
begin
  if exists (select from pg_available_extensions where name = 'pgcrypto') then
    create extension if not exists pgcrypto with schema extensions;
  end if;
  if exists (select from pg_available_extensions where name = 'uuid-ossp') then
    create extension if not exists "uuid-ossp" with schema extensions;
  end if;
end
$$;

-- auth schema with Supabase's helpers for RLS policies. PostgREST 12 puts the JWT's
-- claims in `request.jwt.claims` (JSON); the `request.jwt.claim.<name>` settings are
-- what older PostgREST versions set, and Supabase's functions still read both.
create schema if not exists auth;
grant usage on schema auth to anon, authenticated, service_role;

create or replace function auth.uid()
  returns uuid
  language sql stable
  set search_path to ''
as $$
  select coalesce(
    nullif(current_setting('request.jwt.claim.sub', true), ''),
    (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub')
  )::uuid
$$;

create or replace function auth.role()
  returns text
  language sql stable
  set search_path to ''
as $$
  select coalesce(
    nullif(current_setting('request.jwt.claim.role', true), ''),
    (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'role')
  )::text
$$;

create or replace function auth.email()
  returns text
  language sql stable
  set search_path to ''
as $$
  select coalesce(
    nullif(current_setting('request.jwt.claim.email', true), ''),
    (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'email')
  )::text
$$;

create or replace function auth.jwt()
  returns jsonb
  language sql stable
  set search_path to ''
as $$
  select coalesce(
    nullif(current_setting('request.jwt.claim', true), ''),
    nullif(current_setting('request.jwt.claims', true), '')
  )::jsonb
$$;

comment on function auth.uid() is 'Deprecated. Use auth.jwt() -> ''sub'' instead.';
comment on function auth.role() is 'Deprecated. Use auth.jwt() -> ''role'' instead.';
comment on function auth.email() is 'Deprecated. Use auth.jwt() -> ''email'' instead.';
