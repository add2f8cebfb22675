// Shared by every page: element building that never parses markup, the theme switch, and
// fetches that understand the API's errors. Strings from the network only ever reach the DOM
// through textContent or attribute setters, so a host name like "<script>" stays text.

/** Build an element: h("td", {class: "num"}, "42", otherNode). Children are text or nodes. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") el.className = v;
    else if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

export function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
  return el;
}

/** The API's error answer as one sentence, with the position of a filter error when it names one. */
export async function apiError(resp) {
  let body = null;
  try {
    body = await resp.json();
  } catch {
    body = null;
  }
  const message = (body && (body.error || body.message)) || `${resp.status} ${resp.statusText}`;
  const pos = body ? (body.position ?? body.pos ?? body.offset ?? body.column ?? null) : null;
  return { status: resp.status, message: String(message), position: Number.isInteger(pos) ? pos : null };
}

/** GET JSON with an optional ETag; resolves {status, etag, body} (body null on 304). */
export async function getJSON(url, etag = null) {
  const headers = { Accept: "application/json" };
  if (etag) headers["If-None-Match"] = etag;
  const resp = await fetch(url, { headers, credentials: "same-origin" });
  if (resp.status === 304) return { status: 304, etag, body: null };
  if (!resp.ok) {
    const err = await apiError(resp);
    const e = new Error(err.message);
    e.api = err;
    throw e;
  }
  return { status: resp.status, etag: resp.headers.get("ETag"), body: await resp.json() };
}

/** Show a filter error under its input, with a caret at the position the API named. */
export function showFilterError(input, box, err) {
  clear(box);
  input.removeAttribute("aria-invalid");
  if (!err) {
    box.hidden = true;
    return;
  }
  input.setAttribute("aria-invalid", "true");
  box.hidden = false;
  box.append(h("span", { class: "err-msg" }, err.message));
  if (err.position !== null && err.position !== undefined) {
    const q = input.value;
    const at = Math.max(0, Math.min(err.position, q.length));
    box.append(
      h("span", { class: "err-where" }, ` at position ${at}: `),
      h("code", { class: "err-query" }, q.slice(0, at), h("mark", {}, q.slice(at, at + 1) || " "), q.slice(at + 1)),
    );
    input.focus();
    input.setSelectionRange(at, Math.min(q.length, at + 1));
  }
}

// ---- theme ---------------------------------------------------------------------------------
const THEME_KEY = "ng-theme";

export function currentTheme() {
  return document.documentElement.dataset.theme || "light";
}

function applyTheme(theme) {
  document.documentElement.dataset.theme = theme;
  const btn = document.getElementById("theme-toggle");
  if (btn) {
    btn.setAttribute("aria-pressed", theme === "dark" ? "true" : "false");
    btn.textContent = theme === "dark" ? "Light theme" : "Dark theme";
  }
  document.dispatchEvent(new CustomEvent("ng-theme", { detail: theme }));
}

export function initTheme() {
  let theme = null;
  try {
    theme = localStorage.getItem(THEME_KEY);
  } catch {
    theme = null;
  }
  if (theme !== "light" && theme !== "dark") {
    theme = window.matchMedia && window.matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light";
  }
  applyTheme(theme);
  const btn = document.getElementById("theme-toggle");
  if (btn) {
    btn.addEventListener("click", () => {
      const next = currentTheme() === "dark" ? "light" : "dark";
      try {
        localStorage.setItem(THEME_KEY, next);
      } catch {
        /* private mode: the switch still works for this page */
      }
      applyTheme(next);
    });
  }
}

/** Read a CSS custom property of the current theme (the graph and map draw on canvas/SVG). */
export function cssVar(name) {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
}

// ---- formatting ----------------------------------------------------------------------------
export function fmtTime(ts) {
  if (ts === null || ts === undefined || ts === "") return "";
  const d = new Date(Number(ts) * 1000);
  if (Number.isNaN(d.getTime())) return String(ts);
  return d.toISOString().replace("T", " ").slice(0, 19);
}

export function fmtNum(v, digits = 1) {
  if (v === null || v === undefined || v === "") return "";
  const n = Number(v);
  if (!Number.isFinite(n)) return String(v);
  return Number.isInteger(n) ? String(n) : n.toFixed(digits);
}

/** Query parameters of the page's URL, so a filter survives a reload and can be shared. */
export function pageParam(name) {
  return new URLSearchParams(window.location.search).get(name) || "";
}

export function setPageParam(name, value) {
  const u = new URL(window.location.href);
  if (value) u.searchParams.set(name, value);
  else u.searchParams.delete(name);
  window.history.replaceState(null, "", u);
}
