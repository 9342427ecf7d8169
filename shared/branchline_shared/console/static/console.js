// Branchline console: which htmx error answers are swapped into the page (#12). The
// htmx-config (base.html) swaps no 4xx or 5xx; a 4xx is swapped only when the server names
// where it goes (HX-Retarget): the console's own error fragment, e.g. the work list's bad
// cursor. Any other 4xx (a body FastAPI cannot parse, a problem+json) leaves the page as it
// was. It stays an error: htmx:responseError still fires.
"use strict";

(function () {
  document.addEventListener("htmx:beforeSwap", (event) => {
    const xhr = event.detail.xhr;
    if (xhr.status >= 400 && xhr.status < 500 && xhr.getResponseHeader("HX-Retarget")) {
      event.detail.shouldSwap = true;
    }
  });
})();
