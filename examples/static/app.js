// The demo page: each <section data-panel="name"> is driven by PANELS[name](section).
// A new panel is a stream endpoint in examples/demo.py, a section in index.html and a function
// here. No build step: plain ES modules.

const MAX_LINES = 50;

function append(log, text) {
  const item = document.createElement("li");
  item.textContent = text;
  log.append(item);
  while (log.children.length > MAX_LINES) log.firstElementChild.remove();
  log.scrollTop = log.scrollHeight;
}

function setStatus(element, text, kind = "") {
  element.textContent = text;
  element.className = `status ${kind}`;
}

// Server-Sent Events: EventSource reconnects by itself and sends Last-Event-ID.
function clock(section) {
  const log = section.querySelector("[data-role=log]");
  const status = section.querySelector("[data-role=status]");
  const button = section.querySelector("[data-action=toggle]");
  const interval = new URLSearchParams(location.search).get("interval");
  const url = interval ? `${section.dataset.src}?interval=${interval}` : section.dataset.src;
  let source = null;

  const connect = () => {
    source = new EventSource(url);
    source.onopen = () => setStatus(status, "open", "open");
    source.onerror = () => setStatus(status, "reconnecting…", "error");
    source.addEventListener("tick", (event) => {
      const { n, at } = JSON.parse(event.data);
      append(log, `tick id=${event.lastEventId} n=${n} at ${at}`);
    });
    button.textContent = "Disconnect";
  };
  const disconnect = () => {
    source.close();
    source = null;
    setStatus(status, "closed");
    button.textContent = "Connect";
  };
  button.addEventListener("click", () => (source ? disconnect() : connect()));
  connect();
}

// JSON Lines: read the body as it arrives and parse one document per line.
function numbers(section) {
  const log = section.querySelector("[data-role=log]");
  const status = section.querySelector("[data-role=status]");
  const button = section.querySelector("[data-action=fetch]");

  button.addEventListener("click", async () => {
    button.disabled = true;
    setStatus(status, "streaming…", "open");
    try {
      const response = await fetch(section.dataset.src);
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let pending = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        pending += value;
        const lines = pending.split("\n");
        pending = lines.pop();
        for (const line of lines) if (line) append(log, `line ${JSON.stringify(JSON.parse(line))}`);
      }
      setStatus(status, "done");
    } catch (error) {
      setStatus(status, `failed: ${error}`, "error");
    } finally {
      button.disabled = false;
    }
  });
}

const PANELS = { clock, numbers };

for (const section of document.querySelectorAll("[data-panel]")) {
  PANELS[section.dataset.panel]?.(section);
}
