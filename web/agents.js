// Agents on the map: one canvas of their own, drawn in one pass per animation frame (a path
// per colour), however many `positions` frames arrive and however many agents there are.
// Leaflet's own circle markers project and queue a redraw per marker per move, which made a
// frame of 10,000 moves a long task; here a move only updates two numbers.

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
/// Dot radius and how near (pixels) a click or hover must be to pick an agent.
const RADIUS = 5;
const PICK_PX = 8;

/// The canvas layer that draws every agent.
const AgentCanvas = L.Layer.extend({
  initialize(agents) {
    this.agents = agents;
  },

  onAdd(map) {
    this.canvas = L.DomUtil.create("canvas", "agents-canvas");
    this.canvas.style.position = "absolute";
    this.canvas.style.pointerEvents = "none";
    map.getPane("overlayPane").appendChild(this.canvas);
    map.on("moveend zoomend resize viewreset", this.reset, this);
    this.reset();
  },

  onRemove(map) {
    map.off("moveend zoomend resize viewreset", this.reset, this);
    this.canvas.remove();
  },

  /// Fits the canvas to the view and redraws.
  reset() {
    const map = this._map;
    const size = map.getSize();
    const ratio = window.devicePixelRatio || 1;
    L.DomUtil.setPosition(this.canvas, map.containerPointToLayerPoint([0, 0]));
    this.canvas.width = size.x * ratio;
    this.canvas.height = size.y * ratio;
    this.canvas.style.width = `${size.x}px`;
    this.canvas.style.height = `${size.y}px`;
    this.canvas.getContext("2d").setTransform(ratio, 0, 0, ratio, 0, 0);
    this.draw();
  },

  /// Draws every placed agent, one path per colour.
  draw() {
    if (!this._map) return;
    const map = this._map;
    const ctx = this.canvas.getContext("2d");
    const size = map.getSize();
    ctx.clearRect(0, 0, size.x, size.y);
    // Web Mercator by hand (what map.latLngToContainerPoint computes, without allocating
    // three objects per agent): pixel = scale × projected − the view's top-left pixel.
    const scale = 256 * 2 ** map.getZoom();
    const topLeft = map.getPixelOrigin().add(map.containerPointToLayerPoint([0, 0]));
    const byColour = new Map();
    for (const entry of this.agents.values()) {
      if (entry.lat === undefined) continue;
      const lat = Math.max(Math.min(entry.lat, 85.0511287798), -85.0511287798) * (Math.PI / 180);
      const x = scale * (entry.lon / 360 + 0.5) - topLeft.x;
      const y = scale * (0.5 - Math.log(Math.tan(Math.PI / 4 + lat / 2)) / (2 * Math.PI)) - topLeft.y;
      if (x < -RADIUS || y < -RADIUS || x > size.x + RADIUS || y > size.y + RADIUS) {
        entry.x = undefined;
        continue;
      }
      entry.x = x;
      entry.y = y;
      const c = entry.colour;
      if (!byColour.has(c)) byColour.set(c, []);
      byColour.get(c).push(x, y);
    }
    // Filled only: one outline path over thousands of overlapping dots would paint a crowded
    // site black.
    for (const [colour, points] of byColour) {
      ctx.beginPath();
      for (let i = 0; i < points.length; i += 2) {
        ctx.moveTo(points[i] + RADIUS, points[i + 1]);
        ctx.arc(points[i], points[i + 1], RADIUS, 0, Math.PI * 2);
      }
      ctx.fillStyle = colour;
      ctx.fill();
    }
  },
});

export class AgentLayer {
  constructor(map, onSelect) {
    this.map = map;
    this.onSelect = onSelect;
    /** agent id → { lat, lon, status, at, shift_id, outside, emergency, colour, trail } */
    this.agents = new Map();
    this.canvas = new AgentCanvas(this.agents).addTo(map);
    /** Newest fix per agent not yet drawn. */
    this.pending = new Map();
    this.frame = 0;
    this.trail = null;
    this.selected = null;
    this.tip = null;
    map.on("click", (e) => {
      const id = this.pick(e.containerPoint);
      if (id) {
        L.DomEvent.stopPropagation(e);
        this.selected = id;
        this.drawTrail(id);
        this.onSelect(id);
      }
    });
    // Hovering shows who and how old the last fix is (checked once per frame).
    let hover = null;
    map.on("mousemove", (e) => {
      if (hover) return;
      hover = requestAnimationFrame(() => {
        hover = null;
        this.hover(e.containerPoint);
      });
    });
  }

