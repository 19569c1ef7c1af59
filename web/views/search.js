// Searching one connected workspace. The query, type filter and sort live in the address, so a
// reload, the back button or a copied link shows the same search.

import * as api from "../api.js";
import { h, message, plural, replace } from "../dom.js";
import { href, replaceParams } from "../router.js";
import { connectButton, workspaceName } from "./connections.js";
import {
  FILTERS, TYPING_PAUSE_MS, allowed, emptyState, focusOnSlash, resultRow, resultsTable, select,
} from "./results.js";

const SORTS = [
  ["descending", "Newest first"],
  ["ascending", "Oldest first"],
];

export function render({ main, id, params }) {
  document.title = "Search · notion-connect";
  const path = `/connections/${encodeURIComponent(id)}`;

  const heading = h("h1", {}, "Search");
  const input = h("input", {
    id: "search-query",
    type: "search",
    name: "query",
    value: params.get("query") ?? "",
    placeholder: "Search page and data source titles",
    autocomplete: "off",
    spellcheck: "false",
    "aria-describedby": "search-hint",
  });
  const filter = select("search-filter", FILTERS, allowed(FILTERS, params.get("filter") ?? ""));
  const sort = select("search-sort", SORTS, allowed(SORTS, params.get("sort") ?? "descending"));
  const form = h("form", { class: "search-form", role: "search", "aria-label": "Search this workspace" },
    h("div", { class: "field query" },
      h("label", { for: "search-query" }, "Title contains"),
      input,
      h("p", { class: "hint", id: "search-hint" }, "Results update as you type. Press ", h("kbd", {}, "/"), " to come back here."),
    ),
    h("div", { class: "field" }, h("label", { for: "search-filter" }, "Type"), filter),
    h("div", { class: "field" }, h("label", { for: "search-sort" }, "Last edited"), sort),
  );
  const status = h("div", { class: "status-line", role: "status", "aria-live": "polite" });
  const problem = h("div", {});
  const results = h("div", { id: "results" });
  const more = h("button", { type: "button", class: "button", hidden: true }, "Load more");

  replace(
    main,
    h("a", { class: "back-link", href: href("/connections") }, "← Connections"),
    h("div", { class: "view-header" }, heading),
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
  let typingTimer = 0;
  let shown = 0;
  let cursor = null;
  let tbody = null;

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
    clearTimeout(typingTimer);
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
    if (!append && page.results.length === 0) {
      replace(results, emptyState(query, type));
    } else {
      if (!tbody) {
        tbody = h("tbody");
        replace(results, resultsTable(tbody));
      }
      for (const result of page.results) tbody.append(resultRow(result));
      shown += page.results.length;
    }
    cursor = page.has_more ? page.next_cursor : null;
    more.hidden = !cursor;
    status.textContent = shown === 0 ? "" : `Showing ${plural(shown, "result")}${cursor ? "; more are available" : ""}.`;
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
      case "notion_rate_limited":
        return message("warning", [
          h("p", {}, "Notion is limiting how often this workspace can be searched. ",
            error.retryAfter ? `Try again in ${plural(error.retryAfter, "second")}.` : "Try again in a little while."),
        ], { actions: [retry] });
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

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    remember();
    run();
  });
  input.addEventListener("input", () => {
    clearTimeout(typingTimer);
    typingTimer = setTimeout(() => {
      remember();
      run();
    }, TYPING_PAUSE_MS);
  });
  for (const control of [filter, sort]) {
    control.addEventListener("change", () => {
      remember();
      run();
    });
  }
  more.addEventListener("click", () => run({ append: true }));

  const stopSlash = focusOnSlash(input);

  run();

  return () => {
    alive = false;
    clearTimeout(typingTimer);
    inFlight?.abort();
    stopSlash();
  };
}
