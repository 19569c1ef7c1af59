// The app's entry point: learns how the server is set up, restores the session, keeps the page
// frame (banner, navigation, account) current and shows the view the address asks for.

import * as api from "./api.js";
import { h, message, replace, focusHeading } from "./dom.js";
import { currentRoute, redirect, safeReturnPath } from "./router.js";
import * as signIn from "./views/signin.js";
import * as connections from "./views/connections.js";
import * as search from "./views/search.js";
import * as everywhere from "./views/everywhere.js";
import * as admin from "./views/admin.js";

const main = document.getElementById("main");
const frame = {
  banner: document.getElementById("sandbox-banner"),
  nav: document.getElementById("nav"),
  adminLink: document.getElementById("nav-admin"),
  account: document.getElementById("account"),
  accountName: document.getElementById("account-name"),
  signOut: document.getElementById("sign-out"),
};

/** What `GET /info` says; assumed closed and real until it answers. */
let info = { registration_open: false, notion_sandbox: false, public_url: location.origin };
/** Undoes what the current view set up outside `main` (timers, key handlers, requests). */
let leaveView = null;
/** A note for the next view to show once (for example after signing out). */
let notice = null;
let rendered = false;

/** Views by route. `auth` views need a session; `guest` views are for signed-out visitors. */
function match(segments) {
  const [first, id, third, ...rest] = segments;
  // Searching is the main view (it sends someone without a connection to connect one first).
  if (segments.length === 0) return { redirect: "/search" };
  if (first === "search" && segments.length === 1) return { view: everywhere, auth: true };
  if (first === "login" && segments.length === 1) return { view: signIn, mode: "login", guest: true };
  if (first === "register" && segments.length === 1) return { view: signIn, mode: "register", guest: true };
  if (first === "connections" && segments.length === 1) return { view: connections, auth: true };
  if (first === "connections" && third === "search" && rest.length === 0) {
    return { view: search, id, auth: true };
  }
  if (first === "admin" && segments.length === 1) return { view: admin, auth: true };
  return { view: null };
}

function show() {
  leaveView?.();
  leaveView = null;
  const route = currentRoute();
  const target = match(route.segments);
  const user = api.currentUser();

  if (target.redirect) return redirect(target.redirect);
  if (target.auth && !user) return redirect("/login", { next: route.full });
  if (target.guest && user) {
    const next = safeReturnPath(route.params.get("next"));
    return next ? location.replace(`#${next}`) : redirect("/search");
  }

  markCurrentSection(route.segments[0]);
  const context = {
    main,
    route,
    params: route.params,
    user,
    info,
    mode: target.mode,
    id: target.id,
    notice: takeNotice(),
  };
  if (!target.view) {
    document.title = "Not found · notion-connect";
    replace(
      main,
      h("h1", {}, "Nothing here"),
      h("p", {}, "This address does not lead to a page of the app. ", h("a", { href: "#/search" }, "Go to the search"), "."),
    );
  } else {
    leaveView = target.view.render(context) ?? null;
  }
  // Keyboard and screen reader users land on the new view's heading; the first page load
  // leaves focus where the browser puts it, unless the view has news to read out first (it
  // focuses that itself).
  const active = document.activeElement;
  const viewFocused = active !== main && main.contains(active);
  if (rendered && !viewFocused) focusHeading(main);
  rendered = true;
  // The frame and the first view appear together, so nothing moves once it is on screen.
  document.body.classList.remove("booting");
}

function takeNotice() {
  const taken = notice;
  notice = null;
  return taken;
}

function markCurrentSection(section) {
  for (const link of frame.nav.querySelectorAll("a")) {
    if (link.dataset.section === section) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
}

function updateFrame(user) {
  frame.nav.hidden = !user;
  frame.account.hidden = !user;
  frame.adminLink.hidden = !user?.is_admin;
  frame.accountName.textContent = user ? `Signed in as ${user.username}` : "";
}

api.onSessionChange((user, reason) => {
  updateFrame(user);
  if (user) {
    // Signed in here or in another tab: leave the sign-in view for where the visitor was going.
    if (rendered && match(currentRoute().segments).guest) show();
    return;
  }
  const notes = {
    "signed-out": ["success", "You are signed out."],
    ended: ["warning", "Your session has ended. Please sign in again."],
    elsewhere: ["info", "You signed out in another tab."],
  };
  const [tone, text] = notes[reason] ?? ["info", "You are signed out."];
  notice = message(tone, text);
  const route = currentRoute();
  const stay = reason !== "signed-out" && !match(route.segments).guest;
  redirect("/login", { next: stay ? route.full : undefined });
});

frame.signOut.addEventListener("click", async () => {
  frame.signOut.disabled = true;
  try {
    await api.signOut();
  } catch {
    // The session is forgotten here whatever the server said; signOut reported it.
  } finally {
    frame.signOut.disabled = false;
  }
});

// The skip link targets `#main`, which the router would read as a route: move focus instead.
document.getElementById("skip-link").addEventListener("click", (event) => {
  event.preventDefault();
  main.focus();
});

/**
 * The refresh cookie and the Notion flow only work at the server's public address; a page opened
 * under another name for the same server (127.0.0.1 for localhost, say) says where to go.
 */
function warnAboutOrigin() {
  if (!info.public_url || info.public_url === location.origin) return;
  const banner = document.getElementById("origin-banner");
  replace(
    banner,
    "This server expects to be used at ",
    h("a", { href: info.public_url + "/" + location.hash }, info.public_url),
    ". Here, staying signed in and connecting Notion will not work.",
  );
  banner.hidden = false;
}

async function boot() {
  // How the server is set up and whether this browser has a session are asked at once.
  const [setup] = await Promise.allSettled([api.get("/info", { auth: false }), api.restoreSession()]);
  if (setup.status === "rejected") {
    const error = setup.reason;
    replace(
      main,
      message("error", [
        h("p", {}, error instanceof api.ApiError ? error.message : "The app could not start."),
        h("button", { type: "button", class: "button small", onclick: () => location.reload() }, "Try again"),
      ]),
    );
    document.body.classList.remove("booting");
    return;
  }
  info = setup.value;
  frame.banner.hidden = !info.notion_sandbox;
  warnAboutOrigin();
  updateFrame(api.currentUser());
  window.addEventListener("hashchange", show);
  show();
}

boot();
