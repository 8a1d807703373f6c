// The upload page: every chosen file is sent on its own, with a progress bar for the upload
// and then one for its ingest job (pages embedded), until its document is ready or failed.
// Without JavaScript the form posts one file and the jobs page shows its progress.
"use strict";

function node(tag, attrs, text) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

function sendFile(form, file, row) {
  return new Promise((resolve) => {
    const data = new FormData();
    data.append("collection", form.elements.collection.value);
    data.append("tags", form.elements.tags.value);
    data.append("file", file, file.name);
    const xhr = new XMLHttpRequest();
    xhr.open("POST", form.action);
    xhr.setRequestHeader("Accept", "application/json");
    xhr.upload.onprogress = (e) => {
      if (e.lengthComputable) { row.bar.max = e.total; row.bar.value = e.loaded; }
    };
    xhr.onload = () => {
      let body = null;
      try { body = JSON.parse(xhr.responseText); } catch (_) { /* not JSON */ }
      resolve({ status: xhr.status, body });
    };
    xhr.onerror = () => resolve({ status: 0, body: { message: "the connection failed" } });
    xhr.send(data);
  });
}

async function followJob(jobId, row) {
  for (;;) {
    const r = await fetch(`/admin/jobs/${encodeURIComponent(jobId)}/status`, { headers: { Accept: "application/json" } });
    if (!r.ok) { row.setState("failed", `could not read the job (${r.status})`); return; }
    const { job, document: doc } = await r.json();
    if (job.progress_total > 0) { row.bar.max = job.progress_total; row.bar.value = job.progress_done; }
    if (doc) row.link(doc.url);
    if (job.status === "done") {
      const n = (k, word) => `${k} ${word}${k === 1 ? "" : "s"}`;
      if (doc && doc.status === "ready") row.setState("ready", `ready: ${n(doc.pages, "page")}, ${n(doc.chunks, "chunk")}`);
      else row.setState("failed", doc ? `${doc.status}: ${doc.error || ""}` : "done");
      return;
    }
    if (job.status === "dead" || job.status === "cancelled") {
      row.setState("failed", `${job.status}: ${job.last_error || ""}`);
      return;
    }
    row.setState(job.status, job.status === "running"
      ? `processing${job.progress_total ? ` ${job.progress_done}/${job.progress_total} pages` : ""}`
      : "queued");
    await new Promise((ok) => setTimeout(ok, 1000));
  }
}

function uploadRow(list, file) {
  const li = node("li", { class: "upload" });
  const name = node("span", { class: "name" }, file.name);
  const bar = node("progress", { max: "1", value: "0" });
  const state = node("span", { class: "state" }, "uploading");
  li.append(name, " ", bar, " ", state);
  list.append(li);
  return {
    bar,
    setState(s, text) { li.dataset.state = s; state.textContent = text; },
    link(url) {
      if (name.tagName === "A") return;
      const a = node("a", { class: "name", href: url }, file.name);
      name.replaceWith(a);
    },
  };
}

document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("upload");
  const list = document.getElementById("uploads");
  if (form && list) {
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      const files = Array.from(form.elements.file.files);
      const max = Number(form.dataset.maxBytes || 0);
      const jobs = [];
      for (const file of files) {
        const row = uploadRow(list, file);
        if (max && file.size > max) { row.setState("failed", `larger than the ${max} bytes allowed`); continue; }
        const { status, body } = await sendFile(form, file, row);
        if (status >= 200 && status < 300 && body) {
          row.link(`/admin/documents/${body.id}`);
          if (body.unchanged) { row.setState("ready", "unchanged: already ingested"); continue; }
          row.bar.value = 0;
          row.setState("queued", "queued");
          jobs.push(followJob(body.job_id, row));
        } else {
          row.setState("failed", (body && body.message) || `upload failed (${status})`);
        }
      }
      form.reset();
      await Promise.all(jobs);
    });
  }
  // The documents table: tick or untick every row of the page.
  const all = document.getElementById("select-all");
  if (all) {
    all.addEventListener("change", () => {
      for (const box of document.querySelectorAll('input[name="ids"]')) box.checked = all.checked;
    });
  }
});
