// The demo page: each element with data-panel="name" is driven by PANELS[name](element).
// A new panel is a route in examples/demo/, an element in index.html and a function here.
// No build step, no CDN: plain ES modules.
import { decode, encode } from "./msgpack.js";

const MAX_ITEMS = 100;
const params = new URLSearchParams(location.search);
const role = (section, name) => section.querySelector(`[data-role=${name}]`);

// A log line from parts: strings, or [className, text] pairs. Text only, never HTML.
function append(log, parts, { className = "", id = null } = {}) {
  const item = document.createElement("li");
  if (className) item.className = className;
  if (id !== null) item.dataset.id = id;
  for (const [index, part] of parts.entries()) {
    if (index > 0) item.append(" ");
    if (typeof part === "string") item.append(part);
    else {
      const span = document.createElement("span");
      [span.className, span.textContent] = part;
      item.append(span);
    }
  }
  log.append(item);
  while (log.children.length > MAX_ITEMS) log.firstElementChild.remove();
  log.scrollTop = log.scrollHeight;
}

// A panel's event stream, with the page's ?retry= (ms EventSource waits to reconnect) passed on.
function streamUrl(section) {
  const retry = params.get("retry");
  return retry ? `${section.dataset.src}?retry=${retry}` : section.dataset.src;
}

function setStatus(element, text, kind = "") {
  element.textContent = text;
  element.className = `status ${kind}`;
}

// Header: which broker runs, whether /health answers 204.
async function info(section) {
  const response = await fetch("/api/info");
  role(section, "broker").textContent = (await response.json()).broker;
  const health = await fetch("/health");
  const ok = health.status === 204;
  setStatus(role(section, "health"), ok ? "healthy" : `unhealthy (${health.status})`, ok ? "ok" : "bad");
}

// Server-Sent Events: EventSource reconnects by itself and sends Last-Event-ID; the server
// resumes after it (broker.subscribe(topic, last_id=...)), so the ids below never skip or repeat.
function events(section) {
  const log = role(section, "log");
  const status = role(section, "status");
  const source = new EventSource(streamUrl(section));
  let lastId = "";
  let opened = 0;

  source.onopen = () => {
    if (opened++ > 0) {
      const after = lastId || "the start";
      role(section, "resumes").textContent = `reconnected ${opened - 1}×, last resumed after ${after}`;
      append(log, [`reconnected: resuming after ${after}`], { className: "gap" });
    }
    setStatus(status, "open", "ok");
  };
  source.onerror = () => {
    const closed = source.readyState === EventSource.CLOSED;
    setStatus(status, closed ? "closed" : "reconnecting…", "bad");
  };
  source.onmessage = (event) => {
    lastId = event.lastEventId;
    const note = JSON.parse(event.data);
    const words = `(${note.words} word${note.words === 1 ? "" : "s"})`;
    append(log, [["id", event.lastEventId], ["who", note.author], note.text, ["note", words]], {
      id: event.lastEventId,
    });
  };
  role(section, "drop").addEventListener("click", () => fetch("/api/drop-streams", { method: "POST" }));
}

// A form whose fields are posted as JSON; the subscriber does the validating.
function notes(section) {
  const form = role(section, "form");
  const result = role(section, "result");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = JSON.stringify(Object.fromEntries(new FormData(form)));
    const headers = { "content-type": "application/json" };
    const response = await fetch(section.dataset.src, { method: "POST", headers, body });
    const answer = await response.json();
    result.textContent = response.ok
      ? `queued as message ${answer.id}: the handler takes it from here`
      : `refused (${response.status}): ${JSON.stringify(answer.detail)}`;
  });
}

// Dead letters: the original body and the router's x-error header, as "dead-letter" events.
function deadletters(section) {
  const log = role(section, "log");
  const status = role(section, "status");
  const source = new EventSource(streamUrl(section));
  source.onopen = () => setStatus(status, "open", "ok");
  source.onerror = () => setStatus(status, "reconnecting…", "bad");
  source.addEventListener("dead-letter", (event) => {
    const { body, error } = JSON.parse(event.data);
    const reasons = error.errors
      ? error.errors.map((e) => `${e.loc.join(".")}: ${e.msg}`).join("; ")
      : error.message;
    append(log, [["id", event.lastEventId], ["tag", error.type], `${reasons} — body ${body}`], {
      className: "error",
      id: event.lastEventId,
    });
  });
}

// WebSocket chat: offer MessagePack and JSON as subprotocols; the server answers in the one
// it picked: binary frames for MessagePack, text frames for JSON.
function chat(section) {
  const log = role(section, "log");
  const status = role(section, "status");
  const codec = role(section, "codec");
  const form = role(section, "form");
  const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}${section.dataset.src}`;
  let socket = null;

  codec.value = params.get("codec") === "json" ? "json" : "msgpack";
  form.elements.user.value = params.get("user") || form.elements.user.value;

  const connect = () => {
    const offered = codec.value === "msgpack" ? ["msgpack", "json"] : ["json"];
    const current = (socket = new WebSocket(url, offered));
    current.binaryType = "arraybuffer";
    current.onopen = () => {
      const how = current.protocol === "msgpack" ? "MessagePack, binary frames" : "JSON, text frames";
      setStatus(status, `connected (${how})`, "ok");
    };
    current.onmessage = (event) => {
      const frame = event.data instanceof ArrayBuffer ? decode(event.data) : JSON.parse(event.data);
      const time = new Date(frame.at).toLocaleTimeString();
      append(log, [["id", time], ["who", `${frame.user}:`], frame.text], {
        className: frame.kind === "error" ? "error" : "",
      });
    };
    current.onclose = () => {
      if (socket !== current) return; // replaced on purpose
      setStatus(status, "disconnected, retrying…", "bad");
      setTimeout(() => socket === current && connect(), 1000);
    };
  };
  codec.addEventListener("change", () => {
    const old = socket;
    connect();
    old.close();
  });
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const message = { user: form.elements.user.value, text: form.elements.text.value };
    if (socket.readyState !== WebSocket.OPEN) return;
    socket.send(socket.protocol === "msgpack" ? encode(message) : JSON.stringify(message));
    form.elements.text.value = "";
  });
  connect();
}

// The mounted sub-app: its lifespan's state, asked every few seconds.
function status(section) {
  const refresh = async () => {
    let state;
    try {
      state = await (await fetch(section.dataset.src)).json();
    } catch {
      role(section, "lifespan").textContent = "unreachable (is the server running?)";
      return;
    }
    role(section, "lifespan").textContent = state.lifespan;
    const started = role(section, "started");
    started.dataset.iso = state.started_at;
    started.textContent = new Date(state.started_at).toLocaleString();
    role(section, "uptime").textContent = `${state.uptime} s`;
    role(section, "requests").textContent = String(state.requests);
  };
  refresh();
  setInterval(refresh, 5000);
}

const PANELS = { info, events, notes, deadletters, chat, status };

for (const section of document.querySelectorAll("[data-panel]")) {
  PANELS[section.dataset.panel]?.(section);
}
