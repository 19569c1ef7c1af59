// The address of a view lives in the URL fragment (`#/connections/{id}/search?query=…`), so the
// back button, a reload and a copied link all show the same view with the same parameters.

/** The current route: its path segments, its parameters, and the whole of it (`path?query`). */
export function currentRoute() {
  const raw = location.hash.replace(/^#/, "") || "/";
  const [path, query = ""] = raw.split("?", 2);
  return {
    path,
    segments: path.split("/").filter(Boolean).map(decodeSegment),
    params: new URLSearchParams(query),
    full: raw,
  };
}

function decodeSegment(segment) {
  try {
    return decodeURIComponent(segment);
  } catch {
    return segment;
  }
}

/** The fragment for a path and parameters; empty parameters are left out. */
export function href(path, params = {}) {
  const query = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "") query.set(name, value);
  }
  const search = query.toString();
  return `#${path}${search ? `?${search}` : ""}`;
}

/**
 * Shows another view in place of the current address, without a history entry: for the app's
 * own redirects, so the back button never lands on an address that sends it forward again.
 */
export function redirect(path, params) {
  location.replace(href(path, params));
}

/** Changes the current view's parameters in place: no new history entry, no re-render. */
export function replaceParams(params) {
  history.replaceState(history.state, "", href(currentRoute().path, params));
}

/**
 * A route given back after signing in: only an in-app path (`/…`, never `//host`), so a crafted
 * link cannot send anyone elsewhere.
 */
export function safeReturnPath(value) {
  return typeof value === "string" && /^\/(?!\/)/.test(value) ? value : null;
}
