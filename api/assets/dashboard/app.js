// vigil dashboard: a dependency-free page over the JSON API. It signs in with the token API,
// holds one live stream (GET /api/v1/stream, server-sent events read through fetch so the
// token goes in a header) that pushes queue counts, alerts, instances and schedules, and
// reloads the job list and audit records only when the stream says jobs changed (at most
// every JOBS_MIN_MS). It renders with textContent only, so nothing from a job payload or an
// event is ever parsed as HTML.
"use strict";

const PAGE_SIZE = 20;
const JOBS_MIN_MS = 2000; // the job list reloads at most this often, however busy the queues
const AUDIT_MIN_MS = 10000;
const store = window.sessionStorage;
const ALERTS_PAGE = 20;
const state = { page: 1, total: 0, alertsPage: 1, auditPage: 1, selectedJob: null, selectedAlert: null, selectedSchedule: null, role: null, pausedUntil: 0, stream: null, chartsAsked: 0 };

const $ = (id) => document.getElementById(id);

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}

function when(ts) {
  if (!ts) return "—";
  const d = new Date(ts);
  return isNaN(d) ? String(ts) : d.toLocaleString();
}

function list(body, ...keys) {
  if (Array.isArray(body)) return body;
  for (const k of keys) if (body && Array.isArray(body[k])) return body[k];
  return [];
}

// ---- API access -----------------------------------------------------------------------

// Refresh tokens rotate and a retired one revokes the whole session, so concurrent 401s
// share one refresh instead of each sending the same token.
let tokenRefresh = null;
function refreshTokens() {
  if (!tokenRefresh) tokenRefresh = refreshOnce().finally(() => { tokenRefresh = null; });
  return tokenRefresh;
}

async function refreshOnce() {
  const refresh = store.getItem("vigil.refresh");
  if (!refresh) return false;
  const res = await fetch("/api/v1/auth/refresh", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ refresh_token: refresh }),
  });
  if (!res.ok) return false;
  saveTokens(await res.json());
  return true;
}

async function api(path, options = {}, retried = false) {
  const headers = Object.assign({ Accept: "application/json" }, options.headers || {});
  const token = store.getItem("vigil.access");
  if (token) headers.Authorization = "Bearer " + token;
  if (options.body !== undefined) headers["Content-Type"] = "application/json";
  const res = await fetch(path, {
    method: options.method || "GET",
    headers,
    body: options.body === undefined ? undefined : JSON.stringify(options.body),
  });
  if (res.status === 401 && !retried && (await refreshTokens())) {
    return api(path, options, true);
  }
  if (res.status === 401) {
    signOut("Your session ended. Sign in again.");
    throw new Error("signed out");
  }
  const text = await res.text();
  let body = null;
  try { body = text ? JSON.parse(text) : null; } catch (_) { body = text; }
  if (!res.ok) {
    const err = new Error((body && body.message) || res.statusText || "request failed");
    err.status = res.status;
    if (res.status === 429) {
      // Shared per-user budget (several tabs count together): wait as the server says.
      const wait = Number(res.headers.get("Retry-After")) || 30;
      state.pausedUntil = Date.now() + wait * 1000;
      err.message = `rate limited; updates resume in ${wait} s`;
      $("live").textContent = err.message;
    }
    throw err;
  }
  return body;
}

function saveTokens(pair) {
  store.setItem("vigil.access", pair.access_token);
  if (pair.refresh_token) store.setItem("vigil.refresh", pair.refresh_token);
  if (pair.role) store.setItem("vigil.role", pair.role);
}

// ---- sign in / out --------------------------------------------------------------------

async function signIn(event) {
  event.preventDefault();
  $("sign-in-error").textContent = "";
  const username = $("username").value;
  const password = $("password").value;
  try {
    const res = await fetch("/api/v1/auth/token", {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify({ username, password }),
    });
    const body = await res.json().catch(() => ({}));
    if (!res.ok) throw new Error(body.message || "sign-in failed");
    saveTokens(body);
    store.setItem("vigil.user", username);
    $("password").value = "";
    showApp();
  } catch (e) {
    $("sign-in-error").textContent = e.message;
  }
}

// Single sign-on: the sign-in link shows when vigil offers it; after the identity provider,
// vigil sends the browser back with a one-time code in the fragment (never sent to a
// server), traded here for the tokens.
async function offerSso() {
  try {
    const res = await fetch("/api/v1/auth/oidc", { headers: { Accept: "application/json" } });
    const info = res.ok ? await res.json() : {};
    if (info.enabled) $("sso").hidden = false;
  } catch (_) { /* password sign-in still works */ }
}

async function finishSso(code) {
  history.replaceState(null, "", location.pathname);
  try {
    const res = await fetch("/api/v1/auth/oidc/exchange", {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify({ code }),
    });
    const body = await res.json().catch(() => ({}));
    if (!res.ok) throw new Error(body.message || "single sign-on failed");
    saveTokens(body);
    store.setItem("vigil.user", body.username);
    showApp();
  } catch (e) {
    $("sign-in-error").textContent = e.message;
  }
}

function signOut(message) {
  ["vigil.access", "vigil.refresh", "vigil.role", "vigil.user"].forEach((k) => store.removeItem(k));
  stopStream();
  $("app").hidden = true;
  $("who").hidden = true;
  $("sign-in").hidden = false;
  $("sign-in-error").textContent = message || "";
}

function showApp() {
  state.role = store.getItem("vigil.role") || "analyst";
  document.body.classList.toggle("admin", state.role === "admin");
  $("who-name").textContent = (store.getItem("vigil.user") || "") + " (" + state.role + ")";
  $("who").hidden = false;
  $("sign-in").hidden = true;
  $("app").hidden = false;
  refreshJobs().catch(showFailure);
  refreshAudit();
  if (state.selectedAlert) showAlert(state.selectedAlert);
  if (state.selectedJob) showJob(state.selectedJob);
  startStream();
}

