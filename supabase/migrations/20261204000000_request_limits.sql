-- Per-subject request limits for the endpoints that call Stripe on a user's behalf
-- (checkout, portal, sync): kept here, not in a function's memory, so that they hold
-- across every instance Netlify runs. One row per subject and action: a fixed window
-- and its count, updated in one statement (the row lock orders concurrent requests).

create table public.billing_request_counts (
  -- A user (or, later, a team) id.
  subject_id uuid not null,
  action text not null,
  window_start timestamptz not null,
  hits integer not null,
  primary key (subject_id, action)
);
alter table public.billing_request_counts enable row level security;
revoke all on public.billing_request_counts from anon, authenticated, public;
grant all on public.billing_request_counts to service_role;

-- Counts one request. Returns 0 when it is within p_limit for the current window of
-- p_window_seconds, else the whole seconds until that window ends (Retry-After). The
-- count stops at p_limit + 1: refused requests cannot push the window's end further.
create function public.billing_count_request(p_subject uuid, p_action text, p_limit integer, p_window_seconds integer)
returns integer
language sql
volatile
security invoker
set search_path = ''
as $$
  insert into public.billing_request_counts as c (subject_id, action, window_start, hits)
  values (p_subject, p_action, now(), 1)
  on conflict (subject_id, action) do update set
    window_start = case when c.window_start + make_interval(secs => p_window_seconds) <= now() then now() else c.window_start end,
    hits = case when c.window_start + make_interval(secs => p_window_seconds) <= now() then 1 else least(c.hits + 1, p_limit + 1) end
  returning case
    when hits <= p_limit then 0
    else greatest(1, ceil(extract(epoch from (window_start + make_interval(secs => p_window_seconds) - now()))))::integer
  end;
$$;

revoke execute on function public.billing_count_request(uuid, text, integer, integer) from public, anon, authenticated;
grant execute on function public.billing_count_request(uuid, text, integer, integer) to service_role;
