/**
 * Home page: find a BioImage Archive study and explore it. Results come from
 * `/api/studies/search` (BIA's full-text search, or BioStudies' when BIA's is down);
 * everything is inserted as text, never as HTML, and thumbnails come through our own proxy.
 * An accession or IDR id typed into the box is offered for launch directly.
 */
import { makeCopyButton } from "./clipboard.js";

const form = document.getElementById("study-search");
const input = document.getElementById("study-query");
const status = document.getElementById("study-status");
const results = document.getElementById("study-results");
const baseUrl = new URL(document.body.dataset.baseUrl, window.location.origin);

/** `/v2/...` of what the text names directly, or null: BIA/BioStudies accessions, IDR studies and objects. */
export function directLaunch(text) {
  const value = text.trim();
  if (/^S-(BIAD|BSST)\d{1,9}$/.test(value)) return `v2/bia/${value}`;
  if (/^idr\d{4}[A-Z]?$/.test(value)) return `v2/idr/${value}`;
  const object = /^(project|screen|dataset|plate|image)[/:](\d{1,18})$/.exec(value);
  if (object) return `v2/idr/${object[1]}/${object[2]}`;
  return null;
}

/** The Markdown of an "Explore in bia-binder" badge for an archive page. */
export function badgeMarkdown(launchPath) {
  const link = new URL(launchPath, baseUrl).toString();
  const badge = new URL("badge_logo.svg", baseUrl).toString();
  return `[![Explore in bia-binder](${badge})](${link})`;
}

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function exploreButton(launchPath, label) {
  const link = element("a", "button button-primary study-explore", label);
  link.href = new URL(launchPath, baseUrl).pathname;
  return link;
}

function resultItem(result) {
  const launchPath = new URL(result.launch, window.location.origin).pathname.replace(baseUrl.pathname, "");
  const item = element("li", "study-result");
  if (result.thumbnail) {
    const picture = element("img", "study-thumbnail");
    picture.src = result.thumbnail;
    picture.alt = `Example image of ${result.accession}`;
    picture.loading = "lazy";
    picture.width = 96;
    picture.height = 96;
    item.append(picture);
  }
  const body = element("div", "study-body");
  body.append(element("h3", "study-title", result.title || result.accession));
  const facts = element("dl", "study-facts");
  for (const [name, value] of [
    ["Accession", result.accession],
    ["Organism", result.organism],
    ["Imaging", result.imaging_method],
    ["Licence", result.licence],
  ]) {
    if (!value) continue;
    facts.append(element("dt", "", name), element("dd", "", value));
  }
  body.append(facts);
  const actions = element("div", "study-actions");
  actions.append(exploreButton(launchPath, "Explore"));
  const copy = element("button", "button button-small copy-button");
  copy.type = "button";
  copy.append(element("span", "copy-label", "Copy badge"));
  copy.append(element("span", "visually-hidden", ` for ${result.accession}`));
  makeCopyButton(copy, () => badgeMarkdown(launchPath));
  actions.append(copy);
  body.append(actions);
  item.append(body);
  return item;
}

async function search(text) {
  results.replaceChildren();
  const direct = directLaunch(text);
  if (direct) {
    const item = element("li", "study-result");
    const body = element("div", "study-body");
    body.append(element("h3", "study-title", text.trim()));
    body.append(exploreButton(direct, `Explore ${text.trim()}`));
    item.append(body);
    results.append(item);
    status.textContent = `Explore ${text.trim()} directly, or see matching studies below.`;
    if (!direct.startsWith("v2/bia/")) return;
  }
  status.textContent = "Searching…";
  const url = new URL(form.dataset.searchUrl, window.location.origin);
  url.searchParams.set("q", text.trim());
  let answer;
  try {
    const response = await fetch(url, { headers: { Accept: "application/json" } });
    answer = await response.json();
    if (!response.ok) throw new Error(answer.message || `${response.status}`);
  } catch (error) {
    status.textContent = `The search failed: ${error.message}. Try again, or type an accession.`;
    return;
  }
  for (const result of answer.results) results.append(resultItem(result));
  const from = answer.source === "bia" ? "the BioImage Archive" : "BioStudies (BIA's search is unavailable)";
  status.textContent = answer.results.length
    ? `${answer.total} studies found in ${from}${answer.total > answer.results.length ? `; showing ${answer.results.length}` : ""}.`
    : `No study matches “${text.trim()}” in ${from}.`;
}

if (form) {
  form.addEventListener("submit", (submitted) => {
    submitted.preventDefault();
    if (!input.value.trim()) {
      status.textContent = "Type a word to search for, or an accession such as S-BIAD609.";
      input.focus();
      return;
    }
    search(input.value);
  });
}