const isAdmin = () => state.role === "admin";

// Gives each cell of a table body its column's name (shown as a label on phones).
function labelCells(body) {
  const names = [...body.closest("table").querySelectorAll("thead th")].map((th) => th.textContent);
  for (const tr of body.rows) [...tr.cells].forEach((cell, i) => { cell.dataset.label = names[i] || ""; });
}

// An action button: runs `onClick`, then `after` (what to show again); an error shows
// inline in the element `note`, never in an alert() box. The click does not reach the row
// beneath (rows open details).
function actionButton(label, aria, onClick, after = refreshJobs, note = "jobs-note") {
  const b = el("button", label, "secondary");
  b.type = "button";
  b.setAttribute("aria-label", aria);
  b.addEventListener("click", async (ev) => {
    ev.stopPropagation();
    b.disabled = true;
    $(note).textContent = "";
    try { await onClick(); await after(); }
    catch (e) { if (e.message !== "signed out") { $(note).className = "error"; $(note).textContent = e.message; } }
    finally { b.disabled = false; }
  });
  return b;
}

// ---- panels ---------------------------------------------------------------------------

// The job filter offers every queue the server runs (the registry's, as the stream reports).
function offerQueue(name) {
  const select = $("filter-queue");
  if (![...select.options].some((o) => o.value === name)) select.append(el("option", name));
}

function renderQueues(queues) {
  for (const q of queues) { offerQueue(q.queue); offerChartQueue(q.queue); }
  sparksChanged();
  const body = $("queues-body");
  body.replaceChildren();
  for (const q of queues) {
    const tr = el("tr");
    tr.dataset.queue = q.queue;
    tr.append(el("th", q.queue));
    tr.firstChild.scope = "row";
    for (const k of ["pending", "scheduled", "running", "done", "failed", "dead"]) {
      const td = el("td", q.counts[k]);
      td.dataset.count = k;
      tr.append(td);
    }
    tr.append(el("td", q.processed_last_minute));
    tr.append(sparkCell(q.queue));
    if (q.enabled === false) tr.append(el("td", "disabled: " + q.disabled_reason, "bad"));
    else tr.append(el("td", q.paused ? "paused" : "running", q.paused ? "bad" : "ok"));
    const act = el("td", null, "admin-only");
    if (isAdmin()) {
      const verb = q.paused ? "resume" : "pause";
      act.append(actionButton(verb === "pause" ? "Pause" : "Resume", `${verb} queue ${q.queue}`,
        () => api(`/api/v1/queues/${q.queue}/${verb}`, { method: "POST" })));
    }
    tr.append(act);
    body.append(tr);
  }
  labelCells(body);
}

async function refreshJobs() {
  const params = new URLSearchParams({ page: state.page, page_size: PAGE_SIZE });
  if ($("filter-queue").value) params.set("queue", $("filter-queue").value);
  if ($("filter-status").value) params.set("status", $("filter-status").value);
  if ($("filter-q").value.trim()) params.set("q", $("filter-q").value.trim());
  reflectFilters();
  const page = await api("/api/v1/jobs?" + params);
  const jobs = list(page, "results");
  state.total = page.count || 0;
  const body = $("jobs-body");
  body.replaceChildren();
  for (const j of jobs) {
    const tr = el("tr", null, "clickable");
    tr.dataset.job = j.id;
    tr.tabIndex = 0;
    tr.setAttribute("aria-label", `job ${j.id}, ${j.status}`);
    tr.append(el("td", j.id), el("td", j.queue), el("td", j.status, "status-" + j.status));
    tr.append(el("td", `${j.attempts}/${j.max_attempts}`), el("td", when(j.created_at)));
    tr.append(el("td", ["scheduled", "failed"].includes(j.status) ? when(j.run_at) : "—"));
    tr.append(el("td", duration(j.duration_ms)), workerCell(j.worker));
    tr.append(el("td", j.last_error || "", "err"));
    const act = el("td", null, "admin-only");
    if (isAdmin() && (j.actions || []).includes("retry")) {
      act.append(actionButton("Retry", `retry job ${j.id}`, () => api(`/api/v1/jobs/${j.id}/retry`, { method: "POST" })));
    }
    if (isAdmin() && (j.actions || []).includes("cancel")) {
      act.append(actionButton("Cancel", `cancel job ${j.id}`, () => api(`/api/v1/jobs/${j.id}/cancel`, { method: "POST" })));
    }
    tr.append(act);
    const open = () => showJob(j.id);
    tr.addEventListener("click", open);
    tr.addEventListener("keydown", (e) => { if (e.key === "Enter") open(); });
    body.append(tr);
  }
  labelCells(body);
  const pages = Math.max(1, Math.ceil(state.total / PAGE_SIZE));
  $("jobs-page").textContent = `page ${state.page} of ${pages} (${state.total} jobs)`;
  $("jobs-prev").disabled = state.page <= 1;
  $("jobs-next").disabled = state.page >= pages;
  if (state.selectedJob) await showJob(state.selectedJob, true);
}

// "1.2 s", "340 ms", "—".
function duration(ms) {
  if (ms === null || ms === undefined) return "—";
  return ms >= 1000 ? (ms / 1000).toFixed(1) + " s" : ms + " ms";
}

// A worker id is `ROLE@HOST-PID-ULID-QUEUE@HOST-PID-ULID` (its instance, its queue, its
// start): shown as "ROLE@HOST-PID QUEUE", the whole id in the title.
function shortWorker(worker) {
  const m = (worker || "").match(/^([a-z]+@.+?)-[0-9A-HJKMNP-TV-Z]{26}-([a-z0-9_]+)@/);
  return m ? `${m[1]} ${m[2]}` : worker || "—";
}

function workerCell(worker) {
  const td = el("td", shortWorker(worker));
  if (worker) td.title = worker;
  return td;
}

