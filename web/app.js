// The control-room console: login, live map, alerts, dispatch, shift board, agent panel.
// Plain ES module over the daemon's REST API and /ws/console (docs/console.md). Leaflet is
// loaded before it as the global `L`.

import { Alarm } from "./alarm.js";
import { AgentLayer, STATUS_COLOURS } from "./agents.js";

const TOKEN_KEY = "bahinlink.token";
const meta = (name) => document.querySelector(`meta[name="${name}"]`)?.content ?? "";
const TILE_URL = meta("bahinlink-tile-url");
const LATE_AFTER_MIN = Number(meta("bahinlink-late-after-min")) || 10;
const $ = (id) => document.getElementById(id);

/// What tests and operators can inspect from the console (the page's own state).
const page = (window.bahinlink = {
  user: null,
  feed: "closed",
  sites: new Map(),
  alerts: new Map(),
  emergencies: new Map(),
  snapshots: 0,
  positionsFrames: 0,
});

// ---------- REST ----------

class ApiError extends Error {
  constructor(status, body) {
    super(body?.error?.message ?? `HTTP ${status}`);
    this.status = status;
    this.code = body?.error?.code;
  }
}

async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await res.text();
  const json = text ? JSON.parse(text) : null;
  if (res.status === 401 && path !== "/api/v1/auth/login") {
    signedOut("Your session ended; sign in again.");
  }
  if (!res.ok) throw new ApiError(res.status, json);
  return json;
}

/// Every item of a list endpoint, a page of 200 at a time.
async function listAll(path) {
  const items = [];
  const sep = path.includes("?") ? "&" : "?";
  for (let offset = 0; ; offset += 200) {
    const page = await api("GET", `${path}${sep}limit=200&offset=${offset}`);
    items.push(...page.items);
    if (page.items.length < 200 || items.length >= page.total) return items;
  }
}

// ---------- login ----------

function showLogin(message = "") {
  $("console").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = message;
}

/// Signs out: the page is reloaded, so nothing of the previous user (alerts, emergencies,
/// agents, panels) stays for the next one; the message is shown on the fresh login form.
function signedOut(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  if (message) sessionStorage.setItem("bahinlink.message", message);
  const ws = feed;
  feed = null;
  ws?.close();
  alarm.silence();
  location.reload();
}

$("login-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  $("login-error").textContent = "";
  try {
    const answer = await api("POST", "/api/v1/auth/login", {
      email: $("email").value,
      password: $("password").value,
    });
    sessionStorage.setItem(TOKEN_KEY, answer.token);
    $("password").value = "";
    await start();
  } catch (err) {
    $("login-error").textContent = err.message;
  }
});

$("logout").addEventListener("click", async () => {
  try {
    await api("POST", "/api/v1/auth/logout");
  } catch (_) { /* signed out either way */ }
  signedOut("");
});

// ---------- map ----------

const map = L.map("map", { preferCanvas: true, minZoom: 2, maxZoom: 19, worldCopyJump: true });
map.setView([6.17, 1.23], 12);
L.control.scale({ imperial: false }).addTo(map);
if (TILE_URL) {
  L.tileLayer(TILE_URL, { maxZoom: 19, attribution: "map tiles: see console.tile_url" }).addTo(map);
}
const legend = L.control({ position: "bottomleft" });
legend.onAdd = () => {
  const div = L.DomUtil.create("div", "legend");
  div.innerHTML = Object.entries(STATUS_COLOURS)
    .map(([k, c]) => `<div><i style="background:${c}"></i>${k.replace("_", " ")}</div>`)
    .join("");
  return div;
};
legend.addTo(map);
const fenceLayer = L.layerGroup().addTo(map);
// Site names only where they fit: from street level in.
const LABELS_FROM_ZOOM = 15;
const showLabels = () => $("map").classList.toggle("labels-off", map.getZoom() < LABELS_FROM_ZOOM);
map.on("zoomend", showLabels);
const agents = new AgentLayer(map, (id) => showAgent(id));
page.agents = agents;
page.map = map;
/// Places an emergency as a click on the map does (also for scripted checks).
page.place = (lat, lon, siteId = null) => placeEmergency(lat, lon, siteId);
let placed = null;
let placedMarker = null;

