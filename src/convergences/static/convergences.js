/* Progressive enhancement only: every page works without this file (plain form posts). */
(function () {
  "use strict";
  document.documentElement.classList.remove("no-js");
  document.documentElement.classList.add("js");

  function announce(form, message) {
    var live = document.getElementById("grid-status");
    if (live) { live.textContent = message; }
    var cell = form.closest("td");
    if (cell) {
      var old = cell.querySelector(".error");
      if (old) { old.remove(); }
      var p = document.createElement("p");
      p.className = "error";
      p.textContent = message;
      cell.appendChild(p);
    }
  }

  // A right toggle that could not be saved (server error, network down): put the control back
  // to its saved state and say so, so the grid never shows a change that did not happen.
  function failed(event) {
    var elt = event.detail && event.detail.elt;
    var form = elt && (elt.tagName === "FORM" ? elt : elt.closest("form"));
    if (!form || !form.hasAttribute("data-grant")) { return; }
    form.reset();
    announce(form, "La modification n'a pas pu être enregistrée. Réessayez dans un instant.");
  }
  // A swapped row carries "Enregistré" (or an error): repeat it in the grid's live region, which
  // stays in the page, because screen readers seldom announce a live region inserted by the swap.
  document.addEventListener("htmx:afterSwap", function (event) {
    var target = event.detail && event.detail.target;
    var live = document.getElementById("grid-status");
    if (!live || !target || !target.querySelector) { return; }
    var said = target.querySelector(".saved, .error");
    if (said) { live.textContent = said.textContent; }
  });
  document.addEventListener("htmx:responseError", failed);
  document.addEventListener("htmx:sendError", failed);

  // Confirmation for destructive buttons carrying data-confirm (the server also asks on its own page).
  document.addEventListener("submit", function (event) {
    var form = event.target;
    var message = form.getAttribute && form.getAttribute("data-confirm");
    if (message && !window.confirm(message)) { event.preventDefault(); }
  }, true);
})();
