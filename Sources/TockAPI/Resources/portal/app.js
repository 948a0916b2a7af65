// Tock's portal: a small single-page app over /api/v1. No build step, no dependencies. Every page is a
// function that fetches what it shows and renders it; /api/v1/events re-renders the current page on change.
// operator.js adds the runs, failures and audit pages and the charts (charts.js draws them).
"use strict";

const API = "/api/v1";
const state = { token: localStorage.getItem("tock.token") || "", route: null, refresh: null, runOutputOf: null };

// ---------- helpers ----------

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "class") el.className = value;
    else el.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

class ApiError extends Error {
  constructor(status, body) {
    const detail = (body && body.error) || {};
    super(detail.message || `HTTP ${status}`);
    this.status = status; this.code = detail.code; this.field = detail.field;
  }
}

async function api(path, options = {}) {
  const method = options.method || "GET";
  const headers = Object.assign({ "Accept": "application/json" }, options.headers || {});
  // Every write says JSON, even without a body: the server refuses any other (a cross-site form cannot send it).
  if (options.body !== undefined || (method !== "GET" && method !== "HEAD")) headers["Content-Type"] = "application/json";
  if (state.token) headers["Authorization"] = "Bearer " + state.token;
  const response = await fetch(API + path, {
    method, headers,
    body: options.body === undefined ? undefined : JSON.stringify(options.body),
  });
  if (response.status === 401) { askToken(); }
  const type = response.headers.get("Content-Type") || "";
  const body = type.includes("json") ? await response.json() : await response.text();
  if (!response.ok) throw new ApiError(response.status, body);
  return options.withHeaders ? { body, headers: response.headers } : body;
}

function showError(error) {
  const banner = document.getElementById("banner");
  banner.textContent = error ? (error.message || String(error)) : "";
  banner.hidden = !error;
}

// Times in the zone the viewer picked (remembered), "local" meaning the browser's own.
function zone() { return localStorage.getItem("tock.timezone") || "local"; }
function formatTime(iso) {
  if (!iso) return "—";
  const options = { year: "numeric", month: "short", day: "2-digit", hour: "2-digit", minute: "2-digit", second: "2-digit",
                    hour12: false };
  if (zone() !== "local") options.timeZone = zone();
  return new Intl.DateTimeFormat(undefined, options).format(new Date(iso));
}
function relative(iso) {
  if (!iso) return "";
  const seconds = Math.round((new Date(iso) - Date.now()) / 1000);
  const abs = Math.abs(seconds);
  const text = abs < 60 ? `${abs}s` : abs < 3600 ? `${Math.round(abs / 60)}m` : abs < 86400 ? `${Math.round(abs / 3600)}h`
    : `${Math.round(abs / 86400)}d`;
  return seconds >= 0 ? `in ${text}` : `${text} ago`;
}
function timeCell(iso) {
  return iso ? h("span", { title: iso }, formatTime(iso), " ", h("span", { class: "muted" }, `(${relative(iso)})`)) : "—";
}
function duration(seconds) {
  if (seconds === null || seconds === undefined) return "—";
  if (seconds < 1) return `${Math.round(seconds * 1000)} ms`;
  if (seconds < 120) return `${seconds.toFixed(1)} s`;
  return `${Math.floor(seconds / 60)}m ${Math.round(seconds % 60)}s`;
}
function badge(text, kind) { return h("span", { class: `badge ${kind || text}` }, text.replace("_", " ")); }
function enc(name) { return encodeURIComponent(name); }

function button(label, onclick, cls, attrs) {
  return h("button", Object.assign({ type: "button", class: cls || "", onclick: async (event) => {
    const target = event.currentTarget; target.disabled = true;
    try { await onclick(); showError(null); } catch (error) { showError(error); } finally { target.disabled = false; }
  } }, attrs || {}), label);
}

// ---------- actions ----------

// One key per click, kept for 1 s: a double click (or a retried request) sends the same Idempotency-Key, and the
// server starts one run for both; a click a second later is another run.
const runNowKeys = new Map();
async function runNow(job, params) {
  let key = runNowKeys.get(job);
  if (!key) {
    key = crypto.randomUUID ? crypto.randomUUID() : `${Date.now()}-${Math.random()}`;
    runNowKeys.set(job, key);
    setTimeout(() => runNowKeys.delete(job), 1000);
  }
  const run = await api(`/jobs/${enc(job)}/trigger`, { method: "POST", headers: { "Idempotency-Key": key },
    body: params ? { params } : undefined });
  refreshSoon(true);
  return run;
}
async function setPaused(job, paused) { await api(`/jobs/${enc(job)}/${paused ? "pause" : "resume"}`, { method: "POST" }); refreshSoon(true); }
async function cancelRun(id) { await api(`/runs/${id}/cancel`, { method: "POST" }); refreshSoon(true); }
async function retryRun(id) { await api(`/runs/${id}/retry`, { method: "POST" }); refreshSoon(true); }
async function deleteJob(job) {
  if (!confirm(`Delete job '${job}' and all of its run history? This cannot be undone.`)) return;
  await api(`/jobs/${enc(job)}`, { method: "DELETE" });
  location.hash = "#/";
}

// ---------- pages ----------

// The dashboard lists jobs a page at a time (the API's keyset pages, by name), filtered by a name search.
const JOB_PAGE = 200;
function jobListPath() {
  const after = state.jobPages && state.jobPages.length ? `&after=${enc(state.jobPages[state.jobPages.length - 1])}` : "";
  const q = state.jobSearch ? `&q=${enc(state.jobSearch)}` : "";
  return `/jobs?limit=${JOB_PAGE}${after}${q}`;
}

function jobSearchBar(jobs) {
  const input = h("input", { id: "job-search", type: "search", placeholder: "Search job names", value: state.jobSearch ?? "",
    onchange: (event) => { state.jobSearch = event.target.value.trim(); state.jobPages = []; render(); } });
  const pages = state.jobPages || [];
  return h("div", { class: "toolbar" }, input,
    pages.length ? button("First page", async () => { state.jobPages = []; render(); }, "", { id: "jobs-first" }) : null,
    jobs.length === JOB_PAGE ? button(`Next ${JOB_PAGE}`, async () => {
      state.jobPages = pages.concat([jobs[jobs.length - 1].name]); render(); }, "", { id: "jobs-next" }) : null);
}

