// The Zoho sync page: reads the page's JSON API (same origin, the Airflow session cookie) and draws it.
// Everything that comes from the state database is put in the page as text (textContent, never innerHTML):
// emails, names and Zoho's messages come from stores and from Zoho, and are hostile input.
"use strict";

const API = new URL("api/", document.baseURI); // <airflow>/zoho-sync/api/
const AIRFLOW = new URL("../", document.baseURI); // <airflow>/ (the UI and its REST API, /api/v2)
const OVERVIEW_REFRESH_MS = 30000;
const TENANT_REFRESH_MS = 30000;
const RESET_REFRESH_MS = 3000; // a running reset's bar moves every few seconds
const ERRORS_PAGE = 50;
const SVG = "http://www.w3.org/2000/svg";

const state = { timer: null, tenant: null, dagId: null, errorsOffset: 0, errorsTotal: 0 };
const $ = (id) => document.getElementById(id);

// --- small helpers -----------------------------------------------------------------------------------------

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined) continue;
    if (key === "class") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else node.setAttribute(key, value);
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function frag(...children) {
  const fragment = document.createDocumentFragment();
  for (const child of children) {
    if (child !== null && child !== undefined && child !== "") fragment.append(child);
  }
  return fragment;
}

function svgEl(tag, attrs, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
  if (text !== undefined) node.textContent = text;
  return node;
}

function num(value) {
  return value === null || value === undefined ? "–" : Number(value).toLocaleString("en-US");
}

function pad(n) {
  return String(n).padStart(2, "0");
}

// "2025-03-04 05:06 UTC": the same for every viewer, whatever their time zone.
function when(iso) {
  if (!iso) return "–";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso);
  return `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())} ${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())} UTC`;
}

function ago(iso) {
  if (!iso) return "";
  const seconds = (Date.now() - new Date(iso).getTime()) / 1000;
  const future = seconds < 0;
  const s = Math.abs(seconds);
  const text = s < 90 ? `${Math.round(s)} s` : s < 5400 ? `${Math.round(s / 60)} min` : s < 172800 ? `${Math.round(s / 3600)} h` : `${Math.round(s / 86400)} d`;
  return future ? `in ${text}` : `${text} ago`;
}

