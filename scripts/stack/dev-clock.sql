-- The local stack's movable clock (npm run dev, and tests that walk usage windows in
-- the browser), applied after the migrations on every start when the stack is started
-- with devClock; idempotent. Never a migration: no deployed database can move its time.
--
-- billing_now() (20261204600000) is the only clock the billing SQL reads. Here it is
-- wrapped: what the deployed definition answers (now(), or the transaction's billing.now),
-- plus billing_dev.clock's offset, which only moves forward (or back to 0). The deployed
-- body is kept as billing_dev.deployed_now(), copied from the catalog rather than written
-- here again, so the wrapper follows whatever the migrations define.
-- `create or replace` keeps billing_now's oid: billing_track's `p_at default
-- billing_now()` follows the wrapper too.

create schema if not exists billing_dev;
revoke all on schema billing_dev from public;

create table if not exists billing_dev.clock (
  only_row boolean primary key default true check (only_row),
  offset_seconds bigint not null default 0 check (offset_seconds >= 0)
);
insert into billing_dev.clock default values on conflict do nothing;

do $wrap$
declare
  v_definition text := pg_get_functiondef('public.billing_now()'::regprocedure);
begin
  if position('billing_dev.' in v_definition) > 0 then
    return; -- wrapped on an earlier start, and no migration has redefined it since
  end if;
  execute replace(v_definition, 'FUNCTION public.billing_now()', 'FUNCTION billing_dev.deployed_now()');
  revoke all on function billing_dev.deployed_now() from public;
  -- security definer: its callers (service_role, authenticated) need no grant on billing_dev.
  create or replace function public.billing_now() returns timestamptz
  language sql stable parallel safe
  security definer
  set search_path = ''
  as $$
    select billing_dev.deployed_now() + make_interval(secs => (select c.offset_seconds from billing_dev.clock c))
  $$;
end;
$wrap$;

-- Reads or moves the clock: forward by p_advance_seconds, to the end of p_end_window_of's
-- current usage window (the next window then starts), or back to the real time
-- (p_reset). Answers {now, offsetSeconds} after the move. service_role only (the local
-- gateway's /__dev/clock and `npm run usage:add` call it through PostgREST).
create or replace function public.billing_dev_clock(
  p_advance_seconds bigint default null,
  p_end_window_of uuid default null,
  p_reset boolean default false
) returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_seconds bigint := coalesce(p_advance_seconds, 0);
begin
  if v_seconds < 0 then
    raise exception 'The local clock only moves forward (or resets)' using errcode = 'invalid_parameter_value';
  end if;
  if p_end_window_of is not null then
    select v_seconds + greatest(ceil(extract(epoch from w.window_end - public.billing_now()))::bigint, 0)
      into v_seconds
    from public.billing_usage_window(p_end_window_of, public.billing_now()) w;
  end if;
  update billing_dev.clock c
    set offset_seconds = case when p_reset then 0 else c.offset_seconds + v_seconds end;
  return (select jsonb_build_object('now', public.billing_now(), 'offsetSeconds', c.offset_seconds) from billing_dev.clock c);
end;
$$;
revoke all on function public.billing_dev_clock(bigint, uuid, boolean) from public, anon, authenticated;
grant execute on function public.billing_dev_clock(bigint, uuid, boolean) to service_role;
