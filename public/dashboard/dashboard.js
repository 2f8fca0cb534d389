// @ts-check
// The example dashboard: sign in as a test user of the local stack, show the user's
// subscription, or that of a team they are in, in plain words, and send them to Stripe
// Checkout or the billing portal. The billing API calls are the seed's own `fetch`
// snippets; nothing here needs a build.

import { overageText } from './overage.js';

const API = '/api/stripe';
const SUPABASE_KEY = 'dashboard.supabaseUrl';
const EMAIL_KEY = 'dashboard.email';
const TEAM_KEY = 'dashboard.team';
const ENDED = ['canceled', 'incomplete_expired'];

// Served from this machine: Stripe is then stripe-mock. `npm run dev` answers Checkout
// and the portal with local pages that play Stripe (on a loopback address), and the page
// follows them; a stripe-mock fixture URL (on Stripe's hosts) opens no page offline, so
// the page shows it, and how to play the customer with `npm run stripe:trigger`.
const LOCAL = ['localhost', '127.0.0.1', '[::1]'].includes(location.hostname);

/** The plans from GET /api/stripe/plans; empty without a catalog. */
let plans = /** @type {Plan[]} */ ([]);
let interval = 'month';

/** In memory only: gone on reload, like any token kept out of storage. */
let session = /** @type {{ token: string, user: { id: string, email: string } } | null} */ (null);
let shown = /** @type {string | undefined} */ (undefined);
let watching = /** @type {ReturnType<typeof setInterval> | undefined} */ (undefined);

/** The signed-in user's teams, and the one whose billing is shown (null: their own). */
let teams = /** @type {Team[]} */ ([]);
let team = /** @type {string | null} */ (null);
/** The team as the billing API sees the caller in it (the status's `team`). */
let teamView = /** @type {{ id: string, role: string, members: number } | null} */ (null);
let members = /** @type {Member[]} */ ([]);
/** The shown subject's limits and metered usage (the status's `limits` and `usage`). */
let usageView = /** @type {UsageBody} */ ({ limits: null, usage: null });
/** The local stack's billing clock (GET /__dev/clock); null where it does not move. */
let clock = /** @type {{ now: string, offsetSeconds: number } | null} */ (null);

/** @param {string} id */
function el(id) {
  const found = document.getElementById(id);
  if (!found) throw new Error(`#${id} is missing`);
  return found;
}

// --- Local Supabase: where the test sign-in lives ---------------------------------

/** @param {string} value */
function isLoopbackUrl(value) {
  try {
    const url = new URL(value);
    return url.protocol === 'http:' && ['localhost', '127.0.0.1', '[::1]'].includes(url.hostname);
  } catch {
    return false;
  }
}

function supabaseUrl() {
  const fromQuery = new URLSearchParams(location.search).get('supabase');
  if (fromQuery && isLoopbackUrl(fromQuery)) sessionStorage.setItem(SUPABASE_KEY, fromQuery.replace(/\/+$/, ''));
  const meta = document.querySelector('meta[name="local-supabase-url"]');
  return sessionStorage.getItem(SUPABASE_KEY) ?? meta?.getAttribute('content') ?? 'http://127.0.0.1:54321';
}

// --- Messages -------------------------------------------------------------------------

/** Shows an error in the alert region (announced), as the API worded it. @param {string} message */
function showError(message) {
  const box = el('error');
  box.textContent = message;
  box.hidden = false;
}

function clearError() {
  const box = el('error');
  box.hidden = true;
  box.textContent = '';
}

/** @param {string} message */
function notify(message) {
  el('notice').textContent = message;
}

/** @param {boolean} busy */
function setBusy(busy) {
  for (const control of document.querySelectorAll('[data-action], #signin-form button, #subject')) {
    if (control instanceof HTMLButtonElement || control instanceof HTMLSelectElement) control.disabled = busy;
  }
  el('status').setAttribute('aria-busy', String(busy));
}

/** Runs a user action with the buttons disabled and any error shown. @param {() => Promise<void>} action */
async function act(action) {
  clearError();
  notify('');
  setBusy(true);
  try {
    await action();
  } catch (error) {
    showError(error instanceof Error ? error.message : String(error));
  } finally {
    setBusy(false);
  }
}

// --- Sign-in ------------------------------------------------------------------------

/** @param {string} email */
async function signIn(email) {
  const base = supabaseUrl();
  let response;
  try {
    response = await fetch(`${base}/auth/v1/dev/token`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ email }),
    });
  } catch {
    throw new Error(`The test sign-in at ${base} did not answer. It exists only while the local stack runs (npm run dev).`);
  }
  const data = await response.json().catch(() => ({}));
  if (!response.ok || typeof data.access_token !== 'string') {
    throw new Error(data.error ?? `The test sign-in failed (HTTP ${response.status}).`);
  }
  session = { token: data.access_token, user: data.user };
  await loadPlans().catch((error) => showError(error instanceof Error ? error.message : String(error)));
  await loadTeams()
    .then(loadMembers)
    .catch((error) => showError(error instanceof Error ? error.message : String(error)));
  sessionStorage.setItem(EMAIL_KEY, data.user.email);

  el('who-email').textContent = data.user.email;
  el('who-id').textContent = data.user.id;
  renderLocalHelp(data.user.id, data.user.email);
  if (LOCAL) await loadClock();
  el('signin').hidden = true;
  el('account').hidden = false;
}