  size() {
    return this.agents.size;
  }

  get(id) {
    return this.agents.get(id);
  }

  /// The agent drawn nearest to a container point, within PICK_PX.
  pick(point) {
    let best = null;
    let bestD = PICK_PX * PICK_PX;
    for (const [id, e] of this.agents) {
      if (e.x === undefined) continue;
      const d = (e.x - point.x) ** 2 + (e.y - point.y) ** 2;
      if (d <= bestD) {
        best = id;
        bestD = d;
      }
    }
    return best;
  }

  hover(point) {
    const id = this.pick(point);
    if (!id) {
      this.tip?.remove();
      this.tip = null;
      return;
    }
    const entry = this.agents.get(id);
    const age = entry.at ? Math.round((Date.now() - Date.parse(entry.at)) / 1000) : null;
    const fix = age === null ? "no fix" : age < 120 ? `fix ${age} s ago` : `fix ${Math.round(age / 60)} min ago`;
    const text = `agent ${id.slice(0, 8)} · ${entry.status.replace("_", " ")} · ${fix}`;
    if (!this.tip) this.tip = L.tooltip({ direction: "top", offset: [0, -RADIUS] });
    this.tip.setLatLng([entry.lat, entry.lon]).setContent(text);
    if (!this.map.hasLayer(this.tip)) this.tip.addTo(this.map);
  }

  /// The snapshot's agents (on duty, with their last fixes) replace what is shown.
  replace(list) {
    this.agents.clear();
    this.pending.clear();
    for (const a of list) {
      const entry = { status: a.status, at: null, shift_id: a.shift_id, outside: false, trail: [], emergency: a.emergency_id };
      this.agents.set(a.agent_id, entry);
      if (a.fix) this.place(entry, { lat: a.fix[0], lon: a.fix[1], at: a.fix[2] });
      entry.colour = this.colour(entry);
    }
    this.redraw();
  }

  /// A `positions` frame: kept, drawn at the next animation frame.
  move(items) {
    for (const p of items) this.pending.set(p.agent_id, p);
    this.redraw();
  }

  redraw() {
    if (!this.frame) this.frame = requestAnimationFrame(() => this.flush());
  }

  flush() {
    this.frame = 0;
    for (const [id, p] of this.pending) {
      let entry = this.agents.get(id);
      if (!entry) {
        entry = { status: "on_duty", at: null, shift_id: null, outside: false, trail: [] };
        this.agents.set(id, entry);
      }
      this.place(entry, p);
      entry.colour = this.colour(entry);
    }
    this.pending.clear();
    this.canvas.draw();
    if (this.selected) this.drawTrail(this.selected);
  }

  place(entry, fix) {
    entry.lat = fix.lat;
    entry.lon = fix.lon;
    entry.at = fix.at;
    entry.atMs = Date.parse(fix.at);
    entry.trail.push([fix.lat, fix.lon]);
    if (entry.trail.length > TRAIL_POINTS) entry.trail.shift();
  }

  colour(entry) {
    if (entry.outside) return STATUS_COLOURS.outside_fence;
    if (!entry.atMs || Date.now() - entry.atMs > STALE_MS) return STATUS_COLOURS.stale_fix;
    return STATUS_COLOURS[entry.status] ?? STATUS_COLOURS.on_duty;
  }

  /// A state change: recoloured at the next frame.
  restyle(entry) {
    const c = this.colour(entry);
    if (c !== entry.colour) {
      entry.colour = c;
      this.redraw();
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
      this.agents.delete(id);
      this.redraw();
      return;
    }
    if (!entry) return;
    entry.status = attendanceStatus === "ON_BREAK" ? "on_break" : "on_duty";
    this.restyle(entry);
  }

  /// Stale fixes turn grey without waiting for a move.
  refreshAges() {
    for (const entry of this.agents.values()) this.restyle(entry);
  }

  drawTrail(id) {
    const entry = this.agents.get(id);
    if (this.trail) this.trail.remove();
    this.trail = null;
    if (!entry || entry.trail.length < 2) return;
    this.trail = L.polyline(entry.trail, { color: "#17324d", weight: 2, dashArray: "4 4", interactive: false }).addTo(this.map);
  }
}
