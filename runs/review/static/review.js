// clinicgym review: live transcripts (server-sent events), forms saved in place, live list.
// Text from the server is set with textContent; whole turns arrive as HTML the server built
// with every transcript word escaped.
"use strict";

function saveInPlace(form) {
  const out = form.querySelector(".saved");
  fetch(form.action, {
    method: "POST",
    body: new URLSearchParams(new FormData(form)),
    headers: { "Accept": "application/json" },
    credentials: "same-origin",
  })
    .then((r) => r.json())
    .then((data) => {
      if (!out) return;
      out.classList.toggle("error", !data.ok);
      if (data.ok && form.classList.contains("missed-form")) {
        const line = document.createElement("span");
        line.textContent = data.saved;
        if (out.childNodes.length) out.appendChild(document.createElement("br"));
        out.appendChild(line);
        form.reset();
      } else {
        out.textContent = data.ok ? data.saved : "Not saved: " + data.error;
      }
    })
    .catch((err) => {
      if (out) { out.classList.add("error"); out.textContent = "Not saved: " + err; }
    });
}

document.addEventListener("submit", (e) => {
  const form = e.target;
  if (!(form instanceof HTMLFormElement) || !form.classList.contains("annotate")) return;
  e.preventDefault();
  saveInPlace(form);
});

function streamTranscript(box) {
  const status = document.getElementById("live-status");
  const source = new EventSource(box.dataset.stream);
  source.addEventListener("turn", (e) => {
    const data = JSON.parse(e.data);
    if (document.getElementById("ev-" + data.index)) return;
    box.insertAdjacentHTML("beforeend", data.html);
  });
  source.addEventListener("done", (e) => {
    source.close();
    const data = JSON.parse(e.data);
    if (status) {
      status.textContent = "The episode is over and stored. ";
      const a = document.createElement("a");
      a.href = data.url;
      a.id = "stored-link";
      a.textContent = "Open it with its scores";
      status.appendChild(a);
    }
  });
  source.addEventListener("gone", () => {
    source.close();
    if (status) status.textContent = "The episode stopped without being stored (the run was interrupted).";
  });
}

function pollLive(section) {
  const list = document.getElementById("live-list");
  const refresh = () => {
    fetch(section.dataset.url, { headers: { "Accept": "application/json" }, credentials: "same-origin" })
      .then((r) => r.json())
      .then((items) => {
        list.replaceChildren();
        if (!items.length) {
          const li = document.createElement("li");
          li.className = "muted";
          li.textContent = "No episode is running now.";
          list.appendChild(li);
        }
        for (const it of items) {
          const li = document.createElement("li");
          const a = document.createElement("a");
          a.href = it.url;
          a.textContent = it.episode_id;
          li.appendChild(a);
          li.appendChild(document.createTextNode(" (" + it.seconds + " s)"));
          list.appendChild(li);
        }
      })
      .catch(() => {});
  };
  setInterval(refresh, 3000);
}

document.addEventListener("DOMContentLoaded", () => {
  const box = document.getElementById("transcript");
  if (box && box.dataset.stream) streamTranscript(box);
  const live = document.getElementById("live");
  if (live && live.dataset.url) pollLive(live);
});