function signOut() {
  session = null;
  shown = undefined;
  stopWatching();
  sessionStorage.removeItem(EMAIL_KEY);
  forgetTeam();
  teams = [];
  renderSwitcher();
  // Nothing of this user's billing stays on the page for the next one to see.
  el('status-title').textContent = 'Loading…';
  el('status-summary').textContent = '';
  el('status-details').replaceChildren();
  el('team').hidden = true;
  el('usage').hidden = true;
  usageView = { limits: null, usage: null };
  el('account').hidden = true;
  el('handoff').hidden = true;
  el('signin').hidden = false;
  notify('Signed out.');
  el('email').focus();
}

// --- The billing API ------------------------------------------------------------------

function token() {
  if (!session) throw new Error('Sign in first.');
  return session.token;
}

/** The API's JSON, or its own error message. @param {Response} response */
async function readJson(response) {
  try {
    return await response.json();
  } catch {
    throw new Error(`The billing API answered HTTP ${response.status} without JSON.`);
  }
}

/** @param {Response} response @param {{ error?: string }} data */
function apiError(response, data) {
  if (response.status === 401) {
    // The token expired (an hour) or is not valid for this server: sign in again.
    session = null;
    el('account').hidden = true;
    el('signin').hidden = false;
  }
  return new Error(data.error ?? `The billing API answered HTTP ${response.status}.`);
}

/** The subscription of the user, or of the team shown (`?team=`), and the team as the
 *  API sees the caller in it. @returns {Promise<Subscription | null>} */
async function readSubscription() {
  const asked = team;
  const response = await fetch(`${API}/subscription${asked ? `?team=${encodeURIComponent(asked)}` : ''}`, {
    headers: { 'Authorization': `Bearer ${token()}` },
  });
  const data = await readJson(response);
  if (response.status === 403 && asked) {
    // No longer in the team (removed meanwhile): back to the user's own billing.
    showError(`${data.error ?? 'Not a member of this team'}: showing your own billing.`);
    forgetTeam();
    await loadTeams().catch(() => {});
    return readSubscription();
  }
  if (!response.ok) throw apiError(response, data);
  teamView = data.team ?? null;
  usageView = usageOf(data);
  return data.subscription;
}

/**
 * The session just paid, read from Stripe by the backend and applied now, so the page
 * need not wait for the webhook. Answers the same body as GET /subscription; null when
 * the backend cannot confirm it yet (the webhook will).
 * @param {string} sessionId
 */
async function syncCheckout(sessionId) {
  const response = await fetch(`${API}/sync`, {
    method: 'POST',
    headers: { 'Authorization': `Bearer ${token()}`, 'Content-Type': 'application/json' },
    body: JSON.stringify({ sessionId }),
  });
  const data = await readJson(response);
  if (response.ok && data.team) teamView = data.team;
  if (response.ok) usageView = usageOf(data);
  return response.ok ? data.subscription : null;
}

/** The body for checkout and the portal: the price, and the team shown; none when both are
 *  absent, as in the seed. @param {string} [price] */
function billingBody(price) {
  const body = { ...(price && { price }), ...(team && { team }) };
  return Object.keys(body).length > 0 ? { body: JSON.stringify(body) } : {};
}

/** @param {string} [price] a lookup key from /plans; the catalog's default without it */
async function subscribe(price) {
  const response = await fetch('/api/stripe/checkout', {
    method: 'POST',
    headers: {
      'Authorization': `Bearer ${token()}`,
      'Content-Type': 'application/json'
    },
    ...billingBody(price)
  });

  const data = await readJson(response);
  if (data.url) {
    goToStripe(data.url, 'checkout'); // Redirect to Stripe checkout
  } else {
    throw apiError(response, data);
  }
}

async function manageBilling() {
  const response = await fetch('/api/stripe/portal', {
    method: 'POST',
    headers: {
      'Authorization': `Bearer ${token()}`,
      'Content-Type': 'application/json'
    },
    ...billingBody()
  });

  const data = await readJson(response);
  if (data.url) {
    goToStripe(data.url, 'portal'); // Redirect to billing portal
  } else {
    throw apiError(response, data);
  }
}

/** @param {string} url @param {'checkout' | 'portal'} kind */
function goToStripe(url, kind) {
  if (LOCAL && !isLoopbackUrl(url)) {
    showHandOff(url, kind);
    return;
  }
  window.location.href = url;
}

// --- Local hand-off: what Stripe would show, and how to play it ---------------------

/** @param {string} flow */
function triggerCommand(flow) {
  return `npm run stripe:trigger -- ${flow} --user ${session?.user.id ?? '<user id>'}`;
}

/** @param {string} url @param {'checkout' | 'portal'} kind */
function showHandOff(url, kind) {
  const checkout = kind === 'checkout';
  el('handoff-heading').textContent = checkout ? 'Checkout is ready (stripe-mock)' : 'Billing portal is ready (stripe-mock)';
  el('handoff-text').textContent = checkout
    ? 'On a deployed site this button takes the user to Stripe Checkout. Locally, Stripe is stripe-mock: its Checkout URL opens no payment page, so play the customer who pays from a terminal.'
    : 'On a deployed site this button takes the user to the Stripe billing portal. Locally, Stripe is stripe-mock: its portal URL opens no page, so play what the customer does there from a terminal.';
  el('handoff-url').textContent = url;
  el('handoff-command').textContent = checkout ? triggerCommand('subscribe') : `${triggerCommand('cancel-at-period-end')}\n${triggerCommand('cancel')}`;
  const follow = el('handoff-follow');
  follow.textContent = checkout ? 'Continue to Stripe Checkout anyway' : 'Continue to the billing portal anyway';
  follow.onclick = () => {
    window.location.href = url;
  };
  el('handoff').hidden = false;
  el('handoff-heading').focus();
  startWatching();
}

