"""The shop's one page: pick a product, place an order, see what happened."""

from __future__ import annotations

__all__ = ["INDEX_HTML"]

INDEX_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>afterward demo shop</title>
<style>
body { font: 15px/1.5 system-ui, sans-serif; max-width: 40rem; margin: 2rem auto; color: #111827; }
button { font: inherit; padding: .4rem 1rem; } select, input { font: inherit; }
pre { background: #f3f4f6; padding: .8rem; white-space: pre-wrap; }
</style></head>
<body>
<h1>afterward demo shop</h1>
<p>Checkout pays inline, answers, and <em>afterward</em> calls inventory, warehouse,
analytics and CRM in one deferred HTTP batch; <code>order.completed</code> goes to the
billing, notification and analytics groups on the embedded bus.</p>
<form id="order">
  <label>Product <select id="sku">
    <option value="A1">A1 · Espresso beans, 1 kg · 24.00</option>
    <option value="B2">B2 · Pour-over kettle · 59.00</option>
    <option value="C3">C3 · Grinder · 129.00</option>
  </select></label>
  <label>Qty <input id="qty" type="number" min="1" max="10" value="1"></label>
  <button id="buy">Place order</button>
</form>
<pre id="result">No order yet.</pre>
<p>Watch it in the <a href="/afterward/">dashboard</a> (token printed in the terminal).</p>
<script>
document.getElementById("order").addEventListener("submit", async (e) => {
  e.preventDefault();
  const started = performance.now();
  const response = await fetch("/checkout", {
    method: "POST", headers: {"Content-Type": "application/json"},
    body: JSON.stringify({sku: document.getElementById("sku").value,
                          qty: parseInt(document.getElementById("qty").value, 10)}),
  });
  const order = await response.json();
  const ms = (performance.now() - started).toFixed(1);
  document.getElementById("result").textContent =
    `HTTP ${response.status} in ${ms} ms\\n` + JSON.stringify(order, null, 2);
});
</script>
</body></html>
"""