function duration(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  const s = Math.round(seconds);
  if (s < 120) return `${s} s`;
  if (s < 7200) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.round((s % 3600) / 60)} min`;
}

function sum(object) {
  return Object.values(object || {}).reduce((a, b) => a + (Number(b) || 0), 0);
}

function clear(node) {
  node.replaceChildren();
  return node;
}

async function getJSON(path) {
  const response = await fetch(new URL(path, API), { credentials: "same-origin", headers: { Accept: "application/json" } });
  if (!response.ok) {
    let detail = response.statusText;
    try {
      detail = (await response.json()).detail || detail;
    } catch (_) {
      /* not JSON */
    }
    const error = new Error(`${response.status}: ${typeof detail === "string" ? detail : JSON.stringify(detail)}`);
    error.status = response.status;
    throw error;
  }
  return response.json();
}

function showProblem(message) {
  const box = $("problem");
  box.textContent = message || "";
  box.hidden = !message;
}

function stamp(iso) {
  $("updated").textContent = `updated ${when(iso)}`;
}

function runBadge(lastRun) {
  if (!lastRun) return el("span", { class: "badge other" }, "never");
  return el("span", { class: `badge ${lastRun.ok ? "ok" : "bad"}`, title: lastRun.run_id }, lastRun.ok ? "ok" : "red");
}

function dagBadge(dagRun) {
  if (!dagRun) return el("span", { class: "muted" }, "–");
  const kind = dagRun.state === "success" ? "ok" : dagRun.state === "failed" ? "bad" : "other";
  return el("span", { class: `badge ${kind}`, title: `${dagRun.run_id} ${when(dagRun.start_date)}` }, dagRun.state);
}

function creditsCell(budget) {
  if (!budget || budget.limit === null || budget.limit === undefined) {
    return el("div", { class: "credits" }, budget ? `${num(budget.used_24h)} used` : "–");
  }
  const share = Math.max(0, Math.min(1, Number(budget.share_used) || 0));
  const meter = el("div", { class: `meter${share >= 0.9 ? " full" : share >= 0.7 ? " warn" : ""}` });
  meter.append(el("div", { style: `width:${(share * 100).toFixed(1)}%` }));
  return el(
    "div",
    { class: "credits", title: `org ${budget.org_key || ""}: ${num(budget.remaining)} left` },
    `${num(budget.used_24h)} / ${num(budget.limit)}`,
    meter,
  );
}

function resetCell(reset) {
  if (!reset || reset.status !== "in_progress") return el("span", { class: "muted" }, "–");
  const share = Math.max(0, Math.min(1, Number(reset.share) || 0));
  const meter = el("div", { class: "meter" });
  meter.append(el("div", { style: `width:${(share * 100).toFixed(1)}%` }));
  return el("div", { class: "credits" }, `${num(reset.done)} / ${num(reset.total)}`, meter);
}

function cell(column, content, attrs) {
  return el("td", { ...(attrs || {}), dataset: { col: column } }, content);
}

// --- the overview ------------------------------------------------------------------------------------------

async function showOverview() {
  const data = await getJSON("tenants");
  const body = clear($("overview").tBodies[0]);
  for (const t of data.tenants) {
    const last = t.last_run;
    const day = t.last_24h || {};
    const link = el("a", { href: `#tenant/${encodeURIComponent(t.tenant_id)}` }, t.tenant_id);
    const row = el("tr", { class: last ? (last.ok ? "green" : "red") : "", dataset: { tenant: t.tenant_id } });
    row.append(
      cell("tenant", frag(link, el("div", { class: "muted" }, `${t.source} · ${(t.modules || []).join(", ")}`))),
      cell("last_run", frag(runBadge(last), last ? ` ${when(last.finished_at)}` : "", last ? el("div", { class: "muted" }, `${last.kind}, ${ago(last.finished_at)}`) : ""), { class: "text" }),
      cell("dag_run", dagBadge(t.dag_run), { class: "text" }),
      cell("in_zoho_contacts", num((t.in_zoho || {}).Contacts ?? 0)),
      cell("in_zoho_leads", num((t.in_zoho || {}).Leads ?? 0)),
      cell("last_written", last ? num((last.inserted || 0) + (last.updated || 0)) : "–", { title: last ? `inserted ${num(last.inserted)} · updated ${num(last.updated)}` : "" }),
      cell("last_rejected", last ? num(last.failed) : "–"),
      cell("last_invalid", last ? num(last.invalid) : "–"),
      cell("day_runs", num(day.runs)),
      cell("day_sent", num(day.sent)),
      cell("day_rejected", num(day.rejected)),
      cell("day_invalid", num(day.invalid)),
      cell("credits", creditsCell(t.credits_budget), { class: "text" }),
      cell("deleted_in_zoho", num(t.deleted_in_zoho)),
      cell("failed_records", num(t.failed_records)),
      cell("next_full_pass", t.next_full_pass ? when(t.next_full_pass) : "–", { title: ago(t.next_full_pass) }),
      cell("reset", resetCell(t.reset), { class: "text" }),
    );
    body.append(row);
  }
  $("no-tenants").hidden = data.tenants.length > 0 || data.broken.length > 0;
  const broken = clear($("broken"));
  for (const b of data.broken) {
    broken.append(el("li", { dataset: { tenant: b.tenant_id || "" } }, b.tenant_id ? el("strong", {}, b.tenant_id) : "", b.tenant_id ? ": " : "", b.error));
  }
  $("broken-section").hidden = data.broken.length === 0;
  stamp(data.generated_at);
  return OVERVIEW_REFRESH_MS;
}