const TIMELINE_TEXT = {
  enqueued: (e) => `enqueued${e.by ? " by " + e.by : ""}${e.detail ? " (" + e.detail + ")" : ""}`,
  started: (e) => `attempt ${e.attempt} started on ${e.worker ? shortWorker(e.worker) : "a worker"}`,
  failed: (e) => `attempt ${e.attempt} failed: ${e.error}`,
  dead: (e) => e.attempt ? `attempt ${e.attempt} failed, job dead: ${e.error}` : "dead",
  done: (e) => `attempt ${e.attempt} done${e.detail ? " (" + e.detail + ")" : ""}`,
  retried: (e) => `retried by ${e.by}`,
  cancelled: (e) => `cancelled${e.by ? " by " + e.by : ""}`,
  deleted: (e) => `deleted by ${e.by}`,
};

// The job page: fields, timeline, payload, errors and the admin's actions. Its address is
// `/dashboard/jobs/ID` (the server sends it to `#/jobs/ID`).
async function showJob(id, quiet) {
  let j, t;
  try {
    [j, t] = await Promise.all([api(`/api/v1/jobs/${encodeURIComponent(id)}`),
      api(`/api/v1/jobs/${encodeURIComponent(id)}/timeline`)]);
  } catch (e) { if (!quiet) { $("jobs-note").className = "error"; $("jobs-note").textContent = e.message; } return; }
  state.selectedJob = id;
  setHash(`#/jobs/${id}`);
  $("job-detail").hidden = false;
  $("job-detail-id").textContent = j.id;
  $("job-detail-link").href = `/dashboard/jobs/${encodeURIComponent(j.id)}`;
  const dl = $("job-detail-fields");
  dl.replaceChildren();
  const fields = [["Queue", j.queue], ["Status", j.status], ["Attempts", `${j.attempts} of ${j.max_attempts}`],
    ["Created", when(j.created_at)], ["Runs at", when(j.run_at)], ["Started", when(j.started_at)],
    ["Finished", when(j.finished_at)], ["Duration", duration(j.duration_ms)], ["Worker", j.worker || "—"],
    ["Idempotency key", j.idempotency_key || "—"]];
  for (const [k, v] of fields) dl.append(el("dt", k), el("dd", v));
  const acts = $("job-detail-actions");
  acts.replaceChildren();
  const after = async () => { await refreshJobs(); await showJob(id, true); };
  if (isAdmin()) {
    for (const a of j.actions || []) {
      acts.append(actionButton(a === "retry" ? "Retry" : "Cancel", `${a} job ${j.id}`,
        () => api(`/api/v1/jobs/${encodeURIComponent(j.id)}/${a}`, { method: "POST" }), after, "job-detail-note"));
    }
    if (j.status !== "running") {
      acts.append(actionButton("Delete", `delete job ${j.id}`,
        () => api(`/api/v1/jobs/${encodeURIComponent(j.id)}`, { method: "DELETE" }), closeJob, "job-detail-note"));
    }
  }
  const tl = $("job-detail-timeline");
  tl.replaceChildren();
  for (const e of t.entries || []) {
    const li = el("li", null, "tl-" + e.event);
    li.dataset.event = e.event;
    li.append(el("span", when(e.at), "when"), document.createTextNode((TIMELINE_TEXT[e.event] || ((x) => x.event))(e)));
    tl.append(li);
  }
  $("job-detail-payload").textContent = JSON.stringify(j.payload, null, 2);
  const errs = $("job-detail-errors");
  errs.replaceChildren();
  for (const e of j.errors || []) errs.append(el("li", `attempt ${e.attempt} at ${when(e.at)}: ${e.error}`));
  if (!(j.errors || []).length) errs.append(el("li", "none"));
  if (!quiet) $("job-detail").scrollIntoView({ block: "start" });
}

async function closeJob() {
  state.selectedJob = null;
  $("job-detail").hidden = true;
  setHash("");
  await refreshJobs();
}

// ---- charts ---------------------------------------------------------------------------

// Per-queue series from `/api/v1/queues/{queue}/series`: a sparkline of done jobs per
// minute in each queue row, and the chosen queue's charts. Reloaded at most every 30 s.
const SERIES_MIN_MS = 30000;
const sparks = {};

function offerChartQueue(name) {
  const select = $("chart-queue");
  if (![...select.options].some((o) => o.value === name)) select.append(el("option", name));
}

function sparkCell(queue) {
  const td = el("td");
  td.dataset.spark = queue;
  const s = sparks[queue];
  if (s) td.append(VigilCharts.sparkline(s.done, s.label));
  return td;
}

function sparkOf(queue, points) {
  const done = points.map((p) => p.done);
  const waits = points.map((p) => p.wait_p95_ms).filter((v) => v !== null && v !== undefined);
  const label = `${queue}: ${done.reduce((a, b) => a + b, 0)} done in the last hour, peak ` +
    `${Math.max(0, ...done)} per minute` + (waits.length ? `, wait p95 up to ${VigilCharts.short(Math.max(...waits))} ms` : "");
  sparks[queue] = { done, label };
  const td = document.querySelector(`td[data-spark="${queue}"]`);
  if (td) td.replaceChildren(VigilCharts.sparkline(done, label));
}

async function refreshSparks() {
  const queues = [...$("chart-queue").options].map((o) => o.value);
  await Promise.all(queues.map(async (q) => {
    const s = await api(`/api/v1/queues/${encodeURIComponent(q)}/series?range=1h`);
    sparkOf(q, s.points);
  }));
}

