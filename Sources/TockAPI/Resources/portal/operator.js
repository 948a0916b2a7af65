// The operator's pages: every run (filters in the URL, keyset pages), failures by job, bulk retry/cancel/delete,
// the audit log, pools and their limits; and the charts the dashboard and a job's page show. Uses app.js's helpers (h, api, button, …).
"use strict";

const STATUSES = ["pending", "running", "succeeded", "failed", "timed_out", "cancelled", "dead"];
const FAILURES = ["failed", "timed_out", "dead"];
const TRIGGERS = ["schedule", "manual", "sql", "api", "retry", "chain"];
const SPANS = [["", "any time"], ["15m", "last 15 min"], ["1h", "last hour"], ["6h", "last 6 hours"], ["24h", "last 24 hours"],
  ["7d", "last 7 days"]];
const FILTER_KEYS = ["status", "job", "trigger", "worker", "pool", "since", "until"];
const PAGE = 50;

// The query of a hash route (#/runs?status=failed&since=1h), and a new one for the same page.
function hashQuery() {
  const at = location.hash.indexOf("?");
  return new URLSearchParams(at >= 0 ? location.hash.slice(at + 1) : "");
}
function go(path, query) {
  const text = query.toString();
  location.hash = text ? `${path}?${text}` : path;
}
function filterOf(query) {
  const filter = {};
  for (const key of FILTER_KEYS) if (query.get(key)) filter[key] = query.get(key);
  return filter;
}
function filterQuery(filter) {
  const query = new URLSearchParams();
  for (const key of FILTER_KEYS) if (filter[key]) query.set(key, filter[key]);
  return query;
}

// ---------- filters ----------

// The filter form: statuses as checkboxes, the rest as fields. A change applies at once (a text field when it is
// left or Enter is pressed), by changing the URL: the URL is the view, so a link shows the same runs.
function runFilterForm(path, query) {
  const statuses = new Set((query.get("status") || "").split(",").filter((s) => s));
  const apply = () => {
    const next = new URLSearchParams();
    const checked = STATUSES.filter((s) => form.querySelector(`[data-status="${s}"]`).checked);
    if (checked.length) next.set("status", checked.join(","));
    for (const key of ["job", "trigger", "worker", "pool", "since", "until"]) {
      const value = form.querySelector(`[name="${key}"]`).value.trim();
      if (value) next.set(key, value);
    }
    go(path, next);
  };
  const text = (name, label, placeholder) => h("label", { class: "filter" }, label,
    h("input", { type: "text", name, value: query.get(name) || "", placeholder, autocomplete: "off", onchange: apply }));
  const select = (name, label, options) => h("label", { class: "filter" }, label,
    h("select", { name, onchange: apply }, options.map(([value, shown]) =>
      h("option", { value, selected: (query.get(name) || "") === value }, shown))));
  const form = h("form", { class: "filters", id: "run-filters", onsubmit: (e) => { e.preventDefault(); apply(); } },
    h("fieldset", { class: "statuses" }, h("legend", {}, "Status"),
      STATUSES.map((s) => h("label", { class: "check" },
        h("input", { type: "checkbox", "data-status": s, checked: statuses.has(s), onchange: apply }), " ", s.replace("_", " ")))),
    h("div", { class: "row" },
      text("job", "Job", "name"),
      select("trigger", "Trigger", [["", "any"], ...TRIGGERS.map((t) => [t, t])]),
      text("worker", "Worker", "name"),
      text("pool", "Pool", "default"),
      select("since", "Ended", SPANS.some(([v]) => v === (query.get("since") || "")) ? SPANS
        : [...SPANS, [query.get("since"), `since ${query.get("since")}`]]),
      text("until", "Before", "e.g. 1h or 2026-12-05T14:00Z")),
    h("button", { type: "submit", class: "sr-only" }, "Apply"));
  return form;
}

// ---------- selection and bulk actions ----------

// The runs ticked on this view (its URL), kept across live updates and pages of it.
const picked = { route: null, ids: new Set() };
function selection() {
  const route = location.hash.replace(/[?&]before=\d+/, "");
  if (picked.route !== route) { picked.route = route; picked.ids = new Set(); }
  return picked.ids;
}

