"""The AsyncAPI page: one self-contained HTML file that fetches the JSON and renders it.

No CDN, no framework: a little CSS and JavaScript that list the servers, the channels with
their operations and messages, and the schemas (object properties as tables, ``$ref`` as
links). Everything from the document is inserted as text, never as HTML.
"""

from __future__ import annotations

import html

__all__ = ["render_page"]

_STYLE = """
:root { --fg:#1f2430; --muted:#5c6370; --line:#dde1e8; --bg:#f6f7f9; --send:#0b7a4b;
  --receive:#1d5fbf; --code:#eef1f5; }
* { box-sizing: border-box; }
body { margin:0; font:15px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif;
  color:var(--fg); background:var(--bg); }
header { background:#1f2430; color:#fff; padding:18px 32px; }
header h1 { margin:0; font-size:22px; } header p { margin:4px 0 0; color:#c8ccd4; }
header a { color:#9cc4ff; }
main { max-width:1100px; margin:0 auto; padding:8px 32px 48px; }
h2 { margin:28px 0 10px; font-size:18px; border-bottom:1px solid var(--line); }
.card { background:#fff; border:1px solid var(--line); border-radius:8px;
  padding:14px 18px; margin:12px 0; }
.card h3 { margin:0 0 4px; font:600 17px ui-monospace, SFMono-Regular, Menlo, monospace; }
.muted { color:var(--muted); font-size:13px; }
code, .mono { font-family:ui-monospace, SFMono-Regular, Menlo, monospace; font-size:13px; }
code { background:var(--code); padding:1px 5px; border-radius:4px; }
.badge { display:inline-block; min-width:64px; text-align:center; border-radius:4px;
  color:#fff; font:600 11px/20px system-ui, sans-serif; text-transform:uppercase;
  margin-right:8px; }
.send { background:var(--send); } .receive { background:var(--receive); }
.server { background:#6b4fbb; }
.op { margin:10px 0 0; padding:8px 0 0; border-top:1px dashed var(--line); }
table { border-collapse:collapse; margin:4px 0; width:100%; }
td, th { text-align:left; padding:3px 12px; vertical-align:top; font-size:13px;
  overflow-wrap:anywhere; }
table.props { table-layout:fixed; }
.props td:first-child, .props th:first-child { width:28%; padding-left:0; }
.props td:nth-child(2), .props th:nth-child(2) { width:30%; }
.msg .line { margin:2px 0; }
th { color:var(--muted); font-weight:600; }
.req { color:#b3261e; }
.msg { margin:6px 0 0 72px; }
.empty, .error { color:var(--muted); font-style:italic; }
.error { color:#b3261e; }
"""