// A click on an agent selects it (agents.js); anywhere else it places an emergency.
map.on("click", (e) => {
  if (!agents.pick(e.containerPoint)) placeEmergency(e.latlng.lat, e.latlng.lng, null);
});

async function loadSites() {
  const sites = await listAll("/api/v1/sites");
  fenceLayer.clearLayers();
  page.sites.clear();
  const bounds = [];
  for (const site of sites) {
    page.sites.set(site.id, site);
    const g = site.geofence;
    let shape;
    if (g?.type === "Circle") {
      shape = L.circle([g.center[1], g.center[0]], { radius: g.radius_m });
    } else if (g?.type === "Polygon") {
      shape = L.polygon(g.coordinates.map((ring) => ring.map(([lon, lat]) => [lat, lon])));
    } else {
      continue;
    }
    shape.setStyle({ color: "#17324d", weight: 2, fillColor: "#17324d", fillOpacity: 0.12 });
    // A text node, not HTML: a site's name is whatever an operator typed.
    const label = document.createElement("span");
    label.textContent = site.name;
    shape.bindTooltip(label, { permanent: true, direction: "center", className: "site-label" });
    shape.on("click", (e) => {
      L.DomEvent.stopPropagation(e);
      const c = shape.getBounds().getCenter();
      placeEmergency(c.lat, c.lng, site.id);
    });
    shape.addTo(fenceLayer);
    bounds.push(shape.getBounds());
  }
  if (bounds.length) {
    map.fitBounds(bounds.reduce((a, b) => a.extend(b), L.latLngBounds(bounds[0])), { padding: [20, 20] });
  }
  showLabels();
}

// ---------- live feed ----------

let feed = null;
let retry = 1000;

function connectFeed() {
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (!token) return;
  const url = new URL(`/ws/console?token=${encodeURIComponent(token)}`, location.href);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  const ws = new WebSocket(url);
  feed = ws;
  setFeed("connecting");
  ws.onopen = () => {
    retry = 1000;
    ws.send(JSON.stringify({ type: "subscribe", site_ids: null, kinds: null }));
  };
  ws.onmessage = (m) => {
    if (feed === ws) onFrame(JSON.parse(m.data));
  };
  ws.onclose = (e) => {
    if (feed !== ws) return;
    setFeed("down");
    if (e.code === 4001) return signedOut("Your session ended; sign in again.");
    // The role or client changed: start over with the new scope.
    if (e.code === 4003) return location.reload();
    // Network losses: reconnect, a new snapshot follows.
    setTimeout(() => {
      if (feed === ws) connectFeed();
    }, retry);
    retry = Math.min(retry * 2, 15000);
  };
}

function setFeed(state) {
  page.feed = state;
  const pill = $("feed-state");
  pill.textContent = state === "live" ? "live" : state === "down" ? "reconnecting…" : "connecting…";
  pill.className = `pill ${state === "live" ? "live" : state === "down" ? "down" : ""}`;
}

