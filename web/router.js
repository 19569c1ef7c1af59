// The address of a view lives in the URL fragment (`#/connections/{id}/search?query=…`), so the
// back button, a reload and a copied link all show the same view with the same parameters.

/** The current route: its path segments and its parameters. */
export function currentRoute() {
  const raw = location.hash.replace(/^#/, "") || "/";
  const [path, query = ""] = raw.split("?", 2);
  return {
    path,
    segments: path.split("/").filter(Boolean).map(decodeSegment),
    params: new URLSearchParams(query),
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

/** Shows another view, adding an entry to the history. */
export function navigate(path, params) {
  const target = href(path, params);
  if (location.hash === target) window.dispatchEvent(new HashChangeEvent("hashchange"));
  else location.hash = target;
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
