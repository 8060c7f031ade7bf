// Agents on the map: one canvas circle marker each (Leaflet's canvas renderer draws 10,000 of
// them as one layer), moved in batches once per animation frame however many `positions`
// frames arrive, and coloured by what the agent is doing.

/// Marker colours: what a dispatcher reads at a glance.
export const STATUS_COLOURS = {
  on_duty: "#2e7d32",
  on_break: "#1565c0",
  responding: "#ef6c00",
  outside_fence: "#c62828",
  stale_fix: "#8a97a5",
};

/// A fix older than this is shown as stale.
const STALE_MS = 120000;
/// Points kept per agent for its trail (the last minutes at one fix every few seconds).
const TRAIL_POINTS = 60;

export class AgentLayer {
  constructor(map, onSelect) {
    this.map = map;
    this.onSelect = onSelect;
    this.renderer = L.canvas({ padding: 0.2 });
    this.layer = L.layerGroup().addTo(map);
    /** agent id → { marker, status, at, shift_id, outside, trail: [[lat, lon]] } */
    this.agents = new Map();
    /** Newest fix per agent not yet drawn. */
    this.pending = new Map();
    this.frame = 0;
    this.trail = null;
    this.selected = null;
  }

  size() {
    return this.agents.size;
  }

  get(id) {
    return this.agents.get(id);
  }

  /// The snapshot's agents (on duty, with their last fixes) replace what is shown.
  replace(list) {
    this.layer.clearLayers();
    this.agents.clear();
    this.pending.clear();
    for (const a of list) {
      const fix = a.fix ? { lat: a.fix[0], lon: a.fix[1], at: a.fix[2] } : null;
      const entry = { marker: null, status: a.status, at: fix?.at, shift_id: a.shift_id, outside: false, trail: [], emergency: a.emergency_id };
      this.agents.set(a.agent_id, entry);
      if (fix) this.place(a.agent_id, entry, fix);
    }
  }

  /// A `positions` frame: kept, drawn at the next animation frame.
  move(items) {
    for (const p of items) this.pending.set(p.agent_id, p);
    if (!this.frame) this.frame = requestAnimationFrame(() => this.flush());
  }

  flush() {
    this.frame = 0;
    for (const [id, p] of this.pending) {
      let entry = this.agents.get(id);
      if (!entry) {
        entry = { marker: null, status: "on_duty", at: p.at, shift_id: null, outside: false, trail: [] };
        this.agents.set(id, entry);
      }
      this.place(id, entry, p);
    }
    this.pending.clear();
    if (this.selected) this.drawTrail(this.selected);
  }

  place(id, entry, fix) {
    entry.at = fix.at;
    entry.trail.push([fix.lat, fix.lon]);
    if (entry.trail.length > TRAIL_POINTS) entry.trail.shift();
    if (entry.marker) {
      entry.marker.setLatLng([fix.lat, fix.lon]);
      this.restyle(entry);
    } else {
      entry.colour = this.colour(entry);
      entry.marker = L.circleMarker([fix.lat, fix.lon], { renderer: this.renderer, radius: 5, weight: 1, ...this.style(entry) });
      // Hovering shows who and how old the last fix is.
      entry.marker.bindTooltip(() => {
        const age = entry.at ? Math.round((Date.now() - Date.parse(entry.at)) / 1000) : null;
        const fix = age === null ? "no fix" : age < 120 ? `fix ${age} s ago` : `fix ${Math.round(age / 60)} min ago`;
        return `agent ${id.slice(0, 8)} · ${entry.status.replace("_", " ")} · ${fix}`;
      });
      entry.marker.on("click", (e) => {
        L.DomEvent.stopPropagation(e);
        this.selected = id;
        this.drawTrail(id);
        this.onSelect(id);
      });
      entry.marker.addTo(this.layer);
    }
  }

  colour(entry) {
    if (entry.outside) return STATUS_COLOURS.outside_fence;
    if (!entry.at || Date.now() - Date.parse(entry.at) > STALE_MS) return STATUS_COLOURS.stale_fix;
    return STATUS_COLOURS[entry.status] ?? STATUS_COLOURS.on_duty;
  }

  style(entry) {
    return { color: "#0008", fillColor: this.colour(entry), fillOpacity: 0.9 };
  }

  /// Restyles a marker only when its colour changes: a style change redraws the canvas.
  restyle(entry) {
    const c = this.colour(entry);
    if (c !== entry.colour && entry.marker) {
      entry.colour = c;
      entry.marker.setStyle(this.style(entry));
    }
  }

  setOutside(id, outside) {
    const entry = this.agents.get(id);
    if (!entry) return;
    entry.outside = outside;
    this.restyle(entry);
  }

  /// Sent to an emergency (its id), or back from it (null).
  setResponding(id, emergencyId) {
    const entry = this.agents.get(id);
    if (!entry) return;
    entry.emergency = emergencyId;
    entry.status = emergencyId ? "responding" : "on_duty";
    this.restyle(entry);
  }

  /// An emergency was closed: its agents are back on duty.
  releaseEmergency(emergencyId) {
    for (const [id, entry] of this.agents) {
      if (entry.emergency === emergencyId) this.setResponding(id, null);
    }
  }

  /// Attendance changes: on break, back, clocked out.
  setDuty(id, attendanceStatus) {
    const entry = this.agents.get(id);
    if (attendanceStatus === "CLOCKED_OUT") {
      if (entry?.marker) entry.marker.remove();
      this.agents.delete(id);
      return;
    }
    if (!entry) return;
    entry.status = attendanceStatus === "ON_BREAK" ? "on_break" : "on_duty";
    this.restyle(entry);
  }

  /// Stale fixes turn grey without waiting for a frame.
  refreshAges() {
    for (const entry of this.agents.values()) this.restyle(entry);
  }

  drawTrail(id) {
    const entry = this.agents.get(id);
    if (this.trail) this.trail.remove();
    if (!entry || entry.trail.length < 2) return;
    this.trail = L.polyline(entry.trail, { renderer: this.renderer, color: "#17324d", weight: 2, dashArray: "4 4" }).addTo(this.map);
  }
}
