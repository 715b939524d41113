// The post editor in the admin: a toolbar that inserts Markdown at the cursor, a
// live preview rendered by the site itself (POST to the admin's preview URL, so
// what it shows is what readers get), word count and reading time, the checks
// before publishing that read the text alone, and a question before leaving a page
// with unsaved changes. Without JavaScript the textarea works alone. No inline
// script or style: the admin runs under a strict CSP.
"use strict";

(function () {
  const PREVIEW_DELAY_MS = 300;

  // Each button's Markdown: wrap the selection, or start each selected line.
  const FORMATS = {
    heading: { line: "## " },
    bold: { before: "**", after: "**", empty: "bold text" },
    link: { before: "[", after: "](https://)", empty: "link text" },
    list: { line: "- " },
    quote: { line: "> " },
  };

  function insert(textarea, text, selectFrom, selectTo) {
    textarea.focus();
    textarea.setRangeText(text, textarea.selectionStart, textarea.selectionEnd, "end");
    if (selectFrom !== undefined) {
      const start = textarea.selectionEnd - text.length;
      textarea.setSelectionRange(start + selectFrom, start + selectTo);
    }
    textarea.dispatchEvent(new Event("input", { bubbles: true }));
  }

  function applyFormat(textarea, format) {
    const selected = textarea.value.slice(textarea.selectionStart, textarea.selectionEnd);
    if (format.line) {
      // Start from the beginning of the line the selection starts in.
      const lineStart = textarea.value.lastIndexOf("\n", textarea.selectionStart - 1) + 1;
      textarea.setSelectionRange(lineStart, textarea.selectionEnd);
      const lines = textarea.value.slice(lineStart, textarea.selectionEnd).split("\n");
      insert(textarea, lines.map((line) => format.line + line).join("\n"));
      return;
    }
    const inner = selected || format.empty;
    insert(
      textarea,
      format.before + inner + format.after,
      format.before.length,
      format.before.length + inner.length,
    );
  }

  function csrfToken(form) {
    const field = form.querySelector("input[name=csrfmiddlewaretoken]");
    return field ? field.value : "";
  }

  function setUp(editor) {
    const textarea = editor.querySelector("textarea");
    const form = textarea.form;
    const preview = editor.querySelector(".markdown-editor-preview");
    const stats = editor.querySelector(".markdown-editor-stats");
    const problems = editor.querySelector(".markdown-editor-problems");
    const toolbar = editor.querySelector(".markdown-editor-toolbar");
    let timer = null;
    let latest = 0;
    let problemsShown = "";

    async function refresh() {
      const request = ++latest;
      const body = new FormData();
      body.append("body", textarea.value);
      // The checks leave alone a link to the post's own address, the one its slug
      // field has now (typed, or filled from the title on a new post).
      const slug = form.elements.namedItem("slug");
      if (slug) body.append("slug", slug.value);
      try {
        const response = await fetch(editor.dataset.previewUrl, {
          method: "POST",
          body: body,
          headers: { "X-CSRFToken": csrfToken(form) },
          credentials: "same-origin",
        });
        if (!response.ok) throw new Error(response.status);
        const answer = await response.json();
        if (request !== latest) return; // a newer preview is on its way
        // Sanitised by the server (posts.markdown), exactly as on the site.
        preview.innerHTML = answer.html;
        stats.textContent = `${answer.words} words, about ${answer.minutes} min to read`;
        // Rendered by the server, in the words saving shows them in. Replaced only
        // when they change: the live region reads them out each time it is.
        if (answer.problems !== problemsShown) {
          problems.innerHTML = answer.problems;
          problemsShown = answer.problems;
        }
      } catch (error) {
        if (request === latest) stats.textContent = "The preview is unavailable just now.";
      }
    }

    toolbar.hidden = false;
    preview.hidden = false;
    stats.hidden = false;
    editor.classList.add("markdown-editor-live");

    toolbar.addEventListener("click", (event) => {
      const button = event.target.closest("button");
      if (!button) return;
      if (button.dataset.snippet) insert(textarea, button.dataset.snippet);
      else applyFormat(textarea, FORMATS[button.dataset.markdown]);
    });
    // Any field, not the body alone: the checks read the slug too, and on a new
    // post the title fills it in.
    form.addEventListener("input", () => {
      clearTimeout(timer);
      timer = setTimeout(refresh, PREVIEW_DELAY_MS);
    });
    refresh();
  }

  // A draft is never lost: ask before leaving a page with unsaved changes.
  function guardUnsavedChanges(form) {
    let unsaved = false;
    form.addEventListener("input", () => (unsaved = true));
    form.addEventListener("change", () => (unsaved = true));
    form.addEventListener("submit", () => (unsaved = false));
    window.addEventListener("beforeunload", (event) => {
      if (!unsaved) return;
      event.preventDefault();
      event.returnValue = ""; // older browsers ask only when this is set
    });
  }

  document.addEventListener("DOMContentLoaded", () => {
    const editors = document.querySelectorAll(".markdown-editor");
    editors.forEach(setUp);
    if (editors.length) guardUnsavedChanges(editors[0].querySelector("textarea").form);
  });
})();
