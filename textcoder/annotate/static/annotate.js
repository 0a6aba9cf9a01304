// textcoder annotate: keys for the coder's page, and saving each choice as it is made.
// 1-9 choose the n-th category of the highlighted variable; with one nominal variable the
// choice is saved and the next text shown. Enter saves and shows the next text.
(function () {
  "use strict";
  var form = document.getElementById("codeform");
  if (!form) return;
  var groups = Array.prototype.slice.call(form.querySelectorAll("fieldset.variable"));
  var single = form.dataset.single === "1";
  var next = document.getElementById("next");
  var pending = null;
  var current = 0;
  for (var i = 0; i < groups.length; i++) {
    if (!groups[i].querySelector("input:checked")) { current = i; break; }
  }

  function mark() {
    groups.forEach(function (g, i) { g.classList.toggle("current", i === current); });
  }

  function autosave() {
    var body = new URLSearchParams(new FormData(form));
    body.set("action", "save");
    var p = fetch(form.getAttribute("action"), { method: "POST", body: body, credentials: "same-origin" })
      .catch(function () {});
    pending = p;
    p.then(function () { if (pending === p) pending = null; });
  }

  form.addEventListener("submit", function (e) {
    if (pending) {  // a choice is still being saved: let it land first
      e.preventDefault();
      var submitter = e.submitter, p = pending;
      p.then(function () { if (pending === p) pending = null; form.requestSubmit(submitter); });
    }
  });

  form.addEventListener("change", function (e) {
    var t = e.target;
    if (single && t.type === "radio") { form.requestSubmit(next); return; }
    autosave();
  });

  groups.forEach(function (g, i) {
    g.addEventListener("focusin", function () { current = i; mark(); });
    g.addEventListener("click", function () { current = i; mark(); });
  });

  document.addEventListener("keydown", function (e) {
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    if (e.target.matches && e.target.matches("textarea, input[type=text]")) return;
    if (/^[1-9]$/.test(e.key) && groups.length) {
      var inputs = groups[current].querySelectorAll("input[type=radio], input[type=checkbox]");
      var input = inputs[Number(e.key) - 1];
      if (!input) return;
      e.preventDefault();
      if (input.type === "radio") {
        input.checked = true;
        input.dispatchEvent(new Event("change", { bubbles: true }));
        if (!single && current < groups.length - 1) { current += 1; mark(); }
      } else {
        input.checked = !input.checked;
        input.dispatchEvent(new Event("change", { bubbles: true }));
      }
    } else if (e.key === "Enter" && e.target.tagName !== "BUTTON") {
      e.preventDefault();
      form.requestSubmit(next);
    }
  });

  mark();
})();