async function refreshCharts() {
  const queue = $("chart-queue").value;
  if (!queue) return;
  const range = $("chart-range").value;
  const asked = ++state.chartsAsked; // an answer to an older choice is dropped
  $("charts-note").textContent = "";
  let s;
  try { s = await api(`/api/v1/queues/${encodeURIComponent(queue)}/series?range=${range}`); }
  catch (e) { if (e.message !== "signed out" && asked === state.chartsAsked) $("charts-note").textContent = e.message; return; }
  if (asked !== state.chartsAsked) return;
  const per = range === "1h" ? "minute" : "15 minutes";
  $("charts-body").replaceChildren(
    VigilCharts.lineChart(s.points, [{ key: "enqueued", label: "enqueued" }, { key: "done", label: "done" },
      { key: "failed", label: "retrying" }, { key: "dead", label: "dead" }], { title: `${queue}: jobs per ${per}` }),
    VigilCharts.lineChart(s.points, [{ key: "wait_p50_ms", label: "wait p50" }, { key: "wait_p95_ms", label: "wait p95" },
      { key: "run_p50_ms", label: "run p50" }, { key: "run_p95_ms", label: "run p95" }],
      { title: `${queue}: enqueue-to-start wait and run time`, unit: " ms" }));
}

const reloadSchedules = async () => renderSchedules(list(await api("/api/v1/schedules"), "results"));

// Schedules: each with its next and last run; admins switch one off or on (every instance)
// and run it now; a click shows its last runs with each job's status.
function renderSchedules(schedules) {
  const body = $("schedules-body");
  body.replaceChildren();
  for (const s of schedules) {
    const tr = el("tr", null, "clickable");
    tr.dataset.schedule = s.name;
    tr.tabIndex = 0;
    tr.setAttribute("aria-label", `schedule ${s.name}, ${s.enabled ? "on" : "off"}`);
    const last = s.last_run;
    const lastText = last ? (last.error ? "failed: " + last.error : "enqueued " + (last.job_id || "") +
      (last.manual_by ? " (run by " + last.manual_by + ")" : "")) : "—";
    tr.append(el("td", s.name), el("td", s.cron), el("td", s.queue),
      el("td", s.enabled ? when(s.next_run) : "off: " + (s.disabled_by
        ? `switched off by ${s.disabled_by} at ${when(s.disabled_at)}` : s.disabled_reason || "disabled"), s.enabled ? "" : "bad"),
      el("td", last ? when(last.tick) : "—"), el("td", lastText, last && last.error ? "bad" : ""));
    const act = el("td", null, "admin-only");
    if (isAdmin()) {
      const path = `/api/v1/schedules/${encodeURIComponent(s.name)}`;
      // Off in config or by a disabled queue is not switched on here; off by hand is.
      const verb = s.enabled ? "disable" : s.disabled_by ? "enable" : null;
      if (verb) {
        act.append(actionButton(verb === "disable" ? "Disable" : "Enable", `${verb} schedule ${s.name}`,
          () => api(`${path}/${verb}`, { method: "POST" }), reloadSchedules, "schedules-note"));
      }
      act.append(actionButton("Run now", `run schedule ${s.name} now`, () => api(`${path}/run`, { method: "POST" }),
        reloadSchedules, "schedules-note"));
    }
    tr.append(act);
    const open = () => showScheduleRuns(s.name);
    tr.addEventListener("click", open);
    tr.addEventListener("keydown", (e) => { if (e.key === "Enter") open(); });
    body.append(tr);
  }
  labelCells(body);
  if (state.selectedSchedule) showScheduleRuns(state.selectedSchedule, true);
}


async function showScheduleRuns(name, quiet) {
  let page;
  try { page = await api(`/api/v1/schedules/${encodeURIComponent(name)}/runs?limit=20`); }
  catch (e) { if (e.message !== "signed out") $("schedules-note").textContent = e.message; return; }
  state.selectedSchedule = name;
  $("schedule-detail").hidden = false;
  $("schedule-detail-name").textContent = name;
  const body = $("schedule-detail-runs");
  body.replaceChildren();
  for (const r of page.results || []) {
    const tr = el("tr");
    tr.append(el("td", when(r.tick)), el("td", r.manual_by || "cron"), el("td", r.job_id || "—"),
      el("td", r.job_status || "—", "status-" + (r.job_status || "")), el("td", r.error || "", "err"));
    body.append(tr);
  }
  if (!(page.results || []).length) body.append(emptyRow("no runs yet", 5));
  labelCells(body);
  if (!quiet) $("schedule-detail").scrollIntoView({ block: "start" });
}

// The fleet: every live instance (GET /api/v1/instances) with its role, queues and actors.
function renderActors(instances) {
  const ul = $("actors-list");
  ul.replaceChildren();
  if (!instances.length) ul.append(el("li", "no live instance reports (is any vigil running?)", "bad"));
  for (const i of instances) {
    const li = el("li");
    li.dataset.instance = i.instance;
    li.append(el("span", i.healthy ? "● healthy " : "● unhealthy ", i.healthy ? "ok" : "bad"),
      el("strong", i.role), el("span", " " + i.instance),
      el("span", " — queues: " + (i.queues.length ? i.queues.join(", ") : "none")),
      el("span", ", restarts: " + i.restarts),
      el("span", ", heartbeat: " + when(i.heartbeat)));
    if (i.last_error) li.append(el("span", " — last error: " + i.last_error, "bad"));
    const actors = el("ul");
    for (const a of i.actors) {
      const li = el("li", `${a.name}: ${a.healthy ? "healthy" : "unhealthy"}` +
        (a.concurrency ? `, running ${a.in_flight} of ${a.concurrency}` : "") +
        (a.restarts ? `, ${a.restarts} restarts` : "") + (a.last_error ? ` (${a.last_error})` : ""),
        a.healthy ? "" : "bad");
      li.dataset.actor = a.name;
      if (a.worker) li.title = a.worker;
      actors.append(li);
    }
    li.append(actors);
    ul.append(li);
  }
}

// The alert filters and page; with none set (page 1) the stream's newest alerts are shown
// as they come, otherwise the page is read from GET /api/v1/alerts when the stream says
// alerts changed.
function alertParams() {
  const params = new URLSearchParams({ page: state.alertsPage, page_size: ALERTS_PAGE });
  if ($("alerts-status").value) params.set("status", $("alerts-status").value);
  if ($("alerts-severity").value) params.set("severity", $("alerts-severity").value);
  if ($("alerts-rule").value.trim()) params.set("rule", $("alerts-rule").value.trim());
  return params;
}

