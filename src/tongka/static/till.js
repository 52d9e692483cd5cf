// The shift's close form: each denomination's subtotal and the total counted, live as the agent
// types. The server sums the counts again; this is only what the agent sees while counting.
"use strict";
for (const form of document.querySelectorAll("form.till-count")) {
  const money = new Intl.NumberFormat(document.documentElement.lang || "en", {
    style: "currency",
    currency: form.dataset.currency || "HKD",
  });
  const total = form.querySelector("#till-total");
  const update = () => {
    let cents = 0;
    for (const input of form.querySelectorAll("input[data-cents]")) {
      const count = /^\d+$/.test(input.value.trim()) ? Number(input.value.trim()) : 0;
      const sub = count * Number(input.dataset.cents);
      cents += sub;
      const cell = form.querySelector(`[data-subtotal="${input.dataset.cents}"]`);
      if (cell) cell.textContent = count ? money.format(sub / 100) : "";
    }
    total.textContent = money.format(cents / 100);
  };
  form.addEventListener("input", update);
  update();
}
