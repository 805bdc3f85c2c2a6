/* The trace view: choose a token (click, ← →) to list its kept features in the side panel;
   choose a feature there (click, ↑ ↓) to recolour the strip by it (c) or open its page (Enter).
   The data is what the server embedded (#trace-data, see traces/display/strip.py, panel_payload): every
   token's kept features packed as base64 arrays, the labels once each. Colours are computed
   server-side; the token's text, BOS and completion marks are read from the strip itself. */
(function () {
  "use strict";
  const data = JSON.parse(document.getElementById("trace-data").textContent);
  const unpack = (text, Type) => new Type(Uint8Array.from(atob(text), (c) => c.charCodeAt(0)).buffer);
  const features = unpack(data.features, data.featureBytes === 4 ? Uint32Array : Uint16Array);
  const values = unpack(data.values, Float32Array);
  const errs = unpack(data.err, Float32Array);
  const norms = unpack(data.norm, Float32Array);
  const starts = [0];
  data.kept.forEach((k, i) => starts.push(starts[i] + k));
  const short = (x) => Number(x.toPrecision(3)); // 3 significant digits, as the tooltips
  const strip = document.getElementById("strip");
  const panel = document.getElementById("token-panel");
  const help = document.getElementById("trace-help");
  const spans = strip.querySelectorAll(".tok");
  let token = -1;
  let feature = -1;

  const featureUrl = (index) => data.featureUrl.replace(/\/0\/$/, "/" + index + "/");
  const colourUrl = (index) => {
    const url = new URL(window.location.href);
    url.searchParams.set("feature", index);
    url.searchParams.delete("colour");
    url.searchParams.set("token", token);
    return url.toString();
  };
  const el = (tag, attrs, text) => {
    const node = document.createElement(tag);
    Object.entries(attrs || {}).forEach(([k, v]) => node.setAttribute(k, v));
    if (text !== undefined) node.textContent = text;
    return node;
  };

  function render(i) {
    const span = spans[i];
    const f = Array.from(features.subarray(starts[i], starts[i + 1]));
    const v = Array.from(values.subarray(starts[i], starts[i + 1]), short);
    panel.replaceChildren();
    const head = el("h2", {}, "Token " + i + " ");
    head.append(el("code", {}, span.textContent));
    panel.append(head);
    const facts = [];
    if (span.classList.contains("bos")) facts.push("BOS (outlier, left off scales)");
    if (span.classList.contains("completion")) facts.push("completion");
    if (data.redacted[i]) facts.push("redacted before storage (" + data.redacted[i] + ")");
    facts.push("L0 " + data.l0[i], "recon error " + Number(errs[i].toFixed(4)), "residual norm " + Number(norms[i].toFixed(1)));
    panel.append(el("p", { class: "muted" }, facts.join(" · ")));
    if (!f.length) {
      panel.append(el("p", { class: "muted" }, "No active feature kept."));
      return;
    }
    const top = v[0] || 1;
    const table = el("table", { class: "panel-features" });
    const body = el("tbody");
    f.forEach((index, k) => {
      const label = data.labels[index] || ["", [], []];
      const threshold = data.watched[index];
      const row = el("tr", { "data-k": k, "data-f": index });
      if (index === data.colour.feature) row.classList.add("colouring");
      const cell = el("td", { class: "num" });
      cell.append(el("a", { href: featureUrl(index), title: "Open feature " + index }, index));
      row.append(cell);
      const value = el("td", { class: "num value" });
      const bar = el("span", { class: "bar" });
      bar.style.width = Math.max(2, (60 * v[k]) / top) + "px";
      value.append(bar, document.createTextNode(" " + v[k]));
      if (threshold !== undefined && v[k] > threshold) {
        value.append(el("span", { class: "badge warn", title: "above its watch threshold " + threshold }, "over"));
      }
      row.append(value);
      const text = el("td", {}, label[0]);
      label[1].forEach((tag) => {
        text.append(" ", el("span", { class: label[2].includes(tag) ? "tag safety" : "tag" }, tag));
      });
      row.append(text);
      const recolour = el("td");
      recolour.append(el("a", { href: colourUrl(index), class: "recolour", title: "Colour the strip by feature " + index }, "colour"));
      row.append(recolour);
      body.append(row);
    });
    table.append(body);
    panel.append(table);
  }

  function selectToken(i, scroll) {
    if (i < 0 || i >= spans.length) return;
    if (token >= 0) spans[token].classList.remove("sel");
    token = i;
    feature = -1;
    spans[i].classList.add("sel");
    spans[i].setAttribute("aria-selected", "true");
    if (scroll) spans[i].scrollIntoView({ block: "nearest" });
    render(i);
    const url = new URL(window.location.href);
    url.searchParams.set("token", i);
    window.history.replaceState(null, "", url);
    const hidden = document.querySelector(".colour-form input[name=token]");
    if (hidden) hidden.value = i;
    // The "Add to case" form (loaded by htmx) follows the chosen token.
    const start = document.querySelector("#add-evidence-form input[name=token_start]");
    const end = document.querySelector("#add-evidence-form input[name=token_end]");
    if (start && end) {
      start.value = i;
      end.value = i + 1;
    }
  }

  function selectFeature(k) {
    const rows = panel.querySelectorAll("tr[data-k]");
    if (!rows.length) return;
    k = Math.max(0, Math.min(rows.length - 1, k));
    rows.forEach((row) => row.classList.remove("focus"));
    rows[k].classList.add("focus");
    rows[k].scrollIntoView({ block: "nearest" });
    feature = k;
  }

  function toggleHelp(show) {
    help.hidden = show === undefined ? !help.hidden : !show;
  }

  strip.addEventListener("click", (event) => {
    const span = event.target.closest(".tok");
    if (span) selectToken(Number(span.dataset.i), false);
  });
  panel.addEventListener("click", (event) => {
    const row = event.target.closest("tr[data-k]");
    if (row && !event.target.closest("a")) window.location.href = colourUrl(row.dataset.f);
  });
  document.querySelectorAll("[data-help]").forEach((b) => b.addEventListener("click", () => toggleHelp()));
  help.addEventListener("click", (event) => {
    if (event.target === help) toggleHelp(false);
  });

  document.addEventListener("keydown", (event) => {
    if (event.target.closest("input, select, textarea") || event.altKey || event.ctrlKey || event.metaKey) return;
    if (event.key === "Enter" && (feature < 0 || event.target.closest("a, button"))) return;
    const rows = panel.querySelectorAll("tr[data-k]");
    const actions = {
      ArrowLeft: () => selectToken(token - 1, true),
      ArrowRight: () => selectToken(token + 1, true),
      ArrowUp: () => selectFeature(feature - 1),
      ArrowDown: () => selectFeature(feature + 1),
      Enter: () => feature >= 0 && (window.location.href = featureUrl(rows[feature].dataset.f)),
      c: () => feature >= 0 && (window.location.href = colourUrl(rows[feature].dataset.f)),
      "?": () => toggleHelp(),
      Escape: () => toggleHelp(false),
    };
    if (event.key in actions && (help.hidden || event.key === "?" || event.key === "Escape")) {
      event.preventDefault();
      actions[event.key]();
    }
  });

  selectToken(Number(strip.dataset.selected) || 0, true);
})();