const VERBS = { retry: "Retry", cancel: "Cancel", delete: "Delete" };
const APPLIES = {
  retry: "runs that ended other than succeeded and were not retried yet",
  cancel: "pending or running runs",
  delete: "runs that ended (they leave the history, with their output)",
};

// One bulk action: on the ticked runs, or on every run the filter matches (a thousand a request, until none is
// left). Asks first, with the count; says after what it did. What it did stays shown until the view changes.
async function bulkAction(action, filter, ids) {
  let count, capped = false;
  if (ids) count = ids.length;
  else ({ count, capped } = await api(`/runs/count?${filterQuery(filter)}&action=${action}`));
  if (count === 0) { reportBulk(`Nothing to ${action}: no ${APPLIES[action]} match.`); return; }
  const what = ids ? `${count} selected run${count === 1 ? "" : "s"}` : `${capped ? "more than " : ""}${count.toLocaleString("en-US")} matching run${count === 1 ? "" : "s"}`;
  if (!confirm(`${VERBS[action]} ${what}? (${APPLIES[action]}${action === "delete" ? "; this cannot be undone" : ""})`)) return;
  // A thousand a request, no more requests than the count asked about needs: runs that start to match meanwhile
  // wait for another click.
  let done = 0, skipped = 0, rounds = 0, result;
  do {
    result = await api("/runs/bulk", { method: "POST", body: ids ? { action, ids } : { action, filter } });
    done += result.done; skipped += result.skipped; rounds += 1;
  } while (!ids && result.more && result.done > 0 && rounds < Math.ceil(count / 1000));
  selection().clear();
  reportBulk(`${VERBS[action]}: ${done} run${done === 1 ? "" : "s"}` + (skipped ? `, ${skipped} skipped (not ${APPLIES[action]})` : "")
    + (result.more ? "; more match: run it again for the rest" : "."));
  refreshSoon(true);
}
function reportBulk(text) {
  state.bulkReport = { route: location.hash, text };
  const slot = document.getElementById("bulk-result");
  if (slot) slot.textContent = text;
}

function bulkBar(filter, total) {
  const ids = [...selection()];
  const report = state.bulkReport && state.bulkReport.route === location.hash ? state.bulkReport.text : "";
  // The ticked runs as they are at the click, not as they were when the bar was drawn.
  const on = (action, label, cls) => button(label, () => bulkAction(action, filter, [...selection()]), cls || "",
    { "data-bulk": action, disabled: ids.length === 0 });
  const all = (action, label, cls) => button(label, () => bulkAction(action, filter, null), cls || "", { "data-bulk-all": action });
  return h("div", { class: "bulk", id: "bulk" },
    h("span", { id: "selected-count" }, `${ids.length} selected`),
    on("retry", "Retry selected"), on("cancel", "Cancel selected", "danger"), on("delete", "Delete selected", "danger"),
    h("span", { class: "sep" }, "|"),
    // Only under a filter: an action on every run is not one Tock takes (the server refuses it too).
    total && Object.keys(filter).length ? [all("retry", "Retry all matching"), all("cancel", "Cancel all matching", "danger"),
      all("delete", "Delete all matching", "danger")] : null,
    h("div", { class: "hint", id: "bulk-result", role: "status" }, report));
}

