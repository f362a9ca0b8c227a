// Lakehouse pages: instant filtering and sorting of server-rendered tables, tabs. No dependencies.
(function () {
  "use strict";

  function cellValue(row, idx, kind) {
    var cell = row.cells[idx];
    if (!cell) return null;
    var v = cell.hasAttribute("data-v") ? cell.getAttribute("data-v") : cell.textContent.trim();
    if (v === "" || v === "–") return null;
    if (kind === "n") { var n = parseFloat(v); return isNaN(n) ? null : n; }
    return v.toLowerCase();
  }

  // Links into Airflow (target=_top): Airflow shows this page in an iframe sandboxed without
  // "allow-top-navigation", where such a link does nothing. The page is same-origin with Airflow's
  // UI, so the link is followed by an anchor of the top document instead (the top window navigates
  // itself). Outside an iframe, or if the top document is not reachable, the browser's default.
  document.addEventListener("click", function (ev) {
    var a = ev.target && ev.target.closest ? ev.target.closest('a[target="_top"]') : null;
    if (!a || window.top === window || ev.defaultPrevented || ev.button !== 0) return;
    if (ev.ctrlKey || ev.metaKey || ev.shiftKey || ev.altKey) return;
    var doc;
    try { doc = window.top.document; } catch (e) { return; }
    var link = doc.createElement("a");
    link.href = a.href;
    link.style.display = "none";
    doc.body.appendChild(link);
    ev.preventDefault();
    link.click();
    link.remove();
  });

  // Click a header to sort in the browser (the link still works without JavaScript).
  document.querySelectorAll("table.sortable").forEach(function (table) {
    var heads = table.tHead ? table.tHead.rows[0].cells : [];
    Array.prototype.forEach.call(heads, function (th, idx) {
      var kind = th.getAttribute("data-kind");
      if (!kind) return;
      th.style.cursor = "pointer";
      th.addEventListener("click", function (ev) {
        ev.preventDefault();
        var asc = !(th.classList.contains("sorted") && th.classList.contains("asc"));
        Array.prototype.forEach.call(heads, function (h) { h.classList.remove("sorted", "asc", "desc"); });
        th.classList.add("sorted", asc ? "asc" : "desc");
        var body = table.tBodies[0];
        var rows = Array.prototype.filter.call(body.rows, function (r) { return !r.classList.contains("empty"); });
        rows.sort(function (a, b) {
          var x = cellValue(a, idx, kind), y = cellValue(b, idx, kind);
          if (x === null && y === null) return 0;
          if (x === null) return 1;          // missing values last, either order
          if (y === null) return -1;
          var c = x < y ? -1 : x > y ? 1 : 0;
          return asc ? c : -c;
        });
        var frag = document.createDocumentFragment();
        rows.forEach(function (r) { frag.appendChild(r); });
        body.appendChild(frag);
      });
    });
  });

  // Filter the tables list as you type.
  var q = document.getElementById("filter-q");
  var st = document.getElementById("filter-status");
  var tbl = document.getElementById("tables");
  if (tbl && (q || st)) {
    var count = document.getElementById("visible-count");
    var apply = function () {
      var text = q ? q.value.trim().toLowerCase() : "";
      var status = st ? st.value : "";
      var shown = 0;
      Array.prototype.forEach.call(tbl.tBodies[0].rows, function (r) {
        if (r.classList.contains("empty")) return;
        var ok = (!text || (r.getAttribute("data-search") || "").indexOf(text) >= 0) &&
                 (!status || r.getAttribute("data-status") === status);
        r.style.display = ok ? "" : "none";
        if (ok) shown++;
      });
      if (count) count.textContent = String(shown);
    };
    if (q) q.addEventListener("input", apply);
    if (st) st.addEventListener("change", apply);
    var form = document.getElementById("filters");
    if (form) form.addEventListener("submit", function (ev) { ev.preventDefault(); apply(); });
  }

  // Tabs: switch without reloading, keep ?tab= in the address for links.
  var tabs = document.querySelectorAll("nav.tabs .tab");
  tabs.forEach(function (a) {
    a.addEventListener("click", function (ev) {
      ev.preventDefault();
      var key = a.getAttribute("data-tab");
      tabs.forEach(function (t) { t.classList.toggle("active", t === a); });
      document.querySelectorAll("section.panel").forEach(function (p) {
        p.classList.toggle("active", p.id === "tab-" + key);
      });
      if (window.history && history.replaceState) {
        var url = new URL(window.location.href);
        url.searchParams.set("tab", key);
        history.replaceState(null, "", url.toString());
      }
    });
  });
})();
