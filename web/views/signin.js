// Signing in, and creating an account where the server allows it. The API's problem `detail` is
// shown next to the field it concerns; anything else above the button.

import * as api from "../api.js";
import { h, plural, replace } from "../dom.js";
import { href } from "../router.js";

/** Which field a problem code is about. */
const FIELD_OF = {
  invalid_username: "username",
  username_taken: "username",
  password_too_short: "password",
  password_too_long: "password",
  password_too_weak: "password",
  invalid_credentials: "password",
};

export function render({ main, mode, info, params, notice }) {
  const registering = mode === "register";
  const next = params.get("next") || undefined;
  document.title = `${registering ? "Create an account" : "Sign in"} · notion-connect`;

  if (registering && !info.registration_open) {
    replace(
      main,
      h("div", { class: "narrow" },
        h("section", { class: "card" },
          h("h1", {}, "Create an account"),
          h("p", {}, "This server does not take new accounts. Ask its administrator for one."),
          h("p", {}, h("a", { href: href("/login", { next }) }, "Sign in")),
        ),
      ),
    );
    return;
  }

  const fields = {
    username: field("username", "Username", {
      autocomplete: "username",
      autocapitalize: "none",
      spellcheck: "false",
      hint: registering ? "3 to 32 characters: letters, digits, dots, underscores and hyphens, starting with a letter or digit." : null,
    }),
    password: field("password", "Password", {
      type: "password",
      autocomplete: registering ? "new-password" : "current-password",
      hint: registering ? "At least 8 characters. Very common passwords are refused." : null,
    }),
  };
  const formError = h("p", { class: "form-error", id: "form-error", role: "alert", hidden: true });
  const submit = h("button", { type: "submit", class: "button primary wide" }, registering ? "Create account" : "Sign in");
  const form = h(
    "form",
    { novalidate: true, "aria-describedby": "form-error" },
    formError,
    fields.username.wrapper,
    fields.password.wrapper,
    submit,
  );

  const clearErrors = () => {
    formError.hidden = true;
    for (const f of Object.values(fields)) f.setError(null);
  };
  const showError = (error) => {
    const target = fields[FIELD_OF[error.code]];
    if (target) {
      target.setError(error.message);
      target.input.focus();
      return;
    }
    formError.textContent = explain(error);
    formError.hidden = false;
  };

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors();
    const username = fields.username.input.value.trim();
    const password = fields.password.input.value;
    if (!username) return fields.username.setError("Enter a username.", { focus: true });
    if (!password) return fields.password.setError("Enter a password.", { focus: true });

    submit.disabled = true;
    submit.textContent = registering ? "Creating your account…" : "Signing in…";
    let created = false;
    try {
      if (registering) {
        await api.register(username, password);
        created = true;
      }
      // Once signed in, the app leaves this view for the page the visitor was going to.
      await api.signIn(username, password);
    } catch (error) {
      if (!(error instanceof api.ApiError)) throw error;
      if (created) {
        formError.textContent = `Your account was created, but signing in failed: ${explain(error)}`;
        formError.hidden = false;
      } else {
        showError(error);
      }
    } finally {
      submit.disabled = false;
      submit.textContent = registering ? "Create account" : "Sign in";
    }
  });

  const other = registering
    ? h("p", { class: "switch-mode" }, "Already have an account? ", h("a", { href: href("/login", { next }) }, "Sign in"))
    : info.registration_open
      ? h("p", { class: "switch-mode" }, "New here? ", h("a", { href: href("/register", { next }) }, "Create an account"))
      : null;

  replace(
    main,
    h("div", { class: "narrow" },
      notice,
      h("section", { class: "card", "aria-labelledby": "auth-title" },
        h("h1", { id: "auth-title" }, registering ? "Create an account" : "Sign in"),
        h("p", { class: "muted" }, registering
          ? "An account keeps your Notion connections. Your password is stored only as a hash."
          : "Sign in to connect and search your Notion workspaces."),
        form,
        other,
      ),
    ),
  );
}

/** A labelled input with a hint and a place for its error, linked for assistive technology. */
function field(name, label, { hint, type = "text", ...attributes }) {
  const errorId = `${name}-error`;
  const hintId = hint ? `${name}-hint` : null;
  const input = h("input", { id: name, name, type, required: true, ...attributes });
  const error = h("p", { class: "field-error", id: errorId, hidden: true });
  const describe = () => {
    const ids = [hintId, error.hidden ? null : errorId].filter(Boolean).join(" ");
    if (ids) input.setAttribute("aria-describedby", ids);
    else input.removeAttribute("aria-describedby");
  };
  const wrapper = h("div", { class: "field" },
    h("label", { for: name }, label),
    input,
    hint ? h("p", { class: "hint", id: hintId }, hint) : null,
    error,
  );
  const setError = (text, { focus = false } = {}) => {
    error.textContent = text ?? "";
    error.hidden = !text;
    if (text) input.setAttribute("aria-invalid", "true");
    else input.removeAttribute("aria-invalid");
    describe();
    if (focus) input.focus();
  };
  describe();
  return { wrapper, input, setError };
}

function explain(error) {
  switch (error.code) {
    case "too_many_attempts":
      return error.retryAfter
        ? `Too many attempts. Try again in ${plural(error.retryAfter, "second")}.`
        : "Too many attempts. Try again in a little while.";
    case "registration_disabled":
      return "This server does not take new accounts.";
    case "service_unavailable":
      return "The server is busy right now. Try again in a few seconds.";
    default:
      return error.message;
  }
}
