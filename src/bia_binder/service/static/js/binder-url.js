/**
 * Everything the pages need to turn what a user pastes into BinderHub URLs, and back:
 * provider detection, specs, launch links, badge snippets and the post-launch redirect.
 *
 * Pure functions, no DOM: the home page, the launch page and the browser unit tests
 * (tests/browser/test_binder_url_js.py) all import this one module.
 */

const URL_SCHEME = /^[a-z][a-z0-9+.-]*:\/\//i;
const DOI = /^(?:doi:)?10\.\d{4,9}\//i;
const DOI_PREFIX = String.raw`(?:doi:|https?://(?:dx\.)?doi\.org/)?`;

/** The provider whose repo is any git URL (BinderHub's `git`). */
const GENERIC_GIT = "git";
/** Providers whose repo is a DOI. */
const DOI_PROVIDERS = new Set(["zenodo", "figshare", "dataverse"]);

/**
 * What this page knows of BinderHub's well-known providers. BinderHub serves no rules for
 * git, Zenodo, Figshare or Dataverse (its form had a provider menu; this page has one
 * field), and services may serve one catch-all DOI rule for all three: these rules fill
 * the gap, and choose between providers whose served rules accept the same input.
 */
const KNOWN_RULES = {
  git: [String.raw`^(?<repo>(?:https?|git|ssh|file)://\S+?)/?$`],
  zenodo: [String.raw`^${DOI_PREFIX}(?<repo>10\.5281/zenodo\.\d+)/?$`],
  figshare: [String.raw`^${DOI_PREFIX}(?<repo>10\.6084/m9\.figshare\.\d+(?:\.v\d+)?)/?$`],
  dataverse: [String.raw`^${DOI_PREFIX}(?<repo>(?!10\.5281/|10\.6084/)10\.\d{4,9}/\S+?)/?$`],
};

/**
 * @typedef {object} Provider
 * @prop {string} id              URL prefix, e.g. "gh"
 * @prop {string} displayName     e.g. "GitHub"
 * @prop {RegExp[]} detect        rules that recognise a pasted URL; named groups `repo` and optional `ref`
 * @prop {RegExp[]} knownRules    this page's own rules for a well-known provider (see KNOWN_RULES)
 * @prop {string} placeholder     example input
 * @prop {boolean} urlEncode      whether the repo part is percent-encoded in the spec (git URLs, GitLab groups)
 * @prop {boolean} refEnabled     whether the provider takes a branch/tag/commit
 * @prop {string} refDefault      ref used when none is given
 */

/**
 * Compile a detect rule served by /api/repoproviders. Rules may be written for Python
 * (`(?P<repo>...)`), so that spelling is translated to JavaScript's `(?<repo>...)`.
 * @returns {RegExp|null} null when the rule is not a valid JavaScript regex
 */
