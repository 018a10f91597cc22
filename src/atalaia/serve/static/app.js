// AtalaIA door access page: plain JS, no build step. The session cookie is HttpOnly; the CSRF token from
// /api/me or /api/login is sent in X-CSRF-Token on every state-changing request.
"use strict";
const BURST = 3, FRAME_MS = 250;
let csrf = null, logPage = 1, doorOn = false, snaps = [];
const $ = (id) => document.getElementById(id);

function show(tab) {
  document.querySelectorAll("section").forEach((s) => s.classList.toggle("active", s.id === tab));
  document.querySelectorAll("nav button").forEach((b) => b.classList.toggle("active", b.dataset.tab === tab));
  if (tab === "people") loadPeople();
  if (tab === "log") loadLog();
  if (tab === "model") loadModel();
}

async function api(path, opts = {}) {
  opts.headers = Object.assign({}, opts.headers || {}, csrf ? { "X-CSRF-Token": csrf } : {});
  opts.credentials = "same-origin";
  const r = await fetch(path, opts);
  let body = null;
  try { body = await r.json(); } catch (e) { body = { error: r.statusText }; }
  if (r.status === 401 && path !== "/api/login") { csrf = null; show("login"); }
  if (!r.ok) throw new Error(body.error || r.statusText);
  return body;
}

function cell(tr, text) { const td = document.createElement("td"); td.textContent = text == null ? "" : text; tr.appendChild(td); return td; }

async function whoami() {
  try { const me = await api("/api/me"); csrf = me.csrf; $("who").textContent = `${me.admin} @ door ${me.door}`; $("logout").hidden = false; show("door"); }
  catch (e) { show("login"); }
}

$("login-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const f = new FormData(ev.target);
  try {
    const r = await api("/api/login", { method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ username: f.get("username"), password: f.get("password") }) });
    csrf = r.csrf; $("login-err").textContent = ""; whoami();
  } catch (e) { $("login-err").textContent = e.message; }
});
$("logout").addEventListener("click", async () => { await api("/api/logout", { method: "POST" }); csrf = null; $("logout").hidden = true; $("who").textContent = ""; show("login"); });
document.querySelectorAll("nav button").forEach((b) => b.addEventListener("click", () => show(csrf ? b.dataset.tab : "login")));

