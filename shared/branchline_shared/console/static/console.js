// Branchline console: which htmx error answers are swapped into the page, and what the RM is
// told when a request fails (#12).
//
// The htmx-config (base.html) swaps no 4xx or 5xx. A 4xx is swapped only when it is one of
// the console's own error fragments: it names where it goes (HX-Retarget) and carries the
// Console-Error-Fragment header (e.g. the work list's bad cursor). Any other 4xx (a body
// FastAPI cannot parse, a problem+json, a 4xx from elsewhere naming a target) leaves the page
// as it was. It stays an error: htmx:responseError still fires.
//
// A 5xx, or no answer at all (network down, request aborted or timed out), is said in the
// page's fixed aria-live region (#console-failure, base.html), in the page's language: the
// texts are its data-server / data-network attributes. The next request htmx sends clears it.
"use strict";

(function () {
  document.addEventListener("htmx:beforeSwap", (event) => {
    const xhr = event.detail.xhr;
    if (
      xhr.status >= 400 &&
      xhr.status < 500 &&
      xhr.getResponseHeader("HX-Retarget") &&
      xhr.getResponseHeader("Console-Error-Fragment")
    ) {
      event.detail.shouldSwap = true;
    }
  });

  function region() {
    return document.getElementById("console-failure");
  }

  function tell(kind, status) {
    const place = region();
    if (!place) {
      return;
    }
    const text = place.dataset[kind] || "";
    place.textContent = status ? `${text} (HTTP ${status})` : text;
  }

  document.addEventListener("htmx:beforeRequest", () => {
    const place = region();
    if (place) {
      place.textContent = "";
    }
  });
  document.addEventListener("htmx:responseError", (event) => {
    const status = event.detail.xhr.status;
    if (status >= 500) {
      tell("server", status);
    }
  });
  document.addEventListener("htmx:sendError", () => tell("network", 0));
  document.addEventListener("htmx:timeout", () => tell("network", 0));
})();
