// jobkit dashboard: live regions over server-sent events, and "select all" for bulk actions.
// No framework and no build step. The server renders every page; on each "change" event this
// fetches the current page again and swaps in the regions marked data-live (by id), leaving a
// region alone while the user is typing in it or has rows selected in it.
(function () {
  "use strict";

  var pending = false;
  var inFlight = false;

  function busy(region) {
    if (region.contains(document.activeElement) && document.activeElement !== document.body) {
      var tag = document.activeElement.tagName;
      if (tag === "INPUT" || tag === "SELECT" || tag === "TEXTAREA") { return true; }
    }
    if (region.hasAttribute("data-keep-selection") && region.querySelector("input[type=checkbox]:checked")) {
      return true;
    }
    return false;
  }

  function refresh() {
    if (inFlight) { pending = true; return; }
    inFlight = true;
    fetch(window.location.href, { headers: { "X-Jobkit-Live": "1" }, credentials: "same-origin" })
      .then(function (response) { return response.ok ? response.text() : null; })
      .then(function (html) {
        if (html === null) { return; }
        var fresh = new DOMParser().parseFromString(html, "text/html");
        document.querySelectorAll("[data-live][id]").forEach(function (region) {
          var next = fresh.getElementById(region.id);
          if (next && !busy(region) && next.innerHTML !== region.innerHTML) {
            region.innerHTML = next.innerHTML;
          }
        });
        document.body.setAttribute("data-refreshed", String(Date.now()));
      })
      .catch(function () { /* the next change or the reconnect tries again */ })
      .then(function () {
        inFlight = false;
        if (pending) { pending = false; refresh(); }
      });
  }

  function connect() {
    var url = document.body.getAttribute("data-live");
    if (!url || !window.EventSource || !document.querySelector("[data-live][id]")) { return; }
    var status = document.getElementById("live-status");
    var source = new EventSource(url);
    source.addEventListener("open", function () {
      if (status) { status.classList.add("connected"); }
      document.body.setAttribute("data-live-connected", "true");
      // What changed between rendering the page and this (re)connection was told to nobody: look once.
      refresh();
    });
    source.addEventListener("change", refresh);
    source.addEventListener("error", function () {
      if (status) { status.classList.remove("connected"); }
    });
  }

  document.addEventListener("change", function (event) {
    var box = event.target;
    if (box instanceof HTMLInputElement && box.hasAttribute("data-select-all")) {
      var name = box.getAttribute("data-select-all");
      var form = box.form || document;
      form.querySelectorAll("input[type=checkbox][name='" + name + "']").forEach(function (other) {
        other.checked = box.checked;
      });
    }
  });

  document.addEventListener("DOMContentLoaded", connect);
})();
