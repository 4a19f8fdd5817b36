/**
 * A read-only, terminal-like log view: ANSI colours (SGR), carriage returns that
 * overwrite the current line (progress output), and a plain-text copy of everything.
 *
 * Hand-written on purpose: xterm.js (BinderHub's choice) ships as npm modules plus CSS
 * that need a bundler, and every asset must be served by bia-binder itself with no build
 * step. Build logs only need colours and `\r`, which fit in this small file.
 */

// CSI sequences (`ESC [ params final`), OSC sequences (`ESC ] ... BEL|ST`), other
// two-byte escapes, and line endings: the only things that change how text is laid out.
const CONTROL = /\x1b\[([0-9;?]*)([@-~])|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]|\r\n|\r|\n/g;

const ANSI_NAMES = ["black", "red", "green", "yellow", "blue", "magenta", "cyan", "white"];

function xterm256(n) {
  if (n < 16) return null; // the 16 base colours use the theme's classes
  if (n >= 232) {
    const level = 8 + (n - 232) * 10;
    return `rgb(${level}, ${level}, ${level})`;
  }
  const steps = [0, 95, 135, 175, 215, 255];
  const i = n - 16;
  return `rgb(${steps[Math.floor(i / 36)]}, ${steps[Math.floor(i / 6) % 6]}, ${steps[i % 6]})`;
}

function plainStyle() {
  return { fg: null, bg: null, fgRgb: null, bgRgb: null, bold: false, dim: false, italic: false, underline: false };
}

/** Apply one SGR (`ESC[...m`) parameter list to a style; unknown codes are ignored. */
function applySgr(style, params) {
  const codes = params === "" ? [0] : params.split(";").map((p) => Number.parseInt(p || "0", 10));
  for (let i = 0; i < codes.length; i++) {
    const code = codes[i];
    if (code === 0) Object.assign(style, plainStyle());
    else if (code === 1) style.bold = true;
    else if (code === 2) style.dim = true;
    else if (code === 3) style.italic = true;
    else if (code === 4) style.underline = true;
    else if (code === 22) style.bold = style.dim = false;
    else if (code === 23) style.italic = false;
    else if (code === 24) style.underline = false;
    else if (code >= 30 && code <= 37) [style.fg, style.fgRgb] = [code - 30, null];
    else if (code >= 90 && code <= 97) [style.fg, style.fgRgb] = [code - 90 + 8, null];
    else if (code === 39) [style.fg, style.fgRgb] = [null, null];
    else if (code >= 40 && code <= 47) [style.bg, style.bgRgb] = [code - 40, null];
    else if (code >= 100 && code <= 107) [style.bg, style.bgRgb] = [code - 100 + 8, null];
    else if (code === 49) [style.bg, style.bgRgb] = [null, null];
    else if (code === 38 || code === 48) {
      const target = code === 38 ? "fg" : "bg";
      let rgb = null;
      let index = null;
      if (codes[i + 1] === 5) {
        index = codes[i + 2];
        rgb = xterm256(index);
        i += 2;
      } else if (codes[i + 1] === 2) {
        rgb = `rgb(${codes[i + 2]}, ${codes[i + 3]}, ${codes[i + 4]})`;
        i += 4;
      }
      style[target] = rgb === null && index !== null ? index : null;
      style[`${target}Rgb`] = rgb;
    }
  }
  return style;
}

function styleClasses(style) {
  const classes = [];
  const colourClass = (prefix, n) => `${prefix}-${n >= 8 ? "bright-" : ""}${ANSI_NAMES[n % 8]}`;
  if (style.fg !== null) classes.push(colourClass("ansi-fg", style.fg));
  if (style.bg !== null) classes.push(colourClass("ansi-bg", style.bg));
  if (style.bold) classes.push("ansi-bold");
  if (style.dim) classes.push("ansi-dim");
  if (style.italic) classes.push("ansi-italic");
  if (style.underline) classes.push("ansi-underline");
  return classes.join(" ");
}

/** `text` without escape sequences, for places that are not a terminal (the error panel). */
export function plainText(text) {
  return text.replace(CONTROL, (match) => (match === "\n" || match === "\r\n" ? "\n" : ""));
}

/** Runs of text with equal keys share one DOM node. */
function styleKey(style) {
  return `${styleClasses(style)}|${style.fgRgb ?? ""}|${style.bgRgb ?? ""}`.replace(/^\|\|$/, "");
}

