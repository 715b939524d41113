// The topic picker of the subscribe form and the preference centre
// (templates/newsletter/_topics_fields.html). Without this script it is plain
// checkboxes in collapsed groups and works the same; this adds a filter box, remove
// buttons in the chosen list, what a region or an owner covers, and live counts.
// Loaded with defer from the page's own origin: the site's CSP allows no inline
// script or style, so everything here is classes and the hidden attribute.
// Its own scope: other scripts of the site share the page's globals.
(() => {
  "use strict";

  // How many names a coverage note lists before "and N more".
  const NAMES_SHOWN = 5;

  function normalise(text) {
    return text.normalize("NFD").replace(/[\u0300-\u036f]/g, "").toLowerCase();
  }

  function listed(names) {
    if (names.length <= NAMES_SHOWN) return names.join(", ");
    return `${names.slice(0, NAMES_SHOWN).join(", ")} and ${names.length - NAMES_SHOWN} more`;
  }

  function element(tag, text, className) {
    const node = document.createElement(tag);
    if (text) node.textContent = text;
    if (className) node.className = className;
    return node;
  }

  function enhance(picker) {
    const boxes = Array.from(picker.querySelectorAll("input[type=checkbox]"));
    const byKey = new Map(boxes.map((box) => [box.value, box]));
    // The name is the text right after the box; a note (what an owner owned) may follow.
    const nameOf = (box) => box.nextSibling.textContent.trim();
    // Areas come in one fieldset a region: finding a region's name finds its areas too.
    const regionOf = (box) => box.closest("fieldset[data-region]")?.dataset.region;
    // Named by its heading: the region of an area the reader follows may not be
    // offered itself (only posts yet to go live are about it), and has no box.
    const regionNameOf = (box) =>
      box.closest("fieldset[data-region]")?.querySelector("legend").textContent ?? "";
    const searchText = new Map(
      boxes.map((box) => {
        const region = regionNameOf(box);
        return [box, normalise(`${box.parentElement.textContent} ${region}`)];
      }),
    );
    const groups = Array.from(picker.querySelectorAll("details")).map((details) => ({
      details,
      boxes: Array.from(details.querySelectorAll("input[type=checkbox]")),
      count: details.querySelector(".topic-count"),
    }));
    const filterRow = picker.querySelector(".topic-filter");
    const filter = filterRow.querySelector("input");
    const status = filterRow.querySelector("[aria-live]");
    const chosenList = picker.querySelector(".topic-chosen ul");
    const nothingChosen = picker.querySelector(".topic-chosen-none");
    let openBeforeFiltering = null;

    function query() {
      return normalise(filter.value.trim());
    }

    function showCounts() {
      const q = query();
      for (const group of groups) {
        const total = group.boxes.length;
        const chosen = group.boxes.filter((box) => box.checked).length;
        const shown = group.boxes.filter((box) => !box.parentElement.hidden).length;
        const parts = [q ? `${shown} of ${total} match` : `${total}`];
        if (chosen) parts.push(`${chosen} chosen`);
        group.count.textContent = `(${parts.join(", ")})`;
      }
    }

    function applyFilter() {
      const q = query();
      if (q && openBeforeFiltering === null) {
        openBeforeFiltering = groups.map((group) => group.details.open);
      }
      let matches = 0;
      for (const group of groups) {
        let shown = 0;
        for (const box of group.boxes) {
          const match = !q || searchText.get(box).includes(q);
          box.parentElement.hidden = !match;
          if (match) shown += 1;
        }
        matches += shown;
        for (const region of group.details.querySelectorAll("fieldset")) {
          region.hidden = !region.querySelector("label:not([hidden])");
        }
        group.details.hidden = q !== "" && shown === 0;
        if (q) group.details.open = shown > 0;
      }
      if (!q && openBeforeFiltering !== null) {
        groups.forEach((group, i) => {
          group.details.open = openBeforeFiltering[i];
        });
        openBeforeFiltering = null;
      }
      const typed = filter.value.trim();
      if (!q) status.textContent = "";
      else if (matches === 0) status.textContent = `No topic matches “${typed}”.`;
      else if (matches === 1) status.textContent = `1 topic matches “${typed}”.`;
      else status.textContent = `${matches} topics match “${typed}”.`;
      showCounts();
    }

    // What a chosen topic covers, or what already covers it, in the reader's words.
    function coverage(box) {
      const [kind] = box.value.split(":");
      if (kind === "region") {
        const areas = boxes.filter((other) => regionOf(other) === box.value);
        return areas.length ? `Covers its areas: ${listed(areas.map(nameOf))}.` : "";
      }
      if (kind === "area" && byKey.get(regionOf(box))?.checked) {
        return `Already covered by ${nameOf(byKey.get(regionOf(box)))}.`;
      }
      if (kind === "organisation") {
        // data-owners holds the owners' slugs; an organisation's key is kind:slug.
        const ownersOf = (other) =>
          (other.dataset.owners || "").split(" ").filter(Boolean).map((slug) => `${kind}:${slug}`);
        const owners = ownersOf(box)
          .map((key) => byKey.get(key))
          .filter((owner) => owner?.checked);
        if (owners.length) return `Already covered by ${listed(owners.map(nameOf))}.`;
        const owned = boxes.filter((other) => ownersOf(other).includes(box.value));
        if (owned.length) return `Covers what it owned: ${listed(owned.map(nameOf))}.`;
      }
      return "";
    }

    function showChosen() {
      const chosen = boxes.filter((box) => box.checked);
      const items = chosen.map((box) => {
        const name = nameOf(box);
        const [kind] = box.value.split(":");
        const item = element("li");
        item.dataset.key = box.value;
        item.append(element("span", name), " ", element("span", kind, "meta"), " ");
        const remove = element("button", "Remove", "topic-remove");
        remove.type = "button";
        remove.setAttribute("aria-label", `Remove ${name}`);
        item.append(remove);
        const note = coverage(box);
        if (note) item.append(element("p", note, "meta"));
        if (kind === "region" && note) {
          const areas = element("button", "Show its areas", "topic-show-areas");
          areas.type = "button";
          areas.setAttribute("aria-label", `Show its areas: ${name}`);
          item.append(areas);
        }
        return item;
      });
      chosenList.replaceChildren(...items);
      nothingChosen.hidden = chosen.length > 0;
      showCounts();
    }

    chosenList.addEventListener("click", (event) => {
      const button = event.target.closest("button");
      if (!button) return;
      const item = button.closest("li");
      const box = byKey.get(item.dataset.key);
      if (button.classList.contains("topic-show-areas")) {
        filter.value = nameOf(box);
        applyFilter();
        filter.focus();
        return;
      }
      const position = Array.from(chosenList.children).indexOf(item);
      box.checked = false;
      showChosen();
      status.textContent = `${nameOf(box)} removed.`;
      // Focus stays in the list (on the next item's button), or returns to the filter.
      const next = chosenList.children[Math.min(position, chosenList.children.length - 1)];
      (next ? next.querySelector(".topic-remove") : filter).focus();
    });

    picker.addEventListener("change", (event) => {
      if (event.target.matches("input[type=checkbox]")) showChosen();
    });

    filter.addEventListener("input", applyFilter);
    filter.addEventListener("keydown", (event) => {
      if (event.key === "Enter") {
        // Enter in a filter box would submit the whole form half-filled.
        event.preventDefault();
      } else if (event.key === "ArrowDown") {
        const first = boxes.find((box) => box.offsetParent !== null);
        if (first) {
          event.preventDefault();
          first.focus();
        }
      } else if (event.key === "Escape" && filter.value) {
        filter.value = "";
        applyFilter();
      }
    });

    filterRow.hidden = false;
    picker.querySelector(".topic-chosen").hidden = false;
    picker.classList.add("topic-picker-enhanced");
    showChosen();
  }

  for (const picker of document.querySelectorAll(".topic-picker")) enhance(picker);
})();
