// A little behaviour on top of htmx; the server renders everything.
(function () {
  "use strict";
  // Close open menus when clicking elsewhere.
  document.addEventListener("click", function (event) {
    document.querySelectorAll("details.menu[open]").forEach(function (menu) {
      if (!menu.contains(event.target)) menu.removeAttribute("open");
    });
  });
  // Flash messages fade away after a while.
  document.addEventListener("DOMContentLoaded", function () {
    setTimeout(function () {
      document.querySelectorAll(".flash-success, .flash-info").forEach(function (el) { el.remove(); });
    }, 6000);
  });
})();