// The runs of a page, each with a box to tick (kept in the selection).
function pickableRunTable(runs) {
  const chosen = selection();
  const all = h("input", { type: "checkbox", id: "pick-all", "aria-label": "Select every run on this page", "data-page-state": true,
    checked: runs.length > 0 && runs.every((r) => chosen.has(r.id)),
    onchange: (e) => { for (const r of runs) { if (e.target.checked) chosen.add(r.id); else chosen.delete(r.id); } refreshSelection(); } });
  return h("table", { id: "runs" },
    h("thead", {}, h("tr", {}, h("th", {}, all), h("th", {}, "Run"), h("th", {}, "Job"), h("th", {}, "Status"),
      h("th", { class: "hide-narrow" }, "Trigger"), h("th", { class: "hide-narrow" }, "Attempt"), h("th", {}, "When"),
      h("th", {}, "Duration"), h("th", { class: "hide-narrow" }, "Worker"), h("th", { class: "hide-narrow" }, "Error"))),
    h("tbody", {}, runs.map((run) => h("tr", { class: "run", "data-run": run.id, "data-status": run.status },
      h("td", {}, h("input", { type: "checkbox", class: "pick", "data-run": run.id, "aria-label": `Select run ${run.id}`,
        checked: chosen.has(run.id),
        onchange: (e) => { if (e.target.checked) chosen.add(run.id); else chosen.delete(run.id); refreshSelection(); } })),
      h("td", {}, h("a", { href: `#/runs/${run.id}` }, `#${run.id}`)),
      h("td", {}, h("a", { href: `#/jobs/${enc(run.job_name)}` }, run.job_name)),
      h("td", {}, badge(run.status), run.retried_by ? h("a", { class: "muted", href: `#/runs/${run.retried_by}` }, ` → #${run.retried_by}`) : null),
      h("td", { class: "hide-narrow" }, run.trigger),
      h("td", { class: "hide-narrow" }, run.attempt),
      h("td", {}, timeCell(run.finished_at || run.started_at || run.enqueued_at)),
      h("td", {}, duration(run.duration_seconds)),
      h("td", { class: "hide-narrow" }, run.worker_name || "—"),
      h("td", { class: "hide-narrow error-text" }, run.error || "")))));
}
function refreshSelection() {
  const ids = selection();
  const count = document.getElementById("selected-count");
  if (count) count.textContent = `${ids.size} selected`;
  document.querySelectorAll("[data-bulk]").forEach((b) => { b.disabled = ids.size === 0; });
  const all = document.getElementById("pick-all");
  const boxes = [...document.querySelectorAll("input.pick")];
  if (all) all.checked = boxes.length > 0 && boxes.every((b) => b.checked);
}

// ---------- pages ----------

// Every run, newest first. The page re-reads its runs on live updates; the filter form stays as it is (a field
// being typed in is not replaced). Paging is by id (before=), so a page deep in a long history costs what the
// first does.
async function runsPage(view) {
  const query = hashQuery();
  const filter = filterOf(query);
  const results = h("div", { id: "run-results" });
  view.replaceChildren(h("h1", {}, "Runs"), runFilterForm("#/runs", query), results);
  state.refresh = () => drawRuns(results, filter, query.get("before"));
  await state.refresh();
}

// A filter on trigger, worker or pool is checked run by run, so the server searches a bounded number of runs for a
// page: when it stopped before the page filled, it says how far back it looked (Tock-Searched-To) and the next
// page's link goes on from there ("Look further"). A shorter search (?scan=) is carried from page to page.
async function drawRuns(results, filter, before) {
  const base = filterQuery(filter);
  const scan = hashQuery().get("scan");
  if (scan) base.set("scan", scan);
  const path = `/runs?${base}&limit=${PAGE}${before ? `&before=${enc(before)}` : ""}`;
  const [page, count] = await Promise.all([api(path, { withHeaders: true }), api(`/runs/count?${base}`)]);
  const runs = page.body;
  const nextBefore = (/[?&]before=(\d+)/.exec(page.headers.get("Link") || "") || [])[1];
  const searchedTo = page.headers.get("Tock-Searched-To");
  const older = nextBefore ? new URLSearchParams(base) : null;
  if (older) older.set("before", nextBefore);
  const partly = count.searched_to_id != null ? " in the runs searched" : "";
  results.replaceChildren(
    h("div", { class: "toolbar counts" }, h("span", { id: "match-count" },
      `${count.capped ? "more than " : ""}${count.count.toLocaleString("en-US")} matching run${count.count === 1 ? "" : "s"}${partly}`),
      before ? h("a", { class: "button", id: "newest", href: `#/runs?${base}` }, "Newest") : null,
      older && !searchedTo ? h("a", { class: "button", id: "older", href: `#/runs?${older}` }, "Older") : null),
    searchedTo ? h("div", { class: "toolbar", id: "searched-to" },
      h("span", { class: "muted" }, `Searched back to ${formatTime(searchedTo)}; older runs are not searched yet.`),
      h("a", { class: "button", id: "look-further", href: `#/runs?${older}` }, "Look further")) : null,
    bulkBar(filter, count.count),
    h("div", { class: "panel" }, runs.length ? pickableRunTable(runs) : h("div", { class: "empty", id: "no-runs" }, "No runs match.")));
}