async function dashboard(view) {
  const [stats, jobs, activity] = await Promise.all([api("/stats"), api(jobListPath()), activityChart()]);
  const failed24 = (stats.runs_24h.failed || 0) + (stats.runs_24h.timed_out || 0) + (stats.runs_24h.dead || 0);
  const cards = h("div", { class: "cards" },
    card(stats.queue.running, "running", "count-running"),
    // Capped: more than that many are waiting (tock.queue_glance counts no further).
    card(stats.queue.capped ? `${stats.queue.pending.toLocaleString("en-US")}+` : stats.queue.pending, "pending", "count-pending"),
    card(failed24, "failed in 24 h", "count-failed"), card(stats.workers_alive, "workers online", "count-workers"));
  const rows = jobs.map((job) => h("tr", { class: "job", "data-job": job.name },
    h("td", {}, h("a", { href: `#/jobs/${enc(job.name)}` }, job.name), h("div", { class: "muted mono" }, job.script)),
    h("td", {}, badge(job.state), job.running > 0 ? [" ", badge(`running ${job.running}`, "running")] : null),
    h("td", {}, job.schedule_description, job.schedule !== "manual" ? h("div", { class: "muted" }, job.timezone) : null),
    h("td", { class: "hide-narrow" }, job.enabled ? timeCell(job.next_run_at) : h("span", { class: "muted" }, "paused")),
    h("td", {}, job.last_run_status ? [h("a", { href: `#/runs/${job.last_run_id}` }, badge(job.last_run_status)), " ",
      h("span", { class: "muted" }, relative(job.last_run_finished_at || job.last_run_started_at))] : h("span", { class: "muted" }, "never")),
    h("td", { class: "actions" },
      button("Run now", () => runNow(job.name), "primary", { "data-action": "run-now" }), " ",
      job.enabled ? button("Pause", () => setPaused(job.name, true)) : button("Resume", () => setPaused(job.name, false)))));
  const filtered = state.jobSearch || (state.jobPages && state.jobPages.length);
  view.replaceChildren(
    h("h1", {}, "Jobs"), cards, activity, jobSearchBar(jobs),
    h("div", { class: "panel" }, jobs.length === 0
      ? h("div", { class: "empty" }, filtered ? "No jobs match. " : "No jobs yet. ",
          filtered ? null : [h("a", { href: "#/new" }, "Create one"), "."])
      : h("table", { id: "jobs" },
          h("thead", {}, h("tr", {}, h("th", {}, "Job"), h("th", {}, "Status"), h("th", {}, "Schedule"),
            h("th", { class: "hide-narrow" }, "Next run"), h("th", {}, "Last run"), h("th", {}))),
          h("tbody", {}, rows))));
}

function card(value, label, id) {
  return h("div", { class: "card", id }, h("div", { class: "n" }, value ?? 0), h("div", { class: "l" }, label));
}

function runRows(runs) {
  return runs.map((run) => h("tr", { class: "run", "data-run": run.id, "data-status": run.status },
    h("td", {}, h("a", { href: `#/runs/${run.id}` }, `#${run.id}`)),
    h("td", {}, badge(run.status)),
    h("td", { class: "hide-narrow" }, run.trigger),
    h("td", {}, run.attempt),
    h("td", {}, timeCell(run.started_at || run.enqueued_at)),
    h("td", {}, duration(run.duration_seconds)),
    h("td", { class: "hide-narrow" }, run.worker_name || "—"),
    h("td", { class: "actions" },
      run.status === "pending" || run.status === "running" ? button("Cancel", () => cancelRun(run.id), "danger") : null,
      ["failed", "timed_out", "cancelled", "dead"].includes(run.status) ? button("Retry", () => retryRun(run.id)) : null)));
}

function runTable(runs) {
  return h("table", { id: "runs" },
    h("thead", {}, h("tr", {}, h("th", {}, "Run"), h("th", {}, "Status"), h("th", { class: "hide-narrow" }, "Trigger"),
      h("th", {}, "Attempt"), h("th", {}, "Started"), h("th", {}, "Duration"), h("th", { class: "hide-narrow" }, "Worker"),
      h("th", {}))),
    h("tbody", {}, runRows(runs)));
}

