// What the two search views share: their controls, their results table and their empty state.

import { focusQuietly, h, highlight, iconElement, message, plural, safeUrl, timeElement } from "../dom.js";

/** How long typing must pause before a search is sent. */
const TYPING_PAUSE_MS = 300;
export const FILTERS = [
  ["", "All types"],
  ["page", "Pages"],
  ["data_source", "Data sources"],
];
const KINDS = { page: "Page", data_source: "Data source", database: "Database" };

/** The option of `options` named `value`, or the first. */
export function allowed(options, value) {
  return options.some(([v]) => v === value) ? value : options[0][0];
}

export function select(id, options, selected) {
  return h("select", { id, name: id.replace("search-", "") },
    options.map(([value, label]) => h("option", { value, selected: value === selected }, label)),
  );
}

/**
 * The search form: the query, the type and the order side by side, their boxes on one line,
 * and the hint below them (the `/` shortcut only where there is a keyboard to press it on).
 */
export function searchForm({ name, placeholder, params, sorts, sortLabel, defaultSort }) {
  const input = h("input", {
    id: "search-query",
    type: "search",
    name: "query",
    value: params.get("query") ?? "",
    placeholder,
    autocomplete: "off",
    spellcheck: "false",
    "aria-describedby": "search-hint",
  });
  const filter = select("search-filter", FILTERS, allowed(FILTERS, params.get("filter") ?? ""));
  const sort = select("search-sort", sorts, allowed(sorts, params.get("sort") || defaultSort));
  const form = h("form", { class: "search-form", role: "search", "aria-label": name },
    h("div", { class: "field query" }, h("label", { for: "search-query" }, "Title contains"), input),
    h("div", { class: "field" }, h("label", { for: "search-filter" }, "Type"), filter),
    h("div", { class: "field" }, h("label", { for: "search-sort" }, sortLabel), sort),
    h("p", { class: "hint", id: "search-hint" }, "Results update as you type.",
      h("span", { class: "keyboard-only" }, " Press ", h("kbd", {}, "/"), " to come back here, ",
        h("kbd", {}, "↓"), " to go through the results.")),
  );
  return { form, input, filter, sort };
}

/**
 * The results table; with `workspace`, a column says which workspace each result is in. The
 * columns have fixed widths, so they stay put from one set of results to the next.
 */
export function resultsTable(tbody, { workspace = false } = {}) {
  return h("table", { class: `data results${workspace ? " with-workspace" : ""}` },
    h("caption", { class: "visually-hidden" }, "Search results"),
    h("thead", {}, h("tr", {},
      h("th", { scope: "col", class: "col-icon" }, h("span", { class: "visually-hidden" }, "Icon")),
      h("th", { scope: "col", class: "col-title" }, "Title"),
      workspace ? h("th", { scope: "col", class: "col-workspace" }, "Workspace") : null,
      h("th", { scope: "col", class: "col-kind" }, "Type"),
      h("th", { scope: "col", class: "col-when" }, "Last edited"),
    )),
    tbody,
  );
}

/** The title Notion's search gives a page or data source without one (see the API's `title`). */
const UNTITLED = "Untitled";

/**
 * A row of the results table: the title links to Notion, with the words of `query` marked;
 * `workspace` is the cell naming the result's workspace, if any. Every row has one element
 * that takes focus (the link, or the title itself), for the arrow keys and Load more.
 */
export function resultRow(result, { query = "", workspace = null } = {}) {
  const fallback = result.object === "page" ? "📄" : "🗃️";
  const icon = result.icon?.type === "emoji" ? result.icon.emoji : result.icon?.url;
  const url = safeUrl(result.url);
  // An empty title is shown as Notion shows it, set apart from real titles.
  const text = result.title === UNTITLED
    ? h("span", { class: "untitled" }, UNTITLED)
    : highlight(result.title, query);
  const title = url
    ? h("a", { href: url, target: "_blank", rel: "noopener noreferrer", class: "result-target" }, text,
      h("span", { class: "visually-hidden" }, " (opens Notion in a new tab)"))
    : h("span", { class: "result-target", tabindex: "-1" }, text);
  return h("tr", {},
    h("td", { class: "icon" }, iconElement(icon, fallback)),
    h("td", { class: "title" }, title, result.in_trash ? [" ", h("span", { class: "badge trash" }, "In trash")] : null),
    workspace,
    h("td", { class: "kind" }, KINDS[result.object] ?? result.object),
    h("td", { class: "when" }, timeElement(result.last_edited_time, { missing: "Unknown" })),
  );
}

