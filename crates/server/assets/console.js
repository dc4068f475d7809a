// cascade console: after an in-page swap (htmx boost), put keyboard focus where a reader
// needs it, as a fresh page load would: the first field in error, else the message, else
// the page heading. Pages work the same without this script.
document.addEventListener("htmx:afterSettle", function () {
  var target = document.querySelector("main [aria-invalid=true]") ||
    document.getElementById("flash") ||
    document.querySelector("main h1");
  if (!target) return;
  if (!target.matches("input, select, textarea, button, a")) {
    target.setAttribute("tabindex", "-1");
  }
  target.focus();
});

// Buttons with `data-confirm` ask before their form is sent (delete, remove, notify).
document.addEventListener("submit", function (e) {
  var button = e.submitter;
  var ask = (button && button.getAttribute("data-confirm")) ||
    e.target.getAttribute("data-confirm");
  if (ask && !window.confirm(ask)) {
    e.preventDefault();
    e.stopImmediatePropagation();
  }
}, true);
