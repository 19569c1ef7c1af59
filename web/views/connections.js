// The signed-in user's Notion connections: connect, reconnect, disconnect, and what the OAuth
// callback reported when the browser came back from Notion.

import * as api from "../api.js";
import { focusHeading, focusQuietly, h, iconElement, message, replace, timeElement } from "../dom.js";
import { href, replaceParams } from "../router.js";

/** What each `error=` code of the OAuth callback means for the person who just tried. */
const CALLBACK_ERRORS = {
  access_denied: "You cancelled in Notion, so no workspace was connected.",
  invalid_state:
    "That connection attempt expired, was already used, or was started in another browser. Please try again.",
  exchange_failed: "Notion did not accept the authorization, so nothing was connected. Please try again.",
  notion_unavailable: "Notion could not be reached or answered with an error. Please try again in a moment.",
  server_error: "Something went wrong on our side while saving the connection. Please try again.",
};

/**
 * A button that starts Notion's consent flow: it asks the API for an authorization address (the
 * answer also sets the cookie that ties the flow to this browser) and sends the browser there.
 * Failures go to `onError`.
 */
export function connectButton(label, onError) {
  const button = h("button", { type: "button", class: "button primary" }, label);
  button.addEventListener("click", async () => {
    button.disabled = true;
    button.textContent = "Opening Notion…";
    try {
      const { authorize_url: url } = await api.request("POST", "/notion/oauth/authorize");
      location.assign(url);
    } catch (error) {
      button.disabled = false;
      button.textContent = label;
      onError(error);
    }
  });
  return button;
}

export function workspaceName(connection) {
  return connection.workspace_name || "Untitled workspace";
}

export function workspaceIcon(connection) {
  const initial = workspaceName(connection).trim().charAt(0).toUpperCase() || "?";
  return iconElement(connection.workspace_icon, initial, "workspace-icon");
}

export function render({ main, params, notice }) {
  document.title = "Connections · notion-connect";
  const messages = h("div", { id: "messages" });
  const list = h("div", { "aria-busy": "true" }, h("p", { class: "muted" }, "Loading your connections…"));
  const showError = (error) => replace(messages, message("error", error.message, { onDismiss: () => {} }));
  const dialog = confirmDialog();
  // Hidden while there is no connection: the empty state has the same button, with the why.
  const connect = connectButton("Connect a Notion workspace", showError);
  connect.hidden = true;
  let alive = true;

  replace(
    main,
    h("div", { class: "view-header" }, h("h1", {}, "Connections"), connect),
    notice,
    messages,
    list,
    dialog.element,
  );

  async function load() {
    let items;
    try {
      ({ items } = await api.get("/connections"));
    } catch (error) {
      if (!alive) return;
      list.removeAttribute("aria-busy");
      replace(list, message("error", [
        h("p", {}, error.message),
        h("button", { type: "button", class: "button small", onclick: load }, "Try again"),
      ]));
      return;
    }
    if (!alive) return;
    list.removeAttribute("aria-busy");
    connect.hidden = items.length === 0;
    replace(list, items.length ? connectionList(items) : emptyState(showError));
    return items;
  }

  function connectionList(items) {
    return h("ul", { class: "connection-list", "aria-label": "Connected workspaces" },
      items.map((connection) => h("li", { class: "card connection", "data-connection-id": connection.id },
        workspaceIcon(connection),
        h("div", {},
          h("h2", {}, workspaceName(connection), " ", statusBadge(connection.status)),
          h("p", { class: "meta" },
            h("span", {}, ownerText(connection.owner)),
            h("span", {}, "Connected ", timeElement(connection.created_at, { style: "date" })),
            h("span", {}, connection.last_used_at
              ? ["Last used ", timeElement(connection.last_used_at)]
              : "Not used yet"),
          ),
        ),
        h("div", { class: "row-actions" },
          connection.status === "needs_reauth" || connection.status === "unreadable"
            ? connectButton("Reconnect", showError)
            : h("a", {
              class: "button primary small",
              href: href(`/connections/${encodeURIComponent(connection.id)}/search`),
            }, "Search"),
          h("button", {
            type: "button",
            class: "button danger small",
            onclick: (event) => disconnect(connection, event.currentTarget),
          }, "Disconnect"),
        ),
      )),
    );
  }

  async function disconnect(connection, trigger) {
    const name = workspaceName(connection);
    const confirmed = await dialog.ask({
      title: `Disconnect ${name}?`,
      text: "notion-connect deletes the stored tokens of this workspace and asks Notion to revoke them. " +
        "You can connect it again at any time.",
      confirm: "Disconnect",
    });
    if (!confirmed) return trigger.focus();
    trigger.disabled = true;
    try {
      await api.request("DELETE", `/connections/${encodeURIComponent(connection.id)}`);
    } catch (error) {
      trigger.disabled = false;
      // Already gone (for example from another tab) is what was asked for.
      if (error.status !== 404) return showError(error);
    }
    api.connectionsChanged();
    replaceParams({});
    replace(messages, message("success", `Disconnected ${name}.`, { onDismiss: () => {} }));
    await load();
    focusHeading(main);
  }

  load().then((items) => {
    if (items) showOutcome(items);
  });
  // Connected or disconnected in another tab.
  const stopChanges = api.onConnectionsChanged(() => load());

  function showOutcome(items) {
    const connected = params.get("connected");
    const failed = params.get("error");
    if (!connected && !failed) return;
    // The message is for this visit only: a reload or a copied link should not repeat it.
    const dismiss = () => replaceParams({});
    if (connected) {
      api.connectionsChanged();
      const connection = items.find((item) => item.id === connected);
      const text = connection
        ? [`Connected ${workspaceName(connection)}. `, h("a", { href: href(`/connections/${encodeURIComponent(connected)}/search`) }, "Search it now"), "."]
        : "The workspace was connected.";
      replace(messages, message("success", text, { onDismiss: dismiss }));
    } else {
      const text = CALLBACK_ERRORS[failed] ?? `The workspace could not be connected (${failed}). Please try again.`;
      replace(messages, message(failed === "access_denied" ? "warning" : "error", text, { onDismiss: dismiss }));
    }
    // Back from Notion: the outcome is the first thing to read, and Tab goes on from there.
    focusQuietly(messages.firstElementChild);
  }

  return () => {
    alive = false;
    stopChanges();
    dialog.element.remove();
  };
}