async function jobPage(view, name) {
  const limit = state.runLimit || 25;
  const [job, runs, hooks, deliveries, insights] = await Promise.all([api(`/jobs/${enc(name)}`), api(`/jobs/${enc(name)}/runs?limit=${limit}`),
    api(`/hooks?job=${enc(name)}`), api(`/deliveries?job=${enc(name)}&limit=10`), jobInsights(name)]);
  // Parts left out are null: replaceChildren would show them as the text "null".
  view.replaceChildren(...[
    h("h1", {}, job.name, badge(job.state)),
    job.description ? h("p", { class: "description", id: "job-description" }, job.description) : null,
    h("div", { class: "toolbar" },
      button("Run now", async () => {
        const run = await runNow(job.name, job.params ? paramValues() : undefined);
        showError(null);
        return run;
      }, "primary", { id: "run-now" }),
      job.enabled ? button("Pause", () => setPaused(job.name, true), "", { id: "pause" })
        : button("Resume", () => setPaused(job.name, false), "", { id: "resume" }),
      h("a", { class: "button", href: `#/jobs/${enc(job.name)}/edit` }, "Edit"),
      button("Delete", () => deleteJob(job.name), "danger", { id: "delete" })),
    job.params ? paramForm(job.params) : null,
    h("div", { class: "panel" }, h("dl", { class: "facts" },
      job.http ? fact("Request", h("span", { class: "mono", id: "job-request" }, `${job.http.method || "POST"} ${job.http.url}`,
          h("span", { class: "muted" }, ` (expects ${job.http.expect || "2xx"})`)))
        : fact("Script", h("span", { class: "mono" }, [job.script, ...job.args].join(" "))),
      fact("Schedule", `${job.schedule_description} (${job.schedule})`), fact("Time zone", job.timezone),
      fact("Next run", job.enabled ? timeCell(job.next_run_at) : "paused"),
      fact("Timeout", inherited(job, "timeout", duration(job.timeout_seconds))),
      fact("Attempts", inherited(job, "max_attempts", job.max_attempts)),
      fact("Overlap", inherited(job, "overlap", job.overlap)), fact("Misfire", job.misfire), fact("Priority", job.priority),
      fact("Pool", inherited(job, "pool", job.pool || "default")),
      fact("Max running", job.max_running == null ? "no limit" : job.max_running),
      fact("Rate", job.rate == null ? "no limit" : `${job.rate} starts`),
      job.env ? fact("Environment", h("span", { class: "mono", id: "job-env" },
        Object.keys(job.env).sort().map((k) => `${k}=${job.env[k]}`).join(" "))) : null,
      job.secrets ? fact("Secrets", h("span", { class: "mono", id: "job-secrets" }, job.secrets.join(", "))) : null)),
    ...insights,
    h("h2", {}, "Runs"),
    h("div", { class: "panel" }, runs.length ? runTable(runs) : h("div", { class: "empty", id: "no-runs" }, "No runs yet.")),
    runs.length === limit ? h("div", { class: "more" }, button("Show more", () => { state.runLimit = limit * 2; return render(); })) : null,
    h("h2", {}, "Hooks"),
    h("div", { class: "panel" }, hooks.length ? hookTable(hooks)
      : h("div", { class: "empty", id: "no-hooks" }, `None: tock hook add ${job.name} --on failed --webhook URL (or --run-job JOB)`),
      hookForm(job.name)),
    deliveries.length ? h("h2", {}, "Deliveries") : null,
    deliveries.length ? h("div", { class: "panel" }, deliveryTable(deliveries)) : null].filter((part) => part !== null));
}

function fact(label, value) { return [h("dt", {}, label), h("dd", {}, value)]; }

// The values Run now sends for a job's parameters: one field each, a list where it has choices, its default filled
// in. The server checks them (a bad one comes back as the banner's error, naming it). What was typed survives the
// page's live updates as every field's does (render).
function paramForm(params) {
  return h("div", { class: "panel params", id: "run-params" }, h("div", { class: "row" }, params.map((param) => {
    const id = `param-${param.name}`;
    const current = param.default ?? "";
    const input = param.choices
      ? h("select", { id, "data-param": param.name },
          param.choices.map((c) => h("option", { value: c, selected: c === current }, c)))
      : h("input", { id, type: "text", "data-param": param.name, value: current, autocomplete: "off",
          placeholder: param.pattern ? `matching ${param.pattern}` : "", required: !!param.required });
    return h("div", { class: "field" }, h("label", { for: id }, param.name + (param.required ? " *" : "")), input);
  })));
}
function paramValues() {
  const values = {};
  document.querySelectorAll("#run-params [data-param]").forEach((input) => {
    // Left empty: the default, or the server's "is required".
    if (input.value !== "") values[input.dataset.param] = input.value;
  });
  return values;
}

// Adds a hook to a job: a webhook (its signing secret shown once, here) or a chain. The server checks it all.
function hookForm(jobName) {
  const events = ["failed", "dead", "timed_out", "succeeded", "recovered", "late"];
  const event = h("select", { id: "hook-event" }, events.map((e) => h("option", { value: e }, e)));
  const action = h("select", { id: "hook-action" }, h("option", { value: "url" }, "call a webhook"), h("option", { value: "run_job" }, "run a job"));
  const target = h("input", { id: "hook-target", type: "text", class: "mono", autocomplete: "off", placeholder: "https://hooks.slack.com/services/…" });
  const late = h("input", { id: "hook-late-after", type: "text", class: "w-90", placeholder: "late after 10m", autocomplete: "off" });
  const said = h("div", { id: "hook-result", class: "hint", "data-carry": true });
  action.addEventListener("change", () => { target.placeholder = action.value === "url" ? "https://hooks.slack.com/services/…" : "another job's name"; });
  const form = h("form", { class: "hook-form", id: "hook-form" }, "On ", event, " ", action, " ", target, " ", late, " ",
    h("button", { type: "submit", id: "add-hook" }, "Add hook"), said);
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const body = { job: jobName, event: event.value };
    body[action.value] = target.value.trim();
    if (late.value.trim() !== "") body.late_after = late.value.trim();
    try {
      const added = await api("/hooks", { method: "POST", body });
      form.reset();  // added: what was typed or said before is not carried into the page drawn next
      said.replaceChildren();
      if (added.secret) {
        // Shown this once: the receiver verifies signatures with it.
        said.replaceChildren("Added. Its signing secret, shown this once: ", h("code", { id: "hook-secret" }, added.secret));
        state.refresh = null;
      } else {
        await render();
      }
    } catch (error) {
      said.textContent = error.message;
    }
  });
  return form;
}

// A job's webhooks (its own and the fleet's): where each goes, its origin alone, never a secret.
function hookTable(hooks) {
  return h("table", { id: "hooks" },
    h("thead", {}, h("tr", {}, h("th", {}, "On"), h("th", {}, "To"), h("th", { class: "hide-narrow" }, "Job"), h("th", {}, "Attempts"), h("th", {}))),
    h("tbody", {}, hooks.map((hook) => h("tr", { class: "hook", "data-event": hook.event },
      h("td", {}, hook.event + (hook.late_after ? ` (${hook.late_after})` : "")),
      h("td", { class: "mono" }, hook.run_job ? h("a", { href: `#/jobs/${enc(hook.run_job)}` }, `run job ${hook.run_job}`) : hook.url_origin),
      h("td", { class: "hide-narrow" }, hook.job_name === "*" ? "every job" : hook.job_name),
      h("td", {}, hook.run_job ? "—" : String(hook.max_attempts)),
      h("td", {}, button("Remove", async () => {
        if (!confirm(`Remove this ${hook.run_job ? "chain" : "webhook"} (on ${hook.event})?`)) return;
        await api(`/hooks/${hook.id}`, { method: "DELETE" });
        await render();
      }, "", { "data-action": "remove-hook" }))))));
}

