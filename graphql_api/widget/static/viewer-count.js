// <viewer-count auction="…">: an auction's live "N watching", as a framework-free custom element.
//
// Served by the GraphQL API at /widget/viewer-count.js. It loads the pinned Socket.IO client from the
// same place (/widget/socket.io.min.js) unless the page already has window.io, reads the gateway's URL
// from /widget/config.json (unless the element names one in its `gateway` attribute), connects to the
// socket gateway and joins the auction's room: the page counts as one viewer, as the seed's frontend
// did. Attributes: auction (required), gateway, viewer-id (tabs of one viewer count once in unique
// viewers), token (a signed viewer token, when the gateway has VIEWER_TOKEN_SECRET). The element shows
// "N watching" and carries data-state="connecting" | "live" | "offline" and data-count; style it from
// the page with viewer-count::part(count) and ::part(label).
(() => {
  "use strict";

  const script = document.currentScript;
  const base = new URL(".", script ? script.src : window.location.href);
  const format = new Intl.NumberFormat();
  let ioLoaded = null;
  let configLoaded = null;

  function loadIo() {
    if (typeof window.io === "function") return Promise.resolve(window.io);
    if (!ioLoaded) {
      ioLoaded = new Promise((resolve, reject) => {
        const tag = document.createElement("script");
        tag.src = new URL("socket.io.min.js", base).href;
        tag.async = true;
        tag.onload = () => (typeof window.io === "function" ? resolve(window.io) : reject(new Error("no io")));
        tag.onerror = () => reject(new Error("the Socket.IO client did not load"));
        document.head.appendChild(tag);
      });
    }
    return ioLoaded;
  }

  function loadConfig() {
    if (!configLoaded) {
      configLoaded = fetch(new URL("config.json", base).href, { credentials: "omit" }).then((answer) => {
        if (!answer.ok) throw new Error(`config.json answered ${answer.status}`);
        return answer.json();
      });
    }
    return configLoaded;
  }

  class ViewerCount extends HTMLElement {
    static get observedAttributes() {
      return ["auction"];
    }

    constructor() {
      super();
      const root = this.attachShadow({ mode: "open" });
      root.innerHTML =
        "<style>:host{display:inline-block;font:inherit}" +
        ":host([data-state=offline]) [part=count]{opacity:.6}</style>" +
        '<span part="count">–</span> <span part="label">watching</span>';
      this._count = root.querySelector("[part=count]");
      this._socket = null;
      this._started = false;
      this.setAttribute("data-state", "connecting");
    }

    connectedCallback() {
      if (this._started) return;
      this._started = true;
      this._start().catch((error) => this._offline(error.message));
    }

    disconnectedCallback() {
      this._started = false;
      if (this._socket) this._socket.disconnect();
      this._socket = null;
    }

    attributeChangedCallback(name, before, after) {
      if (name !== "auction" || before === after || !this._socket) return;
      this._show(null);
      this._socket.auth.auctionId = after;
      if (this._socket.connected) this._socket.emit("joinAuction", { auctionId: after });
    }

    async _start() {
      const auction = this.getAttribute("auction");
      if (!auction) throw new Error("the auction attribute is required");
      const [io, gatewayUrl] = await Promise.all([
        loadIo(),
        this.getAttribute("gateway") || loadConfig().then((config) => config.gatewayUrl),
      ]);
      if (!this._started) return;
      const auth = { auctionId: auction };
      const viewerId = this.getAttribute("viewer-id");
      const token = this.getAttribute("token");
      if (viewerId) auth.viewerId = viewerId;
      if (token) auth.token = token;
      // WebSocket only: no long-polling requests from the host page, and the auth payload is sent
      // again on every reconnection, so the element rejoins its room after a gateway restart.
      const socket = io(gatewayUrl, { transports: ["websocket"], auth });
      this._socket = socket;
      socket.on("viewerCountUpdate", ({ auctionId, viewerCount }) => {
        if (auctionId === this.getAttribute("auction")) this._show(viewerCount);
      });
      socket.on("disconnect", () => this._offline("disconnected"));
      socket.on("connect_error", (error) => this._offline(error.message));
    }

    _show(viewerCount) {
      if (viewerCount === null) {
        this._count.textContent = "–";
        this.removeAttribute("data-count");
        return;
      }
      this._count.textContent = format.format(viewerCount);
      this.setAttribute("data-count", String(viewerCount));
      this.setAttribute("data-state", "live");
    }

    _offline(reason) {
      // The last count stays on show, dimmed, while the client reconnects.
      this.setAttribute("data-state", "offline");
      this.setAttribute("title", `Live count unavailable (${reason}); reconnecting…`);
    }
  }

  if (!customElements.get("viewer-count")) customElements.define("viewer-count", ViewerCount);
})();
