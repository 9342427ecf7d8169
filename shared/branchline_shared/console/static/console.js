// Branchline console: which htmx error answers are swapped into the page, and what the RM is
// told when a request fails (#12).
//
// The htmx-config (base.html) swaps no 4xx or 5xx. A 4xx is swapped only when it is one of
// the console's own error fragments: it names where it goes (HX-Retarget) and carries the
// Console-Error-Fragment header (e.g. the work list's bad cursor). Any other 4xx (a body
// FastAPI cannot parse, a problem+json, a 4xx from elsewhere naming a target) leaves the page
// as it was. It stays an error: htmx:responseError still fires.
//
// No failed request is silent. A 5xx, no answer at all (network down, request aborted or
// timed out), and any 4xx that is not swapped (not the console's own fragment: a 422 of a
// malformed field, a 401/403 once the session ended, a 404, a 409 problem+json) are said in
// the page's fixed aria-live region (#console-failure, base.html), in the page's language:
// the texts are its data-* attributes (server, network; session for 401/403, conflict for
// 409, refused for any other 4xx). A problem+json's title is added, as text only (never
// HTML) and at most TITLE_MAX characters: in the page's language when the page carries its
// translation (data-titles, the catalogue of problem_titles.py), else as the server sent
// it, marked lang="en". The next request htmx sends clears the region.
//
// A field a refused request's way back marked as too long (macros.html's too_long: it is
// aria-invalid, described by its note) is unmarked once its form, sent again by htmx, is
// answered as accepted: a refilter swaps only the list, and the form would otherwise go on
// calling invalid a field the list was just filtered by (#12).
"use strict";

(function () {
  const TITLE_MAX = 200;

  function ownFragment(xhr) {
    return (
      xhr.status >= 400 &&
      xhr.status < 500 &&
      Boolean(xhr.getResponseHeader("HX-Retarget")) &&
      Boolean(xhr.getResponseHeader("Console-Error-Fragment"))
    );
  }

  document.addEventListener("htmx:beforeSwap", (event) => {
    if (ownFragment(event.detail.xhr)) {
      event.detail.shouldSwap = true;
    }
  });

  function region() {
    return document.getElementById("console-failure");
  }

  // the page's translations of the titles the services answer with (base.html's
  // data-titles: English title -> the page's language; none on an English page)
  function translations(place) {
    try {
      const titles = JSON.parse(place.dataset.titles || "{}");
      return titles && typeof titles === "object" ? titles : {};
    } catch {
      return {};
    }
  }

  // a problem+json's title (RFC 9457), as plain text; else none
  function problemTitle(xhr) {
    const type = xhr.getResponseHeader("Content-Type") || "";
    if (!type.toLowerCase().startsWith("application/problem+json")) {
      return "";
    }
    let title;
    try {
      title = JSON.parse(xhr.responseText).title;
    } catch {
      return "";
    }
    if (typeof title !== "string") {
      return "";
    }
    return title.replace(/\s+/g, " ").trim();
  }

  // the title said: in the page's language when the page has it, else the server's own
  // words, bounded, marked as English on a page that is not (as the refused page does)
  function said(place, title) {
    const titles = translations(place);
    const known = Object.prototype.hasOwnProperty.call(titles, title);
    const text = known ? String(titles[title]) : title;
    const span = document.createElement("span");
    span.textContent = text.length > TITLE_MAX ? `${text.slice(0, TITLE_MAX - 1)}…` : text;
    if (!known && !document.documentElement.lang.startsWith("en")) {
      span.lang = "en";
    }
    return span;
  }

  function tell(kind, status, title) {
    const place = region();
    if (!place) {
      return;
    }
    place.textContent = place.dataset[kind] || "";
    if (title) {
      place.append(` ${place.dataset.reason || ""} `, said(place, title));
    }
    if (status) {
      place.append(` (HTTP ${status})`);
    }
  }

  function refusal(status) {
    if (status === 401 || status === 403) {
      return "session";
    }
    return status === 409 ? "conflict" : "refused";
  }

  document.addEventListener("htmx:beforeRequest", () => {
    const place = region();
    if (place) {
      place.textContent = "";
    }
  });
  document.addEventListener("htmx:responseError", (event) => {
    const xhr = event.detail.xhr;
    if (xhr.status >= 500) {
      tell("server", xhr.status, problemTitle(xhr));
    } else if (xhr.status >= 400 && !ownFragment(xhr)) {
      tell(refusal(xhr.status), xhr.status, problemTitle(xhr));
    }
  });
  document.addEventListener("htmx:afterRequest", (event) => {
    const form = event.detail.elt;
    if (!event.detail.successful || !(form instanceof HTMLFormElement) || !form.isConnected) {
      return;
    }
    for (const field of form.querySelectorAll('[aria-invalid="true"]')) {
      const note = field.getAttribute("aria-describedby") || "";
      if (note.endsWith("-too-long")) {
        document.getElementById(note)?.remove();
        field.removeAttribute("aria-invalid");
        field.removeAttribute("aria-describedby");
      }
    }
  });
  document.addEventListener("htmx:sendError", () => tell("network", 0));
  document.addEventListener("htmx:timeout", () => tell("network", 0));
})();
