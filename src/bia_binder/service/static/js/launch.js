/**
 * Launch page: follow the build's event stream (BinderHub's phases), show the log,
 * progress and elapsed time, explain failures, and open the server when it is ready.
 */
import { redirectUrl } from "./binder-url.js";
import { makeCopyButton } from "./clipboard.js";
import { Terminal, plainText } from "./terminal.js";

const root = document.getElementById("launch");
const statusLine = document.getElementById("launch-status");
const progressBar = document.getElementById("progress-bar");
const elapsedLabel = document.getElementById("elapsed");
const followButton = document.getElementById("follow-button");
const logElement = document.getElementById("log");
const specTitle = readableSpec(document.querySelector(".launch-spec"));

/** Show a git provider's percent-encoded URL as the URL a person would recognise. */
function readableSpec(element) {
  try {
    element.textContent = decodeURIComponent(element.textContent);
  } catch {
    // not valid percent-encoding: keep it as it is
  }
  return element.textContent;
}

const STEPS = ["waiting", "fetching", "building", "launching", "ready"];

/** What each phase of the stream means for the page: its step, bar position and words. */
const PHASES = {
  waiting: { step: "waiting", percent: 5, status: "Waiting for the build to start" },
  fetching: { step: "fetching", percent: 15, status: "Fetching the repository" },
  building: { step: "building", percent: 35, status: "Building the environment" },
  built: { step: "launching", percent: 70, status: "Environment built, starting your server" },
  launching: { step: "launching", percent: 80, status: "Starting your server" },
  ready: { step: "ready", percent: 100, status: "Server ready, opening JupyterLab" },
};

/** What to try, by the HTTP status BinderHub gives a failure. */
const ADVICE = {
  400: "The launch link is not valid. Check the repository address and the branch, tag or commit, then launch again from the home page.",
  403: "Launching this repository is not allowed here. Log in to the portal, or ask the operator of this service.",
  404: "The repository, or its branch, tag or commit, was not found. Check the spelling and that the repository is public.",
  413: "The repository is larger than this service accepts. Keep large data out of the repository and load it from the data library instead.",
  429: "Too many launches right now, or you are over your quota. Wait a minute and try again, or log in and stop a session you no longer need.",
  500: "The environment could not be built. The last lines of the log usually name the cause: fix the repository's environment files (requirements.txt, environment.yml, postBuild…) and launch again.",
  502: "A service this launch depends on did not answer. Try again in a minute.",
  503: "The service is busy or restarting. Try again in a minute.",
  504: "A service this launch depends on took too long to answer. Try again in a minute.",
};
const DEFAULT_ADVICE = "Try again. If it fails again, the log below has the details.";
/** A 500 once the environment is built is not the repository's fault. */
const LAUNCH_ADVICE =
  "The environment was built, but its server did not start. Try again; if it keeps failing, tell the operator of this service what the log says.";

function adviceFor(statusCode, step) {
  if (statusCode === 500 && step === "launching") return LAUNCH_ADVICE;
  return ADVICE[statusCode] ?? DEFAULT_ADVICE;
}
const CONNECTION_LOST = "The connection to the build service was lost before the launch finished.";

const started = performance.now();
const stepStarted = new Map();
let currentStep = null;
let timer = null;

function formatDuration(milliseconds) {
  const seconds = Math.floor(milliseconds / 1000);
  const minutes = Math.floor(seconds / 60);
  const rest = String(seconds % 60).padStart(2, "0");
  return minutes >= 60 ? `${Math.floor(minutes / 60)}:${String(minutes % 60).padStart(2, "0")}:${rest}` : `${minutes}:${rest}`;
}

function tick() {
  elapsedLabel.textContent = formatDuration(performance.now() - started);
}

function stepElement(step) {
  return root.querySelector(`.phase-list [data-step="${step}"]`);
}

/** Close the current step (its duration shown) and open `step`; earlier skipped steps are marked as such. */
function enterStep(step) {
  if (step === currentStep) return;
  const now = performance.now();
  if (currentStep) {
    const done = stepElement(currentStep);
    done.dataset.state = "done";
    done.querySelector(".phase-time").textContent = formatDuration(now - stepStarted.get(currentStep));
  }
  for (const earlier of STEPS.slice(0, STEPS.indexOf(step))) {
    const element = stepElement(earlier);
    if (!element.dataset.state) {
      element.dataset.state = "skipped";
      // no waiting is a wait of 0:00; a build step not run means the environment was cached
      element.querySelector(".phase-time").textContent = earlier === "waiting" ? formatDuration(0) : "skipped";
    }
  }
  stepElement(step).dataset.state = "current";
  stepElement(step).setAttribute("aria-current", "step");
  if (currentStep) stepElement(currentStep).removeAttribute("aria-current");
  stepStarted.set(step, now);
  currentStep = step;
}

