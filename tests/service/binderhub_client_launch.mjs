// Drives one launch with BinderHub's own JavaScript client (@jupyterhub/binderhub-client).
// Usage: node binderhub_client_launch.mjs <build endpoint URL, e.g. http://127.0.0.1:8000/build/> <provider/spec>
// Prints every event as a JSON line; exits 0 on "ready", 1 on "failed".

// The client targets browsers: fetch-event-source reads window/document.
globalThis.window = globalThis;
globalThis.document = { hidden: false, cookie: "", addEventListener() {}, removeEventListener() {} };

const { BinderRepository } = await import("@jupyterhub/binderhub-client/client.js");

const [endpoint, spec] = process.argv.slice(2);
const repo = new BinderRepository(spec, new URL(endpoint));
for await (const data of repo.fetch()) {
  console.log(JSON.stringify(data));
  if (data.phase === "ready" || data.phase === "failed") {
    repo.close();
    process.exit(data.phase === "ready" ? 0 : 1);
  }
}
process.exit(1);
