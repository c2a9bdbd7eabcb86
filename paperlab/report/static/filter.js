/* Tag filtering for the paperlab feed (index.html).
 *
 * Without JavaScript every post stays visible and each tag link jumps to its list under
 * "Browse by tag". With it, a tag link (in the filter bar or on a post) shows only the posts
 * carrying that tag; "all" (or clicking the active tag again) shows every post. The filter
 * is kept in the address (#tag-...), so a filtered feed can be linked to and reloaded.
 */
(function () {
  "use strict";

  var feed = document.getElementById("feed");
  if (!feed) return;
  var posts = Array.prototype.slice.call(feed.querySelectorAll("article.post"));
  var filters = Array.prototype.slice.call(document.querySelectorAll("a[data-filter]"));
  var status = document.getElementById("filter-status");
  if (!posts.length || !filters.length) return;

  document.documentElement.classList.add("js");
  var current = "";

  function tagsOf(post) {
    return Array.prototype.map.call(post.querySelectorAll("[data-tag]"), function (el) {
      return el.getAttribute("data-tag");
    });
  }

  function filterFor(tag) {
    for (var i = 0; i < filters.length; i++) {
      if (filters[i].getAttribute("data-filter") === tag) return filters[i];
    }
    return null;
  }

  function apply(tag) {
    if (tag && !filterFor(tag)) tag = "";
    current = tag;
    var shown = 0;
    posts.forEach(function (post) {
      var keep = !tag || tagsOf(post).indexOf(tag) >= 0;
      post.hidden = !keep;
      if (keep) shown += 1;
    });
    filters.forEach(function (el) {
      var on = el.getAttribute("data-filter") === tag;
      el.classList.toggle("active", on);
      if (on) el.setAttribute("aria-current", "true");
      else el.removeAttribute("aria-current");
    });
    if (status) {
      status.textContent = tag
        ? "Showing " + shown + " of " + posts.length + " posts tagged \u201c" + tag + "\u201d."
        : "";
    }
  }

  function remember(tag) {
    var el = filterFor(tag);
    var url = tag && el ? el.getAttribute("href") : location.pathname + location.search;
    if (history.replaceState) history.replaceState(null, "", url);
  }

  function fromHash() {
    var hash = decodeURIComponent(location.hash || "");
    for (var i = 0; i < filters.length; i++) {
      if (filters[i].getAttribute("href") === hash) return filters[i].getAttribute("data-filter");
    }
    return null;
  }

  document.addEventListener("click", function (ev) {
    if (ev.defaultPrevented || ev.button !== 0 || ev.metaKey || ev.ctrlKey || ev.shiftKey || ev.altKey) {
      return;
    }
    var el = ev.target.closest ? ev.target.closest("a[data-filter], #feed a[data-tag]") : null;
    if (!el) return;
    ev.preventDefault();
    var tag = el.hasAttribute("data-filter") ? el.getAttribute("data-filter") : el.getAttribute("data-tag");
    if (tag === current && el.hasAttribute("data-tag")) tag = "";
    apply(tag);
    remember(tag);
    if (el.hasAttribute("data-tag")) {
      var nav = document.querySelector("nav.filter");
      if (nav && nav.getBoundingClientRect().top < 0) nav.scrollIntoView();
    }
  });

  window.addEventListener("hashchange", function () {
    var tag = fromHash();
    if (tag !== null) apply(tag);
  });

  var initial = fromHash();
  if (initial !== null) {
    apply(initial);
    window.scrollTo(0, 0);
  }
})();