const alertsFiltered = () => [...alertParams().keys()].length > 2 || state.alertsPage > 1;

async function refreshAlerts() {
  try { renderAlerts(await api("/api/v1/alerts?" + alertParams()), true); }
  catch (e) { if (e.message !== "signed out") $("alerts-note").textContent = e.message; }
}

function renderAlerts(page, fetched) {
  if (!fetched && alertsFiltered()) { alertsListChanged(); return; }
  $("alerts-note").className = "note";
  $("alerts-note").textContent = "";
  const alerts = list(page, "results", "alerts");
  const total = page.count ?? alerts.length;
  const pages = Math.max(1, Math.ceil(total / ALERTS_PAGE));
  $("alerts-page").textContent = `page ${state.alertsPage} of ${pages} (${total} alerts)`;
  $("alerts-prev").disabled = state.alertsPage <= 1;
  $("alerts-next").disabled = !page.next;
  if (!alerts.length) $("alerts-note").textContent = alertsFiltered() ? "No alert matches these filters." : "No alerts yet.";
  // Open ones first, then acknowledged, then resolved.
  const rank = { open: 0, acknowledged: 1, resolved: 2 };
  alerts.sort((a, b) => (rank[a.status] ?? 3) - (rank[b.status] ?? 3));
  const body = $("alerts-body");
  body.replaceChildren();
  for (const a of alerts) {
    const tr = el("tr", null, "clickable");
    tr.dataset.alert = a.id;
    tr.tabIndex = 0;
    tr.setAttribute("aria-label", `alert ${a.id}, ${a.status}`);
    const open = () => showAlert(a.id);
    tr.addEventListener("click", open);
    tr.addEventListener("keydown", (e) => { if (e.key === "Enter") open(); });
    tr.append(el("td", a.id), el("td", a.title || a.rule_id), el("td", a.severity, "sev-" + a.severity),
      el("td", a.status), el("td", a.count), el("td", when(a.last_seen)));
    const act = el("td", null, "admin-only");
    if (isAdmin() && a.status === "open") {
      act.append(actionButton("Acknowledge", `acknowledge alert ${a.id}`,
        () => api(`/api/v1/alerts/${a.id}`, { method: "PATCH", body: { action: "acknowledge" } }), refreshAlerts, "alerts-note"));
    }
    if (isAdmin() && a.status !== "resolved") {
      act.append(actionButton("Resolve", `resolve alert ${a.id}`,
        () => api(`/api/v1/alerts/${a.id}`, { method: "PATCH", body: { action: "resolve" } }), refreshAlerts, "alerts-note"));
    }
    if (isAdmin() && a.status !== "open") {
      act.append(actionButton("Reopen", `reopen alert ${a.id}`,
        () => api(`/api/v1/alerts/${a.id}`, { method: "PATCH", body: { action: "reopen" } }), refreshAlerts, "alerts-note"));
    }
    tr.append(act);
    body.append(tr);
  }
  labelCells(body);
  if (state.selectedAlert) alertChanged();
}

// ---- the alert page -------------------------------------------------------------------

// One alert: its fields, every escalation level with each notification's outcome (a dead
// one can be retried), its events and its history. `?alert=ID` opens it from a link.
async function showAlert(id, quiet) {
  let a;
  try { a = await api(`/api/v1/alerts/${encodeURIComponent(id)}`); }
  catch (e) {
    if (e.message === "signed out") return;
    $("alert-detail").hidden = false;
    $("alert-detail-note").textContent = e.message;
    return;
  }
  state.selectedAlert = a.id;
  setAlertHash(a.id);
  $("alert-detail").hidden = false;
  $("alert-detail-note").textContent = "";
  $("alert-detail-id").textContent = a.id;
  $("alert-detail-title").textContent = a.title || a.rule_id;
  const dl = $("alert-detail-fields");
  dl.replaceChildren();
  const by = (who, at) => (who ? `${who} at ${when(at)}` : "—");
  const fields = [["Status", a.status], ["Severity", a.severity], ["Rule", a.rule_id],
    ["Group", a.group_key], ["Count", a.count], ["First seen", when(a.first_seen)],
    ["Last seen", when(a.last_seen)], ["Org", a.org || "—"], ["Acknowledged", by(a.acknowledged_by, a.acknowledged_at)],
    ["Resolved", by(a.resolved_by, a.resolved_at)], ["Policy", a.escalation_policy || "none"],
    ["Level", `${a.escalation_level} (round ${a.escalation_round})`],
    ["Next escalation", a.next_escalation_at ? when(a.next_escalation_at) : "—"]];
  for (const [k, v] of fields) dl.append(el("dt", k), el("dd", v));
  if (a.description) dl.append(el("dt", "Description"), el("dd", a.description));
  renderAlertActions(a);
  renderEscalations(a);
  const events = $("alert-detail-events");
  events.replaceChildren();
  for (const e of a.events || []) {
    const tr = el("tr");
    tr.append(el("td", when(e.published)), el("td", e.event_type || e.kind), el("td", e.actor || "—"),
      el("td", e.client_ip || "—"), el("td", e.outcome || "—"), el("td", e.message || ""));
    events.append(tr);
  }
  if (!(a.events || []).length) events.append(emptyRow("no linked events", 6));
  labelCells(events);
  const history = $("alert-detail-transitions");
  history.replaceChildren();
  for (const t of a.transitions || []) {
    history.append(el("li", `${when(t.at)}: ${t.action} by ${t.actor} (${t.from_status} → ${t.to_status})` +
      (t.comment ? ` — ${t.comment}` : "")));
  }
  if (!(a.transitions || []).length) history.append(el("li", "no status changes yet"));
  if (!quiet) $("alert-detail").scrollIntoView({ block: "start" });
}