// Failures of the last hours, by job: how many, the last error and its last lines of output; under them, the
// failed runs themselves, to tick and retry (or retry every one at once).
async function failuresPage(view) {
  const query = hashQuery();
  const since = query.get("since") || "1h";
  const filter = { status: FAILURES.join(","), since };
  const groupsSlot = h("div", { id: "failure-groups" }), results = h("div", { id: "run-results" });
  const spans = SPANS.filter(([v]) => v !== "");
  view.replaceChildren(
    h("h1", {}, "Failures"),
    h("div", { class: "toolbar" }, h("label", { class: "filter" }, "In the ",
      h("select", { id: "failures-since", onchange: (e) => go("#/failures", new URLSearchParams({ since: e.target.value })) },
        (spans.some(([v]) => v === since) ? spans : [...spans, [since, `since ${since}`]]).map(([value, shown]) =>
          h("option", { value, selected: value === since }, shown)))),
      h("a", { class: "button", href: `#/runs?${filterQuery(filter)}` }, "Open in Runs")),
    groupsSlot, h("h2", {}, "Failed runs"), results);
  state.refresh = async () => {
    const [groups] = await Promise.all([api(`/failures?since=${enc(since)}`), drawRuns(results, filter, query.get("before"))]);
    groupsSlot.replaceChildren(groups.length === 0
      ? h("div", { class: "panel" }, h("div", { class: "empty", id: "no-failures" }, "No failures. "))
      : h("div", { class: "failure-groups" }, groups.map((g) => h("section", { class: "panel failure-group", "data-job": g.job_name },
          h("div", { class: "group-head" },
            h("a", { href: `#/jobs/${enc(g.job_name)}`, class: "job-name" }, g.job_name),
            h("span", { class: "failure-count" }, `${g.failures} failure${g.failures === 1 ? "" : "s"}`),
            g.timed_out ? badge(`${g.timed_out} timed out`, "timed_out") : null, g.dead ? badge(`${g.dead} dead`, "dead") : null,
            h("span", { class: "muted" }, "last ", h("a", { href: `#/runs/${g.last_run_id}` }, `#${g.last_run_id}`), " ",
              relative(g.last_finished_at)),
            h("a", { class: "button", href: `#/runs?${filterQuery({ status: FAILURES.join(","), since, job: g.job_name })}` }, "Its runs")),
          g.last_error ? h("div", { class: "mono error-text" }, g.last_error) : null,
          g.last_output ? h("pre", { class: "output tail" }, g.last_output) : null))));
  };
  await state.refresh();
}

// The audit log: who changed what and when, filtered (in the URL) by job, actor and action.
async function auditPage(view) {
  const query = hashQuery();
  const apply = () => {
    const next = new URLSearchParams();
    for (const key of ["job", "actor", "action"]) {
      const value = form.querySelector(`[name="${key}"]`).value.trim();
      if (value) next.set(key, value);
    }
    go("#/audit", next);
  };
  const field = (name, label, placeholder) => h("label", { class: "filter" }, label,
    h("input", { type: "text", name, value: query.get(name) || "", placeholder, autocomplete: "off", onchange: apply }));
  const form = h("form", { class: "filters", id: "audit-filters", onsubmit: (e) => { e.preventDefault(); apply(); } },
    h("div", { class: "row" }, field("job", "Job", "name"), field("actor", "Who", "token name, user or role"),
      field("action", "Action", "job.pause, runs., …")),
    h("button", { type: "submit", class: "sr-only" }, "Apply"));
  const results = h("div", { id: "audit-results" });
  view.replaceChildren(h("h1", {}, "Audit log"), form, results);
  state.refresh = async () => {
    const params = new URLSearchParams();
    for (const key of ["job", "actor", "action", "before"]) if (query.get(key)) params.set(key, query.get(key));
    params.set("limit", PAGE);
    const entries = await api(`/audit?${params}`);
    const older = new URLSearchParams(query);
    if (entries.length) older.set("before", entries[entries.length - 1].id);
    const newest = new URLSearchParams(query); newest.delete("before");
    results.replaceChildren(
      h("div", { class: "toolbar" },
        query.get("before") ? h("a", { class: "button", href: `#/audit?${newest}` }, "Newest") : null,
        entries.length === PAGE ? h("a", { class: "button", id: "audit-older", href: `#/audit?${older}` }, "Older") : null),
      h("div", { class: "panel" }, entries.length ? auditTable(entries) : h("div", { class: "empty" }, "No entries.")));
  };
  await state.refresh();
}