function onFrame(f) {
  switch (f.type) {
    case "snapshot":
      page.snapshots += 1;
      setFeed("live");
      agents.replace(f.agents);
      // The snapshot is the truth: alerts closed meanwhile go, the alarm follows it.
      page.alerts.clear();
      alarm.silence();
      for (const a of f.alerts) {
        addAlert(alertFromSnapshot(a));
        if (a.kind === "violation") agents.setOutside(a.agent_id, true);
        if (a.kind === "emergency") trackEmergency(a.emergency_id, { description: a.description });
      }
      for (const r of f.open_alerts ?? []) upsertRecord(r);
      scheduleAlerts();
      break;
    case "alert":
      upsertRecord(f);
      scheduleAlerts();
      break;
    case "positions":
      page.positionsFrames += 1;
      agents.move(f.items);
      break;
    case "lagged":
      // Events were lost: ask for a fresh snapshot.
      feed?.send(JSON.stringify({ type: "subscribe", site_ids: null, kinds: null }));
      break;
    case "panic":
      addAlert({ kind: "panic", id: f.report_id, agent_id: f.agent_id, site_id: f.site_id, lat: f.lat, lon: f.lon, note: f.note, at: f.at, attached_to: f.attached_to });
      scheduleAlerts();
      break;
    case "violation":
      if (f.state === "opened" && f.violation_id) {
        addAlert({ kind: "violation", id: f.violation_id, agent_id: f.agent_id, site_id: f.site_id, at: f.at, distance_m: f.distance_m });
        agents.setOutside(f.agent_id, true);
      } else if (f.state === "closed") {
        for (const a of page.alerts.values()) {
          if (a.kind === "violation" && a.agent_id === f.agent_id && a.site_id === f.site_id) page.alerts.delete(a.key);
        }
        agents.setOutside(f.agent_id, false);
      }
      scheduleAlerts();
      break;
    case "emergency":
      addAlert({ kind: "emergency", id: f.emergency_id, site_id: f.site_id, lat: f.lat, lon: f.lon, description: f.description, at: f.at, priority: f.priority });
      trackEmergency(f.emergency_id, { assigned: f.assigned, unfilled: f.unfilled, description: f.description });
      scheduleAlerts();
      break;
    case "emergency_step":
      emergencyStep(f);
      break;
    case "alert_closed":
      page.alerts.delete(`${f.alert}:${f.id}`);
      alarm.clear(`${f.alert}:${f.id}`);
      if (f.alert === "emergency") agents.releaseEmergency(f.id);
      scheduleAlerts();
      break;
    case "attendance":
      agents.setDuty(f.agent_id, f.status);
      break;
    default:
      break;
  }
}

// ---------- alerts ----------

const alarm = new Alarm((on) => {
  $("alarm-banner").hidden = !on;
});

function alertFromSnapshot(a) {
  switch (a.kind) {
    case "violation":
      return { kind: "violation", id: a.violation_id, agent_id: a.agent_id, site_id: a.site_id, at: a.started_at, distance_m: a.distance_m };
    case "emergency":
      return { kind: "emergency", id: a.emergency_id, site_id: a.site_id, lat: a.lat, lon: a.lon, description: a.description, at: a.started_at, priority: a.priority };
    default:
      return { kind: "panic", id: a.report_id, agent_id: a.agent_id, site_id: a.site_id, lat: a.lat, lon: a.lon, note: a.note, at: a.at };
  }
}

function addAlert(a) {
  a.key = `${a.kind}:${a.id}`;
  if (page.alerts.has(a.key)) return;
  page.alerts.set(a.key, a);
  if (a.kind === "panic" && !a.attached_to) alarm.raise(a.key);
}

/// Kinds the page already shows from their own frames (violation, panic).
const SHOWN_ELSEWHERE = new Set(["GEOFENCE_VIOLATION", "PANIC"]);
const KIND_LABEL = {
  MISSED_CHECKPOINT: "Missed checkpoints",
  LONE_WORKER: "Lone worker",
  DEVICE_OFFLINE: "Device offline",
  LATE_CLOCK_IN: "Late clock-in",
  NO_SHOW: "No show",
};

/// An alert of the one life cycle (`alert` frames, the snapshot's `open_alerts`): the newest
/// state replaces the last; resolved ones go; an open CRITICAL one sounds the alarm.
function upsertRecord(r) {
  if (SHOWN_ELSEWHERE.has(r.kind)) return;
  const key = `alert:${r.id}`;
  if (r.state === "resolved") {
    page.alerts.delete(key);
    alarm.clear(key);
    return;
  }
  const fix = r.details?.last_fix;
  page.alerts.set(key, {
    kind: "record",
    key,
    id: r.id,
    record: r,
    agent_id: r.agent_id,
    site_id: r.site_id,
    at: r.opened_at,
    lat: fix?.lat ?? null,
    lon: fix?.lon ?? null,
  });
  if (r.severity === "CRITICAL" && r.state === "open") alarm.raise(key);
  else alarm.clear(key);
}

