// A mailing's progress in the admin, kept current by reloading the page, as a
// <meta http-equiv="refresh"> did, but one the author can turn off (WCAG 2.2.1) and
// that waits while they use the page: a reload moved a keyboard's focus and a
// screen reader back to the top, and cleared the mailings ticked for an action.
// Without JavaScript the page stays still; the browser's reload shows the latest.
"use strict";

(function () {
  const TURNED_OFF = "newsletter.live-progress-off";

  function inUse() {
    const focused = document.activeElement;
    return (
      (focused && focused !== document.body) ||
      document.querySelector("#result_list input.action-select:checked") !== null
    );
  }

  document.addEventListener("DOMContentLoaded", () => {
    const control = document.getElementById("live-progress");
    if (!control) return;
    const toggle = control.querySelector("input[type=checkbox]");
    toggle.checked = localStorage.getItem(TURNED_OFF) === null;
    toggle.addEventListener("change", () => {
      if (toggle.checked) localStorage.removeItem(TURNED_OFF);
      else localStorage.setItem(TURNED_OFF, "1");
    });
    control.hidden = false;
    setInterval(() => {
      if (toggle.checked && !inUse()) window.location.reload();
    }, Number(control.dataset.seconds) * 1000);
  });
})();
