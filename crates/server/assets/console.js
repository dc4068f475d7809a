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

// Standard mode greys the customized list out as soon as it is picked (the server renders
// the same when Standard is saved).
document.addEventListener("change", function (e) {
  if (!e.target.matches("input[name=mode]")) return;
  var standard = e.target.value === "standard" && e.target.checked;
  var list = document.getElementById("list");
  var note = document.getElementById("standard-note");
  if (list) list.classList.toggle("inactive", standard);
  if (note) note.hidden = !standard;
});

// Forms marked `data-unsaved` warn before their changes are left behind: on leaving the
// page, and on following a link of the page (boosted links do not unload it).
var dirty = false;
function tracked(el) {
  var form = el.form || (el.closest && el.closest("form"));
  return form && form.hasAttribute("data-unsaved");
}
["input", "change"].forEach(function (type) {
  document.addEventListener(type, function (e) {
    if (tracked(e.target)) dirty = true;
  });
});
document.addEventListener("submit", function () { dirty = false; });
document.addEventListener("htmx:afterSettle", function () { dirty = false; });
window.addEventListener("beforeunload", function (e) {
  if (dirty) { e.preventDefault(); e.returnValue = ""; }
});
document.addEventListener("click", function (e) {
  var a = e.target.closest && e.target.closest("a[href]");
  if (!a || !dirty) return;
  if (!window.confirm("You have unsaved changes on this page. Leave without saving?")) {
    e.preventDefault();
    e.stopImmediatePropagation();
  } else {
    dirty = false;
  }
}, true);