function emptyState(onError) {
  return h("section", { class: "card empty", "aria-labelledby": "empty-title" },
    h("div", { class: "empty-icon", "aria-hidden": "true" }, "🔌"),
    h("h2", { id: "empty-title" }, "No workspace connected yet"),
    h("p", {}, "Notion asks which pages to share. Only those can be searched here, and you can disconnect at any time."),
    connectButton("Connect a Notion workspace", onError),
  );
}

function statusBadge(status) {
  switch (status) {
    case "active":
      return h("span", { class: "badge active" }, "Active");
    case "needs_reauth":
      return h("span", { class: "badge attention" }, "Needs reconnecting");
    case "unreadable":
      return h("span", { class: "badge attention", title: "Its stored tokens can no longer be decrypted" }, "Needs reconnecting");
    default:
      return h("span", { class: "badge attention" }, status.replaceAll("_", " "));
  }
}

function ownerText(owner) {
  if (!owner || owner.type === "workspace") return "Connected for the whole workspace";
  const who = [owner.name, owner.email && `<${owner.email}>`].filter(Boolean).join(" ");
  return who ? `Owner: ${who}` : "Owner: a Notion user";
}

/** A modal confirmation built on `<dialog>`: Escape and Cancel both say no. */
function confirmDialog() {
  const title = h("h2", { id: "confirm-title" });
  const text = h("p", { id: "confirm-text" });
  const yes = h("button", { type: "submit", class: "button danger solid", value: "yes" });
  const no = h("button", { type: "submit", class: "button", value: "no" }, "Cancel");
  const element = h("dialog", { "aria-labelledby": "confirm-title", "aria-describedby": "confirm-text" },
    h("form", { method: "dialog" }, title, text, h("div", { class: "actions" }, no, yes)),
  );
  return {
    element,
    ask({ title: heading, text: body, confirm }) {
      title.textContent = heading;
      text.textContent = body;
      yes.textContent = confirm;
      element.returnValue = "";
      element.showModal();
      no.focus();
      return new Promise((resolve) => {
        element.addEventListener("close", () => resolve(element.returnValue === "yes"), { once: true });
      });
    },
  };
}
