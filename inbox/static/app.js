// A little behaviour on top of htmx; the server renders everything.
(function () {
  "use strict";
  // Close open menus when clicking elsewhere.
  document.addEventListener("click", function (event) {
    document.querySelectorAll("details.menu[open]").forEach(function (menu) {
      if (!menu.contains(event.target)) menu.removeAttribute("open");
    });
  });
  // Forms a live push rendered carry no personal CSRF token (one frame serves every member):
  // give them this page's, so a plain submit passes like one from the page itself.
  document.addEventListener("htmx:oobAfterSwap", function () {
    var meta = document.querySelector('meta[name="csrf-token"]');
    if (!meta) return;
    document.querySelectorAll('input[name="csrf_token"]').forEach(function (input) {
      if (!input.value) input.value = meta.content;
    });
  });
  // Flash messages fade away after a while.
  document.addEventListener("DOMContentLoaded", function () {
    setTimeout(function () {
      document.querySelectorAll(".flash-success, .flash-info").forEach(function (el) { el.remove(); });
    }, 6000);
  });
})();

// A select marked data-autosubmit sends its form when changed (no inline handlers: the CSP forbids them).
document.addEventListener("change", (event) => {
  const field = event.target.closest && event.target.closest("[data-autosubmit]");
  if (field && field.form) field.form.requestSubmit ? field.form.requestSubmit() : field.form.submit();
});

// Click to select a read-only field's text, and copy buttons (data-copy="#field"): no inline handlers under the CSP.
document.addEventListener("click", (event) => {
  const target = event.target;
  if (!target.closest) return;
  const field = target.closest("[data-select-on-click]");
  if (field) field.select();
  const copy = target.closest("[data-copy]");
  if (copy) {
    const source = document.querySelector(copy.dataset.copy);
    if (source && navigator.clipboard) navigator.clipboard.writeText(source.value);
  }
});

// A form marked data-confirm asks first (the message is the attribute's text).
document.addEventListener("submit", (event) => {
  const form = event.target;
  if (form.dataset && form.dataset.confirm && !window.confirm(form.dataset.confirm)) event.preventDefault();
}, true);
