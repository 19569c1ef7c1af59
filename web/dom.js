// Building the page. Elements are created node by node and text is always set as text, so
// nothing that comes from the API (titles, names, messages) is ever parsed as markup.

/**
 * Creates an element. `props` sets attributes; `on…` functions become event listeners;
 * `value` and `checked` are set as properties; `false`, `null` and `undefined` are skipped.
 * Children are nodes or strings (added as text); nested arrays and empty values are flattened.
 */
export function h(tag, props = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (value === false || value === null || value === undefined) continue;
    if (name.startsWith("on") && typeof value === "function") {
      element.addEventListener(name.slice(2), value);
    } else if (name === "value" || name === "checked") {
      element[name] = value;
    } else {
      element.setAttribute(name, value === true ? "" : String(value));
    }
  }
  append(element, children);
  return element;
}

function append(parent, children) {
  for (const child of children) {
    if (Array.isArray(child)) append(parent, child);
    else if (child instanceof Node) parent.append(child);
    else if (child !== null && child !== undefined && child !== false) parent.append(String(child));
  }
}

/** Replaces everything inside `parent` with `children`. */
export function replace(parent, ...children) {
  parent.replaceChildren();
  append(parent, children);
}

/** A message box. `tone` is `success`, `error`, `warning` or `info`. */
export function message(tone, content, { onDismiss, actions = [] } = {}) {
  const box = h(
    "div",
    { class: `message ${tone}`, role: tone === "error" ? "alert" : "status" },
    h("div", { class: "message-text" }, content, actions.length ? h("div", { class: "actions" }, actions) : null),
  );
  if (onDismiss) {
    box.append(
      h("button", {
        type: "button",
        class: "icon-button",
        "aria-label": "Dismiss this message",
        title: "Dismiss",
        onclick: () => {
          box.remove();
          onDismiss();
        },
      }, "×"),
    );
  }
  return box;
}

/**
 * Only absolute http(s) addresses become links or images; anything else (`javascript:`, a bare
 * emoji, …) is not an address. `allowData` also admits inline `data:image/…` images.
 */
export function safeUrl(raw, { allowData = false } = {}) {
  if (typeof raw !== "string" || raw === "") return null;
  try {
    const url = new URL(raw);
    if (url.protocol === "https:" || url.protocol === "http:") return url.href;
    if (allowData && url.protocol === "data:" && /^data:image\//i.test(raw)) return raw;
  } catch {
    // Not a URL at all.
  }
  return null;
}

/**
 * An icon: an emoji, or an image when `value` is an address. `fallback` is shown for neither.
 * A broken image quietly turns into the fallback.
 */
export function iconElement(value, fallback, className) {
  const box = h("span", { class: className, "aria-hidden": "true" });
  const source = safeUrl(value, { allowData: true });
  if (source) {
    const image = h("img", { src: source, alt: "", loading: "lazy", referrerpolicy: "no-referrer" });
    image.addEventListener("error", () => replace(box, fallback), { once: true });
    box.append(image);
  } else {
    box.append(value || fallback);
  }
  return box;
}

const relative = new Intl.RelativeTimeFormat(undefined, { numeric: "auto" });
const exact = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });
const day = new Intl.DateTimeFormat(undefined, { dateStyle: "medium" });
const UNITS = [
  ["year", 365 * 24 * 3600],
  ["month", 30 * 24 * 3600],
  ["week", 7 * 24 * 3600],
  ["day", 24 * 3600],
  ["hour", 3600],
  ["minute", 60],
];

/** Within this long of now a time reads as "3 days ago"; beyond it, as a date. */
const RECENT_SECONDS = 7 * 24 * 3600;

/** "3 days ago", "in 2 hours", "just now". */
export function relativeTime(date, now = Date.now()) {
  const seconds = Math.round((date.getTime() - now) / 1000);
  for (const [unit, size] of UNITS) {
    if (Math.abs(seconds) >= size) return relative.format(Math.trunc(seconds / size), unit);
  }
  return "just now";
}

/**
 * A `<time>` element for an RFC 3339 timestamp, with the exact local time on hover. `relative`
 * reads "2 days ago" within the last week and a date beyond it (so that a list sorted by time
 * shows its order); `date` is always a date. `null` and unreadable values become `missing`.
 */
export function timeElement(iso, { style = "relative", missing = "—" } = {}) {
  const date = iso ? new Date(iso) : null;
  if (!date || Number.isNaN(date.getTime())) return h("span", {}, missing);
  const recent = Math.abs(Date.now() - date.getTime()) < RECENT_SECONDS * 1000;
  const text = style === "relative" && recent ? relativeTime(date) : day.format(date);
  return h("time", { datetime: date.toISOString(), title: exact.format(date) }, text);
}

/**
 * `text` with every occurrence of the query's words marked (`<mark>`), case-insensitively, as
 * a list of strings and elements: nothing is parsed as markup.
 */
export function highlight(text, query) {
  const words = [...new Set((query || "").toLocaleLowerCase().split(/\s+/).filter(Boolean))];
  if (words.length === 0 || !text) return [text];
  const lower = text.toLocaleLowerCase();
  // Lower-casing can change a string's length (rarely); then marking would misplace the ranges.
  if (lower.length !== text.length) return [text];
  const marked = new Array(text.length).fill(false);
  for (const word of words) {
    for (let at = lower.indexOf(word); at !== -1; at = lower.indexOf(word, at + 1)) {
      marked.fill(true, at, at + word.length);
    }
  }
  const parts = [];
  let start = 0;
  for (let i = 1; i <= text.length; i += 1) {
    if (i === text.length || marked[i] !== marked[start]) {
      const piece = text.slice(start, i);
      parts.push(marked[start] ? h("mark", {}, piece) : piece);
      start = i;
    }
  }
  return parts;
}

/** "1 result", "20 results". */
export function plural(count, singular, pluralForm = `${singular}s`) {
  return `${count} ${count === 1 ? singular : pluralForm}`;
}

/**
 * Moves focus to an element that is not a control (a view's heading, a message to read out),
 * without scrolling past it, for keyboard and screen reader users. Such elements take focus
 * only from the app (`tabindex="-1"`) and show no focus ring: there is nothing to operate.
 */
export function focusQuietly(element) {
  if (!element) return;
  element.setAttribute("tabindex", "-1");
  element.focus({ preventScroll: true });
}

/** Moves focus to the view's heading (see `focusQuietly`). */
export function focusHeading(root) {
  focusQuietly(root.querySelector("h1"));
}