function since(at) {
  if (!at) return "";
  const s = Math.max(0, Math.round((Date.now() - Date.parse(at)) / 1000));
  return s < 60 ? `${s} s ago` : s < 3600 ? `${Math.round(s / 60)} min ago` : `${Math.round(s / 3600)} h ago`;
}

function where(a) {
  const site = a.site_id && page.sites.get(a.site_id);
  if (site) return site.name;
  return a.lat != null ? `${a.lat.toFixed(5)}, ${a.lon.toFixed(5)}` : "unknown place";
}

/// Most alerts listed at once (the newest); the count shows them all.
const MAX_LISTED = 200;
let alertsFrame = 0;

/// Re-renders the alerts once per animation frame however many events arrive.
function scheduleAlerts() {
  if (!alertsFrame) {
    alertsFrame = requestAnimationFrame(() => {
      alertsFrame = 0;
      renderAlerts();
    });
  }
}

function renderAlerts() {
  const list = $("alerts");
  list.replaceChildren();
  const sorted = [...page.alerts.values()].sort((x, y) => (x.at < y.at ? 1 : -1));
  for (const a of sorted.slice(0, MAX_LISTED)) {
    const li = document.createElement("li");
    const r = a.record;
    li.className = r ? `record ${r.severity.toLowerCase()}` : a.kind;
    li.dataset.key = a.key;
    const title = r ? KIND_LABEL[r.kind] ?? r.kind : a.kind === "panic" ? "Panic" : a.kind === "violation" ? "Left the site" : "Emergency";
    const who = a.agent_id ? `agent ${a.agent_id.slice(0, 8)}` : a.description ?? "";
    li.innerHTML = `<div class="title"></div><div class="muted"></div><div class="actions"></div>`;
    li.children[0].textContent = `${title} — ${where(a)}`;
    li.children[1].textContent = r
      ? `${r.title} · ${who ? `${who} · ` : ""}${r.state}${r.escalation_level ? ` · escalated ×${r.escalation_level}` : ""} · ${since(a.at)}`
      : `${who}${a.note ? ` · “${a.note}”` : ""} · ${since(a.at)}`;
    const actions = li.children[2];
    const act = (label, fn) => {
      const b = document.createElement("button");
      b.type = "button";
      b.textContent = label;
      b.addEventListener("click", async () => {
        b.disabled = true;
        try {
          await fn();
        } catch (err) {
          b.disabled = false;
          alert(err.message);
        }
      });
      actions.appendChild(b);
    };
    const staff = page.user?.role === "ADMIN" || page.user?.role === "SUPERVISOR";
    if (staff && a.kind === "panic") act("Acknowledge", () => closeAlert(a, `/api/v1/panics/${a.id}/acknowledge`, {}));
    if (staff && a.kind === "violation") {
      act("Resolve", () => {
        const note = (prompt("Note for the record", "") ?? "").trim();
        return closeAlert(a, `/api/v1/violations/${a.id}/resolve`, { note: note || null });
      });
    }
    if (staff && a.kind === "emergency") act("Close", () => closeAlert(a, `/api/v1/emergencies/${a.id}/close`, {}));
    if (staff && r && r.state === "open") {
      act("Acknowledge", async () => {
        const after = await api("POST", `/api/v1/alerts/${a.id}/acknowledge`, {}).catch((err) => {
          if (err.status !== 409) throw err;
          return null;
        });
        if (after) upsertRecord(after);
        scheduleAlerts();
      });
    }
    if (staff && r) {
      act("Resolve", () => {
        const note = (prompt("Note for the record", "") ?? "").trim();
        return closeAlert(a, `/api/v1/alerts/${a.id}/resolve`, { note: note || null });
      });
    }
    if (a.lat != null) act("Show", () => map.setView([a.lat, a.lon], Math.max(map.getZoom(), 16)));
    list.appendChild(li);
  }
  if (sorted.length > MAX_LISTED) {
    const more = document.createElement("li");
    more.textContent = `${sorted.length - MAX_LISTED} older alerts not listed`;
    list.appendChild(more);
  }
  const open = page.alerts.size;
  $("alert-count").textContent = open;
  $("alert-count").className = `badge ${open ? "hot" : ""}`;
}