function auditTable(entries, compact) {
  return h("table", { class: "audit", id: compact ? "job-history" : "audit" },
    h("thead", {}, h("tr", {}, h("th", {}, "When"), h("th", {}, "Who"), h("th", {}, "Action"),
      compact ? null : h("th", {}, "Job"), h("th", { class: "hide-narrow" }, "Change"))),
    h("tbody", {}, entries.map((e) => h("tr", { class: "audit-entry", "data-action": e.action },
      h("td", {}, timeCell(e.at)),
      h("td", {}, h("strong", {}, e.actor), h("span", { class: "muted" }, ` via ${e.via}`),
        e.via !== "sql" || e.db_role !== e.actor ? h("div", { class: "muted" }, `login ${e.db_role}`) : null),
      h("td", {}, h("span", { class: "mono" }, e.action), e.run_id ? [" ", h("a", { href: `#/runs/${e.run_id}` }, `#${e.run_id}`)] : null),
      compact ? null : h("td", {}, e.job_name ? h("a", { href: `#/jobs/${enc(e.job_name)}` }, e.job_name) : "—"),
      h("td", { class: "hide-narrow mono change" }, change(e))))));
}

// "enabled: true → false"; a creation or deletion shows its fields once.
function change(entry) {
  const before = entry.before || {}, after = entry.after || {};
  const show = (v) => (v === null ? "none" : typeof v === "string" ? v : JSON.stringify(v));
  if (typeof before !== "object" || typeof after !== "object") return `${show(before)} → ${show(after)}`;
  // A field a creation or deletion left empty says nothing.
  const keys = [...new Set([...Object.keys(before), ...Object.keys(after)])].sort()
    .filter((k) => (k in before && k in after) || (k in after ? after[k] : before[k]) !== null);
  const text = keys.map((k) => (k in before && k in after ? `${k}: ${show(before[k])} → ${show(after[k])}`
    : `${k}: ${show(k in after ? after[k] : before[k])}`)).join("; ");
  return text.length > 300 ? text.slice(0, 300) + "…" : text;
}

// ---------- charts ----------

// A job's recent runs as bars of their durations, coloured by how they ended, with its success rates; and its
// own audit history ("job.pause by ops-token").
async function jobInsights(name) {
  const [runs, stats, history] = await Promise.all([api(`/jobs/${enc(name)}/runs?limit=60`), api(`/jobs/${enc(name)}/stats`),
    api(`/audit?job=${enc(name)}&limit=10`)]);
  const ended = runs.filter((r) => r.finished_at).reverse();
  const rate = (period) => {
    const s = stats.find((x) => x.period === period);
    if (!s || !s.runs) return "no runs";
    const percent = s.success_rate * 100;
    return `${Number.isInteger(percent) ? percent : percent.toFixed(1)}% of ${s.runs}`;
  };
  const chart = ended.length === 0 ? h("div", { class: "empty" }, "No ended runs yet.") : barChart({
    id: "duration-chart", label: `Durations of the last ${ended.length} runs of ${name}`, slots: 60,
    axis: (most) => duration(most),
    bars: ended.map((r) => ({ parts: [{ value: r.duration_seconds || 0, cls: `s-${r.status}` }],
      title: `#${r.id} ${r.status} in ${duration(r.duration_seconds)}, ${formatTime(r.finished_at)}`, href: `#/runs/${r.id}` })),
    ticks: [{ at: 0, label: relative(ended[0].finished_at) }, { at: ended.length - 1, label: relative(ended[ended.length - 1].finished_at) }],
  });
  return [
    h("h2", {}, "Trend"),
    h("div", { class: "panel insight" },
      h("div", { class: "rates" }, h("span", { id: "rate-24h" }, "Success 24 h: ", h("strong", {}, rate("24h"))),
        h("span", { id: "rate-7d" }, "7 days: ", h("strong", {}, rate("7d"))),
        h("span", { class: "legend" }, ["succeeded", "failed", "timed_out", "cancelled", "dead"].map((s) =>
          h("span", { class: `key s-${s}` }, s.replace("_", " "))))),
      chart),
    h("h2", {}, "History"),
    h("div", { class: "panel" }, history.length ? auditTable(history, true) : h("div", { class: "empty" }, "No changes recorded."),
      h("div", { class: "more" }, h("a", { href: `#/audit?job=${enc(name)}` }, "Whole history"))),
  ];
}