function emptyRow(text, span) {
  const tr = el("tr");
  const td = el("td", text, "note");
  td.colSpan = span;
  tr.append(td);
  return tr;
}


// An action of the alert page: the page shows the alert again after it.
const alertAction = (label, aria, onClick) =>
  actionButton(label, aria, onClick, () => showAlert(state.selectedAlert, true), "alert-detail-note");

function renderAlertActions(a) {
  const box = $("alert-detail-actions");
  box.replaceChildren();
  if (!isAdmin()) return;
  const patch = (action) => async () => {
    const comment = $("alert-comment").value.trim();
    await api(`/api/v1/alerts/${a.id}`, { method: "PATCH", body: comment ? { action, comment } : { action } });
    $("alert-comment").value = "";
  };
  if (a.status === "open") box.append(alertAction("Acknowledge", `acknowledge alert ${a.id}`, patch("acknowledge")));
  if (a.status !== "resolved") box.append(alertAction("Resolve", `resolve alert ${a.id}`, patch("resolve")));
  if (a.status !== "open") box.append(alertAction("Reopen", `reopen alert ${a.id}`, patch("reopen")));
}

// Each level of each round: when it was escalated to and what it came to, then one row per
// notification (email address, webhook, channel) with its outcome and every error.
function renderEscalations(a) {
  const box = $("alert-detail-escalations");
  box.replaceChildren();
  const dead = a.notifications_dead || 0;
  $("alert-detail-dead").hidden = dead === 0;
  $("alert-detail-dead").textContent = `${dead} notification${dead === 1 ? "" : "s"} could not be delivered.`;
  if (!(a.escalations || []).length) { box.append(el("p", "Not escalated yet.", "note")); return; }
  for (const lv of a.escalations) {
    const section = el("div", null, "level");
    section.dataset.level = lv.level;
    section.dataset.round = lv.round;
    const outcome = lv.status + (lv.notified_at ? ` at ${when(lv.notified_at)}` : "") +
      (lv.failed_at ? ` at ${when(lv.failed_at)}` : "") + (lv.suppressed_at ? ` at ${when(lv.suppressed_at)}` : "");
    section.append(el("h5", `Round ${lv.round}, level ${lv.level} (${lv.policy}): ${outcome}`,
      lv.status === "failed" ? "bad" : lv.status === "notified" ? "ok" : ""));
    const table = el("table", null, "stack");
    const head = el("thead");
    const hr = el("tr");
    for (const h of ["Channel", "Target", "Event", "Status", "Attempts", "Response", "Errors", "Action"]) {
      const th = el("th", h);
      th.scope = "col";
      if (h === "Action") th.className = "admin-only";
      hr.append(th);
    }
    head.append(hr);
    const body = el("tbody");
    for (const n of lv.notifications || []) {
      const tr = el("tr");
      tr.dataset.notification = n.id;
      const response = [n.response_status, n.response_id].filter(Boolean).join(" · ") || "—";
      const errors = (n.errors || []).map((e) => `${when(e.at)}: ${e.error}`).join("\n") || n.last_error || "";
      tr.append(el("td", n.channel), el("td", n.target), el("td", n.event),
        el("td", n.status, "status-" + n.status), el("td", n.attempts), el("td", response), el("td", errors, "err"));
      const act = el("td", null, "admin-only");
      if (isAdmin() && n.retry_url) {
        act.append(alertAction("Retry", `retry notification ${n.id}`, () => api(n.retry_url, { method: "POST" })));
      }
      tr.append(act);
      body.append(tr);
    }
    if (!(lv.notifications || []).length) body.append(emptyRow("no notifications", 8));
    table.append(head, body);
    labelCells(body);
    const scroll = el("div", null, "scroll");
    scroll.append(table);
    section.append(scroll);
    box.append(section);
  }
}

function closeAlert() {
  state.selectedAlert = null;
  $("alert-detail").hidden = true;
  setAlertHash(null);
}

// The audit trail, newest first, 20 a page, filtered by actor, action, target and time;
// admins verify the hash chain from here.
const AUDIT_PAGE = 20;

function auditParams() {
  const params = new URLSearchParams({ page: state.auditPage, page_size: AUDIT_PAGE });
  for (const k of ["actor", "action", "target"]) {
    const v = $("audit-" + k).value.trim();
    if (v) params.set(k, v);
  }
  for (const k of ["from", "to"]) {
    const v = $("audit-" + k).value;
    if (v) params.set(k, new Date(v).toISOString());
  }
  return params;
}

async function refreshAudit() {
  let page;
  try { page = await api("/api/v1/audit-logs?" + auditParams()); }
  catch (e) { $("audit-note").textContent = e.status === 404 ? "The audit trail is not available on this server." : e.message; return; }
  $("audit-note").textContent = "";
  const body = $("audit-body");
  body.replaceChildren();
  const records = list(page, "results");
  for (const r of records) {
    const tr = el("tr");
    tr.append(el("td", r.seq ?? r.sequence ?? r.id), el("td", when(r.occurred_at || r.time || r.at)),
      el("td", r.actor), el("td", r.action), el("td", `${r.target_type || ""} ${r.target_id || ""}`));
    body.append(tr);
  }
  if (!records.length) body.append(emptyRow("No audit record matches.", 5));
  labelCells(body);
  const total = page.count ?? records.length;
  const pages = Math.max(1, Math.ceil(total / AUDIT_PAGE));
  $("audit-page").textContent = `page ${state.auditPage} of ${pages} (${total} records)`;
  $("audit-prev").disabled = state.auditPage <= 1;
  $("audit-next").disabled = !page.next;
}

async function verifyAudit() {
  const out = $("audit-verified");
  out.className = "";
  out.textContent = "verifying…";
  try {
    const v = await api("/api/v1/audit-logs/verify");
    out.className = v.status === "ok" ? "ok" : "bad";
    out.textContent = v.status === "ok" ? `Chain verified: ${v.verified} records.`
      : `Chain broken at record ${v.sequence}: ${v.message}`;
  } catch (e) { if (e.message !== "signed out") { out.className = "bad"; out.textContent = e.message; } }
}