export class Terminal {
  /**
   * @param {HTMLElement} element the scrolling container (gets one child per line)
   * @param {{maxLines?: number, onFollowChange?: (following: boolean) => void}} [options]
   *   maxLines bounds the DOM for very long builds (the copy keeps every line).
   */
  constructor(element, { maxLines = 5000, onFollowChange = () => {} } = {}) {
    this.element = element;
    this.maxLines = maxLines;
    this.onFollowChange = onFollowChange;
    this.style = plainStyle();
    this.lines = [""]; // plain text of every line, for copying
    this.pendingCarriageReturn = false;
    this.following = true;
    this.autoScrollTop = 0;
    this.scrollScheduled = false;
    this.lastRun = null; // the text node of the current line's last run of one style
    this.currentLine = this.newLineElement();
    element.addEventListener("scroll", () => this.updateFollowing());
  }

  newLineElement() {
    const line = document.createElement("div");
    line.className = "term-line";
    this.element.append(line);
    while (this.element.childElementCount > this.maxLines) this.element.firstElementChild.remove();
    return line;
  }

  /** Write raw log text (may hold ANSI escapes, `\r`, `\n`, and lines split across calls). */
  write(text) {
    let last = 0;
    for (const match of text.matchAll(CONTROL)) {
      this.writeText(text.slice(last, match.index));
      last = match.index + match[0].length;
      const [whole, params, final] = match;
      if (whole === "\n" || whole === "\r\n") this.newLine();
      else if (whole === "\r") this.pendingCarriageReturn = true;
      else if (final === "m") applySgr(this.style, params);
      else if (final === "K" && (params === "1" || params === "2" || this.pendingCarriageReturn)) {
        // erase-in-line; with the cursor always at the end of the line, "to end" erases nothing
        this.clearLine();
      }
    }
    this.writeText(text.slice(last));
    this.scheduleScroll();
  }

  writeText(text) {
    if (!text) return;
    if (this.pendingCarriageReturn) this.clearLine();
    const key = styleKey(this.style);
    if (this.lastRun && this.lastRun.key === key) {
      this.lastRun.node.appendData(text);
    } else {
      const node = document.createTextNode(text);
      if (key === "") this.currentLine.append(node);
      else this.currentLine.append(this.styledSpan(node));
      this.lastRun = { key, node };
    }
    this.lines[this.lines.length - 1] += text;
  }

  styledSpan(textNode) {
    const span = document.createElement("span");
    span.className = styleClasses(this.style);
    if (this.style.fgRgb) span.style.color = this.style.fgRgb;
    if (this.style.bgRgb) span.style.backgroundColor = this.style.bgRgb;
    span.append(textNode);
    return span;
  }

  newLine() {
    this.pendingCarriageReturn = false;
    this.lastRun = null;
    this.lines.push("");
    this.currentLine = this.newLineElement();
  }

  clearLine() {
    this.pendingCarriageReturn = false;
    this.lastRun = null;
    this.currentLine.replaceChildren();
    this.lines[this.lines.length - 1] = "";
  }

  /** Everything written so far as plain text, escapes removed, `\r` applied. */
  text() {
    return this.lines.join("\n");
  }

  /** The last `count` non-empty lines, to quote in an error panel. */
  tail(count) {
    return this.lines.filter((line) => line.trim() !== "").slice(-count);
  }

  isAtBottom() {
    const el = this.element;
    return el.scrollHeight - el.scrollTop - el.clientHeight < 8;
  }

  /**
   * Scroll events also follow our own scrolling, and arrive after more lines may have been
   * added: only a position above where we last scrolled to means the reader scrolled up.
   */
  updateFollowing() {
    const scrolledUp = this.element.scrollTop < this.autoScrollTop - 2;
    const following = this.isAtBottom() || (this.following && !scrolledUp);
    if (following !== this.following) {
      this.following = following;
      this.onFollowChange(following);
    }
  }

  scrollToBottom() {
    this.element.scrollTop = this.element.scrollHeight;
    this.autoScrollTop = this.element.scrollTop;
  }

  /** One scroll per animation frame, however many events arrive in it. */
  scheduleScroll() {
    if (!this.following || this.scrollScheduled) return;
    this.scrollScheduled = true;
    requestAnimationFrame(() => {
      this.scrollScheduled = false;
      if (this.following) this.scrollToBottom();
    });
  }

  /** Jump to the newest line and keep following it. */
  follow() {
    this.following = true;
    this.onFollowChange(true);
    this.scrollToBottom();
  }
}
