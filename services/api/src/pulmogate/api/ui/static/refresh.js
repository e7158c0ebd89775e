// A page that shows work in progress (<body data-refresh="5">) reloads itself every few
// seconds, but not while the operator types in a field or the tab is hidden (then it
// waits for the next turn). No inline script: the pages' CSP allows only this origin's files.
(function () {
  var seconds = Number(document.body && document.body.dataset.refresh);
  if (!seconds) return;
  function busy() {
    var field = document.activeElement;
    return document.hidden || (field && /^(INPUT|SELECT|TEXTAREA)$/.test(field.tagName));
  }
  function turn() {
    if (busy()) window.setTimeout(turn, seconds * 1000);
    else window.location.reload();
  }
  window.setTimeout(turn, seconds * 1000);
})();
