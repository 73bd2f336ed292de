/* The Import page: the sample links follow the chosen user type (without scripts they follow the
   type the page opened with, ?type=). */
(function () {
  "use strict";
  var links = [document.getElementById("sample-xlsx"), document.getElementById("sample-csv")];
  var radios = Array.prototype.slice.call(document.querySelectorAll('input[name="type"]'));
  function follow() {
    var chosen = radios.filter(function (r) { return r.checked; })[0];
    if (!chosen) return;
    links.forEach(function (a) {
      if (a) a.href = a.getAttribute("data-base") + "?type=" + encodeURIComponent(chosen.value);
    });
  }
  radios.forEach(function (r) { r.addEventListener("change", follow); });
  follow();
})();
