// New task: each chosen file goes to /api/v1/uploads/sessions in 4 MiB chunks (resumable: after
// a failed chunk the script asks the server for its offset and goes on from there), then the
// sessions are finished as one upload. Without JavaScript the form posts multipart instead.
(function () {
  "use strict";
  var CHUNK = 4 * 1024 * 1024;
  var RETRIES = 5;
  var form = document.getElementById("upload-form");
  if (!form) return;
  var bar = document.getElementById("upload-progress");
  var result = document.getElementById("upload-result");
  var csrf = form.dataset.csrf;

  function call(method, url, body, type) {
    var headers = { "X-CSRF-Token": csrf };
    if (type) headers["Content-Type"] = type;
    return fetch(url, { method: method, headers: headers, body: body, credentials: "same-origin" })
      .then(function (response) {
        return response.text().then(function (text) {
          var data = {};
          try { data = text ? JSON.parse(text) : {}; } catch (err) { data = {}; }
          if (!response.ok) {
            var detail = data.detail;
            if (Array.isArray(detail)) detail = detail.map(function (d) { return d.msg; }).join("; ");
            var error = new Error(detail || ("HTTP " + response.status));
            error.status = response.status;
            throw error;
          }
          return data;
        });
      });
  }

  function sendFile(file, sent, total) {
    return call("POST", "/api/v1/uploads/sessions", JSON.stringify({ filename: file.name, size: file.size }), "application/json")
      .then(function (session) {
        var retries = 0;
        function next(offset) {
          bar.value = Math.round((100 * (sent + offset)) / total);
          if (offset >= file.size) return session.id;
          var chunk = file.slice(offset, offset + CHUNK);
          return call("PUT", "/api/v1/uploads/sessions/" + session.id + "?offset=" + offset, chunk, "application/octet-stream")
            .then(function (state) { retries = 0; return next(state.offset); })
            .catch(function (error) {
              if (error.status && error.status !== 409 && error.status < 500) throw error;
              if (++retries > RETRIES) throw error;
              // Resume where the server says the file ends.
              return new Promise(function (r) { setTimeout(r, 1000 * retries); })
                .then(function () { return call("GET", "/api/v1/uploads/sessions/" + session.id); })
                .then(function (state) { return next(state.offset); });
            });
        }
        return next(0);
      });
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var files = Array.prototype.slice.call(form.querySelector("input[type=file]").files);
    var ruleId = form.querySelector("select[name=rule_id]").value;
    var total = files.reduce(function (n, f) { return n + f.size; }, 0) || 1;
    bar.hidden = false;
    bar.value = 0;
    result.className = "";
    result.textContent = "";
    delete result.dataset.done;
    var ids = [];
    var sent = 0;
    files.reduce(function (chain, file) {
      return chain.then(function () {
        return sendFile(file, sent, total).then(function (id) { ids.push(id); sent += file.size; });
      });
    }, Promise.resolve())
      .then(function () {
        var body = { session_ids: ids, rule_id: ruleId ? Number(ruleId) : null };
        return call("POST", "/api/v1/uploads/sessions/finish", JSON.stringify(body), "application/json");
      })
      .then(function (body) {
        bar.value = 100;
        result.className = "notice";
        var series = (body.series || []).map(function (s) { return s.series_uid + " (" + s.instance_count + ")"; });
        var skipped = (body.skipped || []).length;
        result.textContent = result.dataset.uploaded + ": " + body.files + " — " + series.join(", ") +
          (skipped ? "; " + result.dataset.skipped + ": " + skipped : "");
        result.dataset.done = "true";
      })
      .catch(function (error) {
        result.className = "error";
        result.textContent = error.message;
        result.dataset.done = "error";
      });
  });
  form.dataset.ready = "true"; // the chunked upload is in charge of the form from here
})();
