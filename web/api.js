// Talking to the API: requests, problem+json errors, and the session.
//
// The access token lives in this module's memory only. The refresh token is an HttpOnly cookie
// that scripts cannot read, so a page load restores the session by asking the server for a new
// access token. Every refresh rotates that cookie and the server ends the whole session when a
// rotated token is presented again, so refreshes are serialised across all tabs of this origin
// with a Web Lock: a tab that waits for the lock sends the cookie its predecessor just received.

const BASE = "/api/v1";
/** Set while this browser holds a session, so that a first visit does not ask for one in vain. Not a secret. */
const HINT_KEY = "notion-connect.signed-in";
const LOCK_NAME = "notion-connect.refresh";

/** A failed request, with the fields of its problem+json document. */
export class ApiError extends Error {
  constructor(status, problem = {}, retryAfter = null) {
    super(problem.detail || problem.title || `The request failed (HTTP ${status}).`);
    this.name = "ApiError";
    /** The HTTP status, or 0 when the service could not be reached. */
    this.status = status;
    this.code = problem.code || (status === 0 ? "unreachable" : "error");
    this.detail = problem.detail || "";
    /** Seconds from `Retry-After`, when the answer carried it. */
    this.retryAfter = retryAfter;
  }
}

let session = null;
let refreshTimer = 0;
let refreshing = null;
const listeners = new Set();

/** The signed-in user, or `null`. */
export function currentUser() {
  return session?.user ?? null;
}

/**
 * Calls `listener(user, reason)` whenever the session starts or ends. `reason` is `signed-in`,
 * `signed-out`, `ended` (the server no longer accepts it) or `elsewhere` (another tab).
 */
export function onSessionChange(listener) {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

function announce(reason) {
  for (const listener of listeners) listener(currentUser(), reason);
}

function hint(present) {
  try {
    if (present) localStorage.setItem(HINT_KEY, "1");
    else localStorage.removeItem(HINT_KEY);
  } catch {
    // Storage may be disabled; sessions then last as long as the page.
  }
}

function hinted() {
  try {
    return localStorage.getItem(HINT_KEY) === "1";
  } catch {
    return false;
  }
}

function start(body, reason) {
  const previous = session?.user.id;
  session = { accessToken: body.access_token, user: body.user };
  hint(true);
  clearTimeout(refreshTimer);
  // Renew a little before the token runs out: a minute early, or a quarter of a short lifetime.
  const lifetime = Math.max(Number(body.expires_in) || 0, 4);
  const renewIn = lifetime - Math.min(60, lifetime / 4);
  refreshTimer = setTimeout(() => refresh().catch(() => {}), renewIn * 1000);
  if (previous !== body.user.id) announce(reason);
}

function end(reason, { forget = true } = {}) {
  clearTimeout(refreshTimer);
  const wasSignedIn = session !== null;
  session = null;
  if (forget) hint(false);
  if (wasSignedIn) announce(reason);
}

async function problemOf(response) {
  let problem = {};
  if ((response.headers.get("content-type") || "").includes("json")) {
    try {
      problem = await response.json();
    } catch {
      // An unreadable body: the status says enough.
    }
  }
  const seconds = Number.parseInt(response.headers.get("retry-after") || "", 10);
  return new ApiError(response.status, problem, Number.isFinite(seconds) ? seconds : null);
}

async function send(method, path, { body, signal, auth = true } = {}) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (auth && session) headers.Authorization = `Bearer ${session.accessToken}`;
  try {
    return await fetch(BASE + path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal,
      credentials: "same-origin",
      cache: "no-store",
    });
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError(0, { detail: "The service cannot be reached. Check your connection and try again." });
  }
}

/**
 * Sends a request and returns the parsed JSON body (`null` for 204). Throws `ApiError` for any
 * other outcome. An authenticated request that gets 401 is retried once after a refresh.
 */
export async function request(method, path, options = {}) {
  const authenticated = options.auth !== false;
  let response = await send(method, path, options);
  if (response.status === 401 && authenticated && session) {
    if (await refresh()) response = await send(method, path, options);
    if (response.status === 401) end("ended");
  }
  if (!response.ok) throw await problemOf(response);
  return response.status === 204 ? null : response.json();
}

export const get = (path, options) => request("GET", path, options);

/**
 * Exchanges the refresh cookie for a new access token. Resolves `true` on success and `false`
 * when the server has no session for this browser; throws when it cannot be reached. Concurrent
 * callers in this tab share one request.
 */
export function refresh() {
  refreshing ??= withRefreshLock(async () => {
    const response = await send("POST", "/auth/refresh", { auth: false });
    if (response.ok) {
      start(await response.json(), "signed-in");
      return true;
    }
    if (response.status === 401) {
      end("ended");
      return false;
    }
    throw await problemOf(response);
  }).finally(() => {
    refreshing = null;
  });
  return refreshing;
}

function withRefreshLock(task) {
  // Web Locks exist in every current browser on https and on localhost.
  return navigator.locks ? navigator.locks.request(LOCK_NAME, task) : task();
}

/** Restores the session of a browser that had one. Resolves to whether it is signed in. */
export async function restoreSession() {
  if (!hinted()) return false;
  try {
    return await refresh();
  } catch {
    return false;
  }
}

export async function signIn(username, password) {
  const body = await request("POST", "/auth/login", { body: { username, password }, auth: false });
  start(body, "signed-in");
  return body.user;
}

export function register(username, password) {
  return request("POST", "/auth/register", { body: { username, password }, auth: false });
}

export async function signOut() {
  try {
    await request("POST", "/auth/logout", { auth: true });
  } finally {
    end("signed-out");
  }
}

// Another tab signed out (the hint disappeared) or in (it appeared).
window.addEventListener("storage", (event) => {
  if (event.key !== HINT_KEY) return;
  if (event.newValue === null && session) end("elsewhere", { forget: false });
  else if (event.newValue === "1" && !session) restoreSession();
});

// Connections connected or disconnected in one tab are shown in the others: tabs of this origin
// tell each other through a BroadcastChannel (messages carry no data, only that something
// changed). `connectionsChanged` tells the others; `onConnectionsChanged` listens.
const changes = typeof BroadcastChannel === "function" ? new BroadcastChannel("notion-connect.connections") : null;
const changeListeners = new Set();
changes?.addEventListener("message", () => {
  for (const listener of changeListeners) listener();
});

export function connectionsChanged() {
  changes?.postMessage("changed");
}

/** Calls `listener` when another tab connects or disconnects a workspace; returns what stops it. */
export function onConnectionsChanged(listener) {
  changeListeners.add(listener);
  return () => changeListeners.delete(listener);
}
