/**
 * Copy buttons. `navigator.clipboard` exists only in secure contexts (https, localhost);
 * a service reached over plain http on a LAN falls back to selecting a hidden textarea.
 */

async function writeClipboard(text) {
  if (navigator.clipboard && window.isSecureContext) {
    await navigator.clipboard.writeText(text);
    return;
  }
  const area = document.createElement("textarea");
  area.value = text;
  area.setAttribute("readonly", "");
  area.className = "visually-hidden";
  document.body.append(area);
  area.select();
  const copied = document.execCommand("copy");
  area.remove();
  if (!copied) throw new Error("the browser refused to copy");
}

/**
 * Make `button` copy `getText()` and say so in its own label for a moment
 * (the button is its own live region, so screen readers hear "Copied").
 */
export function makeCopyButton(button, getText) {
  const label = button.querySelector(".copy-label") ?? button;
  const idle = label.textContent;
  let timer = null;
  button.addEventListener("click", async () => {
    try {
      await writeClipboard(getText());
      label.textContent = "Copied";
    } catch {
      label.textContent = "Copy failed: select the text and press Ctrl+C";
    }
    clearTimeout(timer);
    timer = setTimeout(() => (label.textContent = idle), 2000);
  });
}