function closeHandOff() {
  el('handoff').hidden = true;
  stopWatching();
  el('account-heading').focus();
}

/** @type {[flow: string, what: string][]} */
const FLOWS = [
  ['subscribe', 'the customer pays at Checkout; the subscription becomes active'],
  ['trial', 'a 14-day trial starts instead'],
  ['renew', 'the next month is paid'],
  ['payment-failed', 'the renewal payment fails; past due, with a grace period'],
  ['recover', 'a retry succeeds; active again'],
  ['cancel-at-period-end', 'the customer cancels in the portal; it ends with the period'],
  ['cancel', 'the subscription ends now'],
];

/** @param {string} userId @param {string} email */
function renderLocalHelp(userId, email) {
  const help = el('local-help');
  help.hidden = !LOCAL;
  if (!LOCAL) return;
  const list = el('local-commands');
  list.replaceChildren(
    ...FLOWS.map(([flow, what]) => {
      const item = document.createElement('li');
      const label = document.createElement('span');
      const name = document.createElement('strong');
      name.textContent = flow;
      label.append(name, `: ${what}`);
      const pre = document.createElement('pre');
      const code = document.createElement('code');
      code.textContent = `npm run stripe:trigger -- ${flow} --user ${userId}`;
      pre.append(code);
      item.append(label, pre);
      return item;
    }),
  );
  el('local-usage-commands').replaceChildren(
    ...USAGE_COMMANDS.map(([args, what]) => {
      const item = document.createElement('li');
      const pre = document.createElement('pre');
      const code = document.createElement('code');
      code.textContent = `npm run usage:add -- --email ${email} ${args}`;
      pre.append(code);
      item.append(what, pre);
      return item;
    }),
  );
}

/** @type {[args: string, what: string][]} */
const USAGE_COMMANDS = [
  ['--meter pageviews --amount 5000', 'adds 5,000 pageviews (add --team <team id> for a team you are in)'],
  ['--end-window', 'ends the current usage window: the clock moves to its end'],
  ['--advance-days 7', 'moves the clock a week on (a grace period is 7 days)'],
  ['--reset-clock', 'the clock back to the real time'],
];

// --- Teams ------------------------------------------------------------------------------
//
// Teams and their members are your product's: its server lists them and writes
// billing_team_members (docs/teams.md). Locally, the stack keeps the test users' teams
// beside the test sign-in, at <local Supabase>/__dev/teams; the billing API only reads
// membership. After each change of members, the page asks the billing API to bill the
// seats (POST /api/stripe/seats), as your server would.

/**
 * @typedef {{ id: string, name: string, role: string, members: number }} Team
 * @typedef {{ userId: string, email: string | null, role: string }} Member
 */

/** A call to the local stack's test teams. @param {string} path @param {RequestInit} [init] */
async function localTeams(path, init = {}) {
  const base = supabaseUrl();
  let response;
  try {
    response = await fetch(`${base}/__dev/teams${path}`, {
      ...init,
      headers: { 'Authorization': `Bearer ${token()}`, 'Content-Type': 'application/json' },
    });
  } catch {
    throw new Error(`The test teams at ${base} did not answer. They exist only while the local stack runs (npm run dev); in your product, teams are your server's.`);
  }
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(data.error ?? `The test teams answered HTTP ${response.status}.`);
  return data;
}

async function loadTeams() {
  teams = (await localTeams('')).teams;
  if (team && !teams.some((t) => t.id === team)) forgetTeam();
  renderSwitcher();
}

function forgetTeam() {
  team = null;
  teamView = null;
  members = [];
  sessionStorage.removeItem(TEAM_KEY);
}

/** @param {string | null} id */
async function selectTeam(id) {
  forgetTeam();
  if (id) {
    team = id;
    sessionStorage.setItem(TEAM_KEY, id);
  }
  renderSwitcher();
  await refresh();
}

/** @param {string} name */
async function createTeam(name) {
  const data = await localTeams('', { method: 'POST', body: JSON.stringify({ name }) });
  await loadTeams();
  await selectTeam(data.team.id);
  notify(`Team "${data.team.name}" created: you are its owner.`);
}

async function loadMembers() {
  members = team ? (await localTeams(`/${team}/members`)).members : [];
}

/** @param {string} email @param {string} role */
async function addMember(email, role) {
  const data = await localTeams(`/${team}/members`, { method: 'POST', body: JSON.stringify({ email, role }) });
  await afterMembersChanged(`${data.member.email} joined the team.`);
}

/** @param {Member} member */
async function removeMember(member) {
  await localTeams(`/${team}/members/${member.userId}`, { method: 'DELETE' });
  await afterMembersChanged(`${member.email ?? member.userId} left the team.`);
}

/** The team's members changed: on a per-seat plan, the billed seats follow. @param {string} said */
async function afterMembersChanged(said) {
  await loadTeams();
  const subscription = await readSubscription();
  const seats = await billSeats(subscription);
  await refresh();
  notify(seats ? `${said} Seats: ${seats.billed} billed for ${plural(seats.members, 'member')}.` : said);
  // The status shows the seats once Stripe's event lands (after the seats call).
  if (seats) startWatching();
}

