// "Select every desktop on this page": the header checkbox of the pool page's desktop table.
// Without JavaScript it stays hidden and each row is ticked on its own; "all N matching this
// filter" needs no script at all (the server resolves the filter).
(function () {
  function reveal() {
    document.querySelectorAll("input.select-page[hidden]").forEach(function (box) {
      box.hidden = false;
    });
  }
  document.addEventListener("change", function (event) {
    var box = event.target;
    if (!box.matches("input.select-page")) return;
    box.closest("table").querySelectorAll("tbody input[type=checkbox][name=desktop]")
      .forEach(function (row) { row.checked = box.checked; });
  });
  document.addEventListener("DOMContentLoaded", reveal);
  document.addEventListener("htmx:afterSettle", reveal);
})();
