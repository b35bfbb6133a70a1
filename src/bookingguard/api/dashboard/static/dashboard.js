// Reload every data-refresh-seconds s, unless the operator is typing a note.
(function () {
  var seconds = Number(document.body.dataset.refreshSeconds);
  if (!seconds) { return; }
  setInterval(function () {
    var busy = Array.prototype.some.call(document.querySelectorAll("textarea, input[type=text]"),
      function (field) { return field.value || field === document.activeElement; });
    if (!busy) { window.location.reload(); }
  }, seconds * 1000);
}());
