// The receipt's print button (the Content-Security-Policy allows no inline onclick).
"use strict";
for (const button of document.querySelectorAll("[data-print]")) {
  button.addEventListener("click", () => window.print());
}
