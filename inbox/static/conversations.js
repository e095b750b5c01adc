// The conversations page (templates/conversations/index.html): mark the open row, hide pictures that fail, keep the thread scrolled to the newest.
(function () {
  "use strict";

  // A picture Instagram no longer serves: "hide" removes it (initials show), "gone" shows the note beside it.
  document.addEventListener("error", function (event) {
    var img = event.target;
    if (!(img instanceof HTMLImageElement) || !img.dataset.fallback) return;
    if (img.dataset.fallback === "gone") {
      var holder = img.closest("a") || img;
      var note = holder.nextElementSibling;
      if (note && note.classList.contains("att-gone")) note.hidden = false;
      holder.hidden = true;
    } else {
      img.remove();
    }
  }, true);

  function scrollThreadToEnd() {
    var scroller = document.getElementById("thread-scroll");
    if (scroller) scroller.scrollTop = scroller.scrollHeight;
  }

  function markActiveRow() {
    var thread = document.getElementById("thread");
    var inbox = document.getElementById("inbox");
    var id = thread && thread.dataset.conversationId;
    document.querySelectorAll(".conv-row.is-active").forEach(function (row) {
      if (row.dataset.conversationId !== id) row.classList.remove("is-active");
    });
    if (id) {
      var row = document.getElementById("conversation-" + id);
      if (row) row.classList.add("is-active");
    }
    if (inbox) inbox.classList.toggle("has-thread", Boolean(id));
  }

  // The page title carries the unread count (#unread-total is swapped by responses and live pushes).
  function updateTitle() {
    var inbox = document.getElementById("inbox");
    var total = document.getElementById("unread-total");
    if (!inbox || !total) return;
    var n = parseInt(total.dataset.unread || "0", 10) || 0;
    document.title = (n ? "(" + (n >= 1000 ? "999+" : n) + ") " : "") + inbox.dataset.title;
  }

  document.addEventListener("DOMContentLoaded", function () {
    scrollThreadToEnd();
    markActiveRow();
    updateTitle();
  });
  // Live pushes replace rows without knowing which one is open.
  document.addEventListener("htmx:oobAfterSwap", function () {
    updateTitle();
    markActiveRow();
  });

  document.addEventListener("htmx:afterSettle", function (event) {
    var target = event.detail && event.detail.target;
    updateTitle();
    if (target && target.id === "thread") {
      scrollThreadToEnd();
      markActiveRow();
    } else if (target && target.id === "conversation-list") {
      markActiveRow();
    }
  });

  // A message appended while the reader is near the bottom keeps the view at the newest.
  document.addEventListener("htmx:oobAfterSwap", function (event) {
    var scroller = document.getElementById("thread-scroll");
    var target = event.detail && event.detail.target;
    if (!scroller || !target || !scroller.contains(target)) return;
    if (scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 240) scrollThreadToEnd();
  });
})();
