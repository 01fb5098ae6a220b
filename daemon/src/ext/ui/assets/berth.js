// berth's UI needs no script to work: this adds copy buttons to pull commands and folds the
// explore filters on a phone-width screen (they are open without script).
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  if (window.matchMedia("(max-width: 48rem)").matches) {
    for (const panel of document.querySelectorAll("details.filter-panel")) panel.open = false;
  }
  for (const button of document.querySelectorAll("button.copy[data-copy]")) {
    const target = document.getElementById(button.dataset.copy);
    if (!target) continue;
    button.hidden = false;
    button.addEventListener("click", async () => {
      const text = target.textContent;
      try {
        await navigator.clipboard.writeText(text);
      } catch (_) {
        const range = document.createRange();
        range.selectNodeContents(target);
        const selection = window.getSelection();
        selection.removeAllRanges();
        selection.addRange(range);
        document.execCommand("copy");
      }
      button.textContent = "Copied";
      setTimeout(() => { button.textContent = "Copy"; }, 1500);
    });
  }
});