_SCRIPT = r"""
const h = (tag, attrs, ...children) => {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
  for (const child of children.flat(Infinity)) {
    if (child !== null && child !== undefined && child !== false)
      node.append(child instanceof Node ? child : String(child));
  }
  return node;
};
const refName = (ref) => ref.split("/").pop();
const text = (value) => String(value || "").split("`").map(
  (part, i) => (i % 2 ? h("code", {}, part) : part));
const FACTS = [["default", "default"], ["minimum", "≥"], ["exclusiveMinimum", ">"],
  ["maximum", "≤"], ["exclusiveMaximum", "<"], ["minLength", "min length"],
  ["maxLength", "max length"], ["pattern", "pattern"], ["minItems", "min items"],
  ["maxItems", "max items"]];
const facts = (schema) => FACTS.filter(([key]) => schema && schema[key] !== undefined).map(
  ([key, label]) => `${label} ${JSON.stringify(schema[key])}`).join(" · ");
const lookup = (doc, ref) => ref.slice(2).split("/").reduce(
  (node, part) => node && node[part.replace(/~1/g, "/").replace(/~0/g, "~")], doc);

function typeView(schema) {
  if (schema === true || schema === undefined) return h("span", {class: "mono"}, "any");
  if (schema.$ref) {
    const name = refName(schema.$ref);
    return h("a", {class: "mono", href: "#schema-" + name}, name);
  }
  for (const key of ["anyOf", "oneOf", "allOf"]) {
    if (schema[key]) {
      const parts = schema[key].map(typeView);
      const sep = key === "allOf" ? " & " : " | ";
      return h("span", {}, parts.flatMap((p, i) => (i ? [sep, p] : [p])));
    }
  }
  if (schema.enum) return h("span", {class: "mono"}, "one of " + schema.enum.map(
    (v) => JSON.stringify(v)).join(", "));
  if (schema.const !== undefined) return h("span", {class: "mono"}, JSON.stringify(schema.const));
  if (schema.type === "array") return h("span", {}, "array of ", typeView(schema.items));
  if (schema.type === "object" && !schema.properties && schema.additionalProperties)
    return h("span", {}, "map of ", typeView(schema.additionalProperties));
  const type = [].concat(schema.type || "any").join(" | ");
  return h("span", {class: "mono"}, schema.format ? `${type} (${schema.format})` : type);
}

function schemaView(schema) {
  if (!schema || !schema.properties) return h("span", {}, typeView(schema));
  const required = new Set(schema.required || []);
  return h("table", {class: "props"},
    h("tr", {}, h("th", {}, "name"), h("th", {}, "type"), h("th", {}, "description")),
    Object.entries(schema.properties).map(([name, prop]) => h("tr", {},
      h("td", {class: "mono"}, name, required.has(name) ? h("span", {class: "req"}, " *") : ""),
      h("td", {}, typeView(prop)),
      h("td", {}, text(prop.description), " ", h("span", {class: "muted"}, facts(prop))))));
}

function messageView(message) {
  return h("div", {class: "msg"},
    h("div", {}, h("strong", {}, message.name || "message"), " ",
      h("span", {class: "muted"}, message.contentType || "")),
    message.payload ? h("div", {class: "line"}, h("span", {class: "muted"}, "payload: "),
      schemaView(message.payload)) : h("div", {class: "empty"}, "payload not described"),
    message.headers ? h("div", {class: "line"}, h("span", {class: "muted"}, "headers: "),
      schemaView(message.headers)) : null);
}

function channelView(doc, id, channel) {
  const operations = Object.entries(doc.operations || {}).filter(
    ([, op]) => op.channel && refName(op.channel.$ref) === id);
  const servers = (channel.servers || []).map((s) => h("span", {class: "badge server"},
    refName(s.$ref)));
  const params = Object.entries(channel.parameters || {});
  return h("section", {class: "card channel", id: "channel-" + id},
    h("h3", {}, servers, h("span", {class: "address"}, channel.address || id)),
    h("div", {class: "muted"}, "channel id ", h("code", {}, id)),
    channel.description ? h("p", {}, text(channel.description)) : null,
    params.length ? h("div", {}, "parameters: ", params.map(([name, p]) =>
      h("span", {}, h("code", {}, name), " ", h("span", {class: "muted"}, p.description || ""),
        " "))) : null,
    operations.length ? operations.map(([opId, op]) => h("div", {class: "op"},
      h("span", {class: "badge " + op.action}, op.action), h("strong", {class: "mono"}, opId),
      op.summary ? h("span", {class: "muted"}, " — ", text(op.summary)) : null,
      (op.messages || []).map((ref) => messageView(lookup(doc, ref.$ref) || {}))))
      : h("div", {class: "empty"}, "no operations"));
}

function render(doc) {
  const info = doc.info || {};
  document.title = `${info.title || "AsyncAPI"} — AsyncAPI`;
  document.getElementById("title").textContent = `${info.title || "API"} ${info.version || ""}`;
  document.getElementById("description").replaceChildren(...text(info.description));
  const servers = Object.entries(doc.servers || {});
  const channels = Object.entries(doc.channels || {});
  const schemas = Object.entries((doc.components || {}).schemas || {});
  document.getElementById("content").replaceChildren(h("div", {},
    h("h2", {}, "Servers"),
    servers.length ? h("table", {class: "card"},
      h("tr", {}, h("th", {}, "id"), h("th", {}, "protocol"), h("th", {}, "host"),
        h("th", {}, "description")),
      servers.map(([id, s]) => h("tr", {}, h("td", {class: "mono"}, id),
        h("td", {}, s.protocol), h("td", {class: "mono"}, s.host + (s.pathname || "")),
        h("td", {}, s.description || s.title || ""))))
      : h("p", {class: "empty"}, "No servers."),
    h("h2", {}, `Channels (${channels.length})`),
    channels.length ? channels.map(([id, ch]) => channelView(doc, id, ch))
      : h("p", {class: "empty"}, "Nothing streams in this app yet."),
    h("h2", {}, `Schemas (${schemas.length})`),
    schemas.map(([name, schema]) => h("section", {class: "card", id: "schema-" + name},
      h("h3", {class: "mono"}, name),
      schema.description ? h("p", {}, text(schema.description)) : null,
      schemaView(schema)))));
}

const source = document.body.dataset.source;
fetch(source, {headers: {accept: "application/json"}})
  .then((r) => (r.ok ? r.json() : Promise.reject(new Error(`${source}: HTTP ${r.status}`))))
  .then(render)
  .catch((error) => document.getElementById("content").replaceChildren(
    h("p", {class: "error"}, "Could not load the AsyncAPI document: " + error.message)));
"""


def render_page(*, title: str, json_url: str) -> str:
    """The HTML page that renders the AsyncAPI document found at ``json_url``."""
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>{html.escape(title)} — AsyncAPI</title>
<style>{_STYLE}</style>
</head>
<body data-source="{html.escape(json_url, quote=True)}">
<header>
<h1 id="title">{html.escape(title)}</h1>
<p><span id="description"></span> AsyncAPI 3.0.0 ·
<a href="{html.escape(json_url, quote=True)}">{html.escape(json_url)}</a></p>
</header>
<main id="content"><p class="empty">Loading {html.escape(json_url)}…</p></main>
<script>{_SCRIPT}</script>
</body>
</html>
"""
