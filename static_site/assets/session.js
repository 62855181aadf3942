// Goodman Live's API answers signed-in users only. This is the page's session: it signs
// in against Cognito itself (InitiateAuth, USER_PASSWORD_AUTH, to the endpoint that
// GET /api/auth/config names), keeps the tokens in sessionStorage (gone with the tab,
// never in localStorage), sends the access token in the Authorization header (never
// in a URL), refreshes it shortly before it expires or on a 401 once, and otherwise
// ends the session and tells the page (`init`'s `ended`), which shows its form again.
window.GoliveSession = (function () {
  "use strict";
  const STORE = "golive.session";          // sessionStorage key of {access, refresh, expires_at}
  const REFRESH_BEFORE_MS = 5 * 60 * 1000;  // refresh this long before the access token expires

  let API = "";
  let ended = function () {};
  let session = null;             // {access, refresh, expires_at (ms)}
  let epoch = 0;                  // bumps at every sign-in and sign-out: answers of an older session are dropped
  let authConfig = null;          // GET /api/auth/config
  let refreshing = null;          // the refresh under way, shared by every caller that needs it
  let refreshTimer = null;

  // Thrown to whatever was waiting on the API when the session ended: not an error to show.
  class SignedOut extends Error {}

  // An error the API or Cognito answered (as opposed to not answering at all).
  function answered(message, status) {
    const err = new Error(message);
    err.status = status;
    return err;
  }

  async function errorMessage(res) {
    let msg = res.status + " " + res.statusText;
    try {
      const j = await res.json();
      msg = j.Message || j.message || j.__type || msg;
    } catch (e) { /* not JSON */ }
    return msg;
  }

  async function configuration() {
    if (!authConfig) {
      let res;
      try {
        res = await fetch(API + "/api/auth/config", { headers: { "Accept": "application/json" } });
      } catch (e) {
        throw new Error("cannot reach the API: " + e.message);
      }
      if (!res.ok) throw answered("cannot read the sign-in configuration: " + await errorMessage(res), res.status);
      authConfig = await res.json();
    }
    return authConfig;
  }

  // One InitiateAuth call to the user pool (USER_PASSWORD_AUTH or REFRESH_TOKEN_AUTH):
  // its AuthenticationResult, or an error with Cognito's own message.
  async function initiateAuth(flow, parameters) {
    const cfg = await configuration();
    let res;
    try {
      res = await fetch(String(cfg.cognito_endpoint).replace(/\/+$/, "") + "/", {
        method: "POST",
        headers: { "Content-Type": "application/x-amz-json-1.1",
                   "X-Amz-Target": "AWSCognitoIdentityProviderService.InitiateAuth" },
        body: JSON.stringify({ AuthFlow: flow, ClientId: cfg.client_id, AuthParameters: parameters }),
      });
    } catch (e) {
      throw new Error("cannot reach the sign-in service: " + e.message);
    }
    if (!res.ok) throw answered(await errorMessage(res), res.status);
    const data = await res.json();
    if (data.AuthenticationResult) return data.AuthenticationResult;
    throw answered("the sign-in service asks for " + (data.ChallengeName || "another step") +
                   ", which this page cannot do: ask an operator to finish setting up the account", res.status);
  }

  function remember(result) {
    session = {
      access: result.AccessToken,
      refresh: result.RefreshToken || (session && session.refresh) || null,  // a refresh brings no new one
      expires_at: Date.now() + (Number(result.ExpiresIn) || 3600) * 1000,
    };
    sessionStorage.setItem(STORE, JSON.stringify(session));
    scheduleRefresh();
  }

  function restore() {
    try {
      const s = JSON.parse(sessionStorage.getItem(STORE) || "null");
      return s && typeof s.access === "string" && s.access ? s : null;
    } catch (e) {
      return null;
    }
  }

  function scheduleRefresh(delay) {
    clearTimeout(refreshTimer);
    if (!session) return;
    const left = session.expires_at - Date.now();
    const wait = delay != null ? delay : Math.max(left - Math.min(REFRESH_BEFORE_MS, left / 2), 1000);
    refreshTimer = setTimeout(function () { refresh().catch(function () { /* said where it matters */ }); }, wait);
  }

  // A new access token from the refresh token. Refused (the refresh token expired or
  // was revoked): the session ends and the form comes back. Not answered: tried again
  // in half a minute, the current token still in use.
  function refresh() {
    if (!refreshing) {
      const mine = epoch;
      const token = session && session.refresh;
      refreshing = (token ? initiateAuth("REFRESH_TOKEN_AUTH", { REFRESH_TOKEN: token })
                          : Promise.reject(answered("no refresh token", 401)))
        .then(function (result) {
          if (mine !== epoch) throw new SignedOut("signed out");
          remember(result);
        }, function (err) {
          if (mine !== epoch) throw new SignedOut("signed out");
          if (err.status) {
            end("Your session has ended (" + err.message + "): sign in again.");
            throw new SignedOut("signed out");
          }
          scheduleRefresh(30000);
          throw err;
        })
        .finally(function () { refreshing = null; });
    }
    return refreshing;
  }

  function send(path, options) {
    if (!session) throw new SignedOut("signed out");
    const headers = Object.assign({ "Accept": "application/json" }, (options && options.headers) || {},
                                  { "Authorization": "Bearer " + session.access });
    return fetch(API + path, Object.assign({}, options || {}, { headers: headers }));
  }

  // A call to the API as the signed-in user: its JSON, or an error with the API's message
  // (`status` set). A 401 is answered by one refresh and one retry, then the form.
  async function api(path, options) {
    const mine = epoch;
    if (!session) throw new SignedOut("signed out");
    if (session.expires_at - Date.now() < 10000) await refresh();
    let res = await send(path, options);
    if (res.status === 401 && mine === epoch) {
      await refresh();
      res = await send(path, options);
      if (res.status === 401 && mine === epoch) {
        end("Your session was refused by the API: sign in again.");
      }
    }
    if (mine !== epoch) throw new SignedOut("signed out");
    if (!res.ok) throw answered(await errorMessage(res), res.status);
    return res.status === 204 ? null : res.json();   // 204: done, nothing to say
  }

  function postJson(path, payload) {
    return api(path, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(payload) });
  }

  // The session is over: its tokens forgotten, the page told why.
  function end(message) {
    epoch++;
    session = null;
    sessionStorage.removeItem(STORE);
    clearTimeout(refreshTimer);
    ended(message || "");
  }

  // A new session from a username and password; Cognito's message if refused.
  async function signIn(username, password) {
    const result = await initiateAuth("USER_PASSWORD_AUTH", { USERNAME: username, PASSWORD: password });
    epoch++;
    session = null;
    remember(result);
  }

  // The session this tab already had (a reload), if any.
  function resume() {
    session = restore();
    if (!session) return false;
    epoch++;
    scheduleRefresh();
    return true;
  }

  return {
    SignedOut: SignedOut, api: api, postJson: postJson, signIn: signIn, resume: resume, end: end,
    init: function (apiBase, onEnded) { API = apiBase; ended = onEnded; },
    epoch: function () { return epoch; },
  };
})();