// The latest deliveries of a job's webhooks; a failed one can be sent again.
function deliveryTable(deliveries) {
  return h("table", { id: "deliveries" },
    h("thead", {}, h("tr", {}, h("th", {}, "Run"), h("th", {}, "Event"), h("th", {}, "Status"), h("th", {}, "Attempts"),
      h("th", { class: "hide-narrow" }, "Last answer"), h("th", {}))),
    h("tbody", {}, deliveries.map((d) => h("tr", { class: "delivery", "data-status": d.status, "data-id": String(d.id) },
      h("td", {}, h("a", { href: `#/runs/${d.run_id}` }, `#${d.run_id}`)), h("td", {}, d.event), h("td", {}, badge(d.status)),
      h("td", {}, `${d.attempts}/${d.max_attempts}`),
      h("td", { class: "hide-narrow" }, d.last_error || (d.last_code ? `HTTP ${d.last_code}` : "—")),
      h("td", {}, d.status === "failed"
        ? button("Retry", async () => { await api(`/deliveries/${d.id}/retry`, { method: "POST" }); await render(); }, "",
                 { "data-action": "retry-delivery" })
        : null)))));
}
// A job's value, marked when it is the fleet's default (tock config) rather than its own.
function inherited(job, key, value) {
  return (job.inherited || []).includes(key) ? [String(value), " ", h("span", { class: "muted", "data-inherited": key }, "(fleet default)")]
    : String(value);
}

async function runPage(view, id) {
  const [run, deliveries] = await Promise.all([api(`/runs/${id}`), api(`/deliveries?run=${encodeURIComponent(id)}&limit=50`)]);
  view.ensureCurrent();
  state.runOutputOf = Number(id);
  const live = run.status === "running" || run.status === "pending";
  view.replaceChildren(
    h("h1", {}, `Run #${run.id}`, badge(run.status)),
    h("div", { class: "toolbar" },
      h("a", { class: "button", href: `#/jobs/${enc(run.job_name)}` }, `← ${run.job_name}`),
      live ? button("Cancel", () => cancelRun(run.id), "danger", { id: "cancel" }) : null,
      ["failed", "timed_out", "cancelled", "dead"].includes(run.status)
        ? button("Retry", async () => { const r = await api(`/runs/${run.id}/retry`, { method: "POST" }); location.hash = `#/runs/${r.run_id}`; }, "", { id: "retry" })
        : null),
    h("div", { class: "panel" }, h("dl", { class: "facts" },
      fact("Job", h("a", { href: `#/jobs/${enc(run.job_name)}` }, run.job_name)), fact("Trigger", run.trigger),
      run.upstream ? fact("After", h("a", { id: "run-upstream", href: `#/runs/${run.upstream.run_id}` },
        `run #${run.upstream.run_id} of ${run.upstream.job} (${run.upstream.status})`)) : null,
      fact("Attempt", run.attempt), fact("Enqueued", timeCell(run.enqueued_at)), fact("Started", timeCell(run.started_at)),
      fact("Finished", timeCell(run.finished_at)), fact("Duration", duration(run.duration_seconds)),
      fact("Pool", run.waiting_for_pool
        ? [run.pool, " ", h("span", { class: "badge lost", id: "run-waiting-pool",
            title: `Start a worker that serves it: tock worker --pools ${run.pool}` }, "waiting: no live worker serves this pool")]
        : (run.pool || "—")),
      fact("Worker", run.worker_name || "—"), fact("Exit code", run.exit_code ?? "—"),
      run.params ? fact("Parameters", h("span", { class: "mono", id: "run-param-values" },
        Object.keys(run.params).sort().map((k) => `${k}=${run.params[k]}`).join(" "))) : null,
      run.error ? fact("Error", h("span", { class: "mono" }, run.error)) : null)),
    h("h2", {}, "Output", live ? h("span", { class: "badge running" }, "live") : null,
      run.output_truncated ? h("span", { class: "muted" }, ` (last part of ${run.output_bytes} bytes)`) : null),
    h("pre", { class: "output", id: "run-output" }, run.output || (live ? "(waiting for output…)" : "(no output)")),
    deliveries.length ? h("h2", {}, "Deliveries") : "",
    deliveries.length ? h("div", { class: "panel" }, deliveryTable(deliveries)) : "");
  const pre = document.getElementById("run-output");
  pre.scrollTop = pre.scrollHeight;
}

async function workersPage(view) {
  const workers = await api("/workers");
  view.replaceChildren(h("h1", {}, "Workers"), h("div", { class: "panel" }, workers.length === 0
    ? h("div", { class: "empty" }, "No worker has registered yet. Start one with ", h("code", {}, "tock worker"), ".")
    : h("table", { id: "workers" },
        h("thead", {}, h("tr", {}, h("th", {}, "Worker"), h("th", {}, "Host"), h("th", {}, "State"), h("th", {}, "Pools"), h("th", {}, "Running"),
          h("th", {}, "Last heartbeat"), h("th", {}, "Runs processed"), h("th", { class: "hide-narrow" }, "Started"))),
        h("tbody", {}, workers.map((w) => h("tr", { class: "worker" },
          h("td", {}, w.name, h("div", { class: "muted" }, `pid ${w.pid}, concurrency ${w.concurrency}`)),
          h("td", {}, w.host),
          h("td", {}, badge(w.alive ? "alive" : w.state, w.alive ? "alive" : w.state)),
          h("td", { class: "pools" }, (w.pools || ["default"]).map((p) => h("a", { href: "#/pools" }, p))
            .flatMap((a, i) => (i ? [", ", a] : [a]))),
          h("td", {}, w.running),
          h("td", {}, timeCell(w.last_heartbeat_at)),
          h("td", {}, w.runs_processed),
          h("td", { class: "hide-narrow" }, timeCell(w.started_at))))))));
}

// ---------- the job editor ----------

