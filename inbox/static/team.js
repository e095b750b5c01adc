// The team layer on the inbox page: the composer's Reply / Note switch and `/` saved-reply
// picker, presence (viewing, typing) over the live socket, personal notifications, bulk
// selection, and keeping the list true to its "Mine" / person / label filter as rows change live.
(function () {
  "use strict";

  function me() { return document.body.dataset.userId || ""; }
  function accountId() { var el = document.getElementById("inbox"); return el ? el.dataset.accountId : ""; }
  function openThread() { return document.querySelector("#thread[data-conversation-id]"); }
  function openId() { var t = openThread(); return t ? t.dataset.conversationId : ""; }

  // --- Presence over the socket ------------------------------------------------------------

  var socket = null;
  var viewing = "";
  var typingUntil = 0;
  var idleTimer = null;

  function signal(what, conversationId) {
    if (!socket || !conversationId) return;
    try {
      socket.send(JSON.stringify({ presence: what, account: Number(accountId()), conversation: Number(conversationId) }));
    } catch (e) { /* the socket reconnects and says it again */ }
  }

  function syncViewing() {
    var current = openId();
    if (viewing && viewing !== current) signal("leave", viewing);
    if (current) signal("view", current);
    viewing = current;
  }

  document.addEventListener("htmx:wsOpen", function (event) {
    socket = event.detail && event.detail.socketWrapper;
    viewing = "";
    syncViewing();
  });
  document.addEventListener("htmx:wsClose", function () { socket = null; });
  setInterval(function () { if (openId() && !document.hidden) signal("view", openId()); }, 20000);
  window.addEventListener("pagehide", function () { if (viewing) signal("leave", viewing); });

  function noteTyping() {
    var id = openId();
    if (!id) return;
    var now = Date.now();
    if (now > typingUntil) { signal("typing", id); typingUntil = now + 3000; }
    clearTimeout(idleTimer);
    idleTimer = setTimeout(function () { typingUntil = 0; signal("idle", id); }, 4000);
  }

  // Someone else's presence only: the reader is not "also viewing" their own thread.
  function tidyPresence(root) {
    (root || document).querySelectorAll(".presence").forEach(function (bar) {
      bar.querySelectorAll("[data-user-id]").forEach(function (who) {
        if (who.dataset.userId === me()) who.remove();
      });
      bar.hidden = !bar.querySelector("[data-user-id]");
    });
  }

  // --- Notifications for me ----------------------------------------------------------------

  var lastSeq = 0;

  function notifyMe(el) {
    if (!el || el.dataset.userId !== me()) return;
    var seq = Number(el.dataset.seq || 0);
    if (seq <= lastSeq) return;
    lastSeq = seq;
    var title = el.dataset.title, body = el.dataset.body, url = el.dataset.url;
    var toast = document.getElementById("team-toast");
    if (!toast) {
      toast = document.createElement("a");
      toast.id = "team-toast";
      toast.className = "team-toast";
      toast.setAttribute("role", "status");
      document.body.appendChild(toast);
    }
    toast.href = url;
    toast.dataset.kind = el.dataset.kind;
    toast.textContent = title + (body ? ": " + body : "");
    toast.hidden = false;
    clearTimeout(toast._timer);
    toast._timer = setTimeout(function () { toast.hidden = true; }, 10000);
    if ("Notification" in window && Notification.permission === "granted" &&
        localStorage.getItem("inbox.notifications") !== "off") {
      try {
        var notice = new Notification(title, { body: body, tag: "team-" + seq });
        notice.onclick = function () { window.focus(); window.location.href = url; };
      } catch (e) { /* some browsers allow notifications only from a service worker */ }
    }
  }

  // --- The list: bulk selection and filters kept true live ------------------------------------

  function filterValue(id) { var el = document.getElementById(id); return el ? el.value : ""; }

  function rowMatches(row) {
    var who = filterValue("conv-assignee");
    var assignee = row.dataset.assigneeId || "";
    if (who === "me" && assignee !== me()) return false;
    if (who === "none" && assignee !== "") return false;
    if (/^\d+$/.test(who) && assignee !== who) return false;
    var label = filterValue("conv-label");
    if (label && (row.dataset.labelIds || "").indexOf(" " + label + " ") < 0) return false;
    return true;
  }

  function applyListFilter() {
    var list = document.getElementById("conversation-list");
    if (!list) return;
    list.querySelectorAll(".conv-row").forEach(function (row) {
      if (!rowMatches(row) && !row.classList.contains("is-active")) row.remove();
    });
  }

  function updateBulk() {
    var bar = document.getElementById("bulk-assign");
    if (!bar) return;
    var n = document.querySelectorAll(".conv-select:checked").length;
    bar.hidden = n === 0;
    var count = bar.querySelector("[data-selected]");
    if (count) count.textContent = String(n);
  }

  document.addEventListener("change", function (event) {
    if (event.target.classList && event.target.classList.contains("conv-select")) updateBulk();
    if (event.target.name === "mode" && event.target.closest("#composer")) setMode(event.target.closest("#composer"));
  });
  document.addEventListener("click", function (event) {
    if (event.target.closest && event.target.closest("[data-bulk-clear]")) {
      document.querySelectorAll(".conv-select:checked").forEach(function (box) { box.checked = false; });
      updateBulk();
    }
    var option = event.target.closest && event.target.closest(".reply-option");
    if (option) { event.preventDefault(); choose(option); }
  });

  // --- The composer: Reply / Note and the `/` picker --------------------------------------------

  function setMode(form) {
    var note = !!form.querySelector("input[name=mode][value=note]:checked");
    var text = form.querySelector("textarea[name=text]");
    var button = form.querySelector("button[type=submit]");
    form.classList.toggle("is-note", note);
    if (text) {
      text.placeholder = note ? text.dataset.notePlaceholder : text.dataset.replyPlaceholder;
      // A closed reply window does not stop a note.
      text.disabled = !note && form.classList.contains("composer-disabled");
      if (button) button.disabled = text.disabled;
    }
    if (button) button.textContent = note ? button.dataset.noteLabel : button.dataset.replyLabel;
    closePicker();
  }

  function slashQuery(text) {
    var value = text.value.slice(0, text.selectionStart);
    var match = /(^|\s)\/([\w-]{0,40})$/.exec(value);
    return match ? { q: match[2], start: value.length - match[2].length - 1 } : null;
  }

  function picker() { return document.getElementById("reply-picker"); }

  function closePicker() {
    var box = picker();
    if (box) { box.hidden = true; box.innerHTML = ""; }
  }

  // The picker is a server-rendered fragment (htmx swaps it in by its id); a newer keystroke
  // replaces a request still on its way (hx-sync="this:replace" on the textarea).
  function openPicker(text, q) {
    var url = text.dataset.pickerUrl + "?q=" + encodeURIComponent(q);
    if (window.htmx) {
      htmx.ajax("GET", url, { source: text, target: "#reply-picker", swap: "outerHTML" });
    }
  }

  function options() { var box = picker(); return box ? Array.prototype.slice.call(box.querySelectorAll(".reply-option")) : []; }

  function move(step) {
    var all = options();
    if (!all.length) return;
    var at = all.findIndex(function (o) { return o.classList.contains("is-active"); });
    var next = all[(at + step + all.length) % all.length];
    all.forEach(function (o) { o.classList.remove("is-active"); o.setAttribute("aria-selected", "false"); });
    next.classList.add("is-active");
    next.setAttribute("aria-selected", "true");
    next.scrollIntoView({ block: "nearest" });
  }

  function choose(option) {
    var text = document.getElementById("composer-text");
    if (!text || !option) return;
    var found = slashQuery(text);
    fetch(option.dataset.fillUrl, { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (filled) {
        if (filled === null) return;
        var before = found ? text.value.slice(0, found.start) : text.value;
        var after = text.value.slice(found ? text.selectionStart : text.value.length);
        text.value = before + filled + after;
        var caret = (before + filled).length;
        text.focus();
        text.setSelectionRange(caret, caret);
        text.dispatchEvent(new Event("input", { bubbles: true }));
        closePicker();
      });
  }

  document.addEventListener("input", function (event) {
    var text = event.target;
    if (text.id !== "composer-text") return;
    noteTyping();
    var found = slashQuery(text);
    if (found) openPicker(text, found.q); else closePicker();
  });

  // Capture: the picker takes its keys before live.js's Enter-sends.
  document.addEventListener("keydown", function (event) {
    if (event.target.id !== "composer-text") return;
    var box = picker();
    if (!box || box.hidden || !options().length) {
      if (event.key === "Escape") closePicker();
      return;
    }
    if (event.key === "ArrowDown" || event.key === "ArrowUp") {
      event.preventDefault(); event.stopPropagation();
      move(event.key === "ArrowDown" ? 1 : -1);
    } else if (event.key === "Enter" || event.key === "Tab") {
      event.preventDefault(); event.stopPropagation();
      choose(box.querySelector(".reply-option.is-active") || options()[0]);
    } else if (event.key === "Escape") {
      event.preventDefault(); event.stopPropagation();
      closePicker();
    }
  }, true);

  // --- Wiring -----------------------------------------------------------------------------------

  document.addEventListener("htmx:oobAfterSwap", function (event) {
    var target = event.detail && event.detail.target;
    if (!target || !target.id) return;
    // The target is the element swapped out: read the one now on the page by its id.
    var now = document.getElementById(target.id);
    if (!now) return;
    if (now.id === "team-notify") notifyMe(now);
    if (/^presence-\d+$/.test(now.id)) tidyPresence(document);
    if (now.id === "composer") setMode(now);
  });

  document.addEventListener("htmx:afterSwap", function (event) {
    var target = event.detail && event.detail.target;
    if (target && (target.id === "thread" || target.id === "conversation-list")) {
      syncViewing();
      tidyPresence(document);
      updateBulk();
    }
  });
  document.addEventListener("htmx:load", function () {
    if (openId() !== viewing) syncViewing();
  });

  document.addEventListener("DOMContentLoaded", function () {
    tidyPresence(document);
    var form = document.getElementById("composer");
    if (form) setMode(form);
    var list = document.getElementById("conversation-list");
    if (list && window.MutationObserver) {
      new MutationObserver(applyListFilter).observe(list, { childList: true, subtree: true, attributes: true,
                                                            attributeFilter: ["data-assignee-id", "data-label-ids"] });
    }
  });
})();
