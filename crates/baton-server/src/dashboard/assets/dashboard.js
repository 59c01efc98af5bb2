// The Baton dashboard: reads what Baton does from the JSON API every two seconds and draws it.
// Read-only. Text from the API (app names, versions, notes, event messages) is put in the page
// as text nodes only, never parsed as HTML. The token comes from the URL fragment, which
// `baton dashboard` prints; it is kept in sessionStorage and removed from the address bar.
"use strict";

/** Where the token is kept for this tab. */
const TOKEN_KEY = "baton.token";
/** How often the page reads the API again. */
const REFRESH_MS = 2000;
/** How many past deployments each environment shows. */
const RECENT_DEPLOYMENTS = 5;
/** How many events of the current (or last) deployment are shown, newest first. */
const RECENT_EVENTS = 10;

/** The API refused the token (401): the page stops and says how to get a new one. */
class TokenRefused extends Error {}

// === The token ===

/** The token from the URL fragment (`#token=...`), else the one this tab kept. */
function takeToken() {
  const fragment = new URLSearchParams(location.hash.slice(1));
  const fromUrl = fragment.get("token");
  if (fromUrl) {
    sessionStorage.setItem(TOKEN_KEY, fromUrl);
    // Out of the address bar, the history and any bookmark.
    history.replaceState(null, "", location.pathname + location.search);
  }
  return sessionStorage.getItem(TOKEN_KEY);
}

// === Reading the API ===

/** GETs an API path as JSON with the token; throws TokenRefused on 401, Error otherwise. */
async function api(token, path) {
  const response = await fetch(path, {
    headers: { Authorization: "Bearer " + token },
    cache: "no-store",
    credentials: "omit",
  });
  if (response.status === 401) {
    throw new TokenRefused(path);
  }
  if (!response.ok) {
    let message = response.statusText;
    try {
      message = (await response.json()).error.message;
    } catch (_) {
      // Not the API's error shape: keep the status text.
    }
    throw new Error(`${path}: ${response.status} ${message}`);
  }
  return response.json();
}

/** Everything the page shows, read in parallel. */
async function gather(token) {
  const [units, hosts] = await Promise.all([api(token, "/v1/apps"), api(token, "/v1/hosts")]);
  const apps = [...new Set(units.map((u) => u.app))];
  const releases = new Map(
    await Promise.all(
      apps.map(async (app) => [app, await api(token, `/v1/apps/${enc(app)}/releases`)]),
    ),
  );
  const details = await Promise.all(units.map((unit) => unitDetail(token, unit)));
  return { units, hosts, releases, details };
}

/** One environment's history, breakers, flags and the events of its current or last deployment. */
async function unitDetail(token, unit) {
  const base = `/v1/apps/${enc(unit.app)}`;
  const env = `env=${enc(unit.env)}`;
  const [history, breakers, flags] = await Promise.all([
    api(token, `${base}/deployments?${env}&limit=${RECENT_DEPLOYMENTS}`),
    api(token, `${base}/breakers?${env}`),
    api(token, `${base}/flags?${env}`),
  ]);
  const shown = unit.deployment || history[0] || null;
  const events = shown ? (await api(token, `/v1/deployments/${shown.id}`)).events : [];
  return { history, breakers, flags, shown, events };
}

function enc(text) {
  return encodeURIComponent(text);
}

// === Building the page (DOM methods and text nodes only) ===

/** An element with a class (optional) and children: strings become text nodes. */
function el(tag, className, ...children) {
  const node = document.createElement(tag);
  if (className) {
    node.className = className;
  }
  node.append(...children.filter((c) => c !== null && c !== undefined).map(toNode));
  return node;
}

/** A node as is; anything else as a text node, never as markup. */
function toNode(child) {
  return child instanceof Node ? child : document.createTextNode(String(child));
}

/** A class name from API text: only lower-case letters, digits and dashes survive. */
function tone(word) {
  return String(word).toLowerCase().replace(/[^a-z0-9]+/g, "-");
}

/** A table with a header row and one row per item; `cells` gives each row's cells. */
function table(headings, items, cells) {
  const head = el("tr", null, ...headings.map((h) => el("th", null, h)));
  const rows = items.map((item) => el("tr", null, ...cells(item)));
  return el("table", null, el("thead", null, head), el("tbody", null, ...rows));
}

/** A table cell with text (or nodes) and an optional class. */
function td(content, className) {
  return el("td", className || null, content);
}

/** A labelled fact: "label value". */
function fact(label, value) {
  return el("span", null, el("span", "label", label + " "), value);
}

function clock(ms) {
  return ms === null || ms === undefined ? "-" : new Date(ms).toISOString().slice(11, 19);
}

function dateTime(ms) {
  return ms === null || ms === undefined
    ? "-"
    : new Date(ms).toISOString().slice(0, 19).replace("T", " ");
}

function seconds(ms) {
  return (ms / 1000).toFixed(1) + " s";
}

/** `sha256:` and the first 12 hex digits. */
function shortDigest(digest) {
  return digest ? digest.slice(0, "sha256:".length + 12) : "-";
}