function setStatus(text) {
  if (statusLine.textContent !== text) statusLine.textContent = text;
  progressBar.setAttribute("aria-valuetext", text);
}

function setProgress(percent) {
  progressBar.setAttribute("aria-valuenow", String(percent));
  progressBar.style.setProperty("--progress", `${percent}%`);
}

function setFavicon(state) {
  document.getElementById("favicon").href = root.dataset[`favicon${state}`];
}

function finish(state) {
  clearInterval(timer);
  tick();
  root.dataset.state = state;
  document.body.dataset.launchState = state;
}

function showPhase(phase) {
  const info = PHASES[phase];
  if (!info) return; // "unknown" or absent: a log line only
  enterStep(info.step);
  setStatus(`${info.status}…`);
  setProgress(info.percent);
  document.title = `${info.step[0].toUpperCase()}${info.step.slice(1)}: ${specTitle} · bia-binder`;
}

function showFailure(message, statusCode, tailLines) {
  finish("failed");
  if (currentStep) stepElement(currentStep).dataset.state = "failed";
  setStatus("Launch failed");
  setFavicon("Failed");
  document.title = `Failed: ${specTitle} · bia-binder`;
  document.getElementById("error-message").textContent = plainText(message).trim() || "The launch failed.";
  document.getElementById("error-advice").textContent = adviceFor(statusCode, currentStep);
  document.getElementById("retry-link").href = window.location.href;
  if (tailLines.length > 0) {
    document.getElementById("error-tail").textContent = tailLines.join("\n");
    document.getElementById("error-tail-block").hidden = false;
  }
  const panel = document.getElementById("error-panel");
  panel.hidden = false;
  const tail = document.getElementById("error-tail");
  tail.scrollTop = tail.scrollHeight; // the cause is usually in the very last lines
  showLog(true);
  document.getElementById("error-heading").focus();
}

function openServer(event) {
  const target = redirectUrl(
    event.url,
    event.token,
    { urlpath: root.dataset.urlpath, labpath: root.dataset.labpath, filepath: root.dataset.filepath },
    window.location.href,
  );
  if (target === null) {
    // the server checks these parameters too; a page that still gets one must not send the token anywhere
    showFailure("This launch link's urlpath, labpath or filepath is not a path inside the session.", 400, []);
    return;
  }
  finish("ready");
  setFavicon("Ready");
  document.getElementById("ready-link").href = target;
  document.getElementById("ready-panel").hidden = false;
  // replace(): going Back from JupyterLab should not start another launch.
  window.location.replace(target);
}

function showLog(visible) {
  const toggle = document.getElementById("toggle-log");
  logElement.hidden = !visible;
  toggle.setAttribute("aria-expanded", String(visible));
  toggle.textContent = visible ? "Hide log" : "Show log";
}

function main() {
  const terminal = new Terminal(logElement, {
    onFollowChange: (following) => (followButton.hidden = following),
  });
  followButton.addEventListener("click", () => terminal.follow());
  document.getElementById("toggle-log").addEventListener("click", () => showLog(logElement.hidden));
  makeCopyButton(document.getElementById("copy-log"), () => terminal.text());

  timer = setInterval(tick, 1000);
  setFavicon("Progress");

  /** A study launch (/v2/bia/...) names the study's title and licence as soon as its metadata are read. */
  function showStudy(study) {
    const line = document.getElementById("launch-study");
    if (!line) return;
    const title = typeof study.title === "string" && study.title ? study.title : study.accession;
    const licence = typeof study.licence === "string" && study.licence ? study.licence : "licence not stated";
    line.textContent = `${title} (${licence})`;
    line.hidden = false;
  }
  const source = new EventSource(root.dataset.buildUrl);
  let finished = false;

  source.onmessage = (message) => {
    let event;
    try {
      event = JSON.parse(message.data);
    } catch {
      terminal.write(`${message.data}\n`);
      return;
    }
    const phase = typeof event.phase === "string" ? event.phase.toLowerCase() : undefined;
    const tailBeforeFailure = phase === "failed" ? terminal.tail(8) : [];
    if (typeof event.message === "string") terminal.write(event.message);
    if (event.study && typeof event.study === "object") showStudy(event.study);
    if (phase === "failed") {
      finished = true;
      source.close();
      showFailure(event.message ?? "", event.status_code, tailBeforeFailure);
    } else if (phase === "ready") {
      finished = true;
      source.close();
      if (typeof event.url !== "string" || !event.url) {
        showFailure("The server started, but the service did not say where it is.", 502, terminal.tail(8));
        return;
      }
      showPhase("ready");
      openServer(event);
    } else {
      showPhase(phase);
    }
  };

  // EventSource would silently reconnect, and a second request would start a second
  // launch: a dropped stream is reported instead, with a button to try again.
  source.onerror = () => {
    if (finished) return;
    finished = true;
    source.close();
    showFailure(CONNECTION_LOST, 503, terminal.tail(8));
  };
}

main();