async function closeAlert(a, path, body) {
  try {
    await api("POST", path, body);
  } catch (err) {
    // Closed meanwhile by someone else: it goes all the same.
    if (err.status !== 409) throw err;
  }
  page.alerts.delete(a.key);
  alarm.clear(a.key);
  scheduleAlerts();
}

// ---------- dispatch ----------

function placeEmergency(lat, lon, siteId) {
  placed = { lat, lon, site_id: siteId };
  if (placedMarker) placedMarker.remove();
  placedMarker = L.circleMarker([lat, lon], { radius: 9, color: "#6a1b9a", weight: 3, fill: false }).addTo(map);
  const site = siteId && page.sites.get(siteId);
  $("emergency-where").textContent = site ? `At ${site.name}` : `At ${lat.toFixed(5)}, ${lon.toFixed(5)}`;
  $("emergency-raise").disabled = page.user?.role === "CLIENT";
  showTab("dispatch");
}

$("emergency-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  if (!placed) return;
  $("emergency-error").textContent = "";
  const body = {
    agents_needed: Number($("emergency-agents").value) || 1,
    priority: $("emergency-priority").value,
    description: $("emergency-description").value || undefined,
  };
  if (placed.site_id) body.site_id = placed.site_id;
  else Object.assign(body, { lat: placed.lat, lon: placed.lon });
  try {
    const created = await api("POST", "/api/v1/emergencies", body);
    trackEmergency(created.id, { assigned: created.assigned.map((d) => d.agent_id), details: created.assigned, unfilled: created.unfilled, description: body.description });
  } catch (err) {
    $("emergency-error").textContent = err.message;
  }
});

function trackEmergency(id, { assigned = [], details = [], unfilled = 0, description }) {
  const e = page.emergencies.get(id) ?? { id, steps: new Map(), description, unfilled };
  // A step that arrived first (an answer) is kept; the REST answer only adds distance and ETA.
  for (const d of details) {
    const prev = e.steps.get(d.agent_id);
    e.steps.set(d.agent_id, { step: prev?.step ?? "proposed", distance_m: d.distance_m, eta_s: d.eta_s });
  }
  for (const agentId of assigned) if (!e.steps.has(agentId)) e.steps.set(agentId, { step: "proposed" });
  e.unfilled = unfilled;
  page.emergencies.set(id, e);
  while (page.emergencies.size > MAX_EMERGENCIES) page.emergencies.delete(page.emergencies.keys().next().value);
  scheduleEmergencies();
}

/// Most emergencies kept in the dispatch list (a wall screen runs for 12 hours).
const MAX_EMERGENCIES = 50;

function emergencyStep(f) {
  if (f.agent_id) {
    agents.setResponding(f.agent_id, f.step === "proposed" || f.step === "accepted" ? f.emergency_id : null);
  }
  const e = page.emergencies.get(f.emergency_id) ?? { id: f.emergency_id, steps: new Map(), unfilled: 0 };
  if (f.agent_id) {
    const prev = e.steps.get(f.agent_id) ?? {};
    e.steps.set(f.agent_id, { ...prev, step: f.step, distance_m: f.distance_m ?? prev.distance_m });
  } else if (f.step === "unfilled") {
    e.unfilled += 1;
  }
  page.emergencies.set(f.emergency_id, e);
  scheduleEmergencies();
}

let emergenciesFrame = 0;

/// Re-renders the dispatch list once per animation frame however many steps arrive.
function scheduleEmergencies() {
  if (!emergenciesFrame) {
    emergenciesFrame = requestAnimationFrame(() => {
      emergenciesFrame = 0;
      renderEmergencies();
    });
  }
}