/** POST /api/stripe/seats for a live subscription on a per-seat plan; null when there is none.
 *  @param {Subscription | null} subscription @returns {Promise<{ billed: number, members: number } | null>} */
async function billSeats(subscription) {
  if (!team || !subscription || ENDED.includes(subscription.status)) return null;
  if (!plans.find((p) => p.key === subscription.plan)?.seats) return null;
  const response = await fetch(`${API}/seats`, {
    method: 'POST',
    headers: { 'Authorization': `Bearer ${token()}`, 'Content-Type': 'application/json' },
    body: JSON.stringify({ team }),
  });
  const data = await readJson(response);
  if (!response.ok) throw apiError(response, data);
  return data.seats;
}

/** @param {number} n @param {string} noun */
const plural = (n, noun) => `${n} ${noun}${n === 1 ? '' : 's'}`;

function renderSwitcher() {
  const select = /** @type {HTMLSelectElement} */ (el('subject'));
  const personal = Object.assign(document.createElement('option'), { value: '', textContent: 'Personal (you)' });
  select.replaceChildren(personal, ...teams.map((t) => Object.assign(document.createElement('option'), { value: t.id, textContent: `${t.name} (${t.role})` })));
  select.value = team ?? '';
}

/** The team shown: its members, and for owners and admins, adding and removing them. */
function renderTeam() {
  el('team').hidden = !team;
  if (!team) return;
  const shownTeam = teams.find((t) => t.id === team);
  const role = teamView?.role ?? shownTeam?.role ?? 'member';
  const manages = role === 'owner' || role === 'admin';
  el('team-heading').textContent = `Members of ${shownTeam?.name ?? 'the team'}`;
  el('team-summary').textContent =
    `${plural(teamView?.members ?? members.length, 'member')}. You are ${role === 'admin' || role === 'owner' ? 'an' : 'a'} ${role}` +
    (manages ? ': you manage its members and billing.' : '; its owners and admins manage its members and billing.');
  el('member-list').replaceChildren(
    ...members.map((member) => {
      const item = document.createElement('li');
      const you = member.userId === session?.user.id;
      const name = document.createElement('span');
      name.textContent = `${member.email ?? member.userId}${you ? ' (you)' : ''}`;
      item.append(name, Object.assign(document.createElement('span'), { className: 'role', textContent: member.role }));
      if (manages && !you && !(role === 'admin' && member.role === 'owner')) {
        const remove = document.createElement('button');
        remove.type = 'button';
        remove.className = 'link';
        remove.dataset['action'] = '';
        remove.textContent = 'Remove';
        remove.setAttribute('aria-label', `Remove ${member.email ?? member.userId}`);
        remove.addEventListener('click', () => void act(() => removeMember(member)));
        item.append(remove);
      }
      return item;
    }),
  );
  el('member-form').hidden = !manages;
}

// --- Plans ----------------------------------------------------------------------------

/**
 * @typedef {{ lookupKey: string, interval: string, amount: number | null, currency: string }} PlanPrice
 * @typedef {{ key: string, name: string, description: string | null, features: { key: string, name: string }[],
 *   trial: { days: number, cardRequired: boolean } | null, prices: PlanPrice[], seats?: { min: number } | null }} Plan
 */

async function loadPlans() {
  const response = await fetch(`${API}/plans`);
  const data = await readJson(response);
  if (!response.ok) throw new Error(data.error ?? `The plans could not be read (HTTP ${response.status}).`);
  plans = data.plans;
}

/** The plans for the chosen billing period, the user's own marked. @param {Subscription | null} s */
function renderPlans(s) {
  el('plans').hidden = plans.length === 0;
  const current = s && !ENDED.includes(s.status) ? s : null;
  el('plan-list').replaceChildren(
    ...plans.flatMap((plan) => {
      const price = plan.prices.find((p) => p.interval === interval);
      if (!price) return [];
      const item = document.createElement('li');
      item.className = 'card plan';
      const heading = document.createElement('h3');
      heading.textContent = plan.name;
      const cost = document.createElement('p');
      cost.className = 'plan-price';
      cost.textContent = `${price.amount === null ? 'Price on request' : money(price.amount, price.currency)} per ${interval === 'year' ? 'year' : 'month'}`;
      const features = document.createElement('ul');
      features.className = 'features';
      features.append(...plan.features.map((f) => Object.assign(document.createElement('li'), { textContent: f.name })));
      item.append(heading, cost);
      if (plan.description) item.append(Object.assign(document.createElement('p'), { textContent: plan.description, className: 'muted' }));
      if (plan.seats) item.append(Object.assign(document.createElement('p'), { className: 'plan-seats', textContent: 'Per seat: a team pays for each member.' }));
      if (plan.trial) item.append(Object.assign(document.createElement('p'), { textContent: `${plan.trial.days}-day free trial${plan.trial.cardRequired ? '' : ', no card needed'}` }));
      item.append(features);
      if (current?.plan === plan.key && current.interval === interval) {
        item.dataset['current'] = 'true';
        item.append(Object.assign(document.createElement('p'), { textContent: 'Your plan', className: 'badge' }));
      } else {
        const choose = document.createElement('button');
        choose.type = 'button';
        choose.dataset['action'] = '';
        choose.textContent = `Choose ${plan.name}`;
        choose.setAttribute('aria-label', `Choose ${plan.name}, ${interval === 'year' ? 'annual' : 'monthly'}`);
        // A subscriber changes plan in the billing portal, as Stripe's portal allows.
        choose.addEventListener('click', () => void act(() => (current ? manageBilling() : subscribe(price.lookupKey))));
        item.append(choose);
      }
      return [item];
    }),
  );
}