// ------------------------------------------------------------------ camera
async function camera(video) {
  if (video.srcObject) return;
  video.srcObject = await navigator.mediaDevices.getUserMedia({ video: true, audio: false });
  await new Promise((res) => { if (video.readyState >= 2) res(); else video.onloadeddata = res; });
}
function frame(video) {
  const c = document.createElement("canvas");
  c.width = video.videoWidth; c.height = video.videoHeight;
  c.getContext("2d").drawImage(video, 0, 0);
  return new Promise((res) => c.toBlob(res, "image/jpeg", 0.92));
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ------------------------------------------------------------------ door
function showDecision(d) {
  const el = $("decision");
  el.className = d.granted ? "granted" : "refused";
  el.textContent = d.granted ? `granted: ${d.person}` : "refused";
  $("decision-detail").textContent = `best match ${d.person ?? "none"}, cosine ${d.score}, threshold ${d.threshold} ` +
    `(${d.threshold_rule}: ${d.stands_for}); ${d.frames} frame(s): ${d.reason}; event #${d.event_id}`;
}
// The frame the decision used, with the detector's box (x0, y0, x1, y1 in frame pixels) drawn on it: the
// person at the door sees which face was judged. Only with `atalaia serve --detector` (aligned chips: no box).
function drawFace(d, blobs) {
  const c = $("decision-frame");
  if (!d.boxes || !d.box_frames || !blobs || !blobs[d.box_frames[0]]) { c.hidden = true; return; }
  const img = new Image();
  img.onload = () => {
    const s = Math.min(1, 320 / img.width);
    c.width = Math.round(img.width * s); c.height = Math.round(img.height * s);
    const g = c.getContext("2d");
    g.drawImage(img, 0, 0, c.width, c.height);
    const [x0, y0, x1, y1] = d.boxes[0];
    g.lineWidth = 3; g.strokeStyle = g.fillStyle = d.granted ? "#2d6a4f" : "#c1121f";
    g.strokeRect(x0 * s, y0 * s, (x1 - x0) * s, (y1 - y0) * s);
    g.font = "13px sans-serif";
    if (d.detector_scores) g.fillText(`face ${d.detector_scores[0]}`, x0 * s + 3, Math.max(13, y0 * s - 4));
    URL.revokeObjectURL(img.src);
    c.hidden = false;
  };
  img.src = URL.createObjectURL(blobs[d.box_frames[0]]);
}
async function recognise(blobs) {
  const fd = new FormData();
  blobs.forEach((b, i) => fd.append("files", b, `frame${i}.jpg`));
  return api("/api/recognize", { method: "POST", body: fd });
}
$("burst-n").textContent = BURST;
$("door-start").addEventListener("click", async () => {
  try { await camera($("door-video")); } catch (e) { $("decision-detail").textContent = "camera: " + e.message; return; }
  doorOn = true; $("door-start").disabled = true; $("door-stop").disabled = false;
  while (doorOn) {
    const blobs = [];
    for (let i = 0; i < BURST; i++) { blobs.push(await frame($("door-video"))); await sleep(FRAME_MS); }
    try { const d = await recognise(blobs); showDecision(d); drawFace(d, blobs); await sleep(1500); }
    catch (e) { $("decision").className = ""; $("decision").textContent = ""; $("decision-detail").textContent = e.message; await sleep(500); }
  }
});
$("door-stop").addEventListener("click", () => { doorOn = false; $("door-start").disabled = false; $("door-stop").disabled = true; });
$("recog-file").addEventListener("change", async (ev) => {
  if (!ev.target.files.length) return;
  const blobs = [ev.target.files[0]];
  try { const d = await recognise(blobs); showDecision(d); drawFace(d, blobs); }
  catch (e) { $("decision-detail").textContent = e.message; }
});

// ------------------------------------------------------------------ enrol
$("snap-start").addEventListener("click", async () => {
  $("enrol-video").hidden = false;
  try { await camera($("enrol-video")); $("snap-take").disabled = false; } catch (e) { $("enrol-result").textContent = "camera: " + e.message; }
});
$("snap-take").addEventListener("click", async () => {
  const b = await frame($("enrol-video")); snaps.push(b);
  const img = document.createElement("img"); img.src = URL.createObjectURL(b); $("snaps").appendChild(img);
});
$("enrol-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const fd = new FormData();
  fd.append("name", $("enrol-name").value);
  [...$("enrol-files").files].forEach((f) => fd.append("files", f, f.name));
  snaps.forEach((b, i) => fd.append("files", b, `snapshot${i}.jpg`));
  try {
    const r = await api("/api/people", { method: "POST", body: fd });
    $("enrol-result").textContent = `${r.name}: ${r.added} template(s) added, ${r.templates} in total` +
      (r.skipped.length ? `; skipped: ${r.skipped.join("; ")}` : "") + (r.notes.length ? `; ${r.notes.join("; ")}` : "");
    $("enrol-result").className = "";
    snaps = []; $("snaps").textContent = ""; $("enrol-form").reset();
  } catch (e) { $("enrol-result").textContent = e.message; $("enrol-result").className = "err"; }
});

// ------------------------------------------------------------------ people
async function loadPeople() {
  const r = await api("/api/people"), tb = $("people-rows");
  tb.textContent = "";
  r.people.forEach((p) => {
    const tr = document.createElement("tr");
    cell(tr, p.name); cell(tr, p.templates); cell(tr, p.enrolled); cell(tr, p.id);
    const b = document.createElement("button"); b.textContent = "Delete"; b.className = "act";
    b.addEventListener("click", async () => {
      if (!confirm(`Delete ${p.name} and all their biometric data?`)) return;
      await api(`/api/people/${encodeURIComponent(p.name)}`, { method: "DELETE" }); loadPeople();
    });
    cell(tr, "").appendChild(b); tb.appendChild(tr);
  });
}

