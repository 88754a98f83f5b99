// The Viewer Analytics dashboard: live counts over Socket.IO from the socket gateway, settings and
// analytics over GraphQL from this page's own origin. Plain browser JavaScript, no build step: the
// only dependency is the vendored Socket.IO client (window.io).
"use strict";

(() => {
  const TOKEN_KEY = "viewerAnalytics.token"; // sessionStorage: gone when the tab closes
  const AUCTION_KEY = "viewerAnalytics.auction";
  const VIEWER_KEY = "viewerAnalytics.viewerId"; // localStorage: one browser counts as one viewer
  const DEFAULT_AUCTION = "auction-1";
  const AUTO_REFRESH_MS = 30000;
  const RANGE_SECONDS = { LAST_HOUR: 3600, LAST_24_HOURS: 86400, LAST_7_DAYS: 7 * 86400 };

  const ANALYTICS_QUERY = `
    query Dashboard($id: ID!, $range: RangePreset!) {
      auction(id: $id) {
        settings { enableViewerAnalytics updatedAt }
        viewerAnalytics(range: $range) {
          bucketSeconds
          points { at avgViewers peakViewers minViewers viewerCount samples }
          summary { overallPeak overallAvg durationMinutes firstAt lastAt snapshotCount }
        }
      }
    }`;
  const SET_ANALYTICS = `
    mutation SetAnalytics($id: ID!, $enabled: Boolean!) {
      setViewerAnalytics(auctionId: $id, enabled: $enabled) {
        __typename
        ... on ViewerAnalyticsSettings { enableViewerAnalytics updatedAt }
        ... on NotAuthorized { message }
        ... on InvalidInput { message }
      }
    }`;

  const $ = (id) => document.getElementById(id);
  const state = { auctionId: "", token: "", socket: null, refreshTimer: null, loading: 0 };

  // ---- messages a person reads -----------------------------------------------------------------

  function say(element, text, isError = false) {
    element.textContent = text;
    element.classList.toggle("error", isError);
  }

  /** An error a GraphQL call or the CSV export ended with, as a sentence with what to do next. */
  class ApiError extends Error {
    constructor(code, message) {
      super(message);
      this.code = code;
    }
  }

  function sentenceFor(error) {
    switch (error.code) {
      case "NO_TOKEN":
        return "Paste a bearer token above to see this auction's settings and analytics.";
      case "UNAUTHENTICATED":
        return `Your token was not accepted (${error.message}). Paste a valid token above.`;
      case "NOT_AUTHORIZED":
        return `Your token does not give access to auction “${state.auctionId}”.`;
      case "BAD_USER_INPUT":
        return `The request was refused: ${error.message}.`;
      case "ANALYTICS_UNAVAILABLE":
        return "The analytics service is temporarily unavailable. The page will try again shortly.";
      case "UNREACHABLE":
        return "The dashboard cannot reach the GraphQL API right now. Check that it is running; the page will try again.";
      default:
        return "Something went wrong on the server; the page will try again shortly.";
    }
  }

  // ---- GraphQL ---------------------------------------------------------------------------------

  async function graphql(query, variables) {
    if (!state.token) throw new ApiError("NO_TOKEN", "no token");
    let response;
    try {
      response = await fetch("../graphql", {
        method: "POST",
        headers: { "Content-Type": "application/json", Authorization: `Bearer ${state.token}` },
        body: JSON.stringify({ query, variables }),
      });
    } catch (_networkError) {
      throw new ApiError("UNREACHABLE", "network error");
    }
    let body;
    try {
      body = await response.json();
    } catch (_notJson) {
      // A proxy's error page, or the API restarting.
      throw new ApiError(response.status >= 500 ? "UNREACHABLE" : "INTERNAL", `HTTP ${response.status}`);
    }
    if (body.errors && body.errors.length > 0) {
      const first = body.errors[0];
      throw new ApiError((first.extensions && first.extensions.code) || "INTERNAL", first.message);
    }
    return body.data;
  }

  // ---- live counts -----------------------------------------------------------------------------

  // The signed-in user is the viewer: their tabs and devices collapse into one unique viewer,
  // whichever tab happened to write localStorage first.
  function tokenSubject(token) {
    try {
      const payload = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
      const subject = JSON.parse(atob(payload)).sub;
      return typeof subject === "string" && subject ? subject : null;
    } catch (error) {
      return null;
    }
  }

  function viewerId() {
    const subject = state.token ? tokenSubject(state.token) : null;
    if (subject) return "user-" + subject;
    let id = localStorage.getItem(VIEWER_KEY);
    if (!id) {
      // getRandomValues works on plain http too (randomUUID needs a secure context).
      const bytes = crypto.getRandomValues(new Uint8Array(12));
      id = "dash-" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
      localStorage.setItem(VIEWER_KEY, id);
    }
    return id;
  }

  function showCounts(viewerCount, uniqueViewers) {
    $("watching").textContent = String(viewerCount);
    $("unique").textContent = String(uniqueViewers);
    $("live-unique").lastChild.textContent = uniqueViewers === 1 ? " unique viewer" : " unique viewers";
  }

  function every(seconds) {
    if (seconds === 60) return "every minute";
    if (seconds % 60 === 0) return `every ${seconds / 60} minutes`;
    return seconds === 1 ? "every second" : `every ${seconds} seconds`;
  }

  function describeRecording(config) {
    // The settings text states the deployment's own timing and retention, not the defaults.
    $("sample-every").textContent = every(config.sampleIntervalSeconds);
    $("snapshot-every").textContent = every(config.snapshotIntervalSeconds);
    $("retention").textContent = config.retentionDays === 1 ? "1 day" : `${config.retentionDays} days`;
  }

  function connectLive(gatewayUrl) {
    if (typeof window.io !== "function") {
      say($("live-status"), "The Socket.IO client did not load, so live counts are unavailable.", true);
      return;
    }
    const socket = window.io(gatewayUrl, {
      transports: ["websocket"],
      // The auth payload is sent again on every reconnection, so the page rejoins its room.
      auth: { auctionId: state.auctionId, viewerId: viewerId() },
    });
    state.socket = socket;
    socket.on("connect", () => say($("live-status"), `Live: counting viewers of “${state.auctionId}”.`));
    socket.on("disconnect", () => say($("live-status"), "Connection to the live gateway lost; reconnecting…", true));
    socket.on("connect_error", (error) => {
      say(
        $("live-status"),
        `Cannot connect to the live gateway at ${gatewayUrl} (${error.message}). ` +
          "It may be down, or not allow this page's address; retrying.",
        true,
      );
    });
    socket.on("viewerCountUpdate", ({ auctionId, viewerCount, uniqueViewers }) => {
      if (auctionId === state.auctionId) showCounts(viewerCount, uniqueViewers);
    });
  }

  async function switchLive(auctionId) {
    const socket = state.socket;
    if (!socket) return;
    socket.auth.auctionId = auctionId;
    $("watching").textContent = "–";
    $("unique").textContent = "–";
    if (!socket.connected) return; // the next (re)connection joins the new room through auth
    try {
      const ack = await socket.timeout(5000).emitWithAck("joinAuction", { auctionId });
      if (!ack.ok) say($("live-status"), `The live gateway refused auction “${auctionId}”: ${ack.error}.`, true);
      else {
        showCounts(ack.viewerCount, ack.uniqueViewers);
        say($("live-status"), `Live: counting viewers of “${auctionId}”.`);
      }
    } catch (_timeout) {
      say($("live-status"), "The live gateway did not answer; retrying on the next connection.", true);
    }
  }

  // ---- settings --------------------------------------------------------------------------------

  function showSettings(settings) {
    const toggle = $("analytics-toggle");
    toggle.checked = settings.enableViewerAnalytics;
    toggle.disabled = false;
    const when = settings.updatedAt ? ` since ${formatDateTime(new Date(settings.updatedAt))}` : "";
    say($("settings-message"), settings.enableViewerAnalytics ? `Recording${when}.` : `Not recording${when}.`);
  }

  async function onToggle() {
    const toggle = $("analytics-toggle");
    const wanted = toggle.checked;
    toggle.disabled = true;
    say($("settings-message"), wanted ? "Turning analytics on…" : "Turning analytics off…");
    try {
      const data = await graphql(SET_ANALYTICS, { id: state.auctionId, enabled: wanted });
      const result = data.setViewerAnalytics;
      if (result.__typename === "ViewerAnalyticsSettings") {
        showSettings(result);
        await loadAnalytics();
        return;
      }
      toggle.checked = !wanted;
      say($("settings-message"), result.__typename === "NotAuthorized"
        ? `Your token may not change auction “${state.auctionId}”.`
        : `The change was refused: ${result.message}.`, true);
    } catch (error) {
      toggle.checked = !wanted;
      say($("settings-message"), sentenceFor(error), true);
    } finally {
      toggle.disabled = false;
    }
  }

  // ---- analytics -------------------------------------------------------------------------------

  function clearSummary() {
    for (const id of ["summary-peak", "summary-avg", "summary-duration", "summary-count"]) {
      $(id).textContent = "–";
      delete $(id).dataset.value;
    }
  }

  function showSummary(summary) {
    const set = (id, text, value) => {
      $(id).textContent = text;
      $(id).dataset.value = String(value);
    };
    set("summary-peak", summary.overallPeak.toLocaleString(), summary.overallPeak);
    set("summary-avg", summary.overallAvg.toLocaleString(undefined, { maximumFractionDigits: 1 }), summary.overallAvg);
    set("summary-duration", formatDuration(summary.durationMinutes * 60), summary.durationMinutes);
    set("summary-count", summary.snapshotCount.toLocaleString(), summary.snapshotCount);
  }

  async function loadAnalytics() {
    if (!state.auctionId) return;
    const range = $("range").value;
    const ticket = ++state.loading; // a slower, older answer must not overwrite a newer one
    try {
      const data = await graphql(ANALYTICS_QUERY, { id: state.auctionId, range });
      if (ticket !== state.loading) return;
      const { settings, viewerAnalytics } = data.auction;
      showSettings(settings);
      showSummary(viewerAnalytics.summary);
      const empty = viewerAnalytics.points.length === 0;
      drawChart(viewerAnalytics.points, range, viewerAnalytics.bucketSeconds,
        settings.enableViewerAnalytics ? undefined : "Analytics are off: nothing is being recorded.");
      if (empty && !settings.enableViewerAnalytics) {
        say($("analytics-message"), "Analytics are off for this auction, so nothing is recorded. Turn them on above to start.");
      } else if (empty) {
        say($("analytics-message"), "Analytics are on. The first point appears after the first full minute of viewing.");
      } else if (!settings.enableViewerAnalytics) {
        say($("analytics-message"), "Analytics are off now: this is what was recorded while they were on.");
      } else {
        say($("analytics-message"), "");
      }
      $("chart-updated").textContent = `updated ${formatTime(new Date())}`;
    } catch (error) {
      if (ticket !== state.loading) return;
      clearSummary();
      drawChart([], range, 60, "Nothing to show: see the message above.");
      say($("analytics-message"), sentenceFor(error), true);
      if (error.code === "UNAUTHENTICATED" || error.code === "NOT_AUTHORIZED" || error.code === "NO_TOKEN") {
        $("analytics-toggle").disabled = true;
        say($("settings-message"), "");
      }
    }
  }

  async function downloadCsv() {
    const range = $("range").value;
    const url = `../export/auctions/${encodeURIComponent(state.auctionId)}/viewer-analytics.csv?range=${range}`;
    try {
      if (!state.token) throw new ApiError("NO_TOKEN", "no token");
      let response;
      try {
        response = await fetch(url, { headers: { Authorization: `Bearer ${state.token}` } });
      } catch (_networkError) {
        throw new ApiError("UNREACHABLE", "network error");
      }
      if (!response.ok) {
        const byStatus = { 401: "UNAUTHENTICATED", 403: "NOT_AUTHORIZED", 400: "BAD_USER_INPUT", 503: "ANALYTICS_UNAVAILABLE" };
        throw new ApiError(byStatus[response.status] || "INTERNAL", (await response.text()).trim());
      }
      const blob = await response.blob();
      const disposition = response.headers.get("Content-Disposition") || "";
      const named = /filename="?([^";]+)"?/.exec(disposition);
      const link = document.createElement("a");
      link.href = URL.createObjectURL(blob);
      link.download = named ? named[1] : `${state.auctionId}-viewer-analytics.csv`;
      document.body.appendChild(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(link.href), 10000);
    } catch (error) {
      say($("analytics-message"), sentenceFor(error), true);
    }
  }

  // ---- the chart: inline SVG, no library ---------------------------------------------------------

  const SVG = "http://www.w3.org/2000/svg";

  function svgElement(name, attributes, text) {
    const element = document.createElementNS(SVG, name);
    for (const [key, value] of Object.entries(attributes)) element.setAttribute(key, String(value));
    if (text !== undefined) element.textContent = text;
    return element;
  }

  /** A y-axis step of 1, 2 or 5 times a power of ten (viewers are whole: never below 1). */
  function niceStep(raw) {
    const magnitude = 10 ** Math.floor(Math.log10(Math.max(raw, 1)));
    for (const step of [1, 2, 5, 10]) if (step * magnitude >= raw) return step * magnitude;
    return 10 * magnitude;
  }

  function drawChart(points, range, bucketSeconds, emptyText) {
    const width = 960, height = 300, left = 48, right = 16, top = 12, bottom = 32;
    const svg = svgElement("svg", { viewBox: `0 0 ${width} ${height}`, role: "img" });
    const plotWidth = width - left - right, plotHeight = height - top - bottom;
    const times = points.map((p) => Date.parse(p.at));
    const now = Date.now();
    // Fixed presets show their whole window, so a quiet start reads as quiet; ALL shows the data.
    let start = RANGE_SECONDS[range] ? now - RANGE_SECONDS[range] * 1000 : Math.min(...times, now - 3600000);
    // The newest bucket may still be filling and end after now: it stays inside the plot.
    let end = Math.max(RANGE_SECONDS[range] ? now : start + 60000, ...times.map((t) => t + bucketSeconds * 1000));
    if (end <= start) end = start + 60000;
    const highest = Math.max(4, ...points.map((p) => p.peakViewers));
    const yStep = niceStep(highest / 4);
    const yMax = yStep * Math.ceil(highest / yStep);
    const x = (t) => left + ((t - start) / (end - start)) * plotWidth;
    const y = (v) => top + plotHeight - (v / yMax) * plotHeight;

    for (let value = 0; value <= yMax; value += yStep) {
      svg.appendChild(svgElement("line", { class: "grid", x1: left, x2: width - right, y1: y(value), y2: y(value) }));
      svg.appendChild(svgElement("text", { class: "axis-label", x: left - 6, y: y(value) + 4, "text-anchor": "end" },
        value.toLocaleString()));
    }
    const longSpan = end - start > 2 * 86400000;
    for (let i = 0; i <= 4; i++) {
      const t = start + ((end - start) * i) / 4;
      const label = longSpan ? formatDate(new Date(t)) : formatTime(new Date(t));
      const anchor = i === 0 ? "start" : i === 4 ? "end" : "middle";
      svg.appendChild(svgElement("text", { class: "axis-label", x: x(t), y: height - 10, "text-anchor": anchor }, label));
    }

    if (points.length === 0) {
      svg.appendChild(svgElement("text", { class: "empty", x: left + plotWidth / 2, y: top + plotHeight / 2, "text-anchor": "middle" },
        emptyText || "No viewer data in this range yet."));
    }
    // Each point sits in the middle of its bucket.
    const middle = (i) => x(times[i] + (bucketSeconds * 1000) / 2);
    for (const [series, field] of [["min", "minViewers"], ["avg", "avgViewers"], ["peak", "peakViewers"]]) {
      if (points.length > 1) {
        const path = points.map((p, i) => `${i === 0 ? "M" : "L"}${middle(i).toFixed(1)},${y(p[field]).toFixed(1)}`).join(" ");
        svg.appendChild(svgElement("path", { class: `series ${series}`, d: path }));
      }
      points.forEach((p, i) => {
        const dot = svgElement("circle", {
          class: `point ${series}`, cx: middle(i).toFixed(1), cy: y(p[field]).toFixed(1), r: points.length > 120 ? 1.5 : 3.5,
          "data-at": p.at, "data-value": p[field],
        });
        dot.appendChild(svgElement("title", {}, `${formatDateTime(new Date(p.at))}: ${series} ${formatNumber(p[field])}`));
        svg.appendChild(dot);
      });
    }
    $("chart").replaceChildren(svg);
  }

  // ---- formatting --------------------------------------------------------------------------------

  const formatNumber = (v) => v.toLocaleString(undefined, { maximumFractionDigits: 1 });
  const formatTime = (d) => d.toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" });
  const formatDate = (d) => d.toLocaleDateString(undefined, { month: "short", day: "numeric" });
  const formatDateTime = (d) => d.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });

  function formatDuration(seconds) {
    if (seconds <= 0) return "0 min";
    if (seconds < 90) return `${Math.round(seconds)} s`;
    const minutes = Math.round(seconds / 60);
    if (minutes < 90) return `${minutes} min`;
    const hours = Math.floor(minutes / 60);
    if (hours < 48) return `${hours} h ${minutes % 60} min`;
    return `${Math.floor(hours / 24)} d ${hours % 24} h`;
  }

  // ---- start -----------------------------------------------------------------------------------

  function readHash() {
    // local_stack prints a URL ending in #token=...: kept in this tab only, then removed from the
    // address bar so it is not left in the history or copied along with a link.
    const params = new URLSearchParams(location.hash.slice(1));
    if (params.has("token")) sessionStorage.setItem(TOKEN_KEY, params.get("token"));
    if (params.has("auction")) localStorage.setItem(AUCTION_KEY, params.get("auction"));
    if (params.has("token") || params.has("auction")) history.replaceState(null, "", location.pathname + location.search);
  }

  function open(auctionId, token) {
    const changed = auctionId !== state.auctionId;
    state.auctionId = auctionId;
    state.token = token;
    localStorage.setItem(AUCTION_KEY, auctionId);
    if (token) sessionStorage.setItem(TOKEN_KEY, token);
    else sessionStorage.removeItem(TOKEN_KEY);
    document.title = `${auctionId} · Viewer Analytics`;
    if (changed) {
      clearSummary();
      switchLive(auctionId);
    }
    loadAnalytics();
  }

  async function start() {
    readHash();
    state.auctionId = localStorage.getItem(AUCTION_KEY) || DEFAULT_AUCTION;
    state.token = sessionStorage.getItem(TOKEN_KEY) || "";
    $("auction-id").value = state.auctionId;
    $("token").value = state.token;
    document.title = `${state.auctionId} · Viewer Analytics`;

    $("auction-form").addEventListener("submit", (event) => {
      event.preventDefault();
      open($("auction-id").value.trim(), $("token").value.trim());
    });
    $("analytics-toggle").addEventListener("change", onToggle);
    $("range").addEventListener("change", loadAnalytics);
    $("refresh").addEventListener("click", loadAnalytics);
    $("download-csv").addEventListener("click", downloadCsv);
    state.refreshTimer = setInterval(() => {
      if (!document.hidden) loadAnalytics();
    }, AUTO_REFRESH_MS);

    drawChart([], $("range").value, 60, "Loading…");
    loadAnalytics();
    try {
      const response = await fetch("config.json");
      const config = await response.json();
      describeRecording(config);
      connectLive(config.gatewayUrl);
    } catch (_error) {
      say($("live-status"), "The dashboard's configuration could not be loaded, so live counts are unavailable.", true);
    }
  }

  start();
})();
