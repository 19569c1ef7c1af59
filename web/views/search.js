// Searching one connected workspace. The query, type filter and sort live in the address, so a
// reload, the back button or a copied link shows the same search.

import * as api from "../api.js";
import { h, message, replace } from "../dom.js";
import { href, replaceParams } from "../router.js";
import { connectButton, workspaceName } from "./connections.js";
import {
  arrowKeys, emptyState, focusOnSlash, focusRow, rateLimited, resultRow, resultsTable, searchAsChanged,
  searchForm, summary,
} from "./results.js";

const SORTS = [
  ["descending", "Newest first"],
  ["ascending", "Oldest first"],
];

export function render({ main, id, params }) {
  document.title = "Search · notion-connect";
  const path = `/connections/${encodeURIComponent(id)}`;

  const heading = h("h1", {}, "Search");
  const { form, input, filter, sort } = searchForm({
    name: "Search this workspace",
    placeholder: "Search page and data source titles",
    params,
    sorts: SORTS,
    sortLabel: "Last edited",
    defaultSort: "descending",
  });
  const status = h("div", { class: "status-line", role: "status", "aria-live": "polite" });
  const problem = h("div", {});
  const results = h("div", { id: "results" });
  const more = h("button", { type: "button", class: "button", hidden: true }, "Load more");

  // The heading comes first, so that Tab from it (where the app puts focus) reaches the link.
  replace(
    main,
    h("div", { class: "view-header" }, heading, h("a", { class: "back-link", href: href("/connections") }, "← Connections")),
    form,
    status,
    problem,
    results,
    h("div", { class: "load-more" }, more),
  );

  let alive = true;
  /** Counts searches, so that an answer to an older one is recognised and dropped. */
  let generation = 0;
  let inFlight = null;
  let shown = 0;
  let cursor = null;
  let tbody = null;
  let stopCountdown = () => {};

  api.get(path).then(
    (connection) => {
      if (!alive) return;
      heading.textContent = `Search ${workspaceName(connection)}`;
      document.title = `Search ${workspaceName(connection)} · notion-connect`;
    },
    // Errors surface through the search itself (404, 409, …).
    () => {},
  );

  function current() {
    return { query: input.value.trim(), filter: filter.value, sort: sort.value };
  }

  function remember() {
    const { query, filter: type, sort: order } = current();
    replaceParams({ query, filter: type, sort: order === "descending" ? "" : order });
  }

  async function run({ append = false } = {}) {
    cancelTyping();
    stopCountdown();
    inFlight?.abort();
    const mine = ++generation;
    const controller = new AbortController();
    inFlight = controller;
    const { query, filter: type, sort: order } = current();
    const parameters = new URLSearchParams({ sort: order });
    if (query) parameters.set("query", query);
    if (type) parameters.set("filter", type);
    if (append && cursor) parameters.set("cursor", cursor);

    busy(true, append);
    replace(problem);
    let page;
    try {
      page = await api.get(`${path}/search?${parameters}`, { signal: controller.signal });
    } catch (error) {
      if (error.name === "AbortError" || mine !== generation || !alive) return;
      busy(false, append);
      if (!append) {
        replace(results);
        shown = 0;
        more.hidden = true;
        status.textContent = "";
      }
      replace(problem, explain(error));
      return;
    }
    if (mine !== generation || !alive) return;
    busy(false, append);
    if (!append) {
      shown = 0;
      tbody = null;
      replace(results);
    }
    let firstNew = null;
    if (!append && page.results.length === 0) {
      replace(results, emptyState(query, type));
    } else {
      if (!tbody) {
        tbody = h("tbody");
        replace(results, resultsTable(tbody));
      }
      for (const result of page.results) {
        const row = resultRow(result, { query });
        firstNew ??= row;
        tbody.append(row);
      }
      shown += page.results.length;
    }
    cursor = page.has_more ? page.next_cursor : null;
    more.hidden = !cursor;
    status.textContent = summary(shown, Boolean(cursor));
    // Load more keeps the reader in place: on the first of the results it added.
    if (append) focusRow(firstNew);
  }

  function busy(on, append) {
    results.setAttribute("aria-busy", String(on));
    more.disabled = on;
    more.textContent = on && append ? "Loading…" : "Load more";
    if (on) {
      replace(status, h("span", { class: "spinner", "aria-hidden": "true" }), append ? "Loading more…" : "Searching…");
    }
  }

  function explain(error) {
    const retry = h("button", { type: "button", class: "button small", onclick: () => run() }, "Try again");
    switch (error.code) {
      case "notion_rate_limited": {
        // The wait counts down, and the search runs again by itself when it is over.
        const limited = rateLimited("this workspace", error.retryAfter, () => run(), retry);
        stopCountdown = limited.stop;
        return limited.element;
      }
      case "notion_timeout":
        return message("error", h("p", {}, "Notion took too long to answer. Try again."), { actions: [retry] });
      case "notion_error":
        return message("error", h("p", {}, "Notion answered with an error. Try again in a moment."), { actions: [retry] });
      case "connection_needs_reauth":
      case "connection_unreadable":
        return message("warning", h("p", {}, error.code === "connection_unreadable"
          ? "This connection's stored tokens can no longer be read, so it cannot be searched. Reconnect the workspace to continue."
          : "Notion no longer accepts this connection, so it cannot be searched. Reconnect the workspace to continue."), {
          actions: [connectButton("Reconnect", (failure) => replace(problem, message("error", failure.message)))],
        });
      case "not_found":
        return message("error", [
          h("p", {}, "This connection does not exist, or it was disconnected."),
          h("a", { href: href("/connections") }, "Back to your connections"),
        ]);
      default:
        return message("error", h("p", {}, error.message), { actions: [retry] });
    }
  }

  const cancelTyping = searchAsChanged({ form, input, filter, sort }, () => {
    remember();
    run();
  });
  more.addEventListener("click", () => run({ append: true }));

  const stopSlash = focusOnSlash(input);
  const stopArrows = arrowKeys(input, results);
  // Disconnected in another tab: searching again says so.
  const stopChanges = api.onConnectionsChanged(() => run());

  run();

  return () => {
    alive = false;
    cancelTyping();
    stopCountdown();
    inFlight?.abort();
    stopSlash();
    stopArrows();
    stopChanges();
  };
}
