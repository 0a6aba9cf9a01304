// textcoder annotate: the coder's page. Every choice is saved as it is made; moving on (next,
// skip, back) locks the page and shows "saving..." until the next text is on screen. A save
// that fails is said on the page and retried, the choice kept, and the page does not move on
// until it is saved. Keys: 1-9 choose the n-th category of the highlighted variable (with one
// variable, the choice is saved and the next text shown); Enter saves and moves on; n writes
// a note; u toggles "unsure". A note is kept in the tab as it is typed, so a reload keeps it.
(function () {
  "use strict";
  var form = document.getElementById("codeform");
  if (!form) return;
  var groups = Array.prototype.slice.call(form.querySelectorAll("fieldset.variable"));
  var locked = Array.prototype.slice.call(form.querySelectorAll("fieldset, .extra, .actions"));
  var single = form.dataset.single === "1";
  var next = document.getElementById("next");
  var status = document.getElementById("status");
  var retry = document.getElementById("retry");
  var note = form.elements.note;
  var unsure = form.elements.unsure;
  var draftKey = "textcoder-note " + form.getAttribute("action") + " " + form.elements.item.value;
  var queue = Promise.resolve();
  var busy = false;
  var wake = null;
  var typing = null;
  var current = 0;
  for (var i = 0; i < groups.length; i++) {
    if (!groups[i].querySelector("input:checked")) { current = i; break; }
  }

  function mark() {
    groups.forEach(function (g, i) { g.classList.toggle("current", i === current); });
  }

  function say(text, kind) {
    status.textContent = text;
    status.className = kind || "";
    status.hidden = !text;
    retry.hidden = kind !== "error";
  }

  function lock(on) {
    busy = on;
    form.classList.toggle("busy", on);
    locked.forEach(function (el) { el.inert = on; });
  }

  function draft(value) {
    try {
      if (value === undefined) return window.sessionStorage.getItem(draftKey);
      if (value === null) window.sessionStorage.removeItem(draftKey);
      else window.sessionStorage.setItem(draftKey, value);
    } catch (e) { /* storage off: the note is still saved as it is typed */ }
    return null;
  }

  function pause(ms) {
    return new Promise(function (resolve) {
      var t = setTimeout(done, ms);
      function done() { clearTimeout(t); wake = null; resolve(); }
      wake = done;
    });
  }

  // One POST of the whole form, retried until it lands; a refusal (4xx) is not retried.
  function send(action, attempt) {
    var body = new URLSearchParams(new FormData(form));
    body.set("action", action);
    return fetch(form.getAttribute("action"), { method: "POST", body: body, credentials: "same-origin" })
      .then(function (r) {
        if (r.ok) {
          if (body.get("note") === draft()) draft(null);
          return r;
        }
        return r.text().then(function (text) {
          var err = new Error(text || String(r.status));
          err.refused = r.status < 500;
          throw err;
        });
      })
      .catch(function (err) {
        if (err.refused) {
          say("Not saved: " + err.message, "error");
          retry.hidden = true;
          throw err;
        }
        say("Not saved: the server did not answer. Your choice is kept on this page and " +
            "saved as soon as the server answers; retrying...", "error");
        return pause(Math.min(8000, 500 * Math.pow(2, attempt))).then(function () {
          return send(action, attempt + 1);
        });
      });
  }

  // Saves run one after another, so an older save never lands after a newer one.
  function save(action) {
    var p = queue.then(function () { return send(action, 0); });
    queue = p.catch(function () {});
    return p;
  }

  function autosave() {
    save("save").then(function () { if (!busy) say(""); }, function () {});
  }

  function move(action) {
    if (busy) return;
    lock(true);
    say("saving...", "saving");
    save(action).then(
      function (r) { window.location.assign(r.url); },  // the next text: the page stays locked
      function () { lock(false); }
    );
  }

  form.addEventListener("submit", function (e) {
    e.preventDefault();
    move(e.submitter && e.submitter.value ? e.submitter.value : "next");
  });

  form.addEventListener("change", function (e) {
    if (busy) return;
    if (single && e.target.type === "radio") { form.requestSubmit(next); return; }
    if (e.target !== note) autosave();
  });

  note.addEventListener("input", function () {
    draft(note.value);
    clearTimeout(typing);
    typing = setTimeout(autosave, 400);
  });

  retry.addEventListener("click", function () { if (wake) wake(); });

  groups.forEach(function (g, i) {
    g.addEventListener("focusin", function () { current = i; mark(); });
    g.addEventListener("click", function () { current = i; mark(); });
  });

  document.addEventListener("keydown", function (e) {
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    if (e.target.matches && e.target.matches("textarea, input[type=text]")) return;
    if (busy) { e.preventDefault(); return; }
    if (/^[1-9]$/.test(e.key) && groups.length) {
      var inputs = groups[current].querySelectorAll("input[type=radio], input[type=checkbox]");
      var input = inputs[Number(e.key) - 1];
      if (!input) return;
      e.preventDefault();
      if (input.type === "radio") {
        input.checked = true;
        if (!single && current < groups.length - 1) { current += 1; mark(); }
      } else {
        input.checked = !input.checked;
      }
      input.dispatchEvent(new Event("change", { bubbles: true }));
    } else if (e.key === "n") {
      e.preventDefault();
      note.focus();
    } else if (e.key === "u") {
      e.preventDefault();
      unsure.checked = !unsure.checked;
      unsure.dispatchEvent(new Event("change", { bubbles: true }));
    } else if (e.key === "Enter" && e.target.tagName !== "BUTTON") {
      e.preventDefault();
      form.requestSubmit(next);
    }
  });

  window.addEventListener("pageshow", function (e) { if (e.persisted) window.location.reload(); });

  var kept = draft();
  if (kept !== null && kept !== note.value) {  // typed, then reloaded before it was saved
    note.value = kept;
    autosave();
  } else if (kept !== null) {
    draft(null);
  }
  mark();
})();
