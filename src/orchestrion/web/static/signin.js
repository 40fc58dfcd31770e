// A sign-in link is /signin#token=...: the part after '#' never reaches the server, so the token
// is in no log and no Referer. Move it into the sign-in form, take it out of the address bar
// and history, and post the form (credentials travel only in POST bodies).
(function () {
  "use strict";
  function go() {
    var found = /^#token=([^&]+)/.exec(window.location.hash);
    var form = document.getElementById("signin");
    if (!found || !form) {
      return;
    }
    window.history.replaceState(null, "", window.location.pathname);
    form.elements.credential.value = decodeURIComponent(found[1]);
    form.submit();
  }
  // a link opened while this page is already showing changes only the fragment: no new load
  window.addEventListener("hashchange", go);
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", go);
  } else {
    go();
  }
})();
