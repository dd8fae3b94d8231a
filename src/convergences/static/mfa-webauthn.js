// Passkeys (WebAuthn): buttons marked data-passkey="login|second-factor|register|reauth".
// Without JavaScript or WebAuthn the buttons stay hidden and the page's fallback text is shown.
(function () {
  "use strict";
  if (!window.PublicKeyCredential || !navigator.credentials) { return; }

  function toBytes(b64url) {
    var b64 = b64url.replace(/-/g, "+").replace(/_/g, "/");
    while (b64.length % 4) { b64 += "="; }
    var raw = atob(b64), out = new Uint8Array(raw.length);
    for (var i = 0; i < raw.length; i++) { out[i] = raw.charCodeAt(i); }
    return out.buffer;
  }
  function toB64url(buffer) {
    var bytes = new Uint8Array(buffer), raw = "";
    for (var i = 0; i < bytes.length; i++) { raw += String.fromCharCode(bytes[i]); }
    return btoa(raw).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }
  function csrf() {
    try { return JSON.parse(document.body.getAttribute("hx-headers"))["x-csrftoken"]; } catch (e) { return ""; }
  }
  function post(url, body) {
    return fetch(url, {method: "POST", credentials: "same-origin",
                       headers: {"content-type": "application/json", "x-csrftoken": csrf()},
                       body: JSON.stringify(body || {})})
      .then(function (r) { return r.json().then(function (j) { return {status: r.status, json: j}; }); });
  }
  function descriptors(list) {
    return (list || []).map(function (c) { return {type: c.type, id: toBytes(c.id), transports: c.transports}; });
  }
  function credentialJSON(cred) {
    var r = cred.response, response = {clientDataJSON: toB64url(r.clientDataJSON)};
    if (r.attestationObject) {
      response.attestationObject = toB64url(r.attestationObject);
      if (r.getTransports) { response.transports = r.getTransports(); }
    } else {
      response.authenticatorData = toB64url(r.authenticatorData);
      response.signature = toB64url(r.signature);
      if (r.userHandle) { response.userHandle = toB64url(r.userHandle); }
    }
    return {id: cred.id, rawId: toB64url(cred.rawId), type: cred.type, response: response,
            clientExtensionResults: {}, authenticatorAttachment: cred.authenticatorAttachment || undefined};
  }
  function say(button, text) {
    var box = document.getElementById(button.getAttribute("aria-controls") || "passkey-status");
    if (box) { box.textContent = text; }
  }
  function showCodes(button, codes) {
    var box = document.getElementById("passkey-codes");
    if (!box || !codes || !codes.length) { return false; }
    var list = document.createElement("ul");
    list.className = "recovery-codes";
    codes.forEach(function (c) { var li = document.createElement("li"), code = document.createElement("code");
      code.textContent = c; li.appendChild(code); list.appendChild(li); });
    box.hidden = false;
    box.appendChild(list);
    box.focus();
    return true;
  }

  function authenticate(button, mode) {
    var next = button.getAttribute("data-next") || "/";
    var urls = mode === "reauth"
      ? ["/compte/reauthentification/cle-d-acces/options", "/compte/reauthentification/cle-d-acces"]
      : ["/login/cle-d-acces/options", "/login/cle-d-acces"];
    return post(urls[0], {mode: mode}).then(function (res) {
      if (res.status !== 200) { throw new Error(res.json.error || ""); }
      var o = res.json;
      return navigator.credentials.get({publicKey: {
        challenge: toBytes(o.challenge), rpId: o.rpId, timeout: o.timeout, userVerification: o.userVerification,
        allowCredentials: descriptors(o.allowCredentials)}});
    }).then(function (cred) {
      return post(urls[1], {credential: credentialJSON(cred), next: next});
    }).then(function (res) {
      if (res.json.redirect) { window.location.assign(res.json.redirect); return; }
      throw new Error(res.json.error || "");
    });
  }

  function register(button) {
    var labelField = document.getElementById("f-passkey-label");
    return post("/compte/double-authentification/cle-d-acces/options", {}).then(function (res) {
      if (res.json.redirect) { window.location.assign(res.json.redirect); return null; }
      var o = res.json;
      return navigator.credentials.create({publicKey: {
        challenge: toBytes(o.challenge), rp: o.rp, timeout: o.timeout, attestation: o.attestation,
        user: {id: toBytes(o.user.id), name: o.user.name, displayName: o.user.displayName},
        pubKeyCredParams: o.pubKeyCredParams, authenticatorSelection: o.authenticatorSelection,
        excludeCredentials: descriptors(o.excludeCredentials)}});
    }).then(function (cred) {
      if (!cred) { return; }
      return post("/compte/double-authentification/cle-d-acces",
                  {credential: credentialJSON(cred), label: labelField ? labelField.value : ""})
        .then(function (res) {
          if (res.status !== 200) { throw new Error(res.json.error || ""); }
          if (showCodes(button, res.json.codes)) {
            say(button, "La clé d'accès est enregistrée. Notez vos codes de secours ci-dessous.");
            return;
          }
          window.location.assign(res.json.redirect);
        });
    });
  }

  document.querySelectorAll("[data-passkey]").forEach(function (button) {
    var mode = button.getAttribute("data-passkey");
    var wrapper = button.closest("[data-passkey-block]");
    if (wrapper) { wrapper.hidden = false; }
    button.hidden = false;
    document.querySelectorAll("[data-passkey-fallback]").forEach(function (el) { el.hidden = true; });
    button.addEventListener("click", function () {
      say(button, "Suivez les instructions de votre navigateur ou de votre clé de sécurité…");
      button.disabled = true;
      var done = mode === "register" ? register(button) : authenticate(button, mode);
      done.catch(function (error) {
        say(button, (error && error.message) || "L'opération a été annulée ou n'a pas abouti. Réessayez.");
      }).then(function () { button.disabled = false; });
    });
  });
}());