const KINDS = ["every", "hourly", "daily", "weekly", "monthly", "cron", "manual"];
const WEEKDAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

// The builder's guess at a schedule string's kind and parts (anything it cannot read stays as cron text).
function parseSchedule(text) {
  let m;
  text = (text || "").trim();
  if (text === "" || text === "manual") return { kind: "manual" };
  if ((m = text.match(/^every\s+(\d+)\s*([smhd])$/i))) return { kind: "every", amount: m[1], unit: m[2].toLowerCase() };
  if ((m = text.match(/^hourly at :(\d{1,2})$/i))) return { kind: "hourly", minute: m[1] };
  if ((m = text.match(/^daily at (\d{1,2}:\d{2})$/i))) return { kind: "daily", time: m[1] };
  if ((m = text.match(/^weekly on ([a-z,]+) at (\d{1,2}:\d{2})$/i))) return { kind: "weekly", days: m[1].toLowerCase().split(","), time: m[2] };
  if ((m = text.match(/^monthly on ([0-9a-z,]+) at (\d{1,2}:\d{2})$/i))) return { kind: "monthly", days: m[1], time: m[2] };
  return { kind: "cron", cron: text };
}

function buildSchedule(parts) {
  switch (parts.kind) {
    case "every": return `every ${parts.amount || 5}${parts.unit || "m"}`;
    case "hourly": return `hourly at :${String(parts.minute || 0).padStart(2, "0")}`;
    case "daily": return `daily at ${parts.time || "06:00"}`;
    case "weekly": return `weekly on ${(parts.days && parts.days.length ? parts.days : ["mon"]).join(",")} at ${parts.time || "09:00"}`;
    case "monthly": return `monthly on ${parts.days || "1"} at ${parts.time || "08:00"}`;
    case "cron": return parts.cron || "*/15 * * * *";
    default: return "manual";
  }
}