// Runs per minute and failures over the last 24 hours. Read at most every 30 s: the dashboard re-renders on every
// change, and this reads a day of history.
const activityCache = { at: 0, data: null };
async function activityChart() {
  if (!activityCache.data || Date.now() - activityCache.at > 30000) {
    activityCache.data = await api("/activity?hours=24");
    activityCache.at = Date.now();
  }
  const buckets = activityCache.data;
  const minutes = buckets.length > 1 ? (new Date(buckets[1].bucket_start) - new Date(buckets[0].bucket_start)) / 60000 : 15;
  const hour = (iso) => new Intl.DateTimeFormat(undefined, Object.assign({ hour: "2-digit", minute: "2-digit", hour12: false },
    zone() !== "local" ? { timeZone: zone() } : {})).format(new Date(iso));
  const perMinute = (n) => n / minutes;
  const total = buckets.reduce((sum, b) => sum + b.ended, 0), failed = buckets.reduce((sum, b) => sum + b.failed, 0);
  return h("div", { class: "panel insight", id: "activity" },
    h("div", { class: "rates" }, h("span", {}, "Runs ended in 24 h: ", h("strong", { id: "activity-total" }, total.toLocaleString("en-US"))),
      h("span", {}, "failed: ", h("strong", { id: "activity-failed" }, failed.toLocaleString("en-US"))),
      h("span", { class: "legend" }, h("span", { class: "key s-succeeded" }, "ended"), h("span", { class: "key s-failed" }, "failed"))),
    barChart({ id: "activity-chart", label: "Runs per minute and failures over the last 24 hours",
      axis: (most) => `${(most).toFixed(most < 10 ? 1 : 0)}/min`,
      bars: buckets.map((b) => ({
        parts: [{ value: perMinute(b.ended - b.failed), cls: "s-succeeded" }, { value: perMinute(b.failed), cls: "s-failed" }],
        title: `${hour(b.bucket_start)}: ${b.ended} ended (${perMinute(b.ended).toFixed(1)}/min), ${b.failed} failed`,
        href: b.failed ? `#/runs?${filterQuery({ status: FAILURES.join(","), since: b.bucket_start,
          until: new Date(new Date(b.bucket_start).getTime() + minutes * 60000).toISOString() })}` : null })),
      ticks: buckets.length ? [0, Math.floor(buckets.length / 2), buckets.length - 1].map((i) => ({ at: i, label: hour(buckets[i].bucket_start) })) : [] }));
}

// ---------- pools ----------

// Each pool: its jobs, runs waiting and running, the live workers serving it (none: its runs wait for one, not for
// their turn) and its limits, which the form sets (PUT /pools/{pool}; the server checks them). The table re-reads on
// live updates; the form is built once, so what is typed in it stays.
async function poolsPage(view) {
  const table = h("div", { id: "pool-table" });
  view.replaceChildren(h("h1", {}, "Pools"), table, h("h2", {}, "Limits"), poolLimitsForm());
  state.refresh = () => drawPools(table);
  await state.refresh();
}