/** @param {string} key */
const featureName = (key) => plans.flatMap((p) => p.features).find((f) => f.key === key)?.name ?? key;

// --- The subscription, in plain words -------------------------------------------------

const dateFormat = new Intl.DateTimeFormat('en', { dateStyle: 'long' });
/** @param {string | null | undefined} iso */
const day = (iso) => (iso ? dateFormat.format(new Date(iso)) : 'unknown');

/** @param {number} amount @param {string} currency */
function money(amount, currency) {
  const format = new Intl.NumberFormat('en', { style: 'currency', currency: currency.toUpperCase() });
  const digits = format.resolvedOptions().maximumFractionDigits ?? 2;
  return format.format(amount / 10 ** digits);
}

/**
 * @typedef {{ status: string, at: string, amount: number, currency: string, invoiceUrl: string | null, nextPaymentAttempt: string | null }} Payment
 * @typedef {{ status: string, access: boolean, accessReason: string, priceId: string | null, currentPeriodEnd: string | null,
 *   cancelAtPeriodEnd: boolean, trialEnd: string | null, graceUntil: string | null, lastPayment: Payment | null,
 *   plan?: string | null, interval?: string | null, features?: string[],
 *   scheduledChange?: { priceId: string, plan: string | null, interval: string | null, at: string } | null,
 *   seats?: { billed: number, members: number } | null }} Subscription
 */

/** @param {Subscription | null} s @returns {{ title: string, tone: string, summary: string, details: [string, string | Node][] }} */
function describe(s) {
  if (!s) {
    const summary = team ? 'This team is on the free plan. Its owners and admins can subscribe it.' : 'You are on the free plan. Subscribe to get Analytics Pro.';
    return { title: 'No subscription', tone: 'neutral', summary, details: [['Access', 'No']] };
  }
  const details = /** @type {[string, string | Node][]} */ ([]);
  let title;
  let tone = s.access ? 'ok' : 'bad';
  let summary;
  switch (s.accessReason) {
    case 'active':
      title = 'Active';
      summary = `Your subscription renews on ${day(s.currentPeriodEnd)}.`;
      details.push(['Access', 'Yes'], ['Renews on', day(s.currentPeriodEnd)]);
      break;
    case 'trialing':
      title = 'Free trial';
      summary = `Your trial ends on ${day(s.trialEnd)}; then your card is charged.`;
      details.push(['Access', 'Yes'], ['Trial ends', day(s.trialEnd)]);
      break;
    case 'canceling':
      title = `Active until ${day(s.currentPeriodEnd)}`;
      tone = 'warn';
      summary = `You canceled: your subscription will not renew. You keep access until ${day(s.currentPeriodEnd)}.`;
      details.push(['Access', `Yes, until ${day(s.currentPeriodEnd)}`], ['Ends on', day(s.currentPeriodEnd)]);
      break;
    case 'period_ended':
      title = 'Ended';
      summary = `Your subscription ended on ${day(s.currentPeriodEnd)}.`;
      details.push(['Access', 'No']);
      break;
    case 'grace_period':
      title = 'Payment failed';
      tone = 'warn';
      summary = `We could not charge your card. Update it in Manage billing: you keep access until ${day(s.graceUntil)}.`;
      details.push(['Access', `Yes, until ${day(s.graceUntil)}`]);
      break;
    case 'grace_expired':
      title = 'Payment overdue';
      summary = 'We could not charge your card and the grace period is over. Update your card in Manage billing.';
      details.push(['Access', 'No']);
      break;
    case 'canceled':
      title = 'Canceled';
      summary = 'Your subscription has ended. Subscribe again any time.';
      details.push(['Access', 'No']);
      break;
    case 'unpaid':
      title = 'Unpaid';
      summary = 'Payments failed and Stripe stopped retrying. Pay the open invoice in Manage billing.';
      details.push(['Access', 'No']);
      break;
    case 'paused':
      title = 'Paused';
      summary = 'Your subscription is paused. Resume it in Manage billing.';
      details.push(['Access', 'No']);
      break;
    case 'incomplete':
      title = 'Waiting for payment';
      tone = 'warn';
      summary = 'The first payment is not confirmed yet.';
      details.push(['Access', 'No']);
      break;
    case 'incomplete_expired':
      title = 'Checkout not completed';
      summary = 'The first payment never went through. Subscribe again any time.';
      details.push(['Access', 'No']);
      break;
    default:
      title = s.status;
      summary = '';
      details.push(['Access', s.access ? 'Yes' : 'No']);
  }
  if (s.plan) {
    const name = plans.find((p) => p.key === s.plan)?.name ?? s.plan;
    details.push(['Plan', `${name}, ${s.interval === 'year' ? 'annual' : 'monthly'}`]);
  }
  if (s.seats) details.push(['Seats', `${s.seats.billed} billed for ${plural(s.seats.members, 'member')}`]);
  if (s.scheduledChange) {
    const change = s.scheduledChange;
    const name = plans.find((p) => p.key === change.plan)?.name ?? change.plan ?? change.priceId;
    details.push(['Scheduled', `Changes to ${name}${change.interval ? `, ${change.interval === 'year' ? 'annual' : 'monthly'}` : ''} on ${day(change.at)}`]);
  }
  if (s.features && s.features.length > 0) {
    const list = document.createElement('ul');
    list.className = 'features';
    list.id = 'features';
    list.append(...s.features.map((key) => Object.assign(document.createElement('li'), { textContent: featureName(key) })));
    details.push(['Features', list]);
  }
  if (s.lastPayment) details.push(['Last payment', describePayment(s.lastPayment)]);
  return { title, tone, summary, details };
}