// --- one tenant --------------------------------------------------------------------------------------------

function figure(label, value, key) {
  return el("div", { dataset: { figure: key } }, el("dt", {}, label), el("dd", {}, value));
}

function showReset(progress, lastResets) {
  const running = progress && progress.status === "in_progress";
  $("reset-progress").hidden = !running;
  $("reset-none").hidden = Boolean(running);
  if (running) {
    const share = Math.max(0, Math.min(1, Number(progress.share) || 0));
    const bar = $("reset-progress").querySelector(".bar");
    bar.querySelector(".fill").style.width = `${(share * 100).toFixed(1)}%`;
    bar.setAttribute("aria-valuenow", (share * 100).toFixed(0));
    const rate = progress.rate_per_s ? `${Number(progress.rate_per_s).toFixed(1)} records/s` : "rate not known yet";
    // eta_s counts down from the last chunk's count: at 0 with records still to send, the next chunk is late
    const left = !progress.eta_s ? `time left unknown (last counted ${ago(progress.progress_at) || "never"})` : `about ${duration(progress.eta_s)} left`;
    const text = $("reset-progress").querySelector(".reset-text");
    text.textContent = `${num(progress.done)} / ${num(progress.total)} records (${(share * 100).toFixed(0)}%) · ${rate} · ${left} · started ${when(progress.started_at)}`;
    text.dataset.done = progress.done ?? "";
    text.dataset.total = progress.total ?? "";
  }
  const body = clear($("last-resets").tBodies[0]);
  for (const r of lastResets || []) {
    const modules = Array.isArray(r.modules) ? r.modules : Object.keys(r.modules || {});
    body.append(
      el(
        "tr",
        { dataset: { run: r.run_id } },
        cell("finished_at", when(r.finished_at)),
        cell("kind", r.kind === "dry_run_reset" ? "dry run" : "reset", { class: "text" }),
        cell("ok", el("span", { class: `badge ${r.ok ? "ok" : "bad"}` }, r.ok ? "ok" : "red"), { class: "text" }),
        cell("modules", modules.join(", "), { class: "text" }),
        cell("sent", num(r.sent)),
        cell("written", num((r.inserted || 0) + (r.updated || 0))),
        cell("rejected", num(r.failed)),
        cell("credits", num(r.credits)),
        cell("duration", duration(r.duration_s)),
        cell("run_id", r.run_id, { class: "text" }),
      ),
    );
  }
  if (!(lastResets || []).length) body.append(el("tr", {}, el("td", { colspan: 10, class: "muted" }, "no reset yet")));
  return running;
}

function showFigures(t) {
  const last = t.last_run;
  const day = t.last_24h || {};
  const budget = t.credits_budget || {};
  const list = clear($("tenant-figures"));
  for (const [module, n] of Object.entries(t.in_zoho || {})) list.append(figure(`${module} in Zoho`, num(n), `in_zoho_${module.toLowerCase()}`));
  list.append(
    figure("Last run", last ? `${last.ok ? "ok" : "red"} · ${when(last.finished_at)}` : "never", "last_run"),
    figure("Last run written", last ? num((last.inserted || 0) + (last.updated || 0)) : "–", "last_written"),
    figure("Last run rejected", last ? num(last.failed) : "–", "last_rejected"),
    figure("Last run invalid", last ? num(last.invalid) : "–", "last_invalid"),
    figure("Last run took", last ? duration(last.duration_s) : "–", "last_duration"),
    figure("Runs, 24 h", num(day.runs), "day_runs"),
    figure("Sent, 24 h", num(day.sent), "day_sent"),
    figure("Rejected, 24 h", num(day.rejected), "day_rejected"),
    figure("Credits used, 24 h (org)", budget.limit ? `${num(budget.used_24h)} / ${num(budget.limit)}` : num(budget.used_24h), "credits"),
    figure("Deleted in Zoho", num(t.deleted_in_zoho), "deleted_in_zoho"),
    figure("Failing records", num(t.failed_records), "failed_records"),
    figure("Next full pass", t.next_full_pass ? when(t.next_full_pass) : "–", "next_full_pass"),
  );
}