/** Green for what is well, amber for what waits, red for what failed. */
function phaseTone(phase) {
  switch (phase) {
    case "succeeded":
    case "healthy":
    case "idle":
    case "pass":
    case "closed":
    case "connected":
      return "good";
    case "failed":
    case "rolled_back":
    case "aborting":
    case "unhealthy":
    case "fail":
    case "open":
    case "lost":
      return "bad";
    default:
      return "warn";
  }
}

function badge(word) {
  return el("span", "badge " + phaseTone(word), word);
}

// === Sections ===

/** One app in one environment. */
function unitSection(unit, releases, detail) {
  const section = el("section", "unit");
  section.dataset.app = unit.app;
  section.dataset.env = unit.env;
  section.append(
    el("h2", null, unit.app, " ", el("span", "label", "in " + unit.env), " ", badge(unit.phase)),
    servingFacts(unit, releases),
  );
  const serving = releases.find((r) => r.version === unit.release);
  if (serving && serving.notes) {
    section.append(el("p", "facts", el("span", "label", "notes "), el("span", "notes", serving.notes)));
  }
  if (unit.deployment) {
    section.append(deploymentInProgress(unit));
  }
  section.append(el("h3", null, "Instances"), instancesTable(unit));
  if (unit.traffic.length > 0) {
    section.append(el("h3", null, "Traffic"), trafficTable(unit.traffic));
  }
  const breakers = breakersPart(detail.breakers);
  if (breakers) {
    section.append(breakers);
  }
  if (detail.flags.length > 0) {
    section.append(el("h3", null, "Flags"), flagsTable(detail.flags));
  }
  if (detail.history.length > 0) {
    section.append(el("h3", null, "Last deployments"), historyTable(detail.history));
  }
  if (detail.events.length > 0) {
    section.append(
      el("h3", null, `Events of deployment #${detail.shown.id}`),
      eventsTable(detail.events.slice(-RECENT_EVENTS).reverse()),
    );
  }
  return section;
}

function servingFacts(unit, releases) {
  const serving = releases.find((r) => r.version === unit.release);
  const healthy = unit.instances.filter((i) => i.state === "healthy" && i.in_split).length;
  const split = unit.split.map((s) => `${s.release} ${s.weight} %`).join(", ") || "-";
  return el(
    "p",
    "facts",
    fact("release", el("span", "release", unit.release || "none")),
    fact("digest", el("span", "mono", shortDigest(serving && serving.digest))),
    fact("since", dateTime(unit.since)),
    fact("healthy", `${healthy}/${unit.instances_wanted}`),
    fact("split", split),
    fact("listen", unit.listen),
  );
}

/** Strategy, step, canary weight, the verdict so far, and whether it is held or paused. */
function deploymentInProgress(unit) {
  const d = unit.deployment;
  const box = el("div", "deployment notice");
  const held = [];
  if (d.intents.pause || d.phase === "paused") {
    held.push("paused");
  }
  if (d.hold.lost.length > 0) {
    held.push("held for lost hosts: " + d.hold.lost.join(", "));
  }
  box.append(
    el("h3", null, `Deployment #${d.id} in progress`),
    el(
      "p",
      "facts",
      fact("from", d.from || "-"),
      fact("to", d.to),
      fact("strategy", d.strategy),
      fact("phase", badge(d.phase)),
      fact("step", String(d.step)),
      d.strategy === "canary" || d.strategy === "dark" ? fact("canary weight", `${d.weight} %`) : null,
      fact("running for", seconds(d.duration_ms)),
      held.length > 0 ? fact("state", el("span", "warn", held.join("; "))) : null,
    ),
  );
  if (d.reason) {
    box.append(el("p", "facts", fact("reason", d.reason)));
  }
  if (unit.verdict) {
    const v = unit.verdict;
    box.append(
      el(
        "p",
        "facts",
        fact("verdict", badge(v.outcome)),
        fact("at step", String(v.step)),
        fact("at", clock(v.at)),
        el("span", null, v.summary),
      ),
    );
  }
  return box;
}

function instancesTable(unit) {
  if (unit.instances.length === 0) {
    return el("p", "label", "no instances");
  }
  return table(
    ["instance", "release", "host", "address", "state", "in split", "in flight", "requests", "restarts"],
    unit.instances,
    (i) => [
      td(i.id, "mono"),
      td(i.release),
      td(i.host),
      td(i.address, "mono"),
      td(i.state, "state " + phaseTone(i.state)),
      td(i.in_split ? "yes" : "no", "in-split"),
      td(String(i.in_flight)),
      td(String(i.requests)),
      td(String(i.restarts)),
    ],
  );
}

function trafficTable(traffic) {
  return table(
    ["release", "requests", "2xx", "4xx", "5xx", "connect errors", "timeouts", "p50", "p99"],
    traffic,
    (t) => [
      td(t.release),
      td(String(t.requests)),
      td(String(t.status[1])),
      td(String(t.status[3])),
      td(String(t.status[4]), t.status[4] > 0 ? "bad" : null),
      td(String(t.connect_errors)),
      td(String(t.timeouts)),
      td(latency(t.p50_ms)),
      td(latency(t.p99_ms)),
    ],
  );
}