function renderEmergencies() {
  const list = $("emergencies");
  list.replaceChildren();
  for (const e of [...page.emergencies.values()].reverse()) {
    const li = document.createElement("li");
    li.className = "emergency";
    li.dataset.id = e.id;
    const lines = [...e.steps.entries()].map(([agent, s]) => {
      const dist = s.distance_m != null ? ` · ${Math.round(s.distance_m)} m` : "";
      const eta = s.eta_s != null ? ` · ETA ${Math.round(s.eta_s / 60)} min` : "";
      return `<div data-agent="${agent}" data-step="${s.step}">agent ${agent.slice(0, 8)}: ${s.step}${dist}${eta}</div>`;
    });
    li.innerHTML = `<div class="title"></div>${lines.join("")}${e.unfilled ? `<div class="error">${e.unfilled} not filled</div>` : ""}`;
    li.children[0].textContent = `Emergency ${e.id.slice(0, 8)}${e.description ? ` — ${e.description}` : ""}`;
    list.appendChild(li);
  }
}

// ---------- shift board ----------

function dayBounds() {
  const from = new Date();
  from.setHours(0, 0, 0, 0);
  const to = new Date(from.getTime() + 24 * 3600 * 1000);
  return { from: from.toISOString(), to: to.toISOString() };
}

function boardState(s) {
  if (s.status === "COMPLETED") return "completed";
  if (s.status === "IN_PROGRESS") return "clocked_in";
  if (!s.agent_id) return "unassigned";
  const late = Date.now() > Date.parse(s.start_time) + LATE_AFTER_MIN * 60000;
  return late && (s.status === "SCHEDULED" || s.status === "CONFIRMED") ? "late" : "assigned";
}

async function loadShifts() {
  const { from, to } = dayBounds();
  const shifts = await listAll(`/api/v1/shifts?from=${encodeURIComponent(from)}&to=${encodeURIComponent(to)}`);
  const bySite = new Map();
  for (const s of shifts) {
    if (!s.site_id || s.status === "CANCELLED") continue;
    if (!bySite.has(s.site_id)) bySite.set(s.site_id, []);
    bySite.get(s.site_id).push(s);
  }
  const board = $("shift-board");
  board.replaceChildren();
  for (const [siteId, list] of bySite) {
    const section = document.createElement("div");
    section.className = "board-site";
    const h = document.createElement("h3");
    h.textContent = page.sites.get(siteId)?.name ?? siteId;
    section.appendChild(h);
    for (const s of list) {
      const state = boardState(s);
      const div = document.createElement("div");
      div.className = `shift ${state}`;
      div.dataset.id = s.id;
      const hours = `${new Date(s.start_time).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })}–${new Date(s.end_time).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })}`;
      div.innerHTML = `<span></span><span class="muted"></span><span class="why"></span>`;
      div.children[0].textContent = `${hours} · ${s.agent_id ? `agent ${s.agent_id.slice(0, 8)}` : "no agent"}`;
      div.children[1].textContent = state.replace("_", " ");
      if (state === "unassigned" && page.user?.role !== "CLIENT") {
        const b = document.createElement("button");
        b.type = "button";
        b.textContent = "Auto-assign";
        b.addEventListener("click", async () => {
          b.disabled = true;
          try {
            const r = await api("POST", `/api/v1/shifts/${s.id}/auto-assign`);
            // Why this agent: its cost, the runners-up, and what the hard rules excluded.
            const excluded = Object.entries(r.excluded ?? {})
              .map(([rule, n]) => `${rule.replaceAll("_", " ")} ${n}`)
              .join(", ");
            const next = (r.alternatives ?? []).length;
            div.children[2].textContent = `agent ${r.agent_id.slice(0, 8)}, cost ${r.score.toFixed(2)}; ${next} runner(s)-up${excluded ? `; excluded: ${excluded}` : ""}`;
            div.className = "shift assigned";
            div.children[1].textContent = "assigned";
          } catch (err) {
            div.children[2].textContent = err.message;
            b.disabled = false;
          }
        });
        div.children[1].replaceChildren(b);
      }
      section.appendChild(div);
    }
    board.appendChild(section);
  }
  if (!bySite.size) board.textContent = "No shifts today.";
}

