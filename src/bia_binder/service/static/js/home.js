/**
 * Home page: recognise a pasted repository link, show its launch link and badge
 * snippets as the user types, and go to the launch page on submit.
 */
import {
  BADGE_FORMATS,
  badgeMarkup,
  buildSpec,
  detectProvider,
  launchUrl,
  matchProvider,
  normaliseProviders,
  openParams,
} from "./binder-url.js";
import { makeCopyButton } from "./clipboard.js";

const form = document.getElementById("launch-form");
const repoInput = document.getElementById("repo-input");
const repoStatus = document.getElementById("repo-status");
const providerSelect = document.getElementById("provider-select");
const refInput = document.getElementById("ref-input");
const pathKind = document.getElementById("path-kind");
const pathInput = document.getElementById("path-input");
const launchButton = document.getElementById("launch-button");
const publicBaseUrl = new URL(document.body.dataset.baseUrl, window.location.origin);
const badgeImageUrl = new URL("badge_logo.svg", publicBaseUrl).toString();
const initialStatus = repoStatus.innerHTML;
const initialPlaceholder = repoInput.placeholder;

/** The providers embedded in the page, or fetched from the API when the page has none. */
async function loadProviders() {
  try {
    const embedded = JSON.parse(form.dataset.repoproviders);
    if (Array.isArray(embedded) && embedded.length > 0) return normaliseProviders(embedded);
  } catch {
    // not embedded: ask the API below
  }
  const response = await fetch(form.dataset.repoprovidersUrl, { headers: { Accept: "application/json" } });
  if (!response.ok) throw new Error(`${response.status} ${response.statusText}`);
  return normaliseProviders(await response.json());
}

function fillProviderSelect(providers) {
  for (const provider of providers) {
    providerSelect.append(new Option(provider.displayName, provider.id));
  }
}

function describeProviders(providers) {
  return providers.map((p) => p.displayName).join(", ");
}

/**
 * What the form currently says: nothing yet, an error to show, or a launch link.
 * @returns {{state: "empty"} | {state: "error", message: string} | {state: "ok", match: object, url: string}}
 */
function readForm(providers) {
  const input = repoInput.value.trim();
  if (!input) return { state: "empty" };
  const chosen = providers.find((p) => p.id === providerSelect.value);
  let match;
  if (chosen) {
    match = matchProvider(chosen, input) ?? (chosen.detect.length === 0 ? { provider: chosen, repo: input, ref: "" } : null);
    if (!match) {
      return {
        state: "error",
        message: `This is not a ${chosen.displayName} link. Check it, or set Source to "Detect from the link".`,
      };
    }
  } else {
    match = detectProvider(input, providers);
    if (!match) {
      return {
        state: "error",
        message: `Not recognised. Paste the address of a repository or a DOI (${describeProviders(providers)}), or pick its Source.`,
      };
    }
  }
  const ref = match.provider.refEnabled ? refInput.value.trim() || match.ref : "";
  const spec = buildSpec(match.provider, match.repo, ref);
  const url = launchUrl(publicBaseUrl, match.provider.id, spec, openParams(pathKind.value, pathInput.value));
  return { state: "ok", match, url };
}

function setStatus(html, isError) {
  if (repoStatus.innerHTML !== html) repoStatus.innerHTML = html;
  repoStatus.classList.toggle("is-error", isError);
  repoInput.setAttribute("aria-invalid", String(isError));
}

function escapeHtml(text) {
  const element = document.createElement("span");
  element.textContent = text;
  return element.innerHTML;
}

function showRefField(provider) {
  const takesRef = provider ? provider.refEnabled : true;
  refInput.disabled = !takesRef;
  refInput.placeholder = takesRef ? provider?.refDefault || "HEAD" : `not used for ${provider.displayName}`;
}

function showShare(url) {
  document.getElementById("share-empty").hidden = Boolean(url);
  document.getElementById("share-content").hidden = !url;
  if (!url) return;
  document.getElementById("launch-url").textContent = url;
  document.getElementById("badge-link").href = url;
  document.getElementById("badge-image").src = badgeImageUrl;
  for (const format of BADGE_FORMATS) {
    document.getElementById(`badge-${format}`).textContent = badgeMarkup(format, badgeImageUrl, url);
  }
}

function update(providers) {
  const chosen = providers.find((p) => p.id === providerSelect.value);
  repoInput.placeholder = chosen?.placeholder || initialPlaceholder;
  const result = readForm(providers);
  if (result.state === "empty") {
    setStatus(initialStatus, false);
    showRefField(chosen);
  } else if (result.state === "error") {
    setStatus(escapeHtml(result.message), true);
  } else {
    const { provider, repo, ref } = result.match;
    const refNote = ref ? ` at <code>${escapeHtml(ref)}</code>` : "";
    setStatus(`${escapeHtml(provider.displayName)}: <code>${escapeHtml(repo)}</code>${refNote}`, false);
    showRefField(provider);
    if (ref && !refInput.value) refInput.placeholder = ref;
  }
  launchButton.disabled = result.state !== "ok";
  showShare(result.state === "ok" ? result.url : "");
  return result;
}

async function main() {
  let providers;
  try {
    providers = await loadProviders();
  } catch (error) {
    setStatus(escapeHtml(`Could not load the list of sources (${error.message}). Reload the page to try again.`), true);
    return;
  }
  fillProviderSelect(providers);
  for (const element of [repoInput, refInput, pathInput]) element.addEventListener("input", () => update(providers));
  for (const element of [providerSelect, pathKind]) element.addEventListener("change", () => update(providers));
  for (const button of document.querySelectorAll(".copy-button")) {
    makeCopyButton(button, () => document.getElementById(button.dataset.copyTarget).textContent);
  }
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const result = update(providers);
    if (result.state === "ok") window.location.assign(result.url);
    else repoInput.focus();
  });
  // The browser may restore field values on back/forward navigation.
  update(providers);
  form.dataset.ready = "true";
}

main();