function showMapping(mapping) {
  const box = clear($("mapping"));
  if (!mapping) return;
  box.append(el("p", { class: "muted" }, `file ${mapping.file || mapping.mapping_file || "?"}`));
  const modules = mapping.modules || mapping.fields || {};
  for (const [module, fields] of Object.entries(modules)) {
    const table = el("table", { class: "grid small", dataset: { module } });
    table.append(el("thead", {}, el("tr", {}, el("th", {}, `${module}: Zoho field`), el("th", {}, "from"))));
    const body = el("tbody");
    const pairs = Array.isArray(fields) ? fields.map((f) => [f.zoho_field ?? f[0], f.source ?? f[1]]) : Object.entries(fields);
    for (const [zohoField, source] of pairs) {
      body.append(el("tr", {}, el("td", { class: "text" }, zohoField), el("td", { class: "text" }, typeof source === "string" ? source : JSON.stringify(source))));
    }
    table.append(body);
    box.append(table);
  }
}

function showVerify(verify) {
  const box = clear($("verify"));
  if (!verify) {
    box.append(el("p", { class: "muted" }, "Never verified: press Verify (the zoho_connect DAG checks the org, the token and the mapping)."));
    return;
  }
  box.append(el("p", {}, el("span", { class: `badge ${verify.ok ? "ok" : "bad"}` }, verify.ok ? "ok" : "failed"), ` ${when(verify.finished_at || verify.at)}`));
  const list = el("ul");
  for (const check of verify.checks || []) {
    const ok = typeof check === "object" ? check.ok : true;
    const line = typeof check === "object" ? check.line || check.message || JSON.stringify(check) : String(check);
    list.append(el("li", { class: ok ? "" : "bad" }, `${ok ? "[ok]" : "[FAILED]"} ${line}`));
  }
  box.append(list);
}

function drawBars(svg, runs, series, title) {
  clear(svg);
  const width = 600;
  const height = 160;
  const left = 44;
  const bottom = 20;
  const top = 22; // the legend's row
  const totals = runs.map((r) => series.reduce((a, s) => a + (Number(r[s.key]) || 0), 0));
  const max = Math.max(1, ...totals);
  svg.append(svgEl("title", {}, title));
  svg.append(svgEl("line", { class: "axis", x1: left, y1: height - bottom, x2: width, y2: height - bottom }));
  svg.append(svgEl("text", { x: left - 4, y: top + 10, "text-anchor": "end" }, num(max)));
  svg.append(svgEl("text", { x: left - 4, y: height - bottom, "text-anchor": "end" }, "0"));
  if (!runs.length) {
    svg.append(svgEl("text", { x: width / 2, y: height / 2, "text-anchor": "middle" }, "no runs yet"));
    return;
  }
  const step = (width - left) / runs.length;
  const barWidth = Math.max(1, step * 0.8);
  runs.forEach((run, index) => {
    let y = height - bottom;
    for (const s of series) {
      const value = Number(run[s.key]) || 0;
      const h = ((height - bottom - top) * value) / max;
      y -= h;
      const rect = svgEl("rect", { class: `s-${s.key}`, x: (left + index * step).toFixed(1), y: y.toFixed(1), width: barWidth.toFixed(1), height: h.toFixed(1) });
      rect.append(svgEl("title", {}, `${when(run.finished_at)} (${run.kind}): ${s.label} ${num(value)}`));
      svg.append(rect);
    }
  });
  svg.append(svgEl("text", { x: left, y: height - 4 }, when(runs[0].finished_at)));
  svg.append(svgEl("text", { x: width, y: height - 4, "text-anchor": "end" }, when(runs[runs.length - 1].finished_at)));
  let x = left + 6;
  for (const s of series) {
    const legend = svgEl("g", { class: "legend" });
    legend.append(svgEl("rect", { class: `s-${s.key}`, x, y: 4, width: 10, height: 10 }));
    legend.append(svgEl("text", { x: x + 14, y: 13 }, s.label));
    svg.append(legend);
    x += 24 + s.label.length * 8;
  }
  svg.dataset.runs = runs.length;
  svg.dataset.total = totals.reduce((a, b) => a + b, 0);
}