/** @param {Payment} p @returns {Node} */
function describePayment(p) {
  const amount = money(p.amount, p.currency);
  const text =
    p.status === 'paid'
      ? `${amount}, paid on ${day(p.at)}`
      : p.status === 'failed'
        ? `${amount}, failed on ${day(p.at)}${p.nextPaymentAttempt ? `; next attempt on ${day(p.nextPaymentAttempt)}` : ''}`
        : `${amount}, needs your confirmation (since ${day(p.at)})`;
  const out = document.createDocumentFragment();
  out.append(text);
  if (p.invoiceUrl) {
    const link = document.createElement('a');
    link.href = p.invoiceUrl;
    link.textContent = 'invoice';
    link.rel = 'noopener';
    out.append(' (', link, ')');
  }
  return out;
}

/** Renders only what changed, so the live region announces real changes. @param {Subscription | null} subscription */
function render(subscription) {
  const key = JSON.stringify([subscription, interval, team, teamView, members, usageView, clock]);
  if (key === shown) return false;
  shown = key;
  renderPlans(subscription);
  renderTeam();
  renderUsage();
  const shownTeam = teams.find((t) => t.id === team);
  el('account-heading').textContent = shownTeam ? `Subscription of ${shownTeam.name}` : 'Your subscription';
  const view = describe(subscription);
  const title = el('status-title');
  title.textContent = view.title;
  title.dataset['tone'] = view.tone;
  el('status-summary').textContent = view.summary;
  el('status-details').replaceChildren(
    ...view.details.flatMap(([term, value]) => {
      const dt = document.createElement('dt');
      dt.textContent = term;
      const dd = document.createElement('dd');
      dd.append(value);
      return [dt, dd];
    }),
  );
  // The action that fits gets the emphasis; both stay usable, so the API can say no.
  const canSubscribe = !subscription || ['canceled', 'incomplete_expired'].includes(subscription.status);
  el('subscribe').className = canSubscribe ? 'primary' : '';
  el('portal').className = canSubscribe ? '' : 'primary';
  return true;
}

/** Shows a fresh read. A change closes the Stripe hand-off: its job is done. @param {Subscription | null} subscription */
function show(subscription) {
  if (!render(subscription) || el('handoff').hidden) return;
  const hadFocus = el('handoff').contains(document.activeElement);
  el('handoff').hidden = true;
  stopWatching();
  notify('Your subscription changed.');
  if (hadFocus) el('account-heading').focus();
}

async function refresh() {
  const subscription = await readSubscription();
  await loadMembers();
  show(subscription);
}

// --- Limits and usage --------------------------------------------------------------
//
// The database decides them (docs/usage.md); the page only says them. What `locked`
// means is the product's decision: this example locks the dashboard's reports (it has
// none to hide, so it says so in a banner) while the data is still collected, until the
// plan grows or a usage window ends within the plan.

/**
 * @typedef {{ limit: number | null, used: number | null }} LimitView
 * @typedef {{ used: number, included: number | null, window: { start: string, end: string },
 *   state: 'ok' | 'warning' | 'over' | 'grace' | 'locked', graceEndsAt: string | null,
 *   overage?: { units: number, amount: number, currency: string } | null }} UsageView
 * @typedef {{ limits: Record<string, LimitView> | null, usage: Record<string, UsageView> | null }} UsageBody
 */

/** @param {{ limits?: Record<string, LimitView>, usage?: Record<string, UsageView> }} data @returns {UsageBody} */
const usageOf = (data) => ({ limits: data.limits ?? null, usage: data.usage ?? null });

const counts = new Intl.NumberFormat('en');
/** @param {string} key */
const keyName = (key) => key.charAt(0).toUpperCase() + key.slice(1).replaceAll('_', ' ');

const STATE_WORDS = { ok: 'OK', warning: 'Warning', over: 'Over', grace: 'Grace period', locked: 'Locked' };

/** The state in words (never by colour alone). @param {string} key @param {UsageView} m */
function stateText(key, m) {
  const name = key.replaceAll('_', ' ');
  const included = m.included ?? 0;
  switch (m.state) {
    case 'warning':
      return `${Math.floor((m.used * 100) / included)} % of the included ${name} used this window.`;
    case 'over':
      return `${counts.format(m.used - included)} ${name} above the ${counts.format(included)} included this window.`;
    case 'grace':
      return `Usage windows in a row ended over the plan. Upgrade by ${day(m.graceEndsAt)}, or the dashboard locks.`;
    case 'locked':
      return `Since ${day(m.graceEndsAt)}: usage stayed over the plan after its grace period. Your data is still collected; upgrade to unlock the dashboard.`;
    default:
      return m.included === null ? 'Unlimited on your plan.' : 'Within your plan.';
  }
}

