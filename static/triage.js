/* The triage queue: r marks the trace reviewed, s skips it, c opens an audit case with it,
   o opens it, n focuses the note, ? toggles the help. The actions are the page's own POST
   forms; this only presses them. */
(function () {
  "use strict";
  const help = document.getElementById("triage-help");
  const note = document.getElementById("id_note");
  const press = (id) => {
    const el = document.getElementById(id);
    if (el) el.click();
  };
  const toggleHelp = (show) => {
    help.hidden = show === undefined ? !help.hidden : !show;
  };
  document.querySelectorAll("[data-help]").forEach((b) => b.addEventListener("click", () => toggleHelp()));
  // The SAE filter submits on change (no inline handler: the Content-Security-Policy forbids them).
  document.querySelectorAll("select[data-autosubmit]").forEach((s) =>
    s.addEventListener("change", () => s.form.submit())
  );
  help.addEventListener("click", (event) => {
    if (event.target === help) toggleHelp(false);
  });
  document.addEventListener("keydown", (event) => {
    if (event.altKey || event.ctrlKey || event.metaKey) return;
    if (event.target.closest("input, select, textarea")) {
      if (event.key === "Escape") event.target.blur();
      return;
    }
    const actions = {
      r: () => press("act-reviewed"),
      s: () => press("act-skipped"),
      c: () => press("act-case"),
      o: () => press("act-open"),
      n: () => note && note.focus(),
      "?": () => toggleHelp(),
      Escape: () => toggleHelp(false),
    };
    if (event.key in actions && (help.hidden || event.key === "?" || event.key === "Escape")) {
      event.preventDefault();
      actions[event.key]();
    }
  });
})();
