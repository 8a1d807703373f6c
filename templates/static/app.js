// Progressive enhancement of the ask page: answers stream in as they are written, then the
// page shows the conversation they were kept in. Without JavaScript the form is submitted
// and the server answers, keeps the answer and shows the conversation.
"use strict";

function el(tag, attrs, text) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

function pagesLabel(c) {
  if (c.locator) return c.locator;
  return c.page_start === c.page_end ? `page ${c.page_start}` : `pages ${c.page_start}–${c.page_end}`;
}

// Replaces the streamed text by text with [n] markers linked to their passages.
function renderAnswer(box, answer) {
  const urls = new Map(answer.citations.map((c) => [String(c.number), c.url + "#cited"]));
  box.textContent = "";
  box.classList.toggle("refused", answer.refused);
  const parts = answer.text.split(/(\[\d+\])/);
  for (const part of parts) {
    const m = /^\[(\d+)\]$/.exec(part);
    if (m && urls.has(m[1])) {
      box.appendChild(el("a", { class: "citation-marker", href: urls.get(m[1]) }, part));
    } else if (part) {
      box.appendChild(document.createTextNode(part));
    }
  }
}

function renderCitations(list, heading, answer) {
  list.textContent = "";
  const items = answer.refused ? [] : answer.citations;
  for (const c of items) {
    const li = el("li", { value: String(c.number) });
    li.appendChild(el("a", { class: "citation", href: c.url + "#cited" }, `${c.title}, ${pagesLabel(c)}`));
    li.appendChild(el("blockquote", { class: "quote" }, c.quote));
    list.appendChild(li);
  }
  heading.hidden = items.length === 0;
}

function meta(answer) {
  const t = answer.timings;
  const bits = [`${answer.model}`, `retrieval ${Math.round(t.retrieval_ms)} ms`];
  if (t.time_to_first_token_ms != null) bits.push(`first token ${(t.time_to_first_token_ms / 1000).toFixed(1)} s`);
  if (t.tokens_per_s != null) bits.push(`${t.tokens_per_s.toFixed(1)} tokens/s`);
  return bits.join(" · ");
}

function stream(form) {
  const params = new URLSearchParams(new FormData(form));
  document.querySelectorAll(".results, #main > .error").forEach((e) => e.remove());
  const section = document.getElementById("answer");
  const box = document.getElementById("answer-text");
  const error = document.getElementById("answer-error");
  const list = document.getElementById("citations");
  const heading = document.getElementById("citations-heading");
  const metaLine = document.getElementById("answer-meta");
  section.hidden = false;
  box.textContent = "";
  list.textContent = "";
  heading.hidden = true;
  error.hidden = true;
  metaLine.textContent = "Searching the documents…";
  section.dataset.state = "streaming";
  const button = document.getElementById("ask-button");
  button.disabled = true;
  const source = new EventSource("/ui/ask/stream?" + params.toString());
  const finish = (state) => {
    source.close();
    section.dataset.state = state;
    button.disabled = false;
  };
  source.addEventListener("sources", (e) => {
    const n = JSON.parse(e.data).length;
    metaLine.textContent = `Writing an answer from ${n} passages…`;
  });
  source.addEventListener("token", (e) => {
    box.appendChild(document.createTextNode(JSON.parse(e.data).text));
  });
  source.addEventListener("done", (e) => {
    const answer = JSON.parse(e.data);
    renderAnswer(box, answer);
    renderCitations(list, heading, answer);
    metaLine.textContent = meta(answer);
    finish("done");
    // The answer is kept in its conversation: show the conversation, this answer last.
    if (answer.conversation_id) showConversation(answer.conversation_id);
  });
  source.addEventListener("failure", (e) => {
    error.textContent = JSON.parse(e.data).message;
    error.hidden = false;
    metaLine.textContent = "";
    finish("error");
  });
  source.onerror = () => {
    if (section.dataset.state !== "streaming") return;
    error.textContent = "The connection to the server was lost.";
    error.hidden = false;
    finish("error");
  };
}

let swapped = false;

// Replaces the page's content by the conversation's (its turns with their feedback forms and
// the follow-up form), without reloading the page.
async function showConversation(id) {
  const url = "/?c=" + encodeURIComponent(id);
  let html;
  try {
    const res = await fetch(url, { credentials: "same-origin" });
    if (!res.ok) throw new Error(String(res.status));
    html = await res.text();
  } catch {
    location.assign(url);
    return;
  }
  const doc = new DOMParser().parseFromString(html, "text/html");
  const fresh = doc.getElementById("main");
  if (!fresh) {
    location.assign(url);
    return;
  }
  document.getElementById("main").replaceWith(fresh);
  swapped = true;
  document.title = doc.title;
  history.pushState(null, "", url);
  bind();
  showLatest();
}

// A conversation opens at its latest answer.
function showLatest() {
  const turns = document.querySelectorAll("article.turn");
  if (turns.length > 0) turns[turns.length - 1].scrollIntoView({ block: "start" });
}

// Wires the page's forms.
function bind() {
  const form = document.getElementById("ask-form");
  if (form && window.EventSource) {
    form.addEventListener("submit", (e) => {
      if (document.getElementById("view").value !== "answer") return;
      if (!document.getElementById("q").value.trim()) return;
      e.preventDefault();
      stream(form);
    });
  }
  // Forms that destroy something ask first.
  document.querySelectorAll("form[data-confirm]").forEach((f) => {
    f.addEventListener("submit", (e) => {
      if (!window.confirm(f.dataset.confirm)) e.preventDefault();
    });
  });
}

document.addEventListener("DOMContentLoaded", () => {
  bind();
  const cited = document.getElementById("cited");
  if (cited) cited.scrollIntoView({ block: "center" });
  if (!location.hash) showLatest();
});

// Back and forward across a conversation shown without a reload load the page anew.
window.addEventListener("popstate", () => {
  if (swapped) location.reload();
});
