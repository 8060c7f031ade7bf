// Long tasks (over 50 ms) since the page opened: how responsive the tab stayed under load.
// Loaded first, before Leaflet and the console, so it sees them all.
window.__longTasks = [];
try {
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) {
      window.__longTasks.push({ start: e.startTime, duration: e.duration });
    }
    // Bounded: a wall screen runs for 12 hours.
    if (window.__longTasks.length > 2000) window.__longTasks.splice(0, 1000);
  }).observe({ type: "longtask", buffered: true });
} catch (_) {
  // Not supported: the list stays empty.
}

// Script errors and unhandled rejections, for whoever inspects the page (tests, support).
window.__errors = [];
const keep = (text) => {
  window.__errors.push(text);
  if (window.__errors.length > 200) window.__errors.shift();
};
window.addEventListener("error", (e) => keep(String(e.message)));
window.addEventListener("unhandledrejection", (e) => keep(String(e.reason)));