async function editorPage(view, name) {
  const [job, settings] = await Promise.all([name ? api(`/jobs/${enc(name)}`) : null, api("/config")]);
  view.ensureCurrent();
  state.refresh = null;  // live updates must not wipe a form being edited
  // What a job leaves empty it takes from the fleet's defaults (tock config), and goes on taking as they change.
  const fleet = Object.fromEntries(settings.map((s) => [s.key, s.value]));
  const inherits = (key) => !job || (job.inherited || []).includes(key);
  const own = (key, value) => (inherits(key) ? "" : value);
  const fleetHint = (key) => ({ placeholder: `fleet: ${fleet[key]}` });
  const parts = parseSchedule(job ? job.schedule : "daily at 06:00");
  const zones = typeof Intl.supportedValuesOf === "function" ? Intl.supportedValuesOf("timeZone") : [];

  const field = (key, label, input, hint) => h("div", { class: "field", "data-field": key },
    h("label", { for: input.id }, label), input, hint ? h("div", { class: "hint" }, hint) : null, h("div", { class: "error" }));
  const text = (id, value, attrs) => h("input", Object.assign({ id, type: "text", value: value ?? "" }, attrs || {}));
  const number = (id, value, attrs) => h("input", Object.assign({ id, type: "number", value: value ?? "" }, attrs || {}));
  const select = (id, options, value) => h("select", { id }, options.map((o) => h("option", { value: o, selected: o === value }, o)));

  const scheduleInput = text("job-schedule", buildSchedule(parts), { class: "mono" });
  const kind = select("schedule-kind", KINDS, parts.kind);
  const builder = h("div", { class: "builder", id: "schedule-builder" });
  const preview = h("div", { class: "preview", id: "schedule-preview" }, "…");
  const tzInput = text("job-timezone", job ? job.timezone : Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC",
    { list: "zones", autocomplete: "off" });

  function drawBuilder() {
    const p = parts;
    const sync = () => { scheduleInput.value = buildSchedule(p); updatePreview(); };
    const input = (attrs, key) => h("input", Object.assign({ value: p[key] ?? "", oninput: (e) => { p[key] = e.target.value; sync(); } }, attrs));
    let controls = [];
    if (p.kind === "every") {
      p.amount = p.amount || "5"; p.unit = p.unit || "m";
      controls = [input({ type: "number", min: 1, id: "every-amount", class: "w-90" }, "amount"),
        h("select", { id: "every-unit", onchange: (e) => { p.unit = e.target.value; sync(); } },
          [["s", "seconds"], ["m", "minutes"], ["h", "hours"], ["d", "days"]].map(([v, l]) => h("option", { value: v, selected: p.unit === v }, l)))];
    } else if (p.kind === "hourly") {
      controls = ["at minute", input({ type: "number", min: 0, max: 59, id: "hourly-minute", class: "w-80" }, "minute")];
    } else if (p.kind === "daily") {
      controls = ["at", input({ type: "time", id: "daily-time" }, "time")];
      p.time = p.time || "06:00";
    } else if (p.kind === "weekly") {
      p.days = p.days || ["mon"];
      controls = [...WEEKDAYS.map((d) => h("label", {}, h("input", { type: "checkbox", value: d, checked: p.days.includes(d),
        onchange: (e) => { p.days = WEEKDAYS.filter((x) => x === d ? e.target.checked : p.days.includes(x)); sync(); } }), d)),
        "at", input({ type: "time", id: "weekly-time" }, "time")];
      p.time = p.time || "09:00";
    } else if (p.kind === "monthly") {
      p.days = p.days || "1"; p.time = p.time || "08:00";
      controls = ["on days", input({ type: "text", id: "monthly-days", class: "w-120", placeholder: "1,15,last" }, "days"),
        "at", input({ type: "time", id: "monthly-time" }, "time")];
    } else if (p.kind === "cron") {
      p.cron = p.cron || "*/15 * * * *";
      controls = [input({ type: "text", id: "cron-text", class: "mono w-220", placeholder: "*/15 * * * *" }, "cron"),
        h("span", { class: "muted" }, "minute hour day-of-month month day-of-week")];
    } else {
      controls = [h("span", { class: "muted" }, "Runs only when asked (Run now, the API or SQL).")];
    }
    builder.replaceChildren(...controls);
    sync();
  }
  kind.addEventListener("change", () => { parts.kind = kind.value; drawBuilder(); });
  scheduleInput.addEventListener("input", () => {
    const parsed = parseSchedule(scheduleInput.value);
    Object.assign(parts, parsed); kind.value = parts.kind;
    updatePreview();
  });
  tzInput.addEventListener("input", updatePreview);

  let previewTimer = null, previewSeq = 0;
  function updatePreview() {
    clearTimeout(previewTimer);
    previewTimer = setTimeout(async () => {
      const seq = ++previewSeq;
      const scheduleField = form.querySelector('[data-field="schedule"]');
      try {
        const result = await api(`/schedule/preview?count=5&schedule=${enc(scheduleInput.value)}&timezone=${enc(tzInput.value || "UTC")}`);
        if (seq !== previewSeq) return;
        setFieldError(scheduleField, null);
        setFieldError(form.querySelector('[data-field="timezone"]'), null);
        preview.replaceChildren(h("strong", {}, result.description),
          result.next.length ? h("ol", {}, result.next.map((t) => h("li", {}, formatTime(t)))) : h("div", { class: "muted" }, "no scheduled runs"));
      } catch (error) {
        if (seq !== previewSeq) return;
        preview.replaceChildren(h("span", { class: "muted" }, "No preview: fix the schedule or time zone."));
        const target = error.field && error.field.startsWith("timezone") ? form.querySelector('[data-field="timezone"]') : scheduleField;
        setFieldError(target, error.message);
      }
    }, 200);
  }

  const form = h("form", { class: "editor", id: "job-form", novalidate: true },
    field("name", "Name", text("job-name", job ? job.name : "", { placeholder: "nightly-report", autocomplete: "off" }),
      "Letters, digits, . _ -; starts with a letter."),
    field("script", "Script", text("job-script", job && job.script ? job.script : "", { class: "mono", placeholder: "report.sh" }),
      "A path inside the workers' scripts directory; or leave it empty and give an HTTP request below."),
    field("description", "Description", h("textarea", { id: "job-description-input", rows: 2, placeholder: "What it does, whom to ask" },
      job && job.description ? job.description : "")),
    field("args", "Arguments", h("textarea", { id: "job-args", rows: 2, class: "mono", placeholder: "one per line" },
      job ? job.args.join("\n") : ""), "One per line; passed as they are, no shell. {{name}} takes a parameter's value."),
    h("div", { class: "row" },
      field("env", "Environment", h("textarea", { id: "job-env-input", rows: 2, class: "mono", placeholder: "MODE=fast" },
        job && job.env ? Object.keys(job.env).sort().map((k) => `${k}=${job.env[k]}`).join("\n") : ""),
        "NAME=value, one per line; stored with the job: not for secrets."),
      field("secrets", "Secrets", text("job-secrets-input", job && job.secrets ? job.secrets.join(", ") : "",
        { class: "mono", placeholder: "API_TOKEN", autocomplete: "off" }),
        "Names, comma separated; each worker reads the values from its --secrets-file.")),
    field("http", "HTTP request", h("textarea", { id: "job-http", rows: 2, class: "mono",
      placeholder: '{"method": "POST", "url": "https://api.example.com/refresh", "expect": "2xx"}' },
      job && job.http ? JSON.stringify(job.http) : ""),
      "JSON: method, url, headers, body, expect. Sent by a worker to the hosts its --http-allow lists, instead of a script."),
    field("params", "Parameters", h("textarea", { id: "job-params", rows: 3, class: "mono",
      placeholder: '[{"name": "env", "choices": ["staging", "prod"], "default": "staging"}]' },
      job && job.params ? JSON.stringify(job.params) : ""),
      "JSON: name, default, required, choices, pattern. Run now asks for them; the script gets TOCK_PARAM_<NAME>."),
    h("div", { class: "field", "data-field": "schedule" }, h("label", { for: "job-schedule" }, "Schedule"),
      h("div", { class: "builder" }, kind), builder, scheduleInput, h("div", { class: "error" }), preview),
    field("timezone", "Time zone", tzInput, "IANA name, e.g. Asia/Hong_Kong; fire times follow its daylight saving."),
    h("datalist", { id: "zones" }, zones.map((z) => h("option", { value: z }))),
    h("div", { class: "row" },
      field("timeout_seconds", "Timeout (seconds)", number("job-timeout", own("timeout", job && job.timeout_seconds),
        Object.assign({ min: 1 }, fleetHint("timeout")))),
      field("max_attempts", "Attempts", number("job-attempts", own("max_attempts", job && job.max_attempts),
        Object.assign({ min: 1, max: 100 }, fleetHint("max_attempts")))),
      field("priority", "Priority", number("job-priority", job ? job.priority : 50, { min: 0, max: 100 }))),
    h("div", { class: "row" },
      field("overlap", "If still running", h("select", { id: "job-overlap" },
        [h("option", { value: "", selected: inherits("overlap") }, `fleet (${fleet.overlap})`),
         ...["skip", "queue", "allow"].map((o) => h("option", { value: o, selected: !inherits("overlap") && job.overlap === o }, o))])),
      field("misfire", "After downtime", select("job-misfire", ["run_once", "skip"], job ? job.misfire : "run_once")),
      field("retry_base_seconds", "Retry after (s)", number("job-retry-base", own("retry_base", job && job.retry_base_seconds),
        Object.assign({ min: 1 }, fleetHint("retry_base"))))),
    h("div", { class: "row" },
      field("pool", "Pool", text("job-pool", own("pool", job && job.pool), Object.assign({ autocomplete: "off" }, fleetHint("pool"))),
        "The workers that serve it (tock worker --pools). Empty fields follow the fleet's defaults (tock config)."),
      field("max_running", "Max running", number("job-max-running", job && job.max_running != null ? job.max_running : "", { min: 1 }),
        "At once, across every worker; empty: no limit."),
      field("rate", "Rate", text("job-rate", job && job.rate != null ? job.rate : "", { placeholder: "10/1m", autocomplete: "off" }),
        "Starts per period (10/1m, 100/1h); empty: no limit.")),
    h("div", { class: "field" }, h("label", {}, h("input", { type: "checkbox", id: "job-enabled", checked: job ? job.enabled : true }),
      " Enabled (the schedule fires)")),
    h("div", { class: "toolbar" }, h("button", { type: "submit", class: "primary", id: "save-job" }, job ? "Save changes" : "Create job"),
      h("a", { class: "button", href: job ? `#/jobs/${enc(job.name)}` : "#/" }, "Cancel")),
    h("div", { class: "error", id: "form-error" }));

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    form.querySelectorAll(".field").forEach((f) => setFieldError(f, null));
    const value = (id) => document.getElementById(id).value;
    const body = {
      name: value("job-name").trim(),
      args: value("job-args").split("\n").map((a) => a.trim()).filter((a) => a !== ""),
      schedule: value("job-schedule").trim(), timezone: value("job-timezone").trim(),
      misfire: value("job-misfire"),
      enabled: document.getElementById("job-enabled").checked,
      // Empty removes a limit: null, not left out, so that an edit clears it.
      max_running: value("job-max-running") === "" ? null : Number(value("job-max-running")),
      rate: value("job-rate").trim() === "" ? null : value("job-rate").trim(),
      description: value("job-description-input").trim() === "" ? null : value("job-description-input"),
    };
    const envLines = value("job-env-input").split("\n").map((l) => l.trim()).filter((l) => l !== "");
    const env = {};
    for (const line of envLines) {
      const at = line.indexOf("=");
      if (at <= 0) { setFieldError(form.querySelector('[data-field="env"]'), `${line}: not NAME=value`); return; }
      env[line.slice(0, at)] = line.slice(at + 1);
    }
    body.env = envLines.length ? env : null;
    const secrets = value("job-secrets-input").split(",").map((s) => s.trim()).filter((s) => s !== "");
    body.secrets = secrets.length ? secrets : null;
    // A script, or a request: the one given (the server says so when both or neither are).
    const http = value("job-http").trim();
    if (http !== "") {
      try { body.http = JSON.parse(http); } catch (_) {
        setFieldError(form.querySelector('[data-field="http"]'), 'not JSON: an object such as {"url": "https://…"}');
        return;
      }
    }
    if (value("job-script").trim() !== "" || http === "") body.script = value("job-script").trim();
    const params = value("job-params").trim();
    if (params === "") body.params = null;
    else {
      try { body.params = JSON.parse(params); } catch (_) {
        setFieldError(form.querySelector('[data-field="params"]'), "not JSON: a list such as [{\"name\": \"env\"}]");
        return;
      }
    }
    if (value("job-priority") !== "") body.priority = Number(value("job-priority"));
    // Empty: the fleet's default. A new job leaves it out; an edit sends null, so the job inherits it again.
    for (const [key, id, isNumber] of [["timeout_seconds", "job-timeout", true], ["max_attempts", "job-attempts", true],
                                       ["retry_base_seconds", "job-retry-base", true], ["overlap", "job-overlap", false],
                                       ["pool", "job-pool", false]]) {
      const given = value(id).trim();
      if (given !== "") body[key] = isNumber ? Number(given) : given;
      else if (job) body[key] = null;
    }
    try {
      const saved = job ? await api(`/jobs/${enc(job.name)}`, { method: "PUT", body })
                        : await api("/jobs", { method: "POST", body });
      location.hash = `#/jobs/${enc(saved.name)}`;
    } catch (error) {
      const key = (error.field || "").split(".")[0];
      const target = form.querySelector(`[data-field="${key === "timeout" ? "timeout_seconds" : key}"]`);
      if (target) setFieldError(target, error.message); else document.getElementById("form-error").textContent = error.message;
    }
  });

  view.replaceChildren(h("h1", {}, job ? `Edit ${job.name}` : "New job"), form);
  drawBuilder();
}