/** One bar: used of included, the state in words, and when the window resets. @param {string} key @param {UsageView} m */
function meterItem(key, m) {
  const id = `meter-${key}`;
  const item = document.createElement('li');
  item.className = 'meter';
  item.dataset['state'] = m.state;
  const label = Object.assign(document.createElement('label'), { className: 'meter-name', htmlFor: id, textContent: keyName(key) });
  const amounts = Object.assign(document.createElement('span'), {
    id: `${id}-amounts`,
    className: 'meter-amounts',
    textContent: m.included === null
      ? `${counts.format(m.used)} this window (unlimited)`
      : `${counts.format(m.used)} of ${counts.format(m.included)}${m.included > 0 ? ` (${Math.floor((m.used * 100) / m.included)} %)` : ''}`,
  });
  const head = Object.assign(document.createElement('div'), { className: 'meter-head' });
  head.append(label, amounts);
  item.append(head);
  if (m.included !== null && m.included > 0) {
    // A <progress> is a progressbar to assistive technology; past 100 % it stays full and
    // the text says by how much.
    const bar = Object.assign(document.createElement('progress'), { id, max: m.included, value: Math.min(m.used, m.included) });
    bar.setAttribute('aria-describedby', `${id}-amounts ${id}-state`);
    bar.textContent = amounts.textContent;
    item.append(bar);
  }
  const state = Object.assign(document.createElement('p'), { id: `${id}-state`, className: 'meter-state' });
  state.append(Object.assign(document.createElement('strong'), { textContent: STATE_WORDS[m.state] ?? m.state }), `: ${stateText(key, m)}`);
  const resets = Object.assign(document.createElement('p'), { className: 'meter-window muted', textContent: `This usage window ends on ${day(m.window.end)}.` });
  item.append(state, resets);
  const overage = overageText(m, money);
  if (overage) item.append(Object.assign(document.createElement('p'), { id: `${id}-overage`, className: 'meter-overage', textContent: overage }));
  return item;
}

/** @param {LimitView} l */
function limitText(l) {
  if (l.limit === null) return l.used === null ? 'Unlimited' : `${counts.format(l.used)} (unlimited)`;
  if (l.used === null) return `Up to ${counts.format(l.limit)}`;
  return `${counts.format(l.used)} of ${counts.format(l.limit)}${l.used >= l.limit ? ' (at the limit)' : ''}`;
}

function renderUsage() {
  const meters = Object.entries(usageView.usage ?? {});
  // Members are a team's: a personal subject has none to count.
  const limits = Object.entries(usageView.limits ?? {}).filter(([key]) => key !== 'members' || team);
  el('usage').hidden = !session || (meters.length === 0 && limits.length === 0);
  const locked = meters.filter(([, m]) => m.state === 'locked').map(([key]) => key.replaceAll('_', ' '));
  const banner = el('usage-lock');
  banner.hidden = locked.length === 0;
  banner.textContent = locked.length === 0 ? '' : `Dashboard locked: ${locked.join(' and ')} stayed over the plan after the grace period. Your data is still collected; upgrade to unlock.`;
  el('meter-list').replaceChildren(...meters.map(([key, m]) => meterItem(key, m)));
  el('limit-list').replaceChildren(
    ...limits.flatMap(([key, l]) => [
      Object.assign(document.createElement('dt'), { textContent: keyName(key) }),
      Object.assign(document.createElement('dd'), { textContent: limitText(l) }),
    ]),
  );
  renderUsageDev(meters);
}

// Locally, the stack plays the product reporting usage (/__dev/usage) and moves the
// database's billing clock (/__dev/clock), beside the test sign-in: nothing deployed has them.

/** A call to the local stack's usage routes. @param {string} path @param {unknown} [body] */
async function localUsage(path, body) {
  const base = supabaseUrl();
  let response;
  try {
    response = await fetch(`${base}${path}`, {
      method: body === undefined ? 'GET' : 'POST',
      headers: { 'Authorization': `Bearer ${token()}`, 'Content-Type': 'application/json' },
      ...(body !== undefined && { body: JSON.stringify(body) }),
    });
  } catch {
    throw new Error(`The local stack at ${base} did not answer (npm run dev).`);
  }
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(data.error ?? `The local stack answered HTTP ${response.status}.`);
  return data;
}

async function loadClock() {
  clock = await localUsage('/__dev/clock').catch(() => null);
}

/** @param {[string, UsageView][]} meters */
function renderUsageDev(meters) {
  el('usage-dev').hidden = !LOCAL || !session;
  if (!LOCAL) return;
  const days = clock ? Math.round(clock.offsetSeconds / 864) / 100 : 0;
  el('usage-clock').textContent = clock ? `Billing clock: ${day(clock.now)}${days > 0 ? ` (${days} days ahead)` : ' (the real time)'}.` : '';
  /** @param {string} text @param {() => Promise<string>} run */
  const button = (text, run) => {
    const b = Object.assign(document.createElement('button'), { type: 'button', textContent: text, className: 'secondary' });
    b.dataset['action'] = '';
    b.addEventListener('click', () => void act(async () => {
      const said = await run();
      await loadClock();
      await refresh();
      notify(said);
    }));
    return b;
  };
  const forTeam = team ? { team } : {};
  const moveClock = /** @param {object} body */ async (body) => {
    clock = await localUsage('/__dev/clock', body);
    return `Billing clock moved to ${day(clock?.now)}.`;
  };
  el('usage-dev-actions').replaceChildren(
    ...meters.map(([key, m]) => {
      const amount = m.included ? Math.max(1, Math.round(m.included / 2)) : 10_000;
      return button(`Add ${counts.format(amount)} ${key.replaceAll('_', ' ')}`, async () => {
        const data = await localUsage('/__dev/usage', { meter: key, amount, ...forTeam });
        return `Added ${counts.format(amount)} ${key.replaceAll('_', ' ')}: ${counts.format(data.result.used)} used this window.`;
      });
    }),
    ...(clock
      ? [
          button('End this usage window', () => moveClock({ endWindow: true, ...forTeam })),
          button('Move the clock a week on', () => moveClock({ advanceDays: 7 })),
          button('Reset the clock', () => moveClock({ reset: true })),
        ]
      : []),
  );
}

