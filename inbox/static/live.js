// The live inbox on top of htmx's ws extension: indicator, refetch after a reconnect,
// row ordering, the page title, desktop notifications and the composer's keys and counter.
// The server renders every frame; this file only places and counts.
(function () {
  "use strict";

  var connectedOnce = false;

  // Reconnect quickly after a restart (1012), but back off up to 5 s while the server is away.
  if (window.htmx) {
    htmx.config.wsReconnectDelay = function (retryCount) {
      var delay = Math.min(5000, 250 * Math.pow(2, retryCount));
      return delay / 2 + Math.random() * delay / 2;
    };
  }

  function liveEl() { return document.getElementById("live"); }

  function setState(state, label) {
    var el = liveEl();
    if (!el) return;
    el.dataset.state = state;
    var text = el.querySelector(".live-label");
    if (text) text.textContent = label;
    el.title = state === "live" ? "Live: new messages appear as they arrive" : "Reconnecting to live updates…";
  }

  // --- Connection state and refetch -------------------------------------------------------

  document.addEventListener("htmx:wsConnecting", function () {
    setState(connectedOnce ? "reconnecting" : "connecting", connectedOnce ? "Reconnecting…" : "Connecting…");
  });
  // The socket is open; it is live once the server says it listens (its first frame, #live-state).
  document.addEventListener("htmx:wsOpen", function () {
    if (connectedOnce) refetch();
    connectedOnce = true;
    awaitingHello = true;
  });
  var awaitingHello = false;
  document.addEventListener("htmx:wsClose", function () {
    if (connectedOnce) setState("reconnecting", "Reconnecting…");
  });
  document.addEventListener("htmx:wsError", function () {
    setState("reconnecting", "Reconnecting…");
  });

  // What the page shows may have changed while the socket was away: fetch the page again and
  // swap the parts that carry data-live-refresh (the list, the open thread's messages), by id.
  // The composer is left alone, so a draft survives.
  function refetch() {
    var targets = refreshTargets();
    if (!targets.length) return;
    fetch(window.location.href, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (response) {
        if (response.redirected && /\/login/.test(response.url)) { window.location.reload(); return null; }
        return response.ok ? response.text() : null;
      })
      .then(function (html) {
        if (!html) return;
        var doc = new DOMParser().parseFromString(html, "text/html");
        targets.forEach(function (current) {
          var fresh = doc.getElementById(current.id);
          if (!fresh) return;
          var scroll = current.scrollTop;
          var atBottom = current.scrollHeight - current.scrollTop - current.clientHeight < 40;
          current.replaceWith(fresh);
          var placed = document.getElementById(fresh.id);
          if (window.htmx) htmx.process(placed);
          placed.scrollTop = atBottom ? placed.scrollHeight : scroll;
        });
        document.dispatchEvent(new CustomEvent("live:refetched"));
      })
      .catch(function () { /* the next reconnect tries again */ });
  }

  function refreshTargets() {
    var marked = Array.prototype.slice.call(document.querySelectorAll("[data-live-refresh][id]"));
    if (marked.length) return marked;
    // Without markers: the list and the open thread's messages (the hello frame brings the unread total).
    return ["conversation-list", "messages"]
      .map(function (id) { return document.getElementById(id); }).filter(Boolean);
  }

  // --- Out-of-band swaps ------------------------------------------------------------------

  // Appends are keyed by message id: a bubble already on the page is replaced, never doubled
  // (the reply's own answer and the push of the same message both arrive).
  document.addEventListener("htmx:oobBeforeSwap", function (event) {
    var fragment = event.detail.fragment;
    if (!fragment || !fragment.children) return;
    var target = event.detail.target;
    if (target && target.id === "live-state") return;
    if (target && target.id === "messages") {
      var none = target.querySelector(".thread-none");
      if (none) none.remove();
      if (fragment.querySelector && fragment.querySelector(".msg-in")) markOpenThreadRead();
      addDaySeparators(target, fragment);
    }
    Array.prototype.slice.call(fragment.children).forEach(function (child) {
      if (!child.id || child === target) return;
      var existing = document.getElementById(child.id);
      if (existing && existing !== target) {
        existing.replaceWith(child);
        if (window.htmx) htmx.process(child);
      }
    });
  });

  document.addEventListener("htmx:oobAfterSwap", function (event) {
    var target = event.detail.target;
    if (!target) return;
    if (target.id === "live-state") {
      if (awaitingHello) { awaitingHello = false; setState("live", "Live"); }
      return;
    }
    if (target.id === "live-notify") { maybeNotify(document.getElementById("live-notify")); return; }
    if (target.id === "messages") { placeLateBubbles(target); return; }
    var row = target.id && /^conversation-\d+$/.test(target.id) ? document.getElementById(target.id) : null;
    if (row) { placeRow(row); markActive(row); }
  });

  // Webhooks can arrive out of order: a pushed bubble older than the ones above it moves up
  // to its place by Meta's time (data-ts), as a reload would show it.
  function placeLateBubbles(list) {
    var bubbles = Array.prototype.slice.call(list.querySelectorAll(".msg[data-ts]"));
    for (var i = bubbles.length - 1; i >= 0 && i >= bubbles.length - 50; i--) {
      var bubble = bubbles[i], ts = Number(bubble.dataset.ts);
      var before = null;
      for (var j = 0; j < i; j++) {
        if (Number(bubbles[j].dataset.ts) > ts) { before = bubbles[j]; break; }
      }
      if (!before) continue;
      var sep = before.previousElementSibling;
      if (sep && sep.classList.contains("day-sep") &&
          sep.dataset.day !== new Date(ts).toISOString().slice(0, 10)) before = sep;
      list.insertBefore(bubble, before);
      bubbles = Array.prototype.slice.call(list.querySelectorAll(".msg[data-ts]"));
    }
  }

  // A bubble from a new day (UTC, as the server labels them) gets its separator.
  function addDaySeparators(list, fragment) {
    var seps = list.querySelectorAll(".day-sep[data-day]");
    var lastDay = seps.length ? seps[seps.length - 1].dataset.day : null;
    Array.prototype.slice.call(fragment.children).forEach(function (child) {
      if (!child.dataset || !child.dataset.ts || document.getElementById(child.id)) return;
      var day = new Date(Number(child.dataset.ts)).toISOString().slice(0, 10);
      if (day === lastDay) return;
      var sep = document.createElement("div");
      sep.className = "day-sep";
      sep.dataset.day = day;
      var label = document.createElement("span");
      label.textContent = day === new Date().toISOString().slice(0, 10) ? "Today" : day;
      sep.appendChild(label);
      fragment.insertBefore(sep, child);
      lastDay = day;
    });
  }

  // A customer message arriving in the thread someone is looking at is read at once.
  var readTimer = null;
  function markOpenThreadRead() {
    clearTimeout(readTimer);
    readTimer = setTimeout(function () {
      var composer = document.getElementById("composer");
      if (!composer || !composer.dataset.readUrl) return;
      if (document.visibilityState !== "visible" || !document.hasFocus()) {
        pendingRead = true;
        return;
      }
      pendingRead = false;
      var meta = document.querySelector('meta[name="csrf-token"]');
      fetch(composer.dataset.readUrl, {
        method: "POST", credentials: "same-origin",
        headers: { "X-CSRFToken": meta ? meta.content : "", "HX-Request": "true" },
      }).catch(function () {});
    }, 300);
  }
  var pendingRead = false;
  window.addEventListener("focus", function () { if (pendingRead) markOpenThreadRead(); });
  document.addEventListener("visibilitychange", function () { if (pendingRead) markOpenThreadRead(); });

  function markActive(row) {
    var open = openConversationId();
    row.classList.toggle("is-active", open !== null && row.dataset.conversationId === open);
  }

  // A row for a conversation the list does not show yet: insert it where its time says,
  // unless the list is filtered (data-live-insert="off") or it would land past the loaded page.
  document.body.addEventListener("htmx:oobErrorNoTarget", onNoTarget);
  document.addEventListener("DOMContentLoaded", function () {
    setupNotifications();
    setupComposer(document);
  });

  function onNoTarget(event) {
    var content = event.detail && event.detail.content;
    if (!content || !content.id || !/^conversation-\d+$/.test(content.id)) return;
    var list = document.getElementById("conversation-list");
    if (!list || list.dataset.liveInsert === "off") return;
    var row = content.cloneNode(true);
    row.removeAttribute("hx-swap-oob");
    var empty = list.querySelector(".conv-empty");
    if (empty) empty.remove();
    var at = rowTime(row);
    var rows = list.querySelectorAll(".conv-row[id^='conversation-']");
    var last = rows.length ? rows[rows.length - 1] : null;
    // Older than everything loaded while more pages exist: the next page will bring it.
    if (last && at < rowTime(last) && list.querySelector(".conv-more")) return;
    list.insertBefore(row, list.firstChild);
    if (window.htmx) htmx.process(row);
    placeRow(row);
    markActive(row);
  }

  function rowTime(row) {
    return Number(row.dataset.liveAt || 0) || Date.parse(row.dataset.last || "") || 0;
  }

  // Keep the list newest first: move the row before the first row older than it.
  function placeRow(row) {
    var list = row.parentElement;
    if (!list) return;
    var at = rowTime(row);
    if (!at) return;
    var sibling = list.firstElementChild;
    while (sibling) {
      if (sibling !== row && sibling.classList.contains("conv-row") && rowTime(sibling) <= at) break;
      if (sibling.classList.contains("conv-more")) break;  // rows stay above the "load more" sentinel
      sibling = sibling.nextElementSibling;
    }
    if (sibling === row.nextElementSibling || sibling === row) return;
    if (sibling) list.insertBefore(row, sibling); else if (row !== list.lastElementChild) list.appendChild(row);
  }

  // --- Desktop notifications (opt in) ------------------------------------------------------

  var NOTIFY_KEY = "inbox.notifications";

  function notificationsOn() {
    return "Notification" in window && Notification.permission === "granted"
      && window.localStorage.getItem(NOTIFY_KEY) === "on";
  }

  function setupNotifications() {
    var button = document.getElementById("notify-toggle");
    if (!button || !("Notification" in window)) return;
    button.hidden = false;
    function label() {
      if (Notification.permission === "denied") {
        button.textContent = "Notifications blocked";
        button.disabled = true;
        button.title = "The browser blocks notifications for this site; allow them in its settings.";
      } else {
        button.textContent = notificationsOn() ? "Notifications on" : "Enable notifications";
        button.setAttribute("aria-pressed", notificationsOn() ? "true" : "false");
      }
    }
    label();
    button.addEventListener("click", function () {
      if (notificationsOn()) {
        window.localStorage.setItem(NOTIFY_KEY, "off");
        label();
        return;
      }
      Promise.resolve(Notification.requestPermission()).then(function (permission) {
        if (permission === "granted") window.localStorage.setItem(NOTIFY_KEY, "on");
        label();
      });
    });
  }

  function openConversationId() {
    var thread = document.getElementById("thread");
    return thread && thread.dataset.conversationId ? thread.dataset.conversationId : null;
  }

  var notified = {};
  function maybeNotify(el) {
    // htmx may report one swap more than once (a frame's swaps share their settle list).
    if (!el || !el.dataset.message || notified[el.dataset.message]) return;
    notified[el.dataset.message] = true;
    var looking = document.visibilityState === "visible" && document.hasFocus()
      && openConversationId() === el.dataset.conversation;
    window.__liveLastNotice = { conversation: el.dataset.conversation, shown: false, looking: looking };
    if (looking || !notificationsOn()) return;
    var notice = new Notification(el.dataset.title || "New message", {
      body: el.dataset.body || "", tag: "conversation-" + el.dataset.conversation,
    });
    window.__liveLastNotice.shown = true;
    var url = el.dataset.url;
    notice.onclick = function () {
      window.focus();
      if (url) window.location.href = url;
      notice.close();
    };
  }

  // --- The composer ----------------------------------------------------------------------

  var encoder = new TextEncoder();

  function setupComposer(root) {
    var form = root.querySelector ? root.querySelector("#composer") : null;
    if (!form || form.dataset.liveReady) return;
    form.dataset.liveReady = "1";
    var textarea = form.querySelector("textarea");
    var send = form.querySelector("button[type=submit]");
    var count = form.querySelector("[data-bytes]");
    var max = Number(form.dataset.maxBytes || 1000);
    if (!textarea) return;
    function update() {
      var bytes = encoder.encode(textarea.value).length;
      if (count) count.textContent = String(bytes);
      var over = bytes > max;
      form.classList.toggle("composer-over", over);
      var closed = windowClosed(form);
      if (send) send.disabled = over || closed || textarea.value.trim() === "";
      if (closed && !form.classList.contains("composer-disabled")) closeWindow(form);
    }
    textarea.addEventListener("input", update);
    textarea.addEventListener("keydown", function (event) {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing && event.keyCode !== 229) {
        event.preventDefault();
        if (send && !send.disabled) form.requestSubmit(send);
      }
    });
    update();
    if (document.activeElement === document.body && !textarea.disabled) textarea.focus({ preventScroll: true });
  }

  function windowClosed(form) {
    var closes = Number(form.dataset.windowClosesAt || 0);
    return closes > 0 && Date.now() >= closes;
  }

  function closeWindow(form) {
    form.classList.add("composer-disabled");
    form.querySelectorAll("textarea, button[type=submit]").forEach(function (el) { el.disabled = true; });
    if (!form.querySelector(".composer-refusal")) {
      var note = document.createElement("p");
      note.className = "composer-refusal";
      note.setAttribute("role", "status");
      note.textContent = "Instagram only allows replies within 24 hours of the customer's last message. "
        + "You can reply again when they write.";
      form.insertBefore(note, form.querySelector(".composer-row"));
    }
  }

  // The window may close while the page is open.
  setInterval(function () {
    var form = document.getElementById("composer");
    if (form && windowClosed(form) && !form.classList.contains("composer-disabled")) closeWindow(form);
  }, 30000);

  // A composer arrives with every thread and after every send.
  document.addEventListener("htmx:load", function (event) {
    var el = event.detail && event.detail.elt;
    if (!el) return;
    if (el.id === "composer") { delete el.dataset.liveReady; setupComposer(el.parentNode || document); }
    else if (el.querySelector && el.querySelector("#composer")) setupComposer(el);
  });
  document.addEventListener("htmx:oobAfterSwap", function (event) {
    var target = event.detail.target;
    if (target && target.id === "composer") {
      var form = document.getElementById("composer");
      if (form) { setupComposer(form.parentNode); var t = form.querySelector("textarea"); if (t && !t.disabled) t.focus(); }
    }
  });
})();