function showRuns(runs) {
  drawBars($("plot-sent"), runs, [{ key: "inserted", label: "inserted" }, { key: "updated", label: "updated" }], "Records sent per run");
  drawBars($("plot-rejected"), runs, [{ key: "failed", label: "rejected" }, { key: "invalid", label: "invalid" }], "Rejected and invalid per run");
  drawBars($("plot-credits"), runs, [{ key: "credits", label: "credits" }], "Credits per run");
}

function errorsQuery(extra) {
  const params = new URLSearchParams();
  const email = $("errors-email").value.trim();
  const kind = $("errors-kind").value;
  if (email) params.set("email", email);
  if (kind) params.set("kind", kind);
  for (const [k, v] of Object.entries(extra || {})) params.set(k, v);
  return params.toString();
}

async function showErrors() {
  const id = encodeURIComponent(state.tenant);
  const data = await getJSON(`tenants/${id}/errors?${errorsQuery({ limit: ERRORS_PAGE, offset: state.errorsOffset })}`);
  state.errorsTotal = data.total;
  const body = clear($("errors").tBodies[0]);
  for (const e of data.rows) {
    body.append(
      el(
        "tr",
        { dataset: { email: e.email || "" } },
        cell("at", when(e.at)),
        cell("kind", e.kind, { class: "text" }),
        cell("email", e.email, { class: "text" }),
        cell("module", e.module, { class: "text" }),
        cell("code", e.code, { class: "text" }),
        cell("message", e.message, { class: "reason" }),
        cell("customer_key", e.customer_key, { class: "text" }),
      ),
    );
  }
  const shownTo = Math.min(state.errorsOffset + data.rows.length, data.total);
  $("errors-total").textContent = data.total ? `${num(state.errorsOffset + 1)}–${num(shownTo)} of ${num(data.total)}` : "none";
  $("errors-total").dataset.total = data.total;
  $("errors-prev").disabled = state.errorsOffset === 0;
  $("errors-next").disabled = shownTo >= data.total;
  $("errors-csv").href = new URL(`tenants/${id}/errors.csv?${errorsQuery()}`, API).href;
}

function showDeleted(rows) {
  const body = clear($("deleted").tBodies[0]);
  for (const d of rows) {
    body.append(
      el(
        "tr",
        {},
        cell("email", d.email, { class: "text" }),
        cell("module", d.module, { class: "text" }),
        cell("zoho_id", d.zoho_id, { class: "text" }),
        cell("customer_key", d.customer_key, { class: "text" }),
        cell("updated_at", when(d.updated_at || d.at)),
      ),
    );
  }
  if (!rows.length) body.append(el("tr", {}, el("td", { colspan: 5, class: "muted" }, "none")));
}

async function showTenant(tenantId) {
  const id = encodeURIComponent(tenantId);
  if (state.tenant !== tenantId) {
    state.tenant = tenantId;
    state.errorsOffset = 0;
    $("errors-email").value = "";
    $("errors-kind").value = "";
  }
  const [detail, runs, deleted] = await Promise.all([getJSON(`tenants/${id}`), getJSON(`tenants/${id}/runs`), getJSON(`tenants/${id}/deleted`)]);
  const t = detail.tenant;
  $("crumb").textContent = t.tenant_id;
  state.dagId = t.dag_id;
  $("dag-link").href = new URL(`dags/${encodeURIComponent(t.dag_id)}`, AIRFLOW).href;
  $("dag-link").textContent = `DAG ${t.dag_id}`;
  $("reset-link").href = new URL("dags/zoho_reset", AIRFLOW).href;
  showFigures(t);
  const running = showReset(detail.reset, detail.last_resets);
  showRuns(runs);
  showDeleted(deleted);
  showMapping(detail.mapping);
  showVerify(detail.last_verify);
  await showErrors();
  stamp(detail.generated_at);
  return running ? RESET_REFRESH_MS : TENANT_REFRESH_MS;
}