// --- Watching for the webhook's effect ---------------------------------------------

function startWatching() {
  stopWatching();
  const until = Date.now() + 10 * 60_000;
  watching = setInterval(() => {
    if (!session || Date.now() > until) return stopWatching();
    if (document.visibilityState !== 'visible') return;
    readSubscription().then(show).catch(() => {});
  }, 2000);
}

function stopWatching() {
  if (watching !== undefined) clearInterval(watching);
  watching = undefined;
}

/**
 * Back from Checkout (`?checkout=success&session_id=…`): ask the backend to read the
 * session from Stripe now; if it cannot confirm it yet, the webhook may land a moment
 * after the user does, so read the status again until it gives access (up to a minute).
 * @param {string | null} sessionId
 */
async function confirmCheckout(sessionId) {
  notify('Thanks! Stripe is confirming your payment…');
  const synced = sessionId ? await syncCheckout(sessionId).catch(() => null) : null;
  if (synced?.access) {
    render(synced);
    notify('Payment confirmed: your subscription is active.');
    return;
  }
  const deadline = Date.now() + 60_000;
  for (let wait = 1000; ; wait = Math.min(wait * 2, 8000)) {
    const subscription = await readSubscription();
    render(subscription);
    if (subscription?.access) {
      notify('Payment confirmed: your subscription is active.');
      return;
    }
    if (Date.now() + wait > deadline) break;
    await new Promise((resolve) => setTimeout(resolve, wait));
  }
  notify(
    LOCAL
      ? `Stripe has not confirmed the payment yet. Locally, send it with: ${triggerCommand('subscribe')}`
      : 'Stripe has not confirmed the payment yet. This page updates when you press Refresh.',
  );
}

// --- Start ----------------------------------------------------------------------------

function start() {
  const params = new URLSearchParams(location.search);
  const checkout = params.get('checkout');
  const checkoutSession = params.get('session_id');
  supabaseUrl(); // remembers ?supabase= for this tab
  // The team shown before a visit to Stripe (checked against the user's teams at sign-in).
  team = sessionStorage.getItem(TEAM_KEY);
  if (params.has('checkout') || params.has('session_id') || params.has('supabase')) {
    history.replaceState(null, '', location.pathname);
  }

  el('signin-form').addEventListener('submit', (event) => {
    event.preventDefault();
    const input = /** @type {HTMLInputElement} */ (el('email'));
    if (!input.checkValidity()) {
      showError('Enter an email address, like ada@example.com.');
      input.focus();
      return;
    }
    void act(async () => {
      await signIn(input.value);
      await refresh();
      el('account-heading').focus();
    });
  });
  el('signout').addEventListener('click', signOut);
  el('subscribe').addEventListener('click', () => void act(subscribe));
  el('portal').addEventListener('click', () => void act(manageBilling));
  el('refresh').addEventListener('click', () => void act(refresh));
  for (const radio of document.querySelectorAll('input[name="interval"]')) {
    radio.addEventListener('change', () => {
      if (!(radio instanceof HTMLInputElement) || !radio.checked) return;
      interval = radio.value;
      const last = shown === undefined ? null : JSON.parse(shown)[0];
      shown = undefined;
      render(last);
    });
  }
  el('handoff-close').addEventListener('click', closeHandOff);
  el('subject').addEventListener('change', (event) => {
    const select = /** @type {HTMLSelectElement} */ (event.currentTarget);
    void act(() => selectTeam(select.value || null));
  });
  el('team-form').addEventListener('submit', (event) => {
    event.preventDefault();
    const input = /** @type {HTMLInputElement} */ (el('team-name'));
    const name = input.value.trim();
    if (!name) {
      showError('Name the team, like "Analytics crew".');
      input.focus();
      return;
    }
    void act(async () => {
      await createTeam(name);
      input.value = '';
      el('account-heading').focus();
    });
  });
  el('member-form').addEventListener('submit', (event) => {
    event.preventDefault();
    const input = /** @type {HTMLInputElement} */ (el('member-email'));
    if (!input.value.trim() || !input.checkValidity()) {
      showError('Enter the new member\'s email address, like grace@example.com.');
      input.focus();
      return;
    }
    const role = /** @type {HTMLSelectElement} */ (el('member-role')).value;
    void act(async () => {
      await addMember(input.value.trim(), role);
      input.value = '';
    });
  });

  // Back in this tab (after a terminal, or Stripe): read the status again.
  document.addEventListener('visibilitychange', () => {
    if (document.visibilityState === 'visible' && session) refresh().catch(() => {});
  });

  // The email of this tab's test user survives a visit to Stripe (sessionStorage,
  // this tab only), as a Supabase session would; the token itself is never stored.
  const email = sessionStorage.getItem(EMAIL_KEY);
  if (email) {
    /** @type {HTMLInputElement} */ (el('email')).value = email;
    void act(async () => {
      await signIn(email);
      if (checkout === 'success') await confirmCheckout(checkoutSession);
      else {
        if (checkout === 'canceled') notify('Checkout canceled: nothing was charged.');
        await refresh();
      }
    });
  } else if (checkout === 'success') {
    notify('Back from Checkout: sign in to see your subscription.');
  }
}

start();
