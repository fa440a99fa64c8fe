// Optional: copy buttons. The page works without JavaScript (the records
// are in read-only text boxes that can be selected and copied by hand).
document.querySelectorAll("button.copy").forEach(function (b) {
  b.addEventListener("click", function () {
    var t = document.getElementById(b.dataset.copy);
    if (!t) return;
    t.select();
    if (navigator.clipboard) {
      navigator.clipboard.writeText(t.value).then(function () { b.textContent = "Copied"; });
    }
  });
});