async function drawPools(slot) {
  const pools = await api("/pools");
  const edit = (p) => () => {
    document.getElementById("limit-pool").value = p.pool;
    document.getElementById("limit-max").value = p.max_running ?? "";
    document.getElementById("limit-rate").value = p.rate ?? "";
    document.getElementById("limit-max").focus();
  };
  slot.replaceChildren(h("div", { class: "panel" }, pools.length === 0
    ? h("div", { class: "empty" }, "No pool yet: a job names one (", h("code", {}, "--pool"), ", default ", h("code", {}, "default"), ").")
    : h("table", { id: "pools" },
        h("thead", {}, h("tr", {}, ["Pool", "Jobs", "Waiting", "Running", "Oldest ready waited", "Workers", "Limits", ""]
          .map((label, i) => h("th", { class: [2, 4].includes(i) ? "hide-narrow" : null }, label)))),
        h("tbody", {}, pools.map((p) => h("tr", { class: "pool", "data-pool": p.pool },
          h("td", {}, p.pool),
          h("td", {}, p.jobs),
          h("td", { class: "hide-narrow" }, p.pending, p.ready < p.pending ? h("span", { class: "muted" }, ` (${p.ready} ready)`) : null),
          h("td", {}, p.running),
          h("td", { class: "hide-narrow" }, p.ready > 0 ? duration(p.oldest_ready_age_seconds) : "—"),
          h("td", { "data-workers": p.workers_alive }, p.workers_alive > 0 ? p.workers_alive
            : badge(p.pending > 0 ? "none: its runs wait" : "none", "lost")),
          h("td", { class: "limits" }, [p.max_running ? `at most ${p.max_running} at once` : null, p.rate ? `${p.rate} starts` : null]
            .filter((x) => x).join(", ") || h("span", { class: "muted" }, "none")),
          h("td", {}, h("button", { type: "button", "data-action": "edit-limits", onclick: edit(p) }, "Edit limits"))))))));
}

function poolLimitsForm() {
  const field = (id, label, hint, attrs) => h("div", { class: "field" }, h("label", { for: id }, label),
    h("input", Object.assign({ id, type: "text", autocomplete: "off" }, attrs)), h("div", { class: "hint" }, hint));
  const result = h("span", { id: "limits-result", class: "muted" });
  const form = h("form", { class: "editor", id: "pool-limits", novalidate: true },
    h("div", { class: "row" },
      field("limit-pool", "Pool", "a pool's name, as jobs and workers name it", { required: true }),
      field("limit-max", "Runs at once", "across every worker and host; empty: no limit", { inputmode: "numeric" }),
      field("limit-rate", "Starts per period", "e.g. 10/1m; empty: no limit", {})),
    h("div", { class: "toolbar" }, h("button", { type: "submit", class: "primary", id: "set-limits" }, "Set limits"), result));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const pool = form.querySelector("#limit-pool").value.trim();
    const max = form.querySelector("#limit-max").value.trim(), rate = form.querySelector("#limit-rate").value.trim();
    result.textContent = "";
    try {
      // The number as typed: "1.5" or "many" reaches the server, which names what is wrong with it.
      const maxRunning = max === "" ? null : (/^\d+$/.test(max) ? Number(max) : max);
      await api(`/pools/${enc(pool)}`, { method: "PUT", body: { max_running: maxRunning, rate: rate === "" ? null : rate } });
      result.textContent = `${pool}: ${max === "" ? "no limit on runs at once" : `at most ${max} at once`}, ` +
        `${rate === "" ? "no rate limit" : `at most ${rate} starts`}`;
      showError(null);
      refreshSoon(true);
    } catch (error) { showError(error); }
  });
  return form;
}

routes.push(
  [/^#\/pools$/, "pools", (view) => poolsPage(view)],
  [/^#\/runs(\?.*)?$/, "runs", (view) => runsPage(view)],
  [/^#\/failures(\?.*)?$/, "failures", (view) => failuresPage(view)],
  [/^#\/audit(\?.*)?$/, "audit", (view) => auditPage(view)],
);