function compileRule(source) {
  try {
    return new RegExp(String(source).replace(/\(\?P</g, "(?<"));
  } catch {
    return null;
  }
}

function asList(value) {
  if (value === undefined || value === null || value === "") return [];
  return Array.isArray(value) ? value : [value];
}

/**
 * One provider entry of /api/repoproviders in a single shape. Accepts BinderHub's current
 * `display_config` shape (displayName, detect.regex, repo.*, ref.*) as well as the older
 * one (display_name, regex_detect, labels.ref_prop_disabled), so the page works with either.
 * @returns {Provider}
 */
export function normaliseProvider(raw) {
  const id = raw.id;
  const labels = raw.labels ?? {};
  const ref = raw.ref ?? {};
  const repo = raw.repo ?? {};
  const refEnabled = ref.enabled ?? (labels.ref_prop_disabled === undefined ? true : !labels.ref_prop_disabled);
  const rules = [...asList(raw.detect?.regex), ...asList(raw.regex_detect)];
  return {
    id,
    displayName: raw.displayName ?? raw.display_name ?? id,
    detect: (rules.length > 0 ? rules : (KNOWN_RULES[id] ?? [])).map(compileRule).filter(Boolean),
    knownRules: (KNOWN_RULES[id] ?? []).map(compileRule),
    placeholder: (repo.placeholder ?? "").replace(/^example:\s*/, ""),
    urlEncode: repo.urlEncode ?? false,
    refEnabled,
    refDefault: refEnabled ? (ref.default ?? "HEAD") : "",
  };
}

/** @returns {Provider[]} */
export function normaliseProviders(rawList) {
  return (Array.isArray(rawList) ? rawList : []).map(normaliseProvider).filter((p) => p.id);
}

/**
 * What one provider's rules make of the input, or null.
 *
 * A rule that leaves a whole URL as the repo did not recognise the host (BinderHub's GitLab
 * rule accepts anything): only the generic git provider takes URLs. Likewise a DOI belongs
 * to a DOI provider, not to a rule that happens to accept `a/b` (GitHub's).
 */
export function matchProvider(provider, input) {
  const text = input.trim();
  for (const rule of provider.detect) {
    const groups = rule.exec(text)?.groups;
    const repo = groups?.repo?.replace(/^\/+|\/+$/g, "");
    if (!repo) continue;
    if (URL_SCHEME.test(repo) && provider.id !== GENERIC_GIT) continue;
    if (DOI.test(repo) && !DOI_PROVIDERS.has(provider.id)) continue;
    return { provider, repo, ref: groups.ref ?? "" };
  }
  return null;
}

/**
 * Detect which provider a pasted URL or DOI belongs to. Of the providers whose rules
 * accept it, one whose well-known rule also does is preferred (a Figshare DOI matches every
 * DOI rule); then the service's order decides, except that the generic git provider,
 * which accepts any URL, comes last.
 * @returns {{provider: Provider, repo: string, ref: string}|null}
 */
export function detectProvider(input, providers) {
  const matches = providers.map((provider) => matchProvider(provider, input)).filter(Boolean);
  const rank = ({ provider }) =>
    (provider.id === GENERIC_GIT ? 2 : 0) + (provider.knownRules.some((rule) => rule.test(input.trim())) ? 0 : 1);
  return matches.sort((a, b) => rank(a) - rank(b))[0] ?? null;
}

/**
 * The spec that follows `v2/<provider>/` in a launch URL.
 * @param {Provider} provider
 */
export function buildSpec(provider, repo, ref) {
  const trimmed = repo.trim().replace(/^\/+|\/+$/g, "");
  const encodedRepo = provider.urlEncode ? encodeURIComponent(trimmed) : trimmed;
  if (!provider.refEnabled) return encodedRepo;
  return `${encodedRepo}/${ref.trim() || provider.refDefault || "HEAD"}`;
}

/**
 * The shareable launch link `{base}v2/<provider>/<spec>?urlpath=...`.
 * @param {string|URL} publicBaseUrl absolute URL of the service, ending with "/"
 * @param {{urlpath?: string, labpath?: string}} [open] what to open once the server runs
 */
export function launchUrl(publicBaseUrl, providerId, spec, open = {}) {
  const url = new URL(`v2/${providerId}/${spec}`, publicBaseUrl);
  for (const key of ["urlpath", "labpath"]) {
    if (open[key]) url.searchParams.set(key, open[key]);
  }
  return url.toString();
}

/**
 * Which query parameter a "path to open" from the home page becomes: a file is opened
 * in JupyterLab (`labpath`), anything else is a URL inside the server (`urlpath`).
 */
export function openParams(kind, path) {
  const value = path.trim();
  if (!value) return {};
  return kind === "file" ? { labpath: value.replace(/^\/+/, "") } : { urlpath: value };
}

function escapeHtmlAttribute(text) {
  return text.replace(/&/g, "&amp;").replace(/"/g, "&quot;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}

export const BADGE_FORMATS = ["markdown", "rst", "html"];

/**
 * README snippet showing the badge image and linking to the launch URL.
 * @param {"markdown"|"rst"|"html"} format
 */
export function badgeMarkup(format, badgeImageUrl, targetUrl) {
  switch (format) {
    case "markdown":
      return `[![Binder](${badgeImageUrl})](${targetUrl})`;
    case "rst":
      return `.. image:: ${badgeImageUrl}\n   :target: ${targetUrl}`;
    case "html":
      return `<a href="${escapeHtmlAttribute(targetUrl)}"><img src="${escapeHtmlAttribute(badgeImageUrl)}" alt="Launch Binder"></a>`;
    default:
      throw new Error(`unknown badge format ${format}: use one of ${BADGE_FORMATS.join(", ")}`);
  }
}

/**
 * Whether a launch parameter is a path inside the session (the service checks the same,
 * service/launch_paths.py): no scheme (`javascript:`, `https:`), no other host (`//host`, `/\\host`),
 * no control characters, no `..` that climbs out of the session.
 * @param {string} value
 */
export function isSessionPath(value) {
  if (!value) return true;
  if (/[\u0000-\u001f\u007f\\]/.test(value) || value !== value.trim()) return false;
  if (/^[A-Za-z][A-Za-z0-9+.-]*:/.test(value) || value.startsWith("//")) return false;
  let depth = 0;
  for (const segment of value.split(/[?#]/, 1)[0].replace(/^\/+/, "").split("/")) {
    let decoded = segment;
    try {
      decoded = decodeURIComponent(segment);
    } catch {
      // a malformed escape is no dot segment
    }
    if (decoded === "..") depth -= 1;
    else if (decoded !== "" && decoded !== ".") depth += 1;
    if (depth < 0) return false;
  }
  return true;
}

/**
 * Where to send the browser once the server is ready, honouring the launch link's
 * `urlpath` (any URL inside the server), `labpath` (a file opened in JupyterLab) or
 * `filepath` (a file opened in the classic notebook UI), in that order of precedence,
 * with the server's token appended as BinderHub does. Returns null when the result
 * would leave the session (the token goes nowhere else).
 * @param {string} serverUrl the `url` of the ready event; may be relative to the page
 * @param {string} token the `token` of the ready event
 * @param {{urlpath?: string, labpath?: string, filepath?: string}} open
 * @param {string} pageUrl URL of the launch page, to resolve a relative serverUrl
 */
export function redirectUrl(serverUrl, token, open, pageUrl) {
  const server = new URL(serverUrl, pageUrl);
  if (!server.pathname.endsWith("/")) server.pathname += "/";
  const filePath = (value) =>
    value
      .replace(/^\/+|\/+$/g, "")
      .split("/")
      .map(encodeURIComponent)
      .join("/");
  for (const value of [open.urlpath, open.labpath, open.filepath]) {
    if (!isSessionPath(value || "")) return null;
  }
  let target = "";
  if (open.urlpath) target = open.urlpath.replace(/^\/+/, "");
  else if (open.labpath) target = `lab/tree/${filePath(open.labpath)}`;
  else if (open.filepath) target = `tree/${filePath(open.filepath)}`;
  const url = new URL(target, server);
  if (url.origin !== server.origin || !url.pathname.startsWith(server.pathname)) return null;
  if (token) url.searchParams.append("token", token);
  return url.toString();
}
