/* The CLI's report (importer/templates/report/report.html.j2) shown inside a batch page: its filter
   of the rejected rows by error code, served from this origin (the portal's CSP allows no inline
   script). Without scripts the page shows every row and no buttons. */
/* Filter the rejected rows by error code. Without scripts the page shows every row and no buttons. */
(function () {
  "use strict";
  var bar = document.getElementById("filter");
  var table = document.getElementById("rejected");
  if (!bar || !table) return;
  var rows = Array.prototype.slice.call(table.tBodies[0].rows);
  var buttons = Array.prototype.slice.call(bar.querySelectorAll("button"));
  var status = document.getElementById("status");
  var known = buttons.map(function (b) { return b.getAttribute("data-code"); });
  var total = parseInt(table.getAttribute("data-total"), 10) || rows.length;

  function thousands(n) { return String(n).replace(/\B(?=(\d{3})+(?!\d))/g, ","); }

  function show(code) {
    if (known.indexOf(code) < 0) code = "";
    var shown = 0;
    rows.forEach(function (tr) {
      var match = code === "" || (" " + tr.getAttribute("data-codes") + " ").indexOf(" " + code + " ") >= 0;
      tr.hidden = !match;
      if (match) shown += 1;
    });
    buttons.forEach(function (b) {
      b.setAttribute("aria-pressed", b.getAttribute("data-code") === code ? "true" : "false");
    });
    if (total > rows.length) {  /* the page lists the first rows only: say so, never "N of N" */
      status.textContent = (code ? "Showing " + thousands(shown) + " with " + code + " among" : "Showing") +
        " the first " + thousands(rows.length) + " of " + thousands(total) + " rejected rows.";
      return;
    }
    status.textContent = "Showing " + shown + " of " + rows.length + " rejected row" + (rows.length === 1 ? "" : "s") +
      (code ? " with " + code : "") + ".";
  }

  function fromHash() {
    var match = /^#code=(.+)$/.exec(window.location.hash);
    return match ? decodeURIComponent(match[1]) : "";
  }

  bar.hidden = false;
  bar.addEventListener("click", function (event) {
    var button = event.target.closest("button");
    if (!button) return;
    var code = button.getAttribute("data-code");
    show(code);
    try { history.replaceState(null, "", code ? "#code=" + encodeURIComponent(code) : "#"); } catch (e) { /* file: URLs may refuse */ }
  });
  window.addEventListener("hashchange", function () {
    show(fromHash());
    if (fromHash()) document.getElementById("rejected-rows").scrollIntoView();
  });
  show(fromHash());
})();
