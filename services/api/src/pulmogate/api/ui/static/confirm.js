// Forms with data-confirm ask before they are sent (no inline handlers: the pages' CSP
// allows only this origin's script files).
document.addEventListener("submit", function (event) {
  var message = event.target.dataset && event.target.dataset.confirm;
  if (message && !window.confirm(message)) event.preventDefault();
}, true);
