// birdbridge web page: upload or record a bird call, show species per window and the closest pictures.
// Plain JavaScript, no build step, no external resources.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const el = (tag, attrs = {}, ...children) => {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs)) {
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else if (key === "style") node.style.cssText = value;  // CSSOM: allowed by the page's CSP
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else if (value !== undefined && value !== null && value !== false) node.setAttribute(key, value);
    }
    for (const child of children) if (child != null) node.append(child);
    return node;
  };

  const state = {
    info: null,
    maxUploadBytes: 50 * 1024 * 1024,
    file: null,       // the File last searched (kept to search again with other options)
    result: null,     // the last audio search response
    selected: 0,      // index into result.windows
    busy: false,
    audioUrl: null,
  };

  // ------------------------------------------------------------------------------------------------
  // Formatting

  const pct = (score) => `${(100 * score).toFixed(score >= 0.995 || score < 0.1 ? 1 : 0)}%`;
  const secs = (s) => (s >= 60 ? `${Math.floor(s / 60)}:${(s % 60).toFixed(1).padStart(4, "0")}` : `${s.toFixed(1)} s`);
  const span = (s, e) => `${secs(s).replace(" s", "")}–${secs(e)}`;
  const mb = (bytes) => `${(bytes / 1048576).toFixed(bytes < 10485760 ? 1 : 0)} MB`;
  // A taxon above species (with a rank) reads "Corvus (genus)"; its pictures are those of its species.
  const isTaxon = (sp) => sp.taxon_rank && sp.taxon_rank !== "species";
  const speciesLabel = (sp) => (isTaxon(sp) ? `${sp.scientific_name} (${sp.taxon_rank})`
    : sp.common_name || sp.scientific_name || sp.key);
  // A species' score as shown: a confidence (or a softmax score) in %, a similarity as a number.
  const scoreText = (sp, rankedBy) => (rankedBy === "similarity" && sp.confidence == null
    ? `sim ${sp.score.toFixed(2)}` : pct(sp.confidence ?? sp.score));
  const scoreTitle = (sp) => [sp.confidence != null ? `confidence ${sp.confidence.toFixed(3)}` : null,
    `similarity ${sp.similarity.toFixed(3)}`].filter(Boolean).join(", ");
  // A window without a detection: "no bird detected", with its nearest background class if the gallery has them.
  const noBird = (w) => `no bird detected${w.background ? ` — ${w.background}` : ""}`;

  // ------------------------------------------------------------------------------------------------
  // Messages

  function showError(box, message) {
    box.textContent = message;
    box.hidden = !message;
  }

  function setStatus(box, message, busy = false) {
    box.textContent = message;
    box.classList.toggle("busy", busy);
  }

  async function apiError(response) {
    let detail = "";
    try {
      const body = await response.json();
      detail = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail ?? body);
    } catch (_) {
      detail = response.statusText;
    }
    return `${detail || "the server gave no reason"} (HTTP ${response.status})`;
  }

  async function fetchJson(url, options) {
    let response;
    try {
      response = await fetch(url, options);
    } catch (_) {
      throw new Error("the server could not be reached; is birdbridge serve still running?");
    }
    if (!response.ok) throw new Error(await apiError(response));
    return response.json();
  }

  // ------------------------------------------------------------------------------------------------
  // Server info

  async function loadInfo() {
    try {
      const info = await fetchJson("/api/info");
      state.info = info;
      state.maxUploadBytes = info.limits.max_upload_mb * 1048576;
      const teacher = info.teacher && (info.teacher.name || info.teacher.model || info.teacher.id);
      const parts = [`Model ${info.model}`];
      if (teacher) parts.push(`teacher ${teacher}`);
      parts.push(`gallery of ${info.gallery.images} pictures of ${info.gallery.species} species`);
      parts.push(`${info.window_s} s windows`);
      parts.push(info.calibrated ? "calibrated confidences" : "not calibrated: ranked by similarity");
      if (!(info.gallery.background || []).length) parts.push("no background vocabulary");
      $("info").textContent = parts.join(" · ");
      $("limit-hint").textContent = `Files up to ${info.limits.max_upload_mb} MB.`;
      if (info.window_s) {
        $("opt-window").placeholder = `${info.window_s} (model's)`;
        $("opt-window").max = String(info.window_s);
      }
      if (info.limits.min_hop_s) $("opt-hop").min = String(info.limits.min_hop_s);
      for (const locale of info.locales || []) {
        $("opt-locale").append(el("option", { value: locale, text: locale }));
      }
      if (info.locale) $("opt-locale").value = info.locale;
      showArchiveInfo(info.archive);
    } catch (error) {
      $("info").textContent = `Could not read the server's info: ${error.message}`;
    }
  }

  // ------------------------------------------------------------------------------------------------
  // Audio search

  function setBusy(busy) {
    state.busy = busy;
    for (const id of ["file-input", "apply-options"]) $(id).disabled = busy;
    $("record-button").disabled = busy && !recorder.active;
    $("dropzone").classList.toggle("disabled", busy);
  }

  // Query parameters from form fields: {parameter: element id}; empty fields are left out (the server's defaults).
  function fieldParams(fields) {
    const params = new URLSearchParams();
    for (const [name, id] of Object.entries(fields)) {
      const value = $(id).value.trim();
      if (value !== "") params.set(name, value);
    }
    return params;
  }

  const searchParams = () => fieldParams({
    window: "opt-window", hop: "opt-hop", top_k: "opt-topk", n_images: "opt-nimages", score: "opt-score",
    rank: "opt-rank", min_conf: "opt-minconf", sensitivity: "opt-sensitivity", locale: "opt-locale",
    lat: "opt-lat", lon: "opt-lon", week: "opt-week", date: "opt-date",
  });

  async function searchFile(file) {
    if (!file || state.busy) return;
    showError($("error"), "");
    if (file.size > state.maxUploadBytes) {
      showError($("error"), `“${file.name}” is ${mb(file.size)}; this server accepts recordings up to ` +
        `${mb(state.maxUploadBytes)}. Cut it shorter, or start the server with a larger --max-upload-mb.`);
      return;
    }
    if (file.size === 0) {
      showError($("error"), `“${file.name}” is empty.`);
      return;
    }
    setBusy(true);
    setStatus($("status"), `Listening to “${file.name}”…`, true);
    const form = new FormData();
    form.append("file", file, file.name);
    try {
      const result = await fetchJson(`/api/search/audio?${searchParams()}`, { method: "POST", body: form });
      state.file = file;
      showResult(result, file);
      const n = result.windows.length;
      const found = result.windows.filter((w) => w.species.length).length;
      setStatus($("status"), `${secs(result.duration_s)} analysed in ${n} window${n === 1 ? "" : "s"}; ` +
        `a bird detected in ${found}.`);
    } catch (error) {
      setStatus($("status"), "");
      showError($("error"), `Could not analyse “${file.name}”: ${error.message}`);
    } finally {
      setBusy(false);
    }
  }

  function showResult(result, file) {
    state.result = result;
    $("results").hidden = false;
    $("file-name").textContent = result.file;

    const range = result.range_filter;
    $("range-note").hidden = !range;
    $("range-note").textContent = range ? `Range filter ${range.where}: ${range.kept} of the ${range.expected} ` +
      "species BirdNET expects there are in the gallery, and only they were searched." : "";

    renderChips($("summary"), "Most likely overall:", result.summary.species.slice(0, 5),
      "no bird detected in any window", result.ranked_by);

    const spectro = result.spectrogram;
    const img = $("spectrogram");
    $("spectro-frame").hidden = !spectro;
    if (spectro) {
      img.src = spectro.png;
      const shown = Math.min(spectro.seconds, result.duration_s);
      $("spectro-caption").textContent = (shown + 0.05 < result.duration_s)
        ? `Spectrogram of the first ${secs(shown)} of ${secs(result.duration_s)}, 0–${(spectro.max_hz / 1000).toFixed(1)} kHz.`
        : `Spectrogram, 0–${(spectro.max_hz / 1000).toFixed(1)} kHz.`;
      drawAxis(spectro.seconds);
    } else {
      $("axis").replaceChildren();
      $("spectro-caption").textContent = "";
    }

    if (state.audioUrl) URL.revokeObjectURL(state.audioUrl);
    state.audioUrl = URL.createObjectURL(file);
    $("player").src = state.audioUrl;

    const strip = $("windows");
    strip.replaceChildren();
    result.windows.forEach((w, i) => {
      const top = w.species[0];
      strip.append(el("button", {
        type: "button", class: "window-button", "data-index": String(i), "aria-pressed": "false",
        onclick: () => selectWindow(i, true),
      },
      el("span", { class: "w-time", text: `${i + 1} · ${span(w.start_s, w.end_s)}` }),
      el("span", { class: top ? "w-top" : "w-top no-bird", text: top ? `${speciesLabel(top)} ${scoreText(top, result.ranked_by)}`
        : noBird(w) })));
    });
    selectWindow(0, false);
  }

  function renderChips(box, label, species, emptyText = "", rankedBy = "softmax") {
    box.replaceChildren();
    if (!species.length && !emptyText) return;
    box.append(el("span", { class: "muted small", text: label }));
    for (const sp of species) {
      box.append(el("span", { class: "chip", title: sp.scientific_name },
        el("strong", { text: speciesLabel(sp) }), ` ${scoreText(sp, rankedBy)}`));
    }
    if (!species.length) box.append(el("span", { class: "muted small", text: emptyText }));
  }

  function drawAxis(seconds) {
    const axis = $("axis");
    axis.replaceChildren();
    const steps = [0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600];
    const maxTicks = Math.max(2, Math.min(10, Math.floor($("spectro-frame").clientWidth / 64)));
    const step = steps.find((s) => seconds / s <= maxTicks) || 600;
    for (let t = 0; t <= seconds + 1e-6; t += step) {
      const left = (100 * t) / seconds;
      if (left > 97) break;
      axis.append(el("span", { style: `left:${left}%`, text: secs(t) }));
    }
  }

  function selectWindow(index, fromUser) {
    const result = state.result;
    if (!result || !result.windows.length) return;
    index = Math.max(0, Math.min(index, result.windows.length - 1));
    state.selected = index;
    const w = result.windows[index];

    for (const button of $("windows").children) {
      const on = Number(button.dataset.index) === index;
      button.setAttribute("aria-pressed", String(on));
      button.classList.toggle("selected", on);
      if (on && fromUser) button.focus({ preventScroll: true });
      if (on) revealInStrip(button);
    }

    const spectro = result.spectrogram;
    const selection = $("selection");
    if (spectro && w.start_s < spectro.seconds) {
      const left = (100 * w.start_s) / spectro.seconds;
      const width = (100 * (Math.min(w.end_s, spectro.seconds) - w.start_s)) / spectro.seconds;
      selection.style.left = `${left}%`;
      selection.style.width = `${Math.max(width, 0.5)}%`;
      selection.hidden = false;
    } else {
      selection.hidden = true;
    }

    $("window-title").textContent = `Window ${index + 1} of ${result.windows.length} · ${span(w.start_s, w.end_s)}`;
    renderSpecies($("species-list"), w, result.ranked_by);
    renderImages($("image-grid"), w.images, w.species.length ? "No pictures for this window."
      : "No pictures: no bird was detected in this window.");
    if (fromUser && $("player").paused) $("player").currentTime = w.start_s;
  }

  // Scroll the window strip sideways (only) so that the button is visible.
  function revealInStrip(button) {
    const strip = $("windows");
    const left = button.offsetLeft - strip.offsetLeft;
    if (left < strip.scrollLeft) strip.scrollLeft = left - 4;
    else if (left + button.offsetWidth > strip.scrollLeft + strip.clientWidth) {
      strip.scrollLeft = left + button.offsetWidth - strip.clientWidth + 4;
    }
  }

  function renderSpecies(list, w, rankedBy) {
    const species = w.species;
    list.replaceChildren();
    if (!species.length) {
      const text = noBird(w);
      list.append(el("li", { class: "no-bird", text: text.charAt(0).toUpperCase() + text.slice(1) + "." }));
      return;
    }
    for (const sp of species) {
      const fill = Math.max(0, Math.min(1, sp.confidence ?? sp.score));
      const bar = el("span", { class: "bar" }, el("span", { style: `width:${Math.round(100 * fill)}%` }));
      const names = isTaxon(sp)
        ? [el("span", { class: "common scientific-only", text: sp.scientific_name }),
          el("span", { class: "rank", text: `${sp.taxon_rank}, species uncertain: one of ${(sp.members || []).join(", ")}` })]
        : [sp.common_name ? el("span", { class: "common", text: sp.common_name })
          : el("span", { class: "common scientific-only", text: sp.scientific_name }),
        sp.common_name ? el("span", { class: "scientific", text: sp.scientific_name }) : null];
      list.append(el("li", { class: "species", "data-rank": sp.taxon_rank || "species" },
        el("span", { class: "names" }, ...names,
          sp.has_images === false ? el("span", { class: "muted small", text: " (no pictures)" }) : null),
        el("span", { class: "score", text: scoreText(sp, rankedBy), title: scoreTitle(sp) }),
        bar));
    }
  }

  function renderImages(grid, images, emptyText) {
    grid.replaceChildren();
    if (!images.length) {
      grid.append(el("p", { class: "muted", text: emptyText }));
      return;
    }
    for (const im of images) {
      const name = im.common_name || im.species;
      const credit = [im.photographer, im.licence, im.source].filter(Boolean).join(" · ");
      grid.append(el("figure", { class: "picture" },
        el("img", {
          src: im.url, alt: `Picture of ${name}${im.common_name ? ` (${im.species})` : ""}`, decoding: "async",
          width: "200", height: "150",
        }),
        el("figcaption", {},
          el("span", { class: im.common_name ? "common" : "common scientific-only", text: name }),
          im.common_name ? el("span", { class: "scientific", text: im.species }) : null,
          el("span", { class: "muted small", text: `similarity ${im.score.toFixed(2)}` }),
          credit ? el("span", { class: "credit", text: credit }) : null)));
    }
  }

  // Click on the spectrogram: select the window around that time and move the player there.
  function onSpectrogramClick(event) {
    const result = state.result;
    if (!result || !result.spectrogram) return;
    const rect = event.currentTarget.getBoundingClientRect();
    const t = ((event.clientX - rect.left) / rect.width) * result.spectrogram.seconds;
    // The window holding t whose centre is nearest; if none holds it, the nearest window.
    const inside = (w) => w.start_s <= t && t < w.end_s;
    const distance = (w) => (inside(w) ? 0 : 1e9) + Math.abs((w.start_s + w.end_s) / 2 - t);
    let index = 0;
    result.windows.forEach((w, i) => { if (distance(w) < distance(result.windows[index])) index = i; });
    selectWindow(index, true);
    if ($("player").paused) $("player").currentTime = t;
  }

  function onPlayerTime() {
    const result = state.result;
    const head = $("playhead");
    if (!result || !result.spectrogram) { head.hidden = true; return; }
    const t = $("player").currentTime;
    head.hidden = t > result.spectrogram.seconds;
    head.style.left = `${(100 * t) / result.spectrogram.seconds}%`;
  }

  function onWindowKeys(event) {
    if (!state.result) return;
    const moves = { ArrowLeft: -1, ArrowUp: -1, ArrowRight: 1, ArrowDown: 1 };
    if (event.key in moves) {
      event.preventDefault();
      selectWindow(state.selected + moves[event.key], true);
    } else if (event.key === "Home" || event.key === "End") {
      event.preventDefault();
      selectWindow(event.key === "Home" ? 0 : state.result.windows.length - 1, true);
    }
  }

  // ------------------------------------------------------------------------------------------------
  // Recording in the browser: raw PCM through the Web Audio API, encoded here as 16-bit WAV.

  const TAP_WORKLET = `
    class BirdbridgeTap extends AudioWorkletProcessor {
      process(inputs) {
        const input = inputs[0];
        if (input && input.length) {
          const n = input[0].length, mono = new Float32Array(n);
          for (const channel of input) for (let i = 0; i < n; i++) mono[i] += channel[i] / input.length;
          this.port.postMessage(mono, [mono.buffer]);
        }
        return true;
      }
    }
    registerProcessor("birdbridge-tap", BirdbridgeTap);`;

  const recorder = {
    active: false, stream: null, context: null, nodes: [], chunks: [], length: 0, timer: null, started: 0,
    maxSeconds: 300,
  };

  async function startRecording() {
    showError($("error"), "");
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      showError($("error"), "Recording needs a secure page: open birdbridge at http://localhost or over https, " +
        "or upload a file instead.");
      return;
    }
    let stream;
    try {
      stream = await navigator.mediaDevices.getUserMedia({
        audio: { channelCount: 1, echoCancellation: false, noiseSuppression: false, autoGainControl: false },
      });
    } catch (error) {
      showError($("error"), `The microphone could not be opened (${error.name || error.message}). ` +
        "Allow microphone access for this page, or upload a file instead.");
      return;
    }
    const context = new AudioContext();
    const source = context.createMediaStreamSource(stream);
    const silent = context.createGain();
    silent.gain.value = 0;
    silent.connect(context.destination);
    Object.assign(recorder, { active: true, stream, context, chunks: [], length: 0, nodes: [source, silent] });
    const take = (samples) => {
      if (!recorder.active) return;
      recorder.chunks.push(samples);
      recorder.length += samples.length;
    };
    try {
      const url = URL.createObjectURL(new Blob([TAP_WORKLET], { type: "text/javascript" }));
      await context.audioWorklet.addModule(url);
      URL.revokeObjectURL(url);
      const tap = new AudioWorkletNode(context, "birdbridge-tap");
      tap.port.onmessage = (event) => take(event.data);
      source.connect(tap).connect(silent);
      recorder.nodes.push(tap);
    } catch (_) { // no AudioWorklet: the older ScriptProcessor
      const tap = context.createScriptProcessor(4096, 1, 1);
      tap.onaudioprocess = (event) => take(new Float32Array(event.inputBuffer.getChannelData(0)));
      source.connect(tap).connect(silent);
      recorder.nodes.push(tap);
    }
    // Stay under the upload limit: 2 bytes per sample plus the header.
    recorder.maxSeconds = Math.min(300, Math.floor((state.maxUploadBytes - 1024) / (2 * context.sampleRate)));
    recorder.started = performance.now();
    recorder.timer = setInterval(tickRecording, 200);
    $("record-button").setAttribute("aria-pressed", "true");
    $("record-button").classList.add("recording");
    $("record-label").textContent = "Stop";
    $("file-input").disabled = true;
    setStatus($("status"), "Recording… press Stop when the bird has sung.");
  }

  function tickRecording() {
    const seconds = (performance.now() - recorder.started) / 1000;
    $("record-time").textContent = secs(seconds);
    if (seconds >= recorder.maxSeconds) stopRecording();
  }

  async function stopRecording() {
    if (!recorder.active) return;
    recorder.active = false;
    clearInterval(recorder.timer);
    for (const node of recorder.nodes) node.disconnect();
    for (const track of recorder.stream.getTracks()) track.stop();
    const rate = recorder.context.sampleRate;
    await recorder.context.close();
    $("record-button").setAttribute("aria-pressed", "false");
    $("record-button").classList.remove("recording");
    $("record-label").textContent = "Record";
    $("record-time").textContent = "";
    $("file-input").disabled = false;
    const samples = new Float32Array(recorder.length);
    let offset = 0;
    for (const chunk of recorder.chunks) { samples.set(chunk, offset); offset += chunk.length; }
    recorder.chunks = [];
    if (samples.length < rate * 0.2) {
      setStatus($("status"), "");
      showError($("error"), "The recording is too short; record for at least a second.");
      return;
    }
    const stamp = new Date().toISOString().slice(0, 19).replace(/[:T]/g, "-");
    await searchFile(new File([encodeWav(samples, rate)], `recording-${stamp}.wav`, { type: "audio/wav" }));
  }

  function encodeWav(samples, rate) {
    const buffer = new ArrayBuffer(44 + 2 * samples.length);
    const view = new DataView(buffer);
    const text = (at, s) => { for (let i = 0; i < s.length; i++) view.setUint8(at + i, s.charCodeAt(i)); };
    text(0, "RIFF");
    view.setUint32(4, 36 + 2 * samples.length, true);
    text(8, "WAVE");
    text(12, "fmt ");
    view.setUint32(16, 16, true);       // fmt chunk size
    view.setUint16(20, 1, true);        // PCM
    view.setUint16(22, 1, true);        // mono
    view.setUint32(24, rate, true);
    view.setUint32(28, rate * 2, true); // bytes per second
    view.setUint16(32, 2, true);        // block align
    view.setUint16(34, 16, true);       // bits per sample
    text(36, "data");
    view.setUint32(40, 2 * samples.length, true);
    for (let i = 0; i < samples.length; i++) {
      const s = Math.max(-1, Math.min(1, samples[i]));
      view.setInt16(44 + 2 * i, s < 0 ? s * 0x8000 : s * 0x7fff, true);
    }
    return buffer;
  }

  // ------------------------------------------------------------------------------------------------
  // Text search

  async function searchText(event) {
    event.preventDefault();
    const q = $("text-query").value.trim();
    showError($("text-error"), "");
    if (!q) {
      showError($("text-error"), "Type a species name or a description to search for.");
      return;
    }
    setStatus($("text-status"), `Searching for “${q}”…`, true);
    try {
      const result = await fetchJson(`/api/search/text?${new URLSearchParams({ q, n_images: "12", locale: $("opt-locale").value, rank: $("opt-rank").value })}`);
      renderImages($("text-grid"), result.images, "No pictures found.");
      renderChips($("text-species"), "Closest species:", (result.species || []).slice(0, 5));
      setStatus($("text-status"), `Results for “${result.query}”:`);
    } catch (error) {
      setStatus($("text-status"), "");
      showError($("text-error"), `Could not search for “${q}”: ${error.message}`);
    }
  }


  // ------------------------------------------------------------------------------------------------
  // Tabs

  function showTab(name) {
    for (const tab of ["search", "archive"]) {
      const on = tab === name;
      $(`tab-button-${tab}`).setAttribute("aria-selected", String(on));
      $(`tab-${tab}`).hidden = !on;
    }
  }

  // ------------------------------------------------------------------------------------------------
  // Archive: search its windows by name, picture or recording; hear, see and label each hit.

  const archive = { busy: false, result: null };

  function showArchiveInfo(info) {
    $("archive-none").hidden = Boolean(info);
    $("archive-controls").disabled = !info;
    if (!info) {
      $("archive-info").textContent = "";
      return;
    }
    const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;
    const length = info.hours >= 1 ? `${info.hours.toFixed(1)} h` : secs(info.hours * 3600);
    $("archive-info").textContent = `Archive “${info.name}”: ${plural(info.windows, "window")} of ` +
      `${info.window_s} s from ${plural(info.files, "recording")} (${length}); ${plural(info.labels, "label")} given.`;
  }

  const archiveParams = () => fieldParams({
    top_k: "archive-topk", per_file: "archive-perfile", min_score: "archive-minscore", locale: "opt-locale",
  });

  async function archiveSearch(what, url, options) {
    if (archive.busy) return;
    archive.busy = true;
    showError($("archive-error"), "");
    setStatus($("archive-status"), `Searching the archive for ${what}…`, true);
    try {
      const result = await fetchJson(url, options);
      archive.result = result;
      renderHits(result);
      const n = result.hits.length;
      setStatus($("archive-status"), `${n} window${n === 1 ? "" : "s"} for ${what} (of ${result.searched} searched).`);
    } catch (error) {
      setStatus($("archive-status"), "");
      showError($("archive-error"), `Could not search the archive for ${what}: ${error.message}`);
    } finally {
      archive.busy = false;
    }
  }

  function searchArchiveText(event) {
    event.preventDefault();
    const q = $("archive-query").value.trim();
    if (!q) {
      showError($("archive-error"), "Type a species name or a description to search the archive for.");
      return;
    }
    const params = archiveParams();
    params.set("q", q);
    archiveSearch(`“${q}”`, `/api/archive/search/text?${params}`);
  }

  function searchArchiveFile(file, kind) {
    if (!file) return;
    if (file.size > state.maxUploadBytes) {
      showError($("archive-error"), `“${file.name}” is ${mb(file.size)}; this server accepts files up to ` +
        `${mb(state.maxUploadBytes)}.`);
      return;
    }
    const params = archiveParams();
    if (kind === "recording") {
      for (const [name, value] of fieldParams({ start: "archive-start", end: "archive-end" })) params.set(name, value);
    }
    const form = new FormData();
    form.append("file", file, file.name);
    archiveSearch(`“${file.name}”`, `/api/archive/search/${kind}?${params}`, { method: "POST", body: form });
  }

  // The label a hit's yes/no buttons give: the species searched for, else the hit's best candidate.
  function defaultLabel(query, hit) {
    if (query.read_as === "species" && query.species) return query.species;
    return hit.candidates.length ? hit.candidates[0].scientific_name : "";
  }

  function renderHits(result) {
    const box = $("archive-hits");
    box.replaceChildren();
    if (!result.hits.length) {
      box.append(el("p", { class: "muted", text: "No windows found." }));
      return;
    }
    for (const hit of result.hits) box.append(hitCard(hit, defaultLabel(result.query, hit)));
  }

  function hitCard(hit, label) {
    const where = [hit.date, hit.time, hit.site].filter(Boolean).join(" · ");
    const card = el("article", { class: "hit", "data-row": String(hit.row) });
    const labelInput = el("input", { type: "text", class: "label-name", value: label, maxlength: "200",
      "aria-label": `Label for window ${hit.rank}` });
    const labelState = el("span", { class: "label-state", "aria-live": "polite" });
    const yes = el("button", { type: "button", class: "button label-yes", "aria-pressed": "false", text: "Yes",
      onclick: () => sendLabel(hit, card, true) });
    const no = el("button", { type: "button", class: "button label-no", "aria-pressed": "false", text: "No",
      onclick: () => sendLabel(hit, card, false) });
    labelInput.addEventListener("input", () => showLabels(card, hit.labels));
    const pictures = el("div", { class: "candidates" });
    for (const sp of hit.candidates) {
      const name = sp.common_name || sp.scientific_name;
      pictures.append(el("figure", { class: "picture" },
        sp.image ? el("img", { src: sp.image.url, alt: `Picture of ${name}`, decoding: "async", width: "160",
          height: "120" }) : el("p", { class: "muted small", text: "no picture" }),
        el("figcaption", {},
          el("span", { class: sp.common_name ? "common" : "common scientific-only", text: name }),
          sp.common_name ? el("span", { class: "scientific", text: sp.scientific_name }) : null,
          el("span", { class: "muted small", text: pct(sp.score) }))));
    }
    card.append(
      el("div", { class: "hit-head" },
        el("strong", { text: `${hit.rank}.` }),
        el("span", { class: "file", text: hit.file }),
        el("span", { text: span(hit.start_s, hit.end_s) }),
        el("span", { class: "muted", text: `score ${hit.score.toFixed(3)}` }),
        where ? el("span", { class: "muted small", text: where }) : null),
      el("img", { class: "hit-spectro", src: hit.spectrogram_url, decoding: "async", width: "300", height: "120",
        alt: `Spectrogram of ${hit.file} ${span(hit.start_s, hit.end_s)}` }),
      el("audio", { controls: "", preload: "none", src: hit.audio_url }),
      pictures,
      el("div", { class: "label-row" }, labelInput, yes, no, labelState));
    card.labelInput = labelInput;
    showLabels(card, hit.labels);
    return card;
  }

  // The window's labels as text, and the yes/no buttons pressed for the label in the box.
  function showLabels(card, labels) {
    const name = card.labelInput.value.trim();
    const current = labels.find((l) => l.label === name);
    card.querySelector(".label-yes").setAttribute("aria-pressed", String(Boolean(current && current.value)));
    card.querySelector(".label-no").setAttribute("aria-pressed", String(Boolean(current && !current.value)));
    card.querySelector(".label-state").textContent = labels.length
      ? labels.map((l) => `${l.label}: ${l.value ? "yes" : "no"} (${l.who})`).join("; ") : "not labelled";
  }

  async function sendLabel(hit, card, value) {
    const label = card.labelInput.value.trim();
    showError($("archive-error"), "");
    if (!label) {
      showError($("archive-error"), "Type the label's name (e.g. a species) before answering yes or no.");
      return;
    }
    const body = { row: hit.row, label, value };
    const who = $("archive-who").value.trim();
    if (who) body.who = who;
    try {
      const result = await fetchJson("/api/archive/labels", {
        method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
      });
      hit.labels = result.windows[0].labels;
      showLabels(card, hit.labels);
    } catch (error) {
      showError($("archive-error"), `Could not store the label: ${error.message}`);
    }
  }

  // ------------------------------------------------------------------------------------------------
  // Wiring

  function setup() {
    $("file-input").addEventListener("change", (event) => {
      const file = event.target.files[0];
      event.target.value = "";  // choosing the same file again searches again
      searchFile(file);
    });
    $("record-button").addEventListener("click", () => (recorder.active ? stopRecording() : startRecording()));
    $("options-form").addEventListener("submit", (event) => {
      event.preventDefault();
      if (state.file) searchFile(state.file);
      else showError($("error"), "Choose or record a recording first.");
    });
    $("text-form").addEventListener("submit", searchText);
    $("tab-button-search").addEventListener("click", () => showTab("search"));
    $("tab-button-archive").addEventListener("click", () => showTab("archive"));
    $("archive-form").addEventListener("submit", searchArchiveText);
    for (const kind of ["image", "recording"]) {
      const input = $(kind === "image" ? "archive-image" : "archive-recording");
      input.addEventListener("change", (event) => {
        const file = event.target.files[0];
        event.target.value = "";
        searchArchiveFile(file, kind);
      });
    }
    $("windows").addEventListener("keydown", onWindowKeys);
    $("spectro-frame").addEventListener("click", onSpectrogramClick);
    $("player").addEventListener("timeupdate", onPlayerTime);

    // Drops anywhere on the page count; the drop zone lights up.
    const zone = $("dropzone");
    let depth = 0;
    document.addEventListener("dragenter", (event) => { event.preventDefault(); depth++; zone.classList.add("over"); });
    document.addEventListener("dragleave", () => { if (--depth <= 0) { depth = 0; zone.classList.remove("over"); } });
    document.addEventListener("dragover", (event) => event.preventDefault());
    document.addEventListener("drop", (event) => {
      event.preventDefault();
      depth = 0;
      zone.classList.remove("over");
      const file = event.dataTransfer && event.dataTransfer.files[0];
      if (file && !$("tab-search").hidden) searchFile(file);
    });
    loadInfo();
  }

  document.addEventListener("DOMContentLoaded", setup);
})();