// ---- bulk actions by filter ---------------------------------------------------------------

const FILTERS = [["queue", "filter-queue"], ["status", "filter-status"], ["q", "filter-q"]];

// The address reflects the job filters, so a view can be shared and survives a reload.
function reflectFilters() {
  const params = new URLSearchParams();
  for (const [name, id] of FILTERS) if ($(id).value.trim()) params.set(name, $(id).value.trim());
  const query = params.toString();
  history.replaceState(null, "", location.pathname + (query ? "?" + query : "") + location.hash);
}

function readFilters() {
  const params = new URLSearchParams(location.search);
  if (params.get("queue")) offerQueue(params.get("queue"));
  for (const [name, id] of FILTERS) if (params.get(name)) $(id).value = params.get(name);
  state.selectedAlert = alertInHash();
  state.selectedJob = jobInHash();
}

// An alert's address is the dashboard's with `#/alerts/ID` (the link every channel sends).
function alertInHash() {
  const m = location.hash.match(/^#\/alerts\/([1-9][0-9]{0,15})$/);
  return m ? Number(m[1]) : null;
}

function setAlertHash(id) {
  if (id || alertInHash()) setHash(id ? `#/alerts/${id}` : "");
}

// A job's address is the dashboard's with `#/jobs/ID` (`/dashboard/jobs/ID` leads there).
function jobInHash() {
  const m = location.hash.match(/^#\/jobs\/([A-Za-z0-9_-]{1,100})$/);
  return m ? m[1] : null;
}

// Shows `hash` in the address, added to the history so the back button returns.
function setHash(hash) {
  if (location.hash === hash || (!hash && !location.hash)) return;
  history.pushState(null, "", location.pathname + location.search + hash);
}

function currentFilter() {
  const filter = {};
  for (const [name, id] of FILTERS) if ($(id).value.trim()) filter[name] = $(id).value.trim();
  return filter;
}

const BULK = { retry: ["Retry", "retried"], cancel: ["Cancel", "cancelled"], delete: ["Delete", "deleted"] };
let pendingBulk = null;

// Asks first, naming how many jobs match (the list's total), then runs the action through
// every slice of the filter.
function askBulk(action) {
  $("jobs-note").textContent = "";
  const filter = currentFilter();
  const what = [filter.status, filter.queue, "jobs"].filter(Boolean).join(" ");
  const matching = filter.q ? ` matching "${filter.q}"` : "";
  pendingBulk = { action, filter };
  $("bulk-question").textContent = `${BULK[action][0]} ${state.total} ${what}${matching}?`;
  $("bulk-confirm").hidden = false;
  $("bulk-yes").focus();
}

async function runBulk() {
  const { action, filter } = pendingBulk || {};
  if (!action) return;
  pendingBulk = null;
  $("bulk-yes").disabled = true;
  let total = 0, cursor;
  try {
    do {
      const body = { action, filter, limit: 1000 };
      if (cursor) body.cursor = cursor;
      const res = await api("/api/v1/jobs/bulk", { method: "POST", body });
      total += res.count;
      cursor = res.cursor;
    } while (cursor);
    $("jobs-note").textContent = `${total} jobs ${BULK[action][1]}.`;
    $("jobs-note").className = "ok";
  } catch (e) {
    if (e.message !== "signed out") { $("jobs-note").textContent = e.message; $("jobs-note").className = "error"; }
  } finally {
    $("bulk-yes").disabled = false;
    $("bulk-confirm").hidden = true;
    refreshJobs().catch(showFailure);
  }
}

// ---- the live stream -------------------------------------------------------------------

function showFailure(e) {
  if (e.message !== "signed out") $("live").textContent = "update failed: " + e.message;
}

function markLive() {
  if (!(state.pausedUntil > Date.now())) {
    $("live").textContent = "live · updated " + new Date().toLocaleTimeString();
  }
}

// Reloads that may be asked for many times a second run at most every `minMs`, the last
// request always honoured.
function throttled(fn, minMs) {
  let last = 0, timer = null;
  return () => {
    if (timer) return;
    const wait = Math.max(0, last + minMs - Date.now());
    timer = setTimeout(async () => {
      timer = null;
      last = Date.now();
      try { await fn(); } catch (e) { showFailure(e); }
    }, wait);
  };
}
const jobsChanged = throttled(refreshJobs, JOBS_MIN_MS);
const sparksChanged = throttled(() => Promise.all([refreshSparks(), refreshCharts()]), SERIES_MIN_MS);
const auditChanged = throttled(refreshAudit, AUDIT_MIN_MS);
const alertsListChanged = throttled(refreshAlerts, JOBS_MIN_MS);
const alertChanged = throttled(() => (state.selectedAlert ? showAlert(state.selectedAlert, true) : null), JOBS_MIN_MS);

const renderers = {
  queues: renderQueues,
  // Deliveries are jobs: a job change may be a notification of the open alert.
  jobs: () => { jobsChanged(); auditChanged(); alertChanged(); },
  alerts: renderAlerts,
  instances: renderActors,
  schedules: renderSchedules,
};

function stopStream() {
  if (state.stream) state.stream.abort();
  state.stream = null;
  clearTimeout(state.reconnect);
}

// One stream per tab while it is visible (a hidden tab closes it: browsers allow few
// connections per server). The server ends each stream after two minutes; the page then
// reconnects with a current token.
function startStream() {
  stopStream();
  if ($("app").hidden || document.visibilityState === "hidden") return;
  const controller = new AbortController();
  state.stream = controller;
  readStream(controller).then((delay) => {
    if (state.stream !== controller) return;
    state.stream = null;
    state.reconnect = setTimeout(startStream, delay);
  });
}

// Reads the stream until it ends; resolves to the delay before reconnecting.
async function readStream(controller) {
  let res;
  for (let attempt = 0; ; attempt++) {
    const headers = { Accept: "text/event-stream", Authorization: "Bearer " + store.getItem("vigil.access") };
    try { res = await fetch("/api/v1/stream", { headers, signal: controller.signal }); }
    catch (_) { if (!controller.signal.aborted) $("live").textContent = "reconnecting…"; return 3000; }
    if (res.status === 401 && attempt === 0 && (await refreshTokens())) continue;
    break;
  }
  if (res.status === 401) { signOut("Your session ended. Sign in again."); return 0; }
  if (res.status === 429) {
    const wait = Number(res.headers.get("Retry-After")) || 30;
    state.pausedUntil = Date.now() + wait * 1000;
    $("live").textContent = `rate limited; updates resume in ${wait} s`;
    return wait * 1000;
  }
  if (!res.ok || !res.body) { $("live").textContent = "live updates unavailable (" + res.status + ")"; return 10000; }
  state.pausedUntil = 0;
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return 500;
      buffer += value;
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        handleEvent(buffer.slice(0, end));
        buffer = buffer.slice(end + 2);
      }
    }
  } catch (_) {
    if (!controller.signal.aborted) $("live").textContent = "reconnecting…";
    return 2000;
  }
}