/** Moves focus to the row's title (after Load more: the first of the new results). */
export function focusRow(row) {
  const target = row?.querySelector(".result-target");
  if (target?.tagName === "A") target.focus();
  else focusQuietly(target);
}

/**
 * The arrow keys move through the results: Down from the search box goes to the first result,
 * Up from the first goes back to the box, Home and End to the first and last. Returns what
 * undoes it.
 */
export function arrowKeys(input, results) {
  const targets = () => [...results.querySelectorAll(".result-target")];
  const onKey = (event) => {
    if (event.altKey || event.ctrlKey || event.metaKey || event.shiftKey) return;
    const all = targets();
    if (all.length === 0) return;
    const from = all.indexOf(document.activeElement);
    let to = null;
    if (event.target === input) {
      if (event.key === "ArrowDown") to = 0;
    } else if (from !== -1) {
      if (event.key === "ArrowDown") to = Math.min(from + 1, all.length - 1);
      else if (event.key === "ArrowUp") to = from - 1;
      else if (event.key === "Home") to = 0;
      else if (event.key === "End") to = all.length - 1;
    }
    if (to === null) return;
    event.preventDefault();
    if (to < 0) input.focus();
    else focusRow(all[to].closest("tr"));
  };
  input.addEventListener("keydown", onKey);
  results.addEventListener("keydown", onKey);
  return () => {
    input.removeEventListener("keydown", onKey);
    results.removeEventListener("keydown", onKey);
  };
}

/**
 * Counts `seconds` down, calling `tick(left)` every second and `done()` at zero. Returns what
 * stops it.
 */
export function countdown(seconds, tick, done) {
  let left = Math.max(1, Math.ceil(seconds));
  tick(left);
  const timer = setInterval(() => {
    left -= 1;
    if (left > 0) return tick(left);
    clearInterval(timer);
    done();
  }, 1000);
  return () => clearInterval(timer);
}

/**
 * Runs `search` as people change the form: at once on Enter or a new type or order, and after
 * a pause in typing. Returns `cancel`, which drops a search still waiting for the pause (a
 * search started another way calls it, and so does leaving the view).
 */
export function searchAsChanged({ form, input, filter, sort }, search) {
  let typingTimer = 0;
  const cancel = () => clearTimeout(typingTimer);
  const now = () => {
    cancel();
    search();
  };
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    now();
  });
  input.addEventListener("input", () => {
    cancel();
    typingTimer = setTimeout(search, TYPING_PAUSE_MS);
  });
  for (const control of [filter, sort]) control.addEventListener("change", now);
  return cancel;
}

/**
 * The message for a search Notion is rate limiting: `what` says what is limited; with
 * `seconds`, the wait counts down and `again` runs when it is over, and nothing is offered to
 * press meanwhile (the service would only answer with the same wait). Without, `retry` is
 * offered. Returns the message and what stops the countdown.
 */
export function rateLimited(what, seconds, again, retry) {
  const text = h("span", {}, "Try again in a little while.");
  const stop = seconds
    ? countdown(seconds, (left) => { text.textContent = `Searching again in ${plural(left, "second")}.`; }, again)
    : () => {};
  const element = message("warning", [h("p", {}, `Notion is limiting how often ${what} can be searched. `, text)], {
    actions: seconds ? [] : [retry],
  });
  return { element, stop };
}

/** What the status line says about a finished search, for everyone and for screen readers. */
export function summary(shown, more) {
  if (shown === 0) return "No results.";
  return `Showing ${plural(shown, "result")}${more ? "; more are available" : ""}.`;
}

export function emptyState(query, type) {
  const what = type === "page" ? "pages" : type === "data_source" ? "data sources" : "pages or data sources";
  return h("section", { class: "card empty" },
    h("div", { class: "empty-icon", "aria-hidden": "true" }, "🔍"),
    h("h2", {}, query ? `No ${what} match “${query}”` : `No ${what} found`),
    h("p", { class: "muted" },
      "Notion searches titles only, and shows only what was shared with notion-connect when the workspace was " +
      "connected. Pages shared a moment ago may take a little while to appear."),
  );
}

/** Makes `/` (outside a text field) jump to `input`; returns what undoes it. */
export function focusOnSlash(input) {
  const focusSearch = (event) => {
    if (event.key !== "/" || event.ctrlKey || event.metaKey || event.altKey) return;
    if (event.target.closest?.("input, textarea, select, [contenteditable]")) return;
    event.preventDefault();
    input.focus();
    input.select();
  };
  document.addEventListener("keydown", focusSearch);
  return () => document.removeEventListener("keydown", focusSearch);
}