// ------------------------------------------------------------------ log
function logQuery() {
  const f = new FormData($("log-form")), q = new URLSearchParams();
  for (const [k, v] of f.entries()) if (v) q.set(k, v);
  return q;
}
async function loadLog() {
  const q = logQuery(); $("csv").href = "/api/events.csv?" + q.toString();
  q.set("page", logPage); q.set("per_page", 20);
  const r = await api("/api/events?" + q.toString()), tb = $("log-rows");
  tb.textContent = "";
  r.events.forEach((e) => {
    const tr = document.createElement("tr");
    cell(tr, e.time); cell(tr, e.door); cell(tr, e.kind);
    cell(tr, e.granted == null ? "" : (e.granted ? "granted" : "refused")).className = e.granted == null ? "" : (e.granted ? "granted" : "refused");
    cell(tr, e.person ?? e.subject); cell(tr, e.score == null ? "" : e.score.toFixed(3));
    cell(tr, e.threshold == null ? "" : e.threshold.toFixed(3)); cell(tr, e.frames); cell(tr, e.source); cell(tr, e.reason);
    tb.appendChild(tr);
  });
  const pages = Math.max(1, Math.ceil(r.total / r.per_page));
  $("page-info").textContent = `page ${r.page} of ${pages} (${r.total} events)`;
  $("prev").disabled = r.page <= 1; $("next").disabled = r.page >= pages;
}
$("log-form").addEventListener("submit", (ev) => { ev.preventDefault(); logPage = 1; loadLog(); });
$("prev").addEventListener("click", () => { logPage = Math.max(1, logPage - 1); loadLog(); });
$("next").addEventListener("click", () => { logPage += 1; loadLog(); });

// ------------------------------------------------------------------ model card
async function loadModel() {
  const m = await api("/api/model"), tb = $("model-rows");
  const pct = (v) => (v == null ? "n/a" : (100 * v).toFixed(2) + " %");
  const kb = (v) => (v == null ? "n/a" : (v / 1024).toFixed(1) + " KB");
  const est = Object.entries(m.est_latency_ms || {}).map(([t, v]) => `${t} ${v} ms`).join(", ") || "n/a";
  const rows = [["recipe", m.recipe], ["model", `${m.model} (${m.dtype}), ${m.params} params`],
    ["LFW 10-fold accuracy", pct(m.lfw_accuracy) + (m.lfw_accuracy_std != null ? ` ± ${pct(m.lfw_accuracy_std)}` : "")],
    ["LFW accuracy, TFLM runtime", pct(m.lfw_accuracy_tflm)], ["ROC AUC", m.auc ?? "n/a"],
    ["TAR @ FAR 1e-2", pct(m["tar_at_far_1e-2"])], ["TAR @ FAR 1e-3", pct(m["tar_at_far_1e-3"])],
    ["flash (as flashed)", kb(m.flash_bytes)], ["TFLM arena (measured)", kb(m.arena_bytes)],
    ["MACs per inference", m.macs_per_inference], ["inferences per face", m.inferences_per_face],
    ["est. latency per inference", est], ["runtime here", m.runtime],
    ["threshold", `${m.threshold.toFixed(4)} (${m.threshold_rule}: ${m.stands_for})`], ["warning", m.warning ?? "none"],
    ["model sha256", m.model_sha256], ["notes", m.notes]];
  tb.textContent = "";
  rows.forEach(([k, v]) => { const tr = document.createElement("tr"); cell(tr, k); cell(tr, v); tb.appendChild(tr); });
}

whoami();
