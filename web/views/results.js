// What the two search views share: their controls, their results table and their empty state.

import { h, iconElement, safeUrl, timeElement } from "../dom.js";

/** How long typing must pause before a search is sent. */
export const TYPING_PAUSE_MS = 300;
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

/** The results table; with `workspace`, a column says which workspace each result is in. */
export function resultsTable(tbody, { workspace = false } = {}) {
  return h("table", { class: "data results" },
    h("caption", { class: "visually-hidden" }, "Search results"),
    h("thead", {}, h("tr", {},
      h("th", { scope: "col" }, h("span", { class: "visually-hidden" }, "Icon")),
      h("th", { scope: "col" }, "Title"),
      workspace ? h("th", { scope: "col" }, "Workspace") : null,
      h("th", { scope: "col" }, "Type"),
      h("th", { scope: "col" }, "Last edited"),
    )),
    tbody,
  );
}

/** A row of the results table; `workspace` is the cell naming the result's workspace, if any. */
export function resultRow(result, workspace = null) {
  const fallback = result.object === "page" ? "📄" : "🗃️";
  const icon = result.icon?.type === "emoji" ? result.icon.emoji : result.icon?.url;
  const url = safeUrl(result.url);
  const title = url
    ? h("a", { href: url, target: "_blank", rel: "noopener noreferrer" }, result.title,
      h("span", { class: "visually-hidden" }, " (opens Notion in a new tab)"))
    : h("span", {}, result.title);
  return h("tr", {},
    h("td", { class: "icon" }, iconElement(icon, fallback)),
    h("td", { class: "title" }, title, result.in_trash ? [" ", h("span", { class: "badge trash" }, "In trash")] : null),
    workspace,
    h("td", { class: "kind" }, KINDS[result.object] ?? result.object),
    h("td", { class: "when" }, timeElement(result.last_edited_time, { missing: "Unknown" })),
  );
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