function latency(ms) {
  return ms === null || ms === undefined ? "-" : ms.toFixed(1) + " ms";
}

/** The breakers and the ejected instances, or null when the app has neither. */
function breakersPart(view) {
  if (view.breakers.length === 0 && view.ejected.length === 0) {
    return null;
  }
  const part = el("div", "breakers", el("h3", null, "Circuit breakers"));
  if (view.breakers.length > 0) {
    part.append(
      table(["breaker", "path", "state", "since", "requests", "error rate", "p99", "flag"], view.breakers, (b) => {
        const figures = b.state === "closed" ? b.window : b.last;
        return [
          td(b.name),
          td(b.path, "mono"),
          td(b.state, phaseTone(b.state)),
          td(clock(b.since)),
          td(String(figures.requests)),
          td((figures.error_rate * 100).toFixed(1) + " %"),
          td(latency(figures.p99_ms)),
          td(b.flag || "-"),
        ];
      }),
    );
  }
  if (view.ejected.length > 0) {
    part.append(
      el("h3", null, "Ejected instances"),
      table(["instance", "release", "until", "ejections"], view.ejected, (e) => [
        td(e.instance, "mono"),
        td(e.release),
        td(clock(e.until)),
        td(String(e.ejections)),
      ]),
    );
  }
  return part;
}

function flagsTable(flags) {
  return table(["flag", "state", "from", "changed", "held off by"], flags, (f) => [
    td(f.name),
    td(f.summary),
    td(f.source === "live" ? `live, by ${f.actor || "?"}` : "baton.toml"),
    td(dateTime(f.changed_at)),
    td(f.forced_off || "-", f.forced_off ? "bad" : null),
  ]);
}

function historyTable(history) {
  return table(
    ["#", "started", "from", "to", "strategy", "outcome", "took", "trigger", "reason"],
    history,
    (d) => [
      td(String(d.id)),
      td(dateTime(d.created_at)),
      td(d.from || "-"),
      td(d.to),
      td(d.strategy),
      td(d.phase, phaseTone(d.phase)),
      td(seconds(d.duration_ms)),
      td(d.trigger),
      td(d.reason || "", "message"),
    ],
  );
}

function eventsTable(events) {
  return table(["at", "kind", "message"], events, (e) => [
    td(clock(e.at)),
    td(e.kind),
    td(e.message, "message"),
  ]);
}

function hostsSection(hosts) {
  const section = el("section", "hosts", el("h2", null, "Hosts"));
  if (hosts.length === 0) {
    section.append(el("p", "label", "No [hosts.NAME] in baton.toml: every instance runs on this machine."));
    return section;
  }
  section.append(
    table(
      ["host", "address", "state", "drained", "agent version", "instances", "last seen"],
      hosts,
      (h) => [
        td(h.name),
        td(h.address, "mono"),
        td(h.state, phaseTone(h.state)),
        td(h.drained ? "yes" : "no"),
        td(h.agent_version || "-"),
        td(String(h.instances)),
        td(dateTime(h.last_seen)),
      ],
    ),
  );
  return section;
}

// === The page ===

function render(data) {
  const sections = data.units.map((unit, n) =>
    unitSection(unit, data.releases.get(unit.app) || [], data.details[n]),
  );
  if (sections.length === 0) {
    sections.push(el("p", "notice", "No apps in baton.toml."));
  }
  sections.push(hostsSection(data.hosts));
  document.getElementById("main").replaceChildren(...sections);
}

function setStatus(text, isError) {
  const status = document.getElementById("status");
  status.textContent = text;
  status.className = isError ? "status error" : "status";
}

/** Shown instead of the data when there is no token, or the API refused it. */
function askForToken(why) {
  setStatus(why, true);
  document
    .getElementById("main")
    .replaceChildren(
      el(
        "div",
        "notice",
        el("p", null, why),
        el(
          "p",
          null,
          "Run ",
          el("code", null, "baton dashboard"),
          " where ",
          el("code", null, "baton up"),
          " runs and open the URL it prints (it carries a read-only token after the #).",
        ),
      ),
    );
}

/** Reads and draws, then comes back in REFRESH_MS; a refused token stops the loop. */
async function refresh(token) {
  try {
    render(await gather(token));
    setStatus(`Updated ${clock(Date.now())} UTC, every ${REFRESH_MS / 1000} s. Read-only.`, false);
  } catch (e) {
    if (e instanceof TokenRefused) {
      sessionStorage.removeItem(TOKEN_KEY);
      askForToken("The API refused the token: it was replaced (`baton dashboard --rotate`, or a new data directory).");
      return;
    }
    // Keep what is shown; say that it is stale.
    setStatus(`Cannot read or show Baton's state (${e.message}); retrying. Shown: the last one.`, true);
  }
  setTimeout(() => refresh(token), REFRESH_MS);
}

function start() {
  const token = takeToken();
  if (!token) {
    askForToken("No API token.");
    return;
  }
  refresh(token);
}

start();
