// Loaded into configurable-http-proxy with `node --import` (see bia_binder/hub/proxy.py).
//
// CHP 5.3 decodes every request path to find its route (decodeURIComponent) and answers a path
// with a malformed escape such as `%zz` with a 500 and a stack trace in its log. Such a path is
// the client's mistake: send it to the default route (the binder service), which answers 400
// saying what was wrong. Everything else about routing is unchanged.
const library = process.env.BIA_BINDER_CHP_LIBRARY;
if (library) {
  const { ConfigurableProxy } = await import(library);
  const targetForReq = ConfigurableProxy.prototype.targetForReq;
  ConfigurableProxy.prototype.targetForReq = async function (req) {
    try {
      return await targetForReq.call(this, req);
    } catch (error) {
      if (!(error instanceof URIError)) throw error;
      const route = await this._routes.getTarget("/");
      return route ? { prefix: route.prefix, target: route.data.target } : undefined;
    }
  };
}
