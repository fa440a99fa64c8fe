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

// A form larger than the server takes (256 KiB) is not sent: the error is
// shown next to its button and what was typed stays in the form.
document.querySelectorAll("form").forEach(function (f) {
  f.addEventListener("submit", function (ev) {
    var size = new URLSearchParams(new FormData(f)).toString().length;
    if (size <= 256 * 1024) return;
    ev.preventDefault();
    var e = f.querySelector(".form-too-large");
    if (!e) {
      e = document.createElement("span");
      e.className = "error form-too-large";
      f.appendChild(e);
    }
    e.textContent = "This form is " + Math.ceil(size / 1024) +
      " KiB, more than the 256 KiB the server takes: shorten the long field. Nothing was sent.";
  });
});