function handleEvent(block) {
  let type = "message", data = "";
  for (const line of block.split("\n")) {
    if (line.startsWith("event:")) type = line.slice(6).trim();
    else if (line.startsWith("data:")) data += line.slice(5).replace(/^ /, "");
  }
  const render = renderers[type];
  if (!render || !data) return;
  try { render(JSON.parse(data).data); } catch (e) { showFailure(e); return; }
  markLive();
}

document.addEventListener("DOMContentLoaded", () => {
  $("sign-in-form").addEventListener("submit", signIn);
  $("sign-out").addEventListener("click", () => {
    // End the session server-side too (best effort), then forget the tokens.
    const token = store.getItem("vigil.access");
    if (token) {
      fetch("/api/v1/auth/logout", { method: "POST", headers: { Authorization: "Bearer " + token } })
        .catch(() => {});
    }
    signOut();
  });
  const reload = () => refreshJobs().catch(showFailure);
  $("jobs-prev").addEventListener("click", () => { state.page = Math.max(1, state.page - 1); reload(); });
  $("jobs-next").addEventListener("click", () => { state.page += 1; reload(); });
  $("filter-queue").addEventListener("change", () => { state.page = 1; reload(); });
  $("filter-status").addEventListener("change", () => { state.page = 1; reload(); });
  let typing = null;
  $("filter-q").addEventListener("input", () => {
    clearTimeout(typing);
    typing = setTimeout(() => { state.page = 1; reload(); }, 300);
  });
  $("jobs-filter").addEventListener("submit", (e) => { e.preventDefault(); state.page = 1; reload(); });
  for (const action of Object.keys(BULK)) $("bulk-" + action).addEventListener("click", () => askBulk(action));
  $("bulk-yes").addEventListener("click", runBulk);
  $("bulk-no").addEventListener("click", () => { pendingBulk = null; $("bulk-confirm").hidden = true; });
  readFilters();
  $("job-detail-close").addEventListener("click", closeJob);
  $("chart-queue").addEventListener("change", refreshCharts);
  $("chart-range").addEventListener("change", refreshCharts);
  $("charts-filter").addEventListener("submit", (e) => { e.preventDefault(); refreshCharts(); });
  $("alert-detail-close").addEventListener("click", closeAlert);
  const reloadAudit = () => { state.auditPage = 1; refreshAudit(); };
  let typingAudit = null;
  for (const k of ["actor", "action", "target"]) {
    $("audit-" + k).addEventListener("input", () => { clearTimeout(typingAudit); typingAudit = setTimeout(reloadAudit, 300); });
  }
  for (const k of ["from", "to"]) $("audit-" + k).addEventListener("change", reloadAudit);
  $("audit-filter").addEventListener("submit", (e) => { e.preventDefault(); reloadAudit(); });
  $("audit-prev").addEventListener("click", () => { state.auditPage = Math.max(1, state.auditPage - 1); refreshAudit(); });
  $("audit-next").addEventListener("click", () => { state.auditPage += 1; refreshAudit(); });
  $("audit-verify").addEventListener("click", verifyAudit);
  $("schedule-detail-close").addEventListener("click", () => { state.selectedSchedule = null; $("schedule-detail").hidden = true; });
  const reloadAlerts = () => { state.alertsPage = 1; refreshAlerts(); };
  $("alerts-status").addEventListener("change", reloadAlerts);
  $("alerts-severity").addEventListener("change", reloadAlerts);
  let typingRule = null;
  $("alerts-rule").addEventListener("input", () => { clearTimeout(typingRule); typingRule = setTimeout(reloadAlerts, 300); });
  $("alerts-filter").addEventListener("submit", (e) => { e.preventDefault(); reloadAlerts(); });
  $("alerts-prev").addEventListener("click", () => { state.alertsPage = Math.max(1, state.alertsPage - 1); refreshAlerts(); });
  $("alerts-next").addEventListener("click", () => { state.alertsPage += 1; refreshAlerts(); });
  const followHash = () => {
    if ($("app").hidden) return;
    const alert = alertInHash(), job = jobInHash();
    if (alert) showAlert(alert);
    if (job) showJob(job);
    else if (state.selectedJob && !location.hash) { state.selectedJob = null; $("job-detail").hidden = true; }
  };
  window.addEventListener("hashchange", followHash);
  window.addEventListener("popstate", followHash);
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "hidden") { stopStream(); return; }
    if (!$("app").hidden && !state.stream) { reload(); startStream(); }
  });
  offerSso();
  const sso = location.hash.match(/^#sso=([A-Za-z0-9_-]{1,100})$/);
  if (sso) finishSso(sso[1]);
  else if (store.getItem("vigil.access")) showApp();
});
