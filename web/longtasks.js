// Long tasks (over 50 ms) since the page opened: how responsive the tab stayed under load.
// Loaded first, before Leaflet and the console, so it sees them all.
window.__longTasks = [];
try {
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) {
      window.__longTasks.push({ start: e.startTime, duration: e.duration });
    }
  }).observe({ type: "longtask", buffered: true });
} catch (_) {
  // Not supported: the list stays empty.
}

// Script errors and unhandled rejections, for whoever inspects the page (tests, support).
window.__errors = [];
window.addEventListener("error", (e) => window.__errors.push(String(e.message)));
window.addEventListener("unhandledrejection", (e) => window.__errors.push(String(e.reason)));
