// afterward dashboard: live refresh of the page's main block, confirmations. No build step.
(function () {
  "use strict";
  var live = document.getElementById("live");
  var here = location.pathname.replace(/\/+$/, "");
  document.querySelectorAll("nav a").forEach(function (a) {
    var target = new URL(a.href).pathname.replace(/\/+$/, "");
    if (target === here || (a.dataset.nav !== "overview" && here.indexOf(target) === 0)) {
      a.classList.add("active");
    }
  });
  document.addEventListener("click", function (e) {
    var button = e.target.closest("button[data-confirm]");
    if (button && !window.confirm(button.dataset.confirm)) { e.preventDefault(); }
  });
  if (!live) { return; }
  var every = parseInt(live.dataset.refresh || "0", 10);
  if (!every) { return; }
  function busy() {
    var active = document.activeElement;
    return active && live.contains(active) && /^(INPUT|SELECT|TEXTAREA)$/.test(active.tagName);
  }
  function refresh() {
    if (document.hidden || busy()) { return schedule(); }
    fetch(location.href, { headers: { "X-Afterward-Partial": "1" }, credentials: "same-origin" })
      .then(function (r) { if (!r.ok) { throw new Error(r.status); } return r.text(); })
      .then(function (html) { if (!busy()) { live.innerHTML = html; } live.dataset.refreshed = String(Date.now()); schedule(); })
      .catch(function () { live.dataset.stale = "1"; schedule(); });
  }
  function schedule() { window.setTimeout(refresh, every); }
  schedule();
})();
