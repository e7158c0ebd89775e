// New task: send the chosen files to /api/v1/uploads with a progress bar (plain XHR).
(function () {
  "use strict";
  var form = document.getElementById("upload-form");
  if (!form) return;
  var bar = document.getElementById("upload-progress");
  var result = document.getElementById("upload-result");
  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var data = new FormData(form);
    if (!data.get("rule_id")) data.delete("rule_id");
    data.delete("csrf_token");
    var xhr = new XMLHttpRequest();
    xhr.open("POST", form.action);
    xhr.setRequestHeader("X-CSRF-Token", form.dataset.csrf);
    bar.hidden = false;
    bar.value = 0;
    result.className = "";
    result.textContent = "";
    xhr.upload.onprogress = function (e) {
      if (e.lengthComputable) bar.value = Math.round((100 * e.loaded) / e.total);
    };
    xhr.onload = function () {
      var body = {};
      try { body = JSON.parse(xhr.responseText); } catch (err) { body = {}; }
      if (xhr.status >= 200 && xhr.status < 300) {
        bar.value = 100;
        result.className = "notice";
        var series = (body.series || []).map(function (s) { return s.series_uid + " (" + s.instance_count + ")"; });
        result.textContent = result.dataset.uploaded + ": " + body.files + " — " + series.join(", ");
        result.dataset.done = "true";
      } else {
        var detail = body.detail;
        if (Array.isArray(detail)) detail = detail.map(function (d) { return d.msg; }).join("; ");
        result.className = "error";
        result.textContent = detail || ("HTTP " + xhr.status);
        result.dataset.done = "error";
      }
    };
    xhr.onerror = function () {
      result.className = "error";
      result.textContent = "network error";
      result.dataset.done = "error";
    };
    xhr.send(data);
  });
})();
