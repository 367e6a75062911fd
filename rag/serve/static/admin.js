// The staff console: the re-index status updates itself while one runs; files can be dropped
// on the upload box. Everything works without this script too.
(function () {
  var status = document.getElementById("reindex");
  function poll() {
    fetch("/admin/status.json", {credentials: "same-origin"}).then(function (r) { return r.ok ? r.json() : null; })
      .then(function (s) {
        if (!s) return;
        if (s.state === "running") {
          status.textContent = "Re-indexing (" + s.progress + "%)" + (s.pending ? ", then once more for the latest change" : "") +
            ". Members get answers from the previous documents until it finishes.";
          setTimeout(poll, 1500);
        } else { location.reload(); }
      });
  }
  if (status && status.dataset.state === "running") setTimeout(poll, 1500);
  var drop = document.querySelector(".drop"), input = drop && drop.querySelector("input[type=file]");
  if (!drop) return;
  ["dragenter", "dragover"].forEach(function (e) { drop.addEventListener(e, function (ev) { ev.preventDefault(); drop.classList.add("over"); }); });
  ["dragleave", "drop"].forEach(function (e) { drop.addEventListener(e, function () { drop.classList.remove("over"); }); });
  drop.addEventListener("drop", function (ev) { ev.preventDefault(); input.files = ev.dataTransfer.files; });
})();
