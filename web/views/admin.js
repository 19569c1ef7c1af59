// Listings for administrators: every user and every connection, a page at a time.

import * as api from "../api.js";
import { h, message, plural, replace, timeElement } from "../dom.js";

const STATUS = { active: "Active", needs_reauth: "Needs reconnecting", unreadable: "Unreadable" };

export function render({ main, user }) {
  document.title = "Admin · notion-connect";
  if (!user.is_admin) {
    replace(main,
      h("h1", {}, "Admin"),
      message("error", "Only administrators can see this page."),
    );
    return;
  }
  let alive = true;
  replace(
    main,
    h("div", { class: "view-header" }, h("h1", {}, "Admin")),
    listing({
      title: "Users",
      path: "/admin/users",
      columns: ["Username", "Role", "Created"],
      cells: (item) => [
        item.username,
        item.is_admin ? "Administrator" : "User",
        timeElement(item.created_at, { style: "date" }),
      ],
      alive: () => alive,
    }),
    listing({
      title: "Connections",
      path: "/admin/connections",
      columns: ["User", "Workspace", "Status", "Created"],
      cells: (item) => [
        item.username || item.user_id,
        [item.workspace_name || "Untitled workspace", h("br"), h("span", { class: "muted small" }, item.workspace_id)],
        STATUS[item.status] ?? item.status,
        timeElement(item.created_at, { style: "date" }),
      ],
      alive: () => alive,
    }),
  );
  return () => {
    alive = false;
  };
}

/** One keyset-paginated table with its own "Load more". */
function listing({ title, path, columns, cells, alive }) {
  const id = `admin-${title.toLowerCase()}`;
  const tbody = h("tbody");
  const count = h("p", { class: "muted small", id: `${id}-count`, role: "status" });
  const problem = h("div");
  const more = h("button", { type: "button", class: "button", id: `${id}-more`, hidden: true }, "Load more");
  const table = h("table", { class: "data", id: `${id}-table`, hidden: true },
    h("thead", {}, h("tr", {}, columns.map((name) => h("th", { scope: "col" }, name)))),
    tbody,
  );
  let cursor = null;
  let shown = 0;

  async function load() {
    more.disabled = true;
    more.textContent = "Loading…";
    replace(problem);
    try {
      const query = cursor ? `?cursor=${encodeURIComponent(cursor)}` : "";
      const page = await api.get(`${path}${query}`);
      if (!alive()) return;
      for (const item of page.items) {
        const values = cells(item);
        tbody.append(h("tr", {}, values.map((value, i) => h("td", { "data-label": columns[i] }, value))));
      }
      shown += page.items.length;
      cursor = page.next_cursor ?? null;
      table.hidden = shown === 0;
      count.textContent = shown === 0 ? `No ${title.toLowerCase()} yet.` : `Showing ${plural(shown, title.toLowerCase().replace(/s$/, ""))}.`;
    } catch (error) {
      if (!alive()) return;
      replace(problem, message("error", error.message));
    } finally {
      more.disabled = false;
      more.textContent = "Load more";
      more.hidden = !cursor;
    }
  }
  more.addEventListener("click", load);
  load();

  return h("section", { class: "admin-section", "aria-labelledby": id },
    h("h2", { id }, title),
    count,
    problem,
    table,
    h("div", { class: "load-more" }, more),
  );
}
