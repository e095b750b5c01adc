// The comments page on top of live.js: a post that gets a new comment moves to the top of the
// list (its row arrives with afterbegin; the old one is taken out first), and a list filtered by
// product drops rows of other products.
(function () {
  "use strict";

  document.addEventListener("htmx:oobBeforeSwap", function (event) {
    var target = event.detail.target;
    var fragment = event.detail.fragment;
    if (!target || target.id !== "comment-posts" || !fragment || !fragment.children) return;
    var filter = target.dataset.productFilter || "";
    Array.prototype.slice.call(fragment.children).forEach(function (row) {
      var existing = row.id ? document.getElementById(row.id) : null;
      if (existing) {
        if (existing.classList.contains("is-active")) row.classList.add("is-active");
        existing.remove();
      }
      if (filter && row.dataset && row.dataset.productId !== filter) row.remove();
    });
    var none = target.querySelector(".comment-none");
    if (none && fragment.children.length) none.remove();
  }, true);  // before live.js, which would replace the old row in place

  document.addEventListener("htmx:oobBeforeSwap", function (event) {
    var target = event.detail.target;
    if (!target || !/^post-comments-\d+$/.test(target.id || "")) return;
    var none = target.querySelector(".comment-none");
    if (none) none.remove();
  });
})();
