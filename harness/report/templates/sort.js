document.querySelectorAll("table.sortable th").forEach(function (th) {
  th.addEventListener("click", function () {
    var table = th.closest("table"), tbody = table.tBodies[0];
    var idx = Array.prototype.indexOf.call(th.parentNode.children, th);
    var asc = th.dataset.sort !== "asc";
    th.parentNode.querySelectorAll("th").forEach(function (h) { delete h.dataset.sort; });
    th.dataset.sort = asc ? "asc" : "desc";
    var rows = Array.prototype.slice.call(tbody.rows);
    rows.sort(function (a, b) {
      var x = a.cells[idx], y = b.cells[idx];
      var xv = x.dataset.value !== undefined ? parseFloat(x.dataset.value) : x.textContent;
      var yv = y.dataset.value !== undefined ? parseFloat(y.dataset.value) : y.textContent;
      if (typeof xv === "number" && typeof yv === "number") return asc ? xv - yv : yv - xv;
      return asc ? String(xv).localeCompare(String(yv)) : String(yv).localeCompare(String(xv));
    });
    rows.forEach(function (r) { tbody.appendChild(r); });
  });
});