function setFieldError(field, message) {
  if (!field) return;
  field.classList.toggle("invalid", !!message);
  const slot = field.querySelector(".error");
  if (slot) slot.textContent = message || "";
}

// ---------- routing, live updates, settings ----------

const routes = [
  [/^#?\/?$/, "dashboard", (view) => dashboard(view)],
  [/^#\/new$/, "new", (view) => editorPage(view, null)],
  [/^#\/workers$/, "workers", (view) => workersPage(view)],
  [/^#\/jobs\/([^/]+)\/edit$/, "dashboard", (view, m) => editorPage(view, decodeURIComponent(m[1]))],
  [/^#\/jobs\/([^/]+)$/, "dashboard", (view, m) => jobPage(view, decodeURIComponent(m[1]))],
  [/^#\/runs\/(\d+)$/, "dashboard", (view, m) => runPage(view, m[1])],
];

// A page draws through a view that only the latest render may write to. Renders overlap (a link followed while the
// last page's requests are out, a refresh while the person navigates); an answer that comes back after a newer
// render began would otherwise draw the old page, or its "Not found", over the new one. A stale render stops at its
// first write (StaleRender) and draws nothing, nor touches the elements of the page that replaced it; a page that
// keeps something in state calls view.ensureCurrent() after its requests, before it does.
class StaleRender extends Error {}
state.renders = 0;

// What a person typed or chose outlives the live re-renders of the page they are on: a field whose value differs
// from the one the page drew keeps its value in the page drawn next over the same route (matched by id, or else by
// name), and the field they were in keeps the focus and the caret; so does what a form said back (an element with
// data-carry and an id). Another route starts afresh, a form reset after its submit carries nothing, and a field
// whose state the page keeps itself (data-page-state) is drawn as the page says.
function fieldKey(el) {
  if (el.hasAttribute("data-page-state")) return null;
  if (el.id) return `#${CSS.escape(el.id)}`;
  return el.name ? `${el.tagName.toLowerCase()}[name="${CSS.escape(el.name)}"]` : null;
}
function fieldEdited(el) {
  if (el.type === "checkbox" || el.type === "radio") return el.checked !== el.defaultChecked;
  if (el.tagName === "SELECT") return el.selectedIndex !== Math.max(0, [...el.options].findLastIndex((o) => o.defaultSelected));
  return el.value !== el.defaultValue;
}
function carriedEdits(from) {
  const fields = [...from.querySelectorAll("input, select, textarea")].filter((el) => fieldKey(el) && fieldEdited(el))
    .map((el) => ({ key: fieldKey(el), value: el.value, checked: el.checked }));
  const active = from.contains(document.activeElement) ? document.activeElement : null;
  const focus = active && fieldKey(active) ? { key: fieldKey(active), start: active.selectionStart, end: active.selectionEnd } : null;
  const said = [...from.querySelectorAll("[data-carry][id]")].filter((el) => el.hasChildNodes())
    .map((el) => ({ key: `#${CSS.escape(el.id)}`, nodes: [...el.childNodes] }));
  return (to) => {
    for (const { key, nodes } of said) {
      const el = to.querySelector(key);
      if (el && !el.hasChildNodes()) el.replaceChildren(...nodes);
    }
    for (const field of fields) {
      const el = to.querySelector(field.key);
      if (!el) continue;
      if (el.type === "checkbox" || el.type === "radio") el.checked = field.checked; else el.value = field.value;
    }
    const el = focus && to.querySelector(focus.key);
    if (!el) return;
    el.focus();
    // Types without a caret (select, checkbox, number) refuse a selection range.
    if (typeof focus.start === "number") try { el.setSelectionRange(focus.start, focus.end); } catch (_) { /* no caret */ }
  };
}

async function render() {
  const seq = ++state.renders;
  const current = () => seq === state.renders;
  const target = document.getElementById("view");
  const ensureCurrent = () => { if (!current()) throw new StaleRender(); };
  const hash = location.hash || "#/";
  const view = { ensureCurrent, replaceChildren: (...nodes) => {
    ensureCurrent();
    const carry = state.drawnRoute === hash ? carriedEdits(target) : null;
    target.replaceChildren(...nodes);
    state.drawnRoute = hash;
    if (carry) carry(target);
  } };
  if (state.route !== hash) { state.runLimit = null; state.runOutputOf = null; }
  state.route = hash;
  for (const [pattern, nav, page] of routes) {
    const match = hash.match(pattern);
    if (!match) continue;
    document.querySelectorAll("[data-nav]").forEach((a) => a.classList.toggle("active", a.dataset.nav === nav));
    state.refresh = render;
    try { await page(view, match); if (current()) showError(null); }
    catch (error) {
      if (error instanceof StaleRender || !current()) return;
      if (error.status === 404) view.replaceChildren(h("h1", {}, "Not found"), h("p", {}, error.message, " ", h("a", { href: "#/" }, "Back to the dashboard")));
      else showError(error);
    }
    return;
  }
  view.replaceChildren(h("h1", {}, "Not found"), h("p", {}, h("a", { href: "#/" }, "Back to the dashboard")));
}

// Events become re-renders: the first 120 ms after a quiet spell (a burst is one), then at most one a second while
// they keep coming, and never two at once. A timer restarted by every event instead never fired while events came
// faster than that, which is whenever the workers are busy: the page froze exactly when there was most to see.
const REFRESH_QUIET_MS = 120, REFRESH_EVERY_MS = 1000;
const refresher = { timer: null, running: false, again: null, last: 0 };
// afterAction: the person's own click (run now, pause, …) shows its effect at once, whatever came before it.
function refreshSoon(afterAction = false) {
  if (refresher.running) { refresher.again = { afterAction: afterAction || refresher.again?.afterAction === true }; return; }
  if (refresher.timer && !afterAction) return;
  clearTimeout(refresher.timer);
  const wait = afterAction ? REFRESH_QUIET_MS : Math.max(REFRESH_QUIET_MS, refresher.last + REFRESH_EVERY_MS - Date.now());
  refresher.timer = setTimeout(async () => {
    refresher.timer = null;
    refresher.running = true;
    refresher.last = Date.now();
    try { if (state.refresh) await state.refresh(); }
    finally {
      refresher.running = false;
      const again = refresher.again;
      refresher.again = null;
      if (again) refreshSoon(again.afterAction);
    }
  }, wait);
}

function connectEvents() {
  const live = document.getElementById("live");
  const url = API + "/events" + (state.token ? `?access_token=${enc(state.token)}` : "");
  const source = new EventSource(url);
  source.onopen = () => { live.textContent = "live"; live.classList.add("on"); };
  source.onerror = () => { live.textContent = "reconnecting"; live.classList.remove("on"); };
  source.onmessage = (message) => {
    let event = {};
    try { event = JSON.parse(message.data); } catch (_) { return; }
    if (event.type === "output" && state.runOutputOf !== event.run) return;
    refreshSoon();
  };
  state.events = source;
}

function askToken() {
  const dialog = document.getElementById("token-dialog");
  if (dialog.open) return;
  dialog.showModal();
}

function setupTimezone() {
  const select = document.getElementById("timezone");
  const browser = Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
  const zones = typeof Intl.supportedValuesOf === "function" ? Intl.supportedValuesOf("timeZone") : ["UTC"];
  select.replaceChildren(h("option", { value: "local" }, `local (${browser})`), h("option", { value: "UTC" }, "UTC"),
    ...zones.filter((z) => z !== "UTC").map((z) => h("option", { value: z }, z)));
  select.value = zone();
  select.addEventListener("change", () => { localStorage.setItem("tock.timezone", select.value); render(); });
}

document.getElementById("token-form").addEventListener("submit", () => {
  state.token = document.getElementById("token-input").value.trim();
  localStorage.setItem("tock.token", state.token);
  if (state.events) state.events.close();
  connectEvents();
  render();
});

window.addEventListener("hashchange", render);
// Once every script has run: operator.js adds its pages to the routes.
document.addEventListener("DOMContentLoaded", () => {
  setupTimezone();
  connectEvents();
  render();
});
// Relative times ("in 3m") age even when nothing changes.
setInterval(() => { if (state.refresh && !document.hidden && state.route !== "#/new" && !/\/edit$/.test(state.route)) state.refresh(); }, 30000);
