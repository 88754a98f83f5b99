// The Viewer Analytics dashboard: settings, analytics and the live count over GraphQL from this
// page's own origin (the live count as a subscription, so the page is never counted as a viewer).
// Plain browser JavaScript, no build step, no dependency.
"use strict";

(() => {
  const TOKEN_KEY = "viewerAnalytics.token"; // sessionStorage: gone when the tab closes
  const AUCTION_KEY = "viewerAnalytics.auction";
  const DEFAULT_AUCTION = "auction-1";
  const AUTO_REFRESH_MS = 30000;
  const DELIVERIES_REFRESH_MS = 10000;
  const RANGE_SECONDS = { LAST_HOUR: 3600, LAST_24_HOURS: 86400, LAST_7_DAYS: 7 * 86400 };
  const STRIP_MS = 30 * 60 * 1000; // the live strip: the last 30 minutes
  const STRIP_REDRAW_MS = 5000;
  // Errors after which what the page showed is still what was recorded: it stays, marked stale.
  const TRANSIENT = new Set(["ANALYTICS_UNAVAILABLE", "UNREACHABLE", "INTERNAL"]);

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
  const RECENT_QUERY = `
    query Recent($id: ID!, $from: DateTime!) {
      auction(id: $id) { viewerAnalytics(from: $from) { bucketSeconds points { at viewerCount } } }
    }`;
  const DELIVERIES_QUERY = `
    query Deliveries($id: ID!) {
      alertDeliveries(auctionId: $id, first: 20) {
        deliveries { id eventType status attempts lastError createdAt nextAttemptAt }
      }
    }`;
  const AUDIENCE_QUERY = `
    query Audience($id: ID!, $range: RangePreset!) {
      auction(id: $id) {
        lots(range: $range) {
          lotId title openedAt closedAt outcome hammerPrice currency
          viewersAtOpen viewersAtClose peakViewers avgViewers bids bidders resolution
        }
        funnel(range: $range) {
          uniqueViewers identifiedViewers bidders winners
          uniqueViewerEstimate { sketchedSnapshots unsketchedSnapshots }
        }
      }
    }`;
  // A lot is picked out when nobody bid although at least this many watched, and at least as many as
  // at the range's typical lot (the median of the lots' peaks).
  const ATTENTION_MINIMUM = 10;
  const ME_QUERY = "query Me { me { subject role auctions coversAllAuctions } }";
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
  const state = {
    auctionId: "",
    token: "",
    caller: null, // Query.me, once known
    config: { snapshotIntervalSeconds: 60, sampleIntervalSeconds: 5, retentionDays: 90 },
    loading: 0,
    // What was last shown successfully, for this auction and range: kept (marked stale) when the
    // analytics service cannot answer, instead of wiping a chart that was true a minute ago.
    lastGood: null,
    live: [], // [{t, count}] of this auction, oldest first, the last 30 minutes
    recent: [], // the stored points of the last 30 minutes, {t, count}
    audience: null, // {auctionId, range, lots, funnel}: the lots and funnel of the range shown
    lotSort: { key: "openedAt", descending: false },
  };

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

  // ---- who is signed in, and the auctions to pick from -------------------------------------------

  async function loadCaller() {
    const token = state.token;
    state.caller = null;
    if (!token) {
      say($("signed-in"), "Not signed in: paste a token to see settings and analytics.");
      showAuctionChoice();
      return;
    }
    try {
      const data = await graphql(ME_QUERY, {});
      if (token !== state.token) return;
      state.caller = data.me;
      const me = data.me;
      const covers = me.coversAllAuctions
        ? "admin: every auction"
        : `seller: ${me.auctions.length} ${me.auctions.length === 1 ? "auction" : "auctions"}`;
      say($("signed-in"), `Signed in as ${me.subject} (${covers}).`);
      $("signed-in").dataset.subject = me.subject;
    } catch (error) {
      if (token !== state.token) return;
      say($("signed-in"), error.code === "UNAUTHENTICATED" ? "Not signed in: the token was not accepted."
        : "Signed in as: unknown (the API did not answer).", error.code === "UNAUTHENTICATED");
      delete $("signed-in").dataset.subject;
    }
    showAuctionChoice();
  }

  /** A seller picks from the auctions their token covers; anyone else types an id. */
  function showAuctionChoice() {
    const caller = state.caller;
    const seller = caller && !caller.coversAllAuctions;
    $("auction-pick").hidden = !seller;
    $("auction-type").hidden = Boolean(seller);
    $("auction-id").required = !seller;
    if (!seller) return;
    const select = $("auction-select");
    const options = caller.auctions.map((id) => new Option(id, id));
    if (!caller.auctions.includes(state.auctionId)) {
      // Opened by a link to an auction the token does not cover: shown for what it is.
      options.unshift(new Option(`${state.auctionId} (not covered by your token)`, state.auctionId));
    }
    select.replaceChildren(...options);
    select.value = state.auctionId;
  }

  // ---- live counts -----------------------------------------------------------------------------


  function showCounts(viewerCount, uniqueViewers) {
    $("watching").textContent = String(viewerCount);
    $("unique").textContent = String(uniqueViewers);
    $("live-unique").lastChild.textContent = uniqueViewers === 1 ? " unique viewer" : " unique viewers";
    state.live.push({ t: Date.now(), count: viewerCount });
    drawStrip();
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

  // ---- live counts -----------------------------------------------------------------------------

  // The page watches as an observer: its live count comes from the API's viewerCount subscription
  // (graphql-transport-ws on the API's own /graphql), so the seller's tab is never a viewer in the
  // gateway's rooms and never counted in the analytics it is reading.
  const LIVE_SUBSCRIPTION =
    "subscription Live($id: ID!) { viewerCount(auctionId: $id) { auctionId viewerCount uniqueViewers at } }";
  const LIVE_RETRY_MS = [1000, 2000, 5000, 10000];
  const live = { socket: null, subscription: null, serial: 0, retries: 0, retryTimer: null };

  function liveUrl() {
    const url = new URL("../graphql", location.href);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    return url.href;
  }

  function send(message) {
    if (live.socket && live.socket.readyState === WebSocket.OPEN) live.socket.send(JSON.stringify(message));
  }

  function subscribeLive() {
    if (live.subscription) send({ id: live.subscription, type: "complete" });
    live.serial += 1;
    live.subscription = `live-${live.serial}`;
    send({
      id: live.subscription,
      type: "subscribe",
      payload: { query: LIVE_SUBSCRIPTION, variables: { id: state.auctionId } },
    });
  }

  function liveMessage(raw) {
    let message;
    try {
      message = JSON.parse(raw);
    } catch (_error) {
      return;
    }
    if (message.type === "connection_ack") {
      live.retries = 0;
      subscribeLive();
    } else if (message.type === "ping") {
      send({ type: "pong" });
    } else if (message.id !== live.subscription) {
      // An answer for an auction the page has left.
    } else if (message.type === "next") {
      const { data, errors } = message.payload || {};
      if (errors && errors.length) {
        say($("live-status"), `No live count for “${state.auctionId}”: ${errors[0].message}`, true);
        return;
      }
      const counts = data && data.viewerCount;
      if (counts && counts.auctionId === state.auctionId) {
        showCounts(counts.viewerCount, counts.uniqueViewers);
        say($("live-status"), `Live: viewers of “${state.auctionId}” (this page is not counted).`);
      }
    } else if (message.type === "error") {
      const first = Array.isArray(message.payload) && message.payload[0];
      say($("live-status"), `No live count for “${state.auctionId}”: ${first ? first.message : "refused"}.`, true);
    }
  }

  /** Opens the subscription's WebSocket with the page's token; reopened after a loss, with backoff. */
  function connectLive() {
    clearTimeout(live.retryTimer);
    if (live.socket) {
      live.socket.onclose = null;
      live.socket.close(1000);
      live.socket = null;
    }
    live.subscription = null;
    if (!state.token) {
      say($("live-status"), "Live counts need a token: paste one above.", true);
      return;
    }
    const token = state.token;
    const socket = new WebSocket(liveUrl(), "graphql-transport-ws");
    live.socket = socket;
    socket.onopen = () => send({ type: "connection_init", payload: { Authorization: `Bearer ${token}` } });
    socket.onmessage = (event) => liveMessage(event.data);
    socket.onclose = (event) => {
      if (live.socket !== socket) return;
      live.socket = null;
      if (event.code === 4403) {
        // The API refused the token: retrying with the same one cannot help.
        say($("live-status"), "Live counts are unavailable: your token was not accepted.", true);
        return;
      }
      const delay = LIVE_RETRY_MS[Math.min(live.retries, LIVE_RETRY_MS.length - 1)];
      live.retries += 1;
      say($("live-status"), "Connection to the live counts lost; reconnecting…", true);
      live.retryTimer = setTimeout(() => {
        if (state.token === token) connectLive();
      }, delay);
    };
  }

  function switchLive() {
    $("watching").textContent = "–";
    $("unique").textContent = "–";
    state.live = [];
    drawStrip();
    // Subscribed again once the connection is acknowledged, if it is not yet.
    if (live.socket && live.socket.readyState === WebSocket.OPEN && live.subscription) subscribeLive();
  }

  /** The stored counts of the last 30 minutes, so the strip has a past before the live updates. */
  async function loadRecent() {
    const auctionId = state.auctionId;
    state.recent = [];
    try {
      const from = new Date(Date.now() - STRIP_MS).toISOString();
      const data = await graphql(RECENT_QUERY, { id: auctionId, from });
      if (auctionId !== state.auctionId) return;
      const { bucketSeconds, points } = data.auction.viewerAnalytics;
      // A bucket's viewerCount is the count at its end.
      state.recent = points.map((p) => ({ t: Date.parse(p.at) + bucketSeconds * 1000, count: p.viewerCount }));
    } catch (_error) {
      // Without a token or analytics the strip still shows what this page saw live.
    }
    drawStrip();
  }

  // ---- settings --------------------------------------------------------------------------------

  function showToggle(value) {
    // "unknown" is neither on nor off: an indeterminate, disabled box that says so in words.
    const toggle = $("analytics-toggle");
    toggle.dataset.state = value === null ? "unknown" : value ? "on" : "off";
    toggle.indeterminate = value === null;
    toggle.checked = value === true;
    if (value === null) toggle.disabled = true;
    const label = $("toggle-state");
    label.textContent = toggle.dataset.state;
    label.className = `state ${toggle.dataset.state}`;
  }

  function settingsText(settings) {
    const when = settings.updatedAt ? ` since ${formatDateTime(new Date(settings.updatedAt))}` : "";
    return settings.enableViewerAnalytics ? `Recording${when}.` : `Not recording${when}.`;
  }

  function showSettings(settings) {
    showToggle(settings.enableViewerAnalytics);
    $("analytics-toggle").disabled = false;
    say($("settings-message"), settingsText(settings));
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
      showToggle(!wanted);
      say($("settings-message"), result.__typename === "NotAuthorized"
        ? `Your token may not change auction “${state.auctionId}”.`
        : `The change was refused: ${result.message}.`, true);
    } catch (error) {
      // Whether the change was made is not known: the answer was lost.
      showToggle(TRANSIENT.has(error.code) ? null : !wanted);
      say($("settings-message"), sentenceFor(error), true);
    } finally {
      if (toggle.dataset.state !== "unknown") toggle.disabled = false;
    }
  }

  // ---- analytics -------------------------------------------------------------------------------

  const TILES = ["summary-peak", "summary-avg", "summary-duration", "summary-recorded", "summary-count"];

  function clearSummary() {
    for (const id of TILES) {
      $(id).textContent = id === "summary-count" ? "" : "–";
      delete $(id).dataset.value;
    }
  }

  function showSummary(summary) {
    if (summary.snapshotCount === 0) {
      // Nothing recorded is not "0 viewers": the tiles say there is no number.
      clearSummary();
      return;
    }
    const set = (id, text, value) => {
      $(id).textContent = text;
      $(id).dataset.value = String(value);
    };
    const interval = state.config.snapshotIntervalSeconds;
    set("summary-peak", summary.overallPeak.toLocaleString(), summary.overallPeak);
    set("summary-avg", formatNumber(summary.overallAvg), summary.overallAvg);
    set("summary-duration", formatDuration(summary.durationMinutes * 60), summary.durationMinutes);
    // Snapshots are intervals, not minutes: the time they cover, in the duration's own units.
    set("summary-recorded", formatDuration(summary.snapshotCount * interval), summary.snapshotCount * interval);
    const count = summary.snapshotCount;
    set("summary-count", `${count.toLocaleString()} ${count === 1 ? "snapshot" : "snapshots"} of ${formatDuration(interval)}`, count);
  }

  function markStale(since) {
    const stale = since !== null;
    $("analytics-stale").hidden = !stale;
    if (stale) {
      $("analytics-stale").textContent =
        `Stale since ${formatTime(since)}: showing what was loaded then; the page retries every ${AUTO_REFRESH_MS / 1000} s.`;
    }
    document.querySelector(".summary").classList.toggle("stale", stale);
    $("chart").classList.toggle("stale", stale);
  }

  /** Everything that belongs to the auction shown: cleared when it no longer applies. */
  function forgetAuction(chartText) {
    state.lastGood = null;
    clearSummary();
    markStale(null);
    showToggle(null);
    say($("settings-message"), "");
    $("chart-updated").textContent = "";
    state.audience = null;
    showAudience();
    drawChart([], $("range").value, state.config.snapshotIntervalSeconds, chartText);
  }

  function render(view) {
    const { settings, viewerAnalytics } = view;
    showSettings(settings);
    showSummary(viewerAnalytics.summary);
    const empty = viewerAnalytics.points.length === 0;
    drawChart(viewerAnalytics.points, view.range, viewerAnalytics.bucketSeconds,
      settings.enableViewerAnalytics ? undefined : "Analytics are off: nothing is being recorded.");
    if (empty && !settings.enableViewerAnalytics) {
      say($("analytics-message"), "Analytics are off for this auction, so nothing is recorded. Turn them on above to start.");
    } else if (empty) {
      say($("analytics-message"), `Analytics are on. The first point appears after the first full ${formatDuration(state.config.snapshotIntervalSeconds)} of viewing.`);
    } else if (!settings.enableViewerAnalytics) {
      say($("analytics-message"), "Analytics are off now: this is what was recorded while they were on.");
    } else {
      say($("analytics-message"), "");
    }
    $("chart-updated").textContent = `updated ${formatTime(view.at)}`;
  }

  async function loadAnalytics() {
    if (!state.auctionId) return;
    const auctionId = state.auctionId;
    const range = $("range").value;
    const ticket = ++state.loading; // a slower, older answer must not overwrite a newer one
    try {
      const data = await graphql(ANALYTICS_QUERY, { id: auctionId, range });
      if (ticket !== state.loading) return;
      const view = { auctionId, range, at: new Date(), ...data.auction };
      state.lastGood = view;
      markStale(null);
      render(view);
      loadAudience(auctionId, range, ticket);
    } catch (error) {
      if (ticket !== state.loading) return;
      say($("analytics-message"), sentenceFor(error), true);
      const last = state.lastGood;
      if (TRANSIENT.has(error.code) && last && last.auctionId === auctionId && last.range === range) {
        markStale(last.at);
        // The switch was in this state when last read; it cannot be changed until the API answers.
        $("analytics-toggle").disabled = true;
        say($("settings-message"), `${settingsText(last.settings).replace(/\.$/, "")} (as of ${formatTime(last.at)}).`);
        return;
      }
      forgetAuction(TRANSIENT.has(error.code) ? "Nothing to show while the analytics cannot be read." : "Nothing to show: see the message above.");
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
      const today = new Date().toISOString().slice(0, 10);
      const link = document.createElement("a");
      link.href = URL.createObjectURL(blob);
      link.download = named ? named[1] : `viewer-analytics-${state.auctionId}-${range.toLowerCase()}-${today}.csv`;
      document.body.appendChild(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(link.href), 10000);
    } catch (error) {
      say($("analytics-message"), sentenceFor(error), true);
    }
  }

  // ---- lots and the funnel -------------------------------------------------------------------------

  /** The lots and the funnel of the range, after the chart: a failure here leaves the chart as it is. */
  async function loadAudience(auctionId, range, ticket) {
    try {
      const data = await graphql(AUDIENCE_QUERY, { id: auctionId, range });
      if (ticket !== state.loading) return;
      state.audience = { auctionId, range, lots: data.auction.lots, funnel: data.auction.funnel };
      say($("lots-message"), "");
    } catch (error) {
      if (ticket !== state.loading) return;
      const last = state.audience;
      say($("lots-message"), sentenceFor(error), true);
      // As with the chart: what was true a moment ago stays through a passing outage.
      if (!(TRANSIENT.has(error.code) && last && last.auctionId === auctionId && last.range === range)) {
        state.audience = null;
      }
    }
    showAudience();
    if (state.drawn) drawChart(...state.drawn);
  }

  /** The lots of the range shown, for the chart and the table; none for another auction or range. */
  function shownLots(range) {
    const audience = state.audience;
    if (!audience || audience.auctionId !== state.auctionId || audience.range !== range) return [];
    return audience.lots;
  }

  function median(values) {
    if (values.length === 0) return 0;
    const sorted = [...values].sort((a, b) => a - b);
    const middle = Math.floor(sorted.length / 2);
    return sorted.length % 2 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
  }

  /** Lots nobody bid on although many watched: at least the median lot's peak, and ATTENTION_MINIMUM. */
  function needsAttention(lot, typicalPeak) {
    return lot.bids === 0 && lot.peakViewers >= Math.max(ATTENTION_MINIMUM, typicalPeak);
  }

  function formatMoney(minorUnits, currency) {
    try {
      const format = new Intl.NumberFormat(undefined, { style: "currency", currency });
      return format.format(minorUnits / 10 ** format.resolvedOptions().maximumFractionDigits);
    } catch (_unknownCurrency) {
      return `${minorUnits.toLocaleString()} ${currency} (minor units)`;
    }
  }

  const lotOpened = (lot) => Date.parse(lot.openedAt);
  const lotLength = (lot) => (lot.closedAt ? Date.parse(lot.closedAt) - lotOpened(lot) : null);
  const OUTCOMES = { SOLD: "sold", PASSED: "passed", WITHDRAWN: "withdrawn" };
  const outcomeText = (lot) => (lot.outcome ? OUTCOMES[lot.outcome] : "no close received");

  // The table's columns: what each sorts by, and what it shows.
  const LOT_COLUMNS = [
    { key: "openedAt", label: "Opened", sort: lotOpened, show: (l) => formatTimeSeconds(new Date(lotOpened(l))) },
    { key: "lot", label: "Lot", sort: (l) => `${l.lotId} ${l.title}`.toLowerCase(), show: (l) => l.title ? `${l.lotId} · ${l.title}` : l.lotId },
    { key: "length", label: "Length", sort: (l) => lotLength(l) ?? -1, show: (l) => (lotLength(l) === null ? "–" : formatDuration(lotLength(l) / 1000)) },
    { key: "viewersAtOpen", label: "At open", numeric: true },
    { key: "viewersAtClose", label: "At hammer", numeric: true },
    { key: "peakViewers", label: "Peak", numeric: true },
    { key: "avgViewers", label: "Average", numeric: true, show: (l) => formatNumber(l.avgViewers) },
    { key: "bids", label: "Bids", numeric: true },
    { key: "bidders", label: "Bidders", numeric: true },
    { key: "outcome", label: "Outcome", sort: outcomeText, show: outcomeText },
    { key: "hammerPrice", label: "Hammer", numeric: true, sort: (l) => l.hammerPrice ?? -1,
      show: (l) => (l.hammerPrice === null ? "–" : formatMoney(l.hammerPrice, l.currency)) },
  ];

  function drawLotHeader() {
    const row = $("lots").querySelector("thead tr");
    row.replaceChildren(...LOT_COLUMNS.map((column) => {
      const th = document.createElement("th");
      th.scope = "col";
      th.dataset.key = column.key;
      if (column.numeric) th.className = "numeric";
      const button = document.createElement("button");
      button.type = "button";
      button.textContent = column.label;
      button.addEventListener("click", () => {
        const sort = state.lotSort;
        // A new column starts with its most telling order: numbers highest first, the rest A to Z.
        state.lotSort = sort.key === column.key ? { key: column.key, descending: !sort.descending }
          : { key: column.key, descending: Boolean(column.numeric) };
        showAudience();
      });
      th.appendChild(button);
      return th;
    }));
  }

  function showAudience() {
    const lots = shownLots($("range").value);
    const sort = state.lotSort;
    const column = LOT_COLUMNS.find((c) => c.key === sort.key);
    const key = column.sort || ((l) => l[column.key]);
    const sorted = [...lots].sort((a, b) => {
      const ka = key(a), kb = key(b);
      const order = ka < kb ? -1 : ka > kb ? 1 : lotOpened(a) - lotOpened(b);
      return sort.descending ? -order : order;
    });
    for (const th of $("lots").querySelectorAll("th")) {
      th.setAttribute("aria-sort", th.dataset.key === sort.key ? (sort.descending ? "descending" : "ascending") : "none");
    }
    const typicalPeak = median(lots.map((l) => l.peakViewers));
    const rows = sorted.map((lot) => {
      const tr = document.createElement("tr");
      tr.dataset.lotId = lot.lotId;
      if (needsAttention(lot, typicalPeak)) {
        tr.classList.add("attention");
        tr.title = "No bid, though many watched";
      }
      for (const c of LOT_COLUMNS) {
        const td = document.createElement("td");
        td.dataset.label = c.label;
        td.dataset.key = c.key;
        if (c.numeric) td.className = "numeric";
        td.textContent = c.show ? c.show(lot) : String(lot[c.key]);
        if (c.key === "lot" && tr.classList.contains("attention")) {
          td.appendChild(Object.assign(document.createElement("span"), { className: "badge", textContent: "no bid" }));
        }
        tr.appendChild(td);
      }
      return tr;
    });
    $("lots").querySelector("tbody").replaceChildren(...rows);
    $("lots").dataset.rows = String(rows.length);
    if (state.audience && lots.length === 0) say($("lots-message"), "No lot opened in this range.");
    showFunnel(state.audience && state.audience.range === $("range").value ? state.audience.funnel : null);
  }

  /** Four numbers with bars, each bar against the widest step: viewers, signed in, bidders, winners. */
  function showFunnel(funnel) {
    // Without sketches the viewer figures are not known (not zero): shown as "–", with no bar.
    const sketched = funnel && funnel.uniqueViewerEstimate.sketchedSnapshots > 0;
    const steps = [
      ["viewers", funnel && sketched ? funnel.uniqueViewers : null],
      ["identified", funnel && sketched ? funnel.identifiedViewers : null],
      ["bidders", funnel ? funnel.bidders : null],
      ["winners", funnel ? funnel.winners : null],
    ];
    const widest = Math.max(1, ...steps.map(([, value]) => value || 0));
    for (const [step, value] of steps) {
      const number = $(`funnel-${step}`);
      number.textContent = value === null ? "–" : value.toLocaleString();
      if (value === null) delete number.dataset.value;
      else number.dataset.value = String(value);
      const bar = document.querySelector(`#funnel [data-step="${step}"] .bar span`);
      bar.style.width = `${value === null ? 0 : (100 * value) / widest}%`;
    }
    let note = "";
    if (funnel && !sketched) {
      note = "Unique viewers are not known for this range: its minutes carry no unique-viewer sketches.";
    } else if (funnel && funnel.uniqueViewerEstimate.unsketchedSnapshots > 0) {
      note = "Viewers are estimates, and count only the minutes that carry unique-viewer sketches.";
    } else if (funnel) {
      note = "Viewers are estimates (within about 3%); bidders and winners are exact.";
    }
    say($("funnel-note"), note);
  }

  // ---- the chart: inline SVG, no library ---------------------------------------------------------

  const SVG = "http://www.w3.org/2000/svg";
  const SECOND = 1000, MINUTE = 60 * SECOND, HOUR = 60 * MINUTE, DAY = 24 * HOUR;
  // Tick steps a person reads as round, each aligned to the local clock.
  const TIME_STEPS = [
    SECOND, 2 * SECOND, 5 * SECOND, 10 * SECOND, 15 * SECOND, 30 * SECOND, MINUTE, 2 * MINUTE, 5 * MINUTE, 10 * MINUTE,
    15 * MINUTE, 30 * MINUTE, HOUR, 2 * HOUR, 3 * HOUR, 6 * HOUR, 12 * HOUR, DAY, 2 * DAY, 7 * DAY,
  ];

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

  /** The local clock's offset from UTC at ``t``, in ms (positive east of Greenwich). */
  const zoneOffset = (t) => -new Date(t).getTimezoneOffset() * MINUTE;

  /** Round local times from ``start`` to ``end``, at most ``most`` of them: [times, step]. */
  function timeTicks(start, end, most) {
    const step = TIME_STEPS.find((s) => (end - start) / s <= most) || TIME_STEPS[TIME_STEPS.length - 1];
    const ticks = [];
    // Aligned in local time (midnight, the hour, ...), so 14:00 rather than 13:57.
    let t = Math.ceil((start + zoneOffset(start)) / step) * step - zoneOffset(start);
    for (; t <= end; t += step) ticks.push(t);
    return [ticks, step];
  }

  function zoneName() {
    const zone = Intl.DateTimeFormat().resolvedOptions().timeZone || "local";
    const minutes = zoneOffset(Date.now()) / MINUTE;
    const sign = minutes < 0 ? "−" : "+";
    const hh = String(Math.floor(Math.abs(minutes) / 60)).padStart(2, "0");
    const mm = String(Math.abs(minutes) % 60).padStart(2, "0");
    return `${zone}, UTC${sign}${hh}:${mm}`;
  }

  /** The times the chart spans: ALL and short auctions fitted to the data, presets up to now. */
  function timeDomain(times, range, bucketMs) {
    const now = Date.now();
    if (times.length === 0) {
      const span = (RANGE_SECONDS[range] || 3600) * 1000;
      return [now - span, now];
    }
    const first = Math.min(...times), last = Math.max(...times) + bucketMs;
    if (!RANGE_SECONDS[range]) {
      // At least a few buckets wide, so a single point is not a dot on an edge.
      return [first, Math.max(last, first + 4 * bucketMs)];
    }
    // A preset ends now; it starts where its data does when that is later than the window's start
    // (an auction of 20 minutes is not a speck at the end of a 24-hour axis).
    const windowStart = now - RANGE_SECONDS[range] * 1000;
    const start = Math.max(windowStart, first - bucketMs);
    return [start, Math.max(now, last, start + 4 * bucketMs)];
  }

  function drawChart(points, range, bucketSeconds, emptyText) {
    state.drawn = [points, range, bucketSeconds, emptyText];
    const plot = $("chart-plot");
    const width = Math.max(240, Math.round(plot.clientWidth || 600));
    const narrow = width < 500;
    const height = narrow ? 240 : 300;
    const left = 52, right = 14, top = 14, bottom = 48;
    const svg = svgElement("svg", { width, height, viewBox: `0 0 ${width} ${height}`, role: "img" });
    const plotWidth = width - left - right, plotHeight = height - top - bottom;
    const bucketMs = bucketSeconds * 1000;
    const times = points.map((p) => Date.parse(p.at));
    const [start, end] = timeDomain(times, range, bucketMs);
    const highest = Math.max(4, ...points.map((p) => p.peakViewers));
    const yStep = niceStep(highest / 4);
    const yMax = yStep * Math.ceil(highest / yStep);
    const x = (t) => left + ((t - start) / (end - start)) * plotWidth;
    const y = (v) => top + plotHeight - (v / yMax) * plotHeight;
    $("chart").dataset.bucketSeconds = String(bucketSeconds);
    $("chart").dataset.start = String(start);
    $("chart").dataset.end = String(end);

    for (let value = 0; value <= yMax; value += yStep) {
      svg.appendChild(svgElement("line", { class: "grid", x1: left, x2: width - right, y1: y(value), y2: y(value) }));
      svg.appendChild(svgElement("text", { class: "axis-label y-tick", x: left - 6, y: y(value) + 4, "text-anchor": "end" },
        value.toLocaleString()));
    }
    svg.appendChild(svgElement("text", {
      class: "axis-title y-title", transform: `translate(13 ${top + plotHeight / 2}) rotate(-90)`, "text-anchor": "middle",
    }, "viewers"));

    const [ticks, step] = timeTicks(start, end, Math.max(2, Math.floor(plotWidth / (narrow ? 70 : 100))));
    const crossesDays = new Date(start).toDateString() !== new Date(end).toDateString();
    let lastDay = "";
    for (const t of ticks) {
      const d = new Date(t);
      let label;
      if (step >= DAY) label = formatDate(d);
      else {
        label = step < MINUTE ? formatTimeSeconds(d) : formatTime(d);
        // The date where the day changes, when the axis spans more than one.
        if (crossesDays && d.toDateString() !== lastDay) label = `${formatDate(d)} ${label}`;
      }
      lastDay = d.toDateString();
      // A label that would run off an edge is anchored to it instead (about 7 px a character at 12 px).
      const half = (label.length * 7) / 2;
      const anchor = x(t) + half > width ? "end" : x(t) - half < 0 ? "start" : "middle";
      svg.appendChild(svgElement("line", { class: "grid", x1: x(t), x2: x(t), y1: top + plotHeight, y2: top + plotHeight + 4 }));
      svg.appendChild(svgElement("text", { class: "axis-label x-tick", x: x(t), y: top + plotHeight + 17, "text-anchor": anchor, "data-t": t }, label));
    }
    svg.appendChild(svgElement("text", { class: "axis-title x-title", x: left + plotWidth / 2, y: height - 6, "text-anchor": "middle" },
      `time (local: ${zoneName()})`));

    if (points.length === 0) {
      svg.appendChild(svgElement("text", { class: "empty", x: left + plotWidth / 2, y: top + plotHeight / 2, "text-anchor": "middle" },
        emptyText || "No viewer data in this range yet."));
    }
    // Lots as bands from their opening to their hammer, under the series; a lot without a close, a line.
    const lotMarks = [];
    for (const lot of shownLots(range)) {
      const opened = lotOpened(lot);
      const closed = lot.closedAt ? Date.parse(lot.closedAt) : null;
      if (opened > end || (closed ?? opened) < start) continue;
      const x1 = x(Math.max(opened, start));
      const x2 = closed === null ? x1 : x(Math.min(closed, end));
      const mark = svgElement("g", { class: `lot-marker${closed === null ? " open" : ""}`, "data-lot-id": lot.lotId });
      mark.appendChild(svgElement("title", {}, `${lot.lotId} ${lot.title}`));
      mark.appendChild(svgElement("rect", { class: "lot-band", x: x1, y: top, width: Math.max(1, x2 - x1), height: plotHeight }));
      mark.appendChild(svgElement("line", { class: "lot-open", x1, x2: x1, y1: top, y2: top + plotHeight }));
      if (closed !== null) mark.appendChild(svgElement("line", { class: "lot-close", x1: x2, x2, y1: top, y2: top + plotHeight }));
      svg.appendChild(mark);
      lotMarks.push({ lot, x1, x2 });
    }
    // Each point sits in the middle of its bucket.
    const middle = (i) => x(times[i] + bucketMs / 2);
    for (const [series, field] of [["min", "minViewers"], ["avg", "avgViewers"], ["peak", "peakViewers"]]) {
      if (points.length > 1) {
        const path = points.map((p, i) => `${i === 0 ? "M" : "L"}${middle(i).toFixed(1)},${y(p[field]).toFixed(1)}`).join(" ");
        svg.appendChild(svgElement("path", { class: `series ${series}`, d: path }));
      }
      points.forEach((p, i) => {
        svg.appendChild(svgElement("circle", {
          class: `point ${series}`, cx: middle(i).toFixed(1), cy: y(p[field]).toFixed(1), r: points.length > 120 ? 1.5 : 3.5,
          "data-at": p.at, "data-value": p[field],
        }));
      });
    }
    const guide = svgElement("line", { class: "guide", y1: top, y2: top + plotHeight, visibility: "hidden" });
    svg.appendChild(guide);
    plot.replaceChildren(svg);
    $("chart-tooltip").hidden = true;
    // For the tooltip: what a pointer (mouse, pen or finger) at a given x is nearest to.
    state.chart = { points, times, bucketMs, middle, guide, left, right: width - right, lots: lotMarks };
  }

  /** The tooltip of the point nearest the pointer: hover with a mouse, tap or drag with a finger. */
  function showTooltip(event) {
    const chart = state.chart;
    if (!chart || chart.points.length === 0) return;
    const box = $("chart-plot").getBoundingClientRect();
    const px = event.clientX - box.left;
    let nearest = 0;
    chart.points.forEach((_p, i) => {
      if (Math.abs(chart.middle(i) - px) < Math.abs(chart.middle(nearest) - px)) nearest = i;
    });
    const p = chart.points[nearest];
    const at = chart.times[nearest];
    const tip = $("chart-tooltip");
    const span = chart.bucketMs >= DAY ? formatDate(new Date(at))
      : `${formatDate(new Date(at))} ${formatTimeSpan(at, at + chart.bucketMs)}`;
    tip.replaceChildren(
      Object.assign(document.createElement("strong"), { textContent: span }),
      document.createElement("br"),
      `viewers: peak ${formatNumber(p.peakViewers)} · average ${formatNumber(p.avgViewers)} · minimum ${formatNumber(p.minViewers)}`,
    );
    // The lot under the pointer (a band, or within a few pixels of a lot's line), when there is one.
    const underPointer = chart.lots.filter((m) => px >= m.x1 - 4 && px <= m.x2 + 4);
    for (const { lot } of underPointer.slice(-2)) {
      const closed = lot.closedAt ? formatTimeSeconds(new Date(lot.closedAt)) : "no close";
      const hammer = lot.hammerPrice === null ? "" : ` ${formatMoney(lot.hammerPrice, lot.currency)}`;
      tip.append(document.createElement("br"), Object.assign(document.createElement("span"), {
        className: "tooltip-lot",
        textContent: `Lot ${lot.lotId}${lot.title ? ` “${lot.title}”` : ""}: ${formatTimeSeconds(new Date(lotOpened(lot)))}–${closed}` +
          ` · ${lot.viewersAtOpen} → ${lot.viewersAtClose} watching · ${lot.bids} ${lot.bids === 1 ? "bid" : "bids"} · ${outcomeText(lot)}${hammer}`,
      }));
    }
    tip.hidden = false;
    const cx = chart.middle(nearest);
    chart.guide.setAttribute("x1", cx);
    chart.guide.setAttribute("x2", cx);
    chart.guide.setAttribute("visibility", "visible");
    const tipWidth = tip.offsetWidth;
    tip.style.left = `${Math.min(Math.max(0, cx - tipWidth / 2), box.width - tipWidth)}px`;
  }

  function hideTooltip(event) {
    // A finger lifting keeps the tooltip (there is no hover to bring it back); a mouse leaving hides it.
    if (event.pointerType === "touch") return;
    $("chart-tooltip").hidden = true;
    if (state.chart) state.chart.guide.setAttribute("visibility", "hidden");
  }

  // ---- the live strip: the last 30 minutes under the live number ---------------------------------

  function drawStrip() {
    const figure = $("live-strip");
    const width = Math.max(200, Math.round(figure.clientWidth || 300));
    const height = 56, top = 4, bottom = 16;
    const now = Date.now();
    const start = now - STRIP_MS;
    state.live = state.live.filter((s, i, all) => s.t >= start || (all[i + 1] && all[i + 1].t >= start));
    // Stored points before the first live one, then what this page saw live, then the present.
    const firstLive = state.live.length ? state.live[0].t : now;
    const samples = [...state.recent.filter((s) => s.t >= start && s.t < firstLive), ...state.live];
    const svg = svgElement("svg", { width, height, viewBox: `0 0 ${width} ${height}`, role: "img" });
    const highest = Math.max(1, ...samples.map((s) => s.count));
    const x = (t) => ((Math.max(t, start) - start) / STRIP_MS) * width;
    const y = (v) => top + (height - top - bottom) * (1 - v / highest);
    svg.appendChild(svgElement("line", { class: "strip-base", x1: 0, x2: width, y1: y(0), y2: y(0) }));
    if (samples.length > 0) {
      // A step line: a count holds until the next change.
      let d = `M${x(samples[0].t).toFixed(1)},${y(samples[0].count).toFixed(1)}`;
      for (let i = 1; i < samples.length; i++) {
        d += ` H${x(samples[i].t).toFixed(1)} V${y(samples[i].count).toFixed(1)}`;
      }
      d += ` H${width}`;
      svg.appendChild(svgElement("path", { class: "strip-area", d: `${d} V${height - bottom} H${x(samples[0].t).toFixed(1)} Z` }));
      svg.appendChild(svgElement("path", { class: "strip-line", d }));
      // Where the strip is now: the live number's own point, visible even in a page opened seconds ago.
      svg.appendChild(svgElement("circle", { class: "strip-now", cx: width - 3, cy: y(samples[samples.length - 1].count), r: 3 }));
    }
    svg.appendChild(svgElement("text", { class: "strip-label", x: 0, y: height - 3 }, "30 min ago"));
    svg.appendChild(svgElement("text", { class: "strip-label", x: width, y: height - 3, "text-anchor": "end" }, "now"));
    svg.appendChild(svgElement("text", { class: "strip-label", x: width / 2, y: height - 3, "text-anchor": "middle" },
      `peak ${highest.toLocaleString()} watching`));
    figure.dataset.samples = String(samples.length);
    figure.replaceChildren(svg);
  }

  // ---- formatting --------------------------------------------------------------------------------

  const formatNumber = (v) => v.toLocaleString(undefined, { maximumFractionDigits: 1 });
  const formatTime = (d) => d.toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" });
  const formatTimeSeconds = (d) => d.toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  const formatDate = (d) => d.toLocaleDateString(undefined, { month: "short", day: "numeric" });
  const formatDateTime = (d) => d.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });

  function formatTimeSpan(from, to) {
    const seconds = (to - from) % MINUTE !== 0 || from % MINUTE !== 0;
    const f = seconds ? formatTimeSeconds : formatTime;
    return `${f(new Date(from))}–${f(new Date(to))}`;
  }

  /** One way to write a length of time everywhere on the page: "45 s", "1 min", "2 min 30 s", "3 h 5 min". */
  function formatDuration(seconds) {
    const s = Math.round(seconds);
    if (s < 60) return `${s} s`;
    if (s < 3600) {
      const minutes = Math.floor(s / 60), rest = s % 60;
      // Seconds matter in a short auction; past ten minutes they are noise.
      if (rest === 0 || minutes >= 10) return `${Math.round(s / 60)} min`;
      return `${minutes} min ${rest} s`;
    }
    const minutes = Math.round(s / 60);
    const hours = Math.floor(minutes / 60);
    if (hours < 48) return minutes % 60 ? `${hours} h ${minutes % 60} min` : `${hours} h`;
    return `${Math.floor(hours / 24)} d ${hours % 24} h`;
  }

  // ---- alert deliveries ------------------------------------------------------------------------

  /** The auction's last alert deliveries, as a table. Every cell is text: a last error carries what
   *  a webhook endpoint answered, which must never be read as markup. */
  async function loadDeliveries() {
    if (!state.auctionId) return;
    const auctionId = state.auctionId;
    const body = $("alert-deliveries").tBodies[0];
    try {
      const data = await graphql(DELIVERIES_QUERY, { id: auctionId });
      if (auctionId !== state.auctionId) return;
      const deliveries = data.alertDeliveries.deliveries;
      body.replaceChildren(...deliveries.map(deliveryRow));
      say($("alerts-message"), deliveries.length ? "" : "No alert has been sent for this auction yet.");
    } catch (error) {
      if (auctionId !== state.auctionId) return;
      body.replaceChildren();
      say($("alerts-message"), sentenceFor(error), true);
    }
  }

  function deliveryRow(delivery) {
    const row = document.createElement("tr");
    row.dataset.id = delivery.id;
    const status = delivery.status.toLowerCase();
    const next = delivery.nextAttemptAt ? `, next try ${formatTime(new Date(delivery.nextAttemptAt))}` : "";
    const cells = [
      formatTime(new Date(delivery.createdAt)),
      delivery.eventType === "alert.test" ? "test" : "alert",
      status + (status === "pending" ? next : ""),
      String(delivery.attempts),
      delivery.lastError,
    ];
    cells.forEach((text, index) => {
      const cell = document.createElement("td");
      cell.textContent = text;
      if (index === 2) cell.className = status;
      if (index === 4) cell.className = "error-text";
      row.append(cell);
    });
    return row;
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

  async function open(auctionId, token) {
    const changedAuction = auctionId !== state.auctionId;
    const changedToken = token !== state.token;
    state.auctionId = auctionId;
    state.token = token;
    localStorage.setItem(AUCTION_KEY, auctionId);
    if (token) sessionStorage.setItem(TOKEN_KEY, token);
    else sessionStorage.removeItem(TOKEN_KEY);
    document.title = `${auctionId} · Viewer Analytics`;
    $("auction-id").value = auctionId;
    if (changedAuction || changedToken) {
      // Nothing of the previous auction (or of what the previous token could see) stays on screen.
      forgetAuction("Loading…");
      say($("analytics-message"), "");
    }
    if (changedToken) connectLive();
    else if (changedAuction) switchLive();
    if (changedToken) await loadCaller();
    else showAuctionChoice();
    loadAnalytics();
    loadRecent();
    loadDeliveries();
  }

  async function start() {
    readHash();
    state.auctionId = localStorage.getItem(AUCTION_KEY) || DEFAULT_AUCTION;
    state.token = sessionStorage.getItem(TOKEN_KEY) || "";
    $("auction-id").value = state.auctionId;
    $("token").value = state.token;
    document.title = `${state.auctionId} · Viewer Analytics`;
    $("time-zone").textContent = `Chart times are local (${zoneName()}); the CSV is in UTC.`;
    showToggle(null);

    $("auction-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const seller = !$("auction-pick").hidden;
      open(seller ? $("auction-select").value : $("auction-id").value.trim(), $("token").value.trim());
    });
    $("auction-select").addEventListener("change", () => open($("auction-select").value, $("token").value.trim()));
    $("analytics-toggle").addEventListener("change", onToggle);
    $("range").addEventListener("change", loadAnalytics);
    $("attention-minimum").textContent = String(ATTENTION_MINIMUM);
    drawLotHeader();
    showAudience();
    $("refresh").addEventListener("click", loadAnalytics);
    $("download-csv").addEventListener("click", downloadCsv);
    const plot = $("chart-plot");
    plot.addEventListener("pointermove", showTooltip);
    // pointerdown: a finger's tap, which has no hover before it.
    plot.addEventListener("pointerdown", showTooltip);
    plot.addEventListener("pointerleave", hideTooltip);
    setInterval(() => {
      if (!document.hidden) loadAnalytics();
    }, AUTO_REFRESH_MS);
    setInterval(() => {
      if (!document.hidden) loadDeliveries();
    }, DELIVERIES_REFRESH_MS);
    setInterval(() => {
      if (!document.hidden) drawStrip();
    }, STRIP_REDRAW_MS);
    // The chart is drawn at its container's width: redrawn when that changes (a phone turned, a
    // window resized), from what it shows now.
    let lastWidth = plot.clientWidth;
    new ResizeObserver(() => {
      if (plot.clientWidth === lastWidth) return;
      lastWidth = plot.clientWidth;
      if (state.drawn) drawChart(...state.drawn);
      drawStrip();
    }).observe(plot);

    drawChart([], $("range").value, 60, "Loading…");
    drawStrip();
    let config = null;
    try {
      // First: the tiles need the deployment's snapshot interval.
      const response = await fetch("config.json");
      config = await response.json();
      state.config = config;
      describeRecording(config);
    } catch (_error) {
      say($("live-status"), "The dashboard's configuration could not be loaded, so live counts are unavailable.", true);
    }
    loadCaller();
    loadAnalytics();
    loadRecent();
    loadDeliveries();
    connectLive();
  }

  start();
})();
