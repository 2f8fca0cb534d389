-- The grace period has one home: this table. The API's status (through the account
-- read) and the SQL entitlement functions (in policies) both read it, so they cannot
-- disagree. It replaces BILLING_GRACE_DAYS and the database setting billing.grace_days,
-- which had to be kept equal by hand, and a setting reaches PostgREST's pooled
-- connections only when they reconnect; a row is read fresh by every statement.
--
--   update public.billing_settings set grace_days = 10;

create table public.billing_settings (
  -- One row: the primary key can only be true.
  id boolean primary key default true check (id),
  grace_days integer not null default 7 check (grace_days between 0 and 90),
  updated_at timestamptz not null default now()
);

-- A database that had the setting keeps its value.
insert into public.billing_settings (grace_days)
values (coalesce(nullif(current_setting('billing.grace_days', true), '')::integer, 7));

alter table public.billing_settings enable row level security;
revoke all on public.billing_settings from anon, authenticated, public;
grant select, update on public.billing_settings to service_role;

-- Days of access after the first failed payment. security definer: policies call it as
-- the signed-in user, who cannot read the settings table.
create or replace function public.billing_grace_days() returns integer
language sql stable parallel safe
security definer
set search_path = ''
as $$
  select coalesce((select grace_days from public.billing_settings where id), 7)
$$;

-- The same number as a column of the account read (a PostgREST computed field:
-- `select=…,grace_days:billing_account_grace_days`), so the status needs no second call.
create function public.billing_account_grace_days(public.billing_accounts) returns integer
language sql stable parallel safe
set search_path = ''
as $$
  select public.billing_grace_days()
$$;

revoke execute on function public.billing_account_grace_days(public.billing_accounts) from public, anon;
grant execute on function public.billing_account_grace_days(public.billing_accounts) to authenticated, service_role;
