/* Sorting for the paperlab evidence table (evidence.html).
 *
 * Without JavaScript the table stays in note order. The buttons sort its rows by note, by
 * family (then note) or by status (least proven first, then note); the choice is kept in the
 * address (#sort-family), so a sorted table can be linked to.
 */
(function () {
  "use strict";

  var table = document.getElementById("evidence");
  var bar = document.getElementById("sort-bar");
  if (!table || !bar) return;
  var body = table.tBodies[0];
  var buttons = Array.prototype.slice.call(bar.querySelectorAll("button[data-sort]"));

  function key(row, by) {
    var order = parseInt(row.getAttribute("data-order"), 10);
    if (by === "family") return [row.getAttribute("data-family"), order];
    if (by === "rank") return [parseInt(row.getAttribute("data-rank"), 10), order];
    return [order, 0];
  }

  function compare(a, b) {
    for (var i = 0; i < a.length; i++) {
      if (a[i] < b[i]) return -1;
      if (a[i] > b[i]) return 1;
    }
    return 0;
  }

  function sortBy(by) {
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (r, s) { return compare(key(r, by), key(s, by)); });
    rows.forEach(function (r) { body.appendChild(r); });
    buttons.forEach(function (b) {
      b.classList.toggle("active", b.getAttribute("data-sort") === by);
    });
  }

  buttons.forEach(function (b) {
    b.addEventListener("click", function () {
      var by = b.getAttribute("data-sort");
      sortBy(by);
      if (history.replaceState) history.replaceState(null, "", "#sort-" + by);
    });
  });

  function fromAddress() {
    var hash = location.hash || "";
    if (hash.indexOf("#sort-") !== 0) return;  // #note-B1 links a row, it sorts nothing
    var wanted = hash.slice(6);
    if (wanted === "family" || wanted === "rank" || wanted === "order") sortBy(wanted);
  }

  window.addEventListener("hashchange", fromAddress);
  fromAddress();
})();