// --- triggering runs through Airflow's REST API (the reset is not triggered here: it keeps its typed confirmation)

async function trigger(dagId, conf, what) {
  const out = $("action-result");
  if (!window.confirm(`${what}: trigger ${dagId} now?`)) return;
  out.textContent = `triggering ${dagId}…`;
  try {
    const response = await fetch(new URL(`api/v2/dags/${encodeURIComponent(dagId)}/dagRuns`, AIRFLOW), {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify({ logical_date: null, conf }),
    });
    const body = await response.json().catch(() => ({}));
    if (!response.ok) {
      out.textContent = `${dagId} was not triggered (${response.status}): ${typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail || "")}`;
      return;
    }
    clear(out).append(
      `${what} queued: `,
      el("a", { href: new URL(`dags/${encodeURIComponent(dagId)}/runs/${encodeURIComponent(body.dag_run_id)}`, AIRFLOW).href, target: "_top" }, body.dag_run_id),
      " (a paused DAG runs once unpaused)",
    );
  } catch (error) {
    out.textContent = `${dagId} was not triggered: ${error.message}`;
  }
}

// --- navigation and refresh --------------------------------------------------------------------------------

function route() {
  const match = location.hash.match(/^#tenant\/(.+)$/);
  return match ? decodeURIComponent(match[1]) : null;
}

async function refresh() {
  clearTimeout(state.timer);
  const tenantId = route();
  $("overview-view").hidden = Boolean(tenantId);
  $("tenant-view").hidden = !tenantId;
  if (!tenantId) {
    $("crumb").textContent = "";
    state.tenant = null;
  }
  let next = OVERVIEW_REFRESH_MS;
  try {
    next = tenantId ? await showTenant(tenantId) : await showOverview();
    showProblem("");
    document.body.dataset.loaded = tenantId ? `tenant:${tenantId}` : "overview";
  } catch (error) {
    showProblem(error.status === 401 ? "Your Airflow session has ended: log in to Airflow again." : `Could not load: ${error.message}`);
    document.body.dataset.loaded = "error";
  }
  state.timer = setTimeout(refresh, next);
}

document.addEventListener("DOMContentLoaded", () => {
  window.addEventListener("hashchange", refresh);
  $("refresh").addEventListener("click", refresh);
  $("home").addEventListener("click", (event) => {
    event.preventDefault();
    location.hash = "";
  });
  $("errors-search").addEventListener("submit", (event) => {
    event.preventDefault();
    state.errorsOffset = 0;
    showErrors().catch((error) => showProblem(error.message));
  });
  $("errors-prev").addEventListener("click", () => {
    state.errorsOffset = Math.max(0, state.errorsOffset - ERRORS_PAGE);
    showErrors().catch((error) => showProblem(error.message));
  });
  $("errors-next").addEventListener("click", () => {
    state.errorsOffset += ERRORS_PAGE;
    showErrors().catch((error) => showProblem(error.message));
  });
  $("trigger-sync").addEventListener("click", () => trigger(state.dagId, {}, "Sync"));
  $("trigger-dry-run").addEventListener("click", () => trigger(state.dagId, { dry_run: true }, "Dry run"));
  $("trigger-verify").addEventListener("click", () => trigger("zoho_connect", { tenant: state.tenant }, "Verify"));
  refresh();
});
