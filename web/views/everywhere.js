// Searching all connected workspaces at once: the app's main view. The query, type filter, sort
// and the workspaces chosen live in the address, so a reload, the back button or a copied link
// shows the same search. A workspace that fails is named beside the others' results.

import * as api from "../api.js";
import { h, iconElement, message, plural, replace } from "../dom.js";
import { redirect, replaceParams } from "../router.js";
import { connectButton, workspaceIcon, workspaceName } from "./connections.js";
import {
  arrowKeys, countdown, emptyState, focusOnSlash, focusRow, rateLimited, resultRow, resultsTable,
  searchAsChanged, searchForm, summary,
} from "./results.js";

const SORTS = [
  ["", "Best match"],
  ["descending", "Newest first"],
  ["ascending", "Oldest first"],
];

export function render({ main, params }) {
  document.title = "Search · notion-connect";

  const { form, input, filter, sort } = searchForm({
    name: "Search all workspaces",
    placeholder: "Search titles in all your workspaces",
    params,
    sorts: SORTS,
    sortLabel: "Order",
    defaultSort: "",
  });
  const chips = h("div", { class: "chips", role: "group", "aria-label": "Workspaces to search" });
  const status = h("div", { class: "status-line", role: "status", "aria-live": "polite" });
  const notices = h("div", { class: "workspace-notices" });
  const problem = h("div", {});
  const results = h("div", { id: "results" });
  const more = h("button", { type: "button", class: "button", hidden: true }, "Load more");

  replace(
    main,
    h("div", { class: "view-header" }, h("h1", {}, "Search all workspaces")),
    form,
    chips,
    status,
    notices,
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
  /** The caller's connections by id, and those the chips narrow the search to (none: all). */
  let connections = new Map();
  let chosen = new Set((params.get("in") ?? "").split(",").filter(Boolean));
  /** Stops the countdowns of rate-limited workspaces and of a rate-limited search. */
  let countdowns = [];
  /** Pages added with Load more since the first page of this search. */
  let appended = 0;
  /** Settles once the chips are drawn: the first results wait for it, so they do not move. */
  let chipsReady = Promise.resolve();

  function stopCountdowns() {
    for (const stop of countdowns) stop();
    countdowns = [];
  }

  function current() {
    return { query: input.value.trim(), filter: filter.value, sort: sort.value };
  }

  function remember() {
    const { query, filter: type, sort: order } = current();
    replaceParams({ query, filter: type, sort: order, in: [...chosen].join(",") });
  }

  function drawChips() {
    replace(chips,
      h("span", { class: "chips-label", "aria-hidden": "true" }, "In:"),
      [...connections.values()].map((connection) => {
        const pressed = chosen.has(connection.id);
        return h("button", {
          type: "button",
          class: "chip",
          "aria-pressed": String(pressed),
          "data-connection": connection.id,
          onclick: () => {
            if (pressed) chosen.delete(connection.id);
            else chosen.add(connection.id);
            drawChips();
            chips.querySelector(`[data-connection="${CSS.escape(connection.id)}"]`)?.focus();
            remember();
            run();
          },
        }, workspaceIcon(connection), " ", workspaceName(connection));
      }),
      chosen.size ? h("button", {
        type: "button",
        class: "chip clear",
        onclick: () => {
          chosen.clear();
          drawChips();
          chips.querySelector(".chip")?.focus();
          remember();
          run();
        },
      }, "All workspaces") : null,
    );
  }

  async function run({ append = false } = {}) {
    cancelTyping();
    stopCountdowns();
    inFlight?.abort();
    const mine = ++generation;
    const controller = new AbortController();
    inFlight = controller;
    const { query, filter: type, sort: order } = current();
    const parameters = new URLSearchParams();
    if (query) parameters.set("query", query);
    if (type) parameters.set("filter", type);
    if (order) parameters.set("sort", order);
    for (const id of chosen) parameters.append("connection_id", id);
    if (append && cursor) parameters.set("cursor", cursor);

    busy(true, append);
    replace(problem);
    let page;
    try {
      page = await api.get(`/search?${parameters}`, { signal: controller.signal });
    } catch (error) {
      if (error.name === "AbortError" || mine !== generation || !alive) return;
      busy(false, append);
      if (!append) {
        replace(results);
        replace(notices);
        shown = 0;
        more.hidden = true;
        status.textContent = "";
      }
      replace(problem, explain(error));
      return;
    }
    await chipsReady;
    if (mine !== generation || !alive) return;
    busy(false, append);
    if (!append) {
      shown = 0;
      appended = 0;
      tbody = null;
      replace(results);
    } else {
      appended += 1;
    }
    replace(notices, page.connections.filter((c) => c.status !== "ok").map(notice));
    let firstNew = null;
    if (!append && page.results.length === 0) {
      replace(results, emptyState(query, type));
    } else {
      if (!tbody) {
        tbody = h("tbody");
        replace(results, resultsTable(tbody, { workspace: true }));
      }
      for (const result of page.results) {
        const row = resultRow(result, { query, workspace: workspaceCell(result) });
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

  function workspaceCell(result) {
    const connection = connections.get(result.connection_id);
    const name = result.workspace_name || (connection ? workspaceName(connection) : "Untitled workspace");
    const initial = name.trim().charAt(0).toUpperCase() || "?";
    return h("td", { class: "workspace" },
      iconElement(result.workspace_icon, initial, "workspace-icon"), " ", h("span", { class: "workspace-name" }, name));
  }

  /** What happened to one workspace of the search, when it was not all right. */
  function notice(outcome) {
    const name = outcome.workspace_name || "A workspace";
    switch (outcome.status) {
      case "needs_reauth":
      case "unreadable":
        return message("warning", h("p", {}, h("strong", {}, `${name}: `), outcome.status === "unreadable"
          ? "its stored tokens can no longer be read, so it was not searched. Reconnect it to search it again."
          : "Notion no longer accepts this connection, so it was not searched. Reconnect it to search it again."), {
          actions: [connectButton(`Reconnect ${name}`, (failure) => replace(problem, message("error", failure.message)))],
        });
      case "rate_limited": {
        const wait = h("span", {}, ".");
        if (outcome.retry_after) {
          // Counts down. On the first page the search then runs again by itself; further down,
          // running again would drop the pages loaded, and Load more asks the workspace again.
          countdowns.push(countdown(outcome.retry_after,
            (left) => { wait.textContent = `; searching it again in ${plural(left, "second")}.`; },
            () => {
              if (appended === 0) run();
              else wait.textContent = "; Load more searches it again.";
            }));
        }
        return message("info", h("p", {}, h("strong", {}, `${name}: `),
          "Notion is limiting how often this workspace can be searched", wait));
      }
      case "timeout":
        return message("info", h("p", {}, h("strong", {}, `${name}: `),
          "Notion took too long to answer; these results are from the other workspaces. Load more asks it again."));
      default:
        return message("warning", h("p", {}, h("strong", {}, `${name}: `),
          "Notion answered with an error; these results are from the other workspaces."));
    }
  }

  function explain(error) {
    const retry = h("button", { type: "button", class: "button small", onclick: () => run() }, "Try again");
    switch (error.code) {
      case "notion_rate_limited": {
        // The wait counts down, and the search runs again by itself when it is over.
        const limited = rateLimited("your workspaces", error.retryAfter, () => run(), retry);
        countdowns.push(limited.stop);
        return limited.element;
      }
      case "notion_timeout":
        return message("error", h("p", {}, "Notion took too long to answer. Try again."), { actions: [retry] });
      case "notion_error":
        return message("error", h("p", {}, "Notion answered with an error. Try again in a moment."), { actions: [retry] });
      case "connection_needs_reauth":
        return message("warning", h("p", {}, "Notion no longer accepts the workspaces searched. Reconnect them to search them."), {
          actions: [connectButton("Reconnect", (failure) => replace(problem, message("error", failure.message)))],
        });
      case "not_found":
        // A chosen workspace was disconnected meanwhile: search the others.
        chosen = new Set([...chosen].filter((id) => connections.has(id)));
        return message("error", h("p", {}, "A workspace you chose is no longer connected."), { actions: [retry] });
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

  /** Loads the caller's connections for the chips; resolves to whether there are any. */
  async function loadConnections() {
    const { items } = await api.get("/connections");
    if (!alive) return false;
    // Nothing to search yet: connecting a workspace comes first.
    if (items.length === 0) {
      redirect("/connections");
      return false;
    }
    connections = new Map(items.map((connection) => [connection.id, connection]));
    chosen = new Set([...chosen].filter((id) => connections.has(id)));
    drawChips();
    return true;
  }

  function failedToLoad(error) {
    if (!alive) return;
    status.textContent = "";
    replace(problem, message("error", h("p", {}, error.message)));
  }

  replace(status, h("span", { class: "spinner", "aria-hidden": "true" }), "Loading your workspaces…");
  if (chosen.size === 0) {
    // Every workspace: the search need not wait for the list of them.
    chipsReady = loadConnections().catch(failedToLoad);
    run();
  } else {
    // Some chosen in the address: check they are still connected before searching them.
    loadConnections().then((any) => any && run(), failedToLoad);
  }

  // A workspace connected or disconnected in another tab: new chips, and search again.
  const stopChanges = api.onConnectionsChanged(() => {
    loadConnections().then((any) => any && run(), failedToLoad);
  });

  return () => {
    alive = false;
    cancelTyping();
    stopCountdowns();
    inFlight?.abort();
    stopSlash();
    stopArrows();
    stopChanges();
  };
}