$("auto-fill").addEventListener("click", async () => {
  const { from, to } = dayBounds();
  try {
    const r = await api("POST", "/api/v1/dispatch/auto-fill", { from, to });
    $("fill-result").textContent = `${r.assigned.length} assigned, ${r.unfilled.length} left`;
    await loadShifts();
  } catch (err) {
    $("fill-result").textContent = err.message;
  }
});

// ---------- agent panel ----------

let trackLine = null;

async function showAgent(id) {
  showTab("agent");
  const panel = $("agent-panel");
  panel.textContent = "Loading…";
  try {
    const a = await api("GET", `/api/v1/agents/${id}`);
    const live = agents.get(id);
    const name = [a.first_name, a.last_name].filter(Boolean).join(" ") || a.employee_id;
    panel.innerHTML = `<h3></h3><p class="muted"></p><p></p><button type="button" id="show-track">Track of the last 8 hours</button>`;
    panel.children[0].textContent = name;
    panel.children[1].textContent = `${a.employee_id} · ${a.employment_status}`;
    panel.children[2].textContent = live
      ? `${live.status.replace("_", " ")} · last fix ${live.at ? since(live.at) : "none"}${live.shift_id ? ` · shift ${live.shift_id.slice(0, 8)}` : ""}`
      : "not on duty";
    $("show-track").addEventListener("click", () => showTrack(id));
  } catch (err) {
    panel.textContent = err.message;
  }
}

async function showTrack(id) {
  const to = new Date();
  const from = new Date(to.getTime() - 8 * 3600 * 1000);
  const track = await api("GET", `/api/v1/agents/${id}/track?from=${encodeURIComponent(from.toISOString())}&to=${encodeURIComponent(to.toISOString())}`);
  if (trackLine) trackLine.remove();
  const coords = track.geometry.coordinates.map(([lon, lat]) => [lat, lon]);
  trackLine = L.polyline(coords, { color: "#6a1b9a", weight: 3 }).addTo(map);
  if (coords.length) map.fitBounds(trackLine.getBounds(), { maxZoom: 17 });
}

// ---------- tabs and start ----------

function showTab(name) {
  for (const t of document.querySelectorAll(".tab")) t.classList.toggle("active", t.dataset.tab === name);
  for (const p of document.querySelectorAll(".pane")) p.hidden = p.id !== `tab-${name}`;
  if (name === "shifts") loadShifts().catch((err) => ($("shift-board").textContent = err.message));
}

for (const t of document.querySelectorAll(".tab")) t.addEventListener("click", () => showTab(t.dataset.tab));

setInterval(() => {
  $("counts").textContent = `${agents.size()} agents on duty`;
  agents.refreshAges();
  scheduleAlerts();
}, 5000);

async function start() {
  const message = sessionStorage.getItem("bahinlink.message") ?? "";
  sessionStorage.removeItem("bahinlink.message");
  if (!sessionStorage.getItem(TOKEN_KEY)) return showLogin(message);
  let me;
  try {
    me = await api("GET", "/api/v1/auth/me");
  } catch (err) {
    return showLogin(err.status === 401 ? "" : err.message);
  }
  if (me.role === "AGENT") {
    sessionStorage.removeItem(TOKEN_KEY);
    return showLogin("Agents have no control-room console; use the phone app.");
  }
  page.user = me;
  // CLIENT users read; they do not dispatch, assign or close alerts.
  const staff = me.role === "ADMIN" || me.role === "SUPERVISOR";
  $("auto-fill").hidden = !staff;
  $("emergency-form").hidden = !staff;
  $("who").textContent = `${me.email} (${me.role})`;
  $("login").hidden = true;
  $("console").hidden = false;
  map.invalidateSize();
  await loadSites();
  connectFeed();
}

start();
