// Tap holds on a wall photo against this server's POST /invocations (no other origin, no CDN).
//
// The first tap sends the photo (the file itself as the body, the taps in the custom
// attributes); every further tap sends only the photo's image_id and all taps so far, so the
// server reuses the cached embedding and answers without running the image encoder. Tap
// coordinates are in pixels of the upright photo (EXIF orientation applied, as the server
// does). The overlay is drawn from the server's mask, pixel for pixel; the cut-out is the
// server's RGBA WebP. window.playground exposes the state (tests read it).
//
// Browser mode (browser_decoder.mjs) fetches the photo's embedding once and decodes every tap
// in this page with onnxruntime-web: taps then send no request. /playground/browser-mode.json
// says whether this server can offer it (onnxruntime-web installed, the model's decoder_web.onnx).
"use strict";

const RAW_TYPES = ["image/jpeg", "image/png", "image/webp"];
const OVERLAY_RGBA = [255, 0, 200, 140];

const state = {
  file: null,          // the photo as chosen (Blob)
  sizeWh: [0, 0],      // upright photo size in pixels
  imageId: null,       // from the first answer
  taps: [],            // [{x, y, label}] in upright photo pixels
  history: [],         // one entry per answered tap: {index, points, round_trip_ms, cache_hit, image_id, timings_ms}
  busy: false,
  queued: false,
  mode: "server",      // "server" | "browser"
  browserMode: null,   // /playground/browser-mode.json
  embedding: null,     // browser mode: the photo's embedding (browser_decoder.readEmbedding)
  decoderThreads: null,
};
window.playground = state;

const $ = (id) => document.getElementById(id);

function setStatus(text, isError = false) {
  $("status").textContent = text;
  $("status").classList.toggle("error", isError);
}

function outputs() {
  const out = { result_format: "webp", mask_format: "png1" };
  const maxSide = $("max-side").value;
  if (maxSide) out.max_side = Number(maxSide);
  return out;
}

async function openPhoto(file) {
  let bitmap;
  try {
    bitmap = await createImageBitmap(file, { imageOrientation: "from-image" });
  } catch (error) {
    setStatus(`This browser cannot show ${file.name}: ${error.message}`, true);
    return;
  }
  Object.assign(state, { file, sizeWh: [bitmap.width, bitmap.height], imageId: null, embedding: null, taps: [],
                         history: [] });
  const photo = $("photo");
  photo.width = bitmap.width;
  photo.height = bitmap.height;
  photo.getContext("2d").drawImage(bitmap, 0, 0);
  bitmap.close();
  const overlay = $("overlay");
  overlay.width = 0;
  overlay.height = 0;
  $("cutout").hidden = true;
  $("latency").tBodies[0].replaceChildren();
  $("latency-summary").textContent = "";
  $("warnings").hidden = true;
  drawMarkers();
  setStatus(`${file.name}: ${bitmap.width}x${bitmap.height} pixels. Tap a hold.`);
}

function tapAt(event) {
  if (!state.file) return;
  const photo = $("photo");
  const rect = photo.getBoundingClientRect();
  const x = ((event.clientX - rect.left) * photo.width) / rect.width;
  const y = ((event.clientY - rect.top) * photo.height) / rect.height;
  if (x < 0 || y < 0 || x >= photo.width || y >= photo.height) return;
  const negative = event.shiftKey || document.querySelector('input[name="label"]:checked').value === "0";
  state.taps.push({ x: Math.round(x * 10) / 10, y: Math.round(y * 10) / 10, label: negative ? 0 : 1 });
  drawMarkers();
  send();
}

function drawMarkers() {
  const [width, height] = state.sizeWh;
  const markers = state.taps.map((tap) => {
    const marker = document.createElement("div");
    marker.className = tap.label ? "marker" : "marker negative";
    marker.style.left = `${(100 * tap.x) / width}%`;
    marker.style.top = `${(100 * tap.y) / height}%`;
    return marker;
  });
  $("markers").replaceChildren(...markers);
  $("undo").disabled = $("clear").disabled = state.taps.length === 0;
}

// One request at a time; taps made meanwhile are sent together afterwards.
async function send() {
  if (state.busy) {
    state.queued = true;
    return;
  }
  state.busy = true;
  try {
    do {
      state.queued = false;
      if (state.taps.length === 0) {
        clearOverlay();
        continue;
      }
      await (state.mode === "browser" ? browserRequest(state.taps.slice()) : request(state.taps.slice()));
    } while (state.queued);
  } finally {
    state.busy = false;
  }
}

async function request(taps) {
  const started = performance.now();
  setStatus(state.imageId ? "Asking for the holds (cached photo)…" : "Sending the photo…");
  let response = await post(taps, state.imageId);
  if (response.status === 404 && state.imageId) {
    state.imageId = null; // evicted or the server restarted: send the photo again
    response = await post(taps, null);
  }
  const answer = await response.json().catch(() => ({ message: `HTTP ${response.status}` }));
  if (!response.ok) {
    setStatus(`The server refused the tap: ${answer.message || answer.error}`, true);
    state.taps.pop();
    drawMarkers();
    return;
  }
  state.imageId = answer.image_id;
  await drawPngMask(answer.mask_image_base64);
  if (answer.result_image_base64) {
    $("cutout").src = `data:image/webp;base64,${answer.result_image_base64}`;
    $("cutout").hidden = false;
  }
  const entry = recordTap("server", taps, started, { cache_hit: answer.cache_hit, image_id: answer.image_id,
                                                     timings_ms: answer.timings_ms, width: answer.width,
                                                     height: answer.height });
  showWarnings(answer.warnings || []);
  setStatus(`${taps.length} tap${taps.length > 1 ? "s" : ""}: ${entry.round_trip_ms} ms` +
            (answer.cache_hit ? " (cached photo: no encoder run)" : " (new photo: encoder ran)") +
            (answer.empty ? ". No hold found there." : "."));
}

async function post(taps, imageId) {
  const points = taps.map(({ x, y, label }) => ({ x, y, label }));
  if (imageId) {
    return fetch("/invocations", {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify({ image_id: imageId, points, outputs: outputs() }),
    });
  }
  const attributes = [
    ["points", taps.map((t) => `${t.x},${t.y}`).join(";")],
    ["labels", taps.map((t) => t.label).join(",")],
    ...Object.entries(outputs()),
  ].map(([key, value]) => `${key}=${value}`).join("&");
  if (RAW_TYPES.includes(state.file.type) && attributes.length <= 1024) {
    return fetch("/invocations", {
      method: "POST",
      headers: { "Content-Type": state.file.type, Accept: "application/json", "X-Amzn-SageMaker-Custom-Attributes": attributes },
      body: state.file,
    });
  }
  const base64 = await fileAsBase64(state.file);
  return fetch("/invocations", {
    method: "POST",
    headers: { "Content-Type": "application/json", Accept: "application/json" },
    body: JSON.stringify({ image_base64: base64, points, outputs: outputs() }),
  });
}

function fileAsBase64(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(String(reader.result).split(",", 2)[1]);
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });
}

// The server's PNG mask (the outputs' size) onto the overlay.
async function drawPngMask(maskBase64) {
  const mask = new Image();
  mask.src = `data:image/png;base64,${maskBase64}`;
  await mask.decode();
  const scratch = document.createElement("canvas");
  scratch.width = mask.naturalWidth;
  scratch.height = mask.naturalHeight;
  const scratchContext = scratch.getContext("2d", { willReadFrequently: true });
  scratchContext.drawImage(mask, 0, 0);
  const values = scratchContext.getImageData(0, 0, scratch.width, scratch.height).data;
  paintMask(scratch.width, scratch.height, (i) => values[4 * i] > 127);
}

// The overlay canvas has the mask's size (the outputs' size); CSS stretches it over the photo.
function paintMask(width, height, isHold) {
  const overlay = $("overlay");
  overlay.width = width;
  overlay.height = height;
  const context = overlay.getContext("2d");
  const pixels = context.createImageData(width, height);
  for (let i = 0; i < width * height; i += 1) {
    if (isHold(i)) pixels.data.set(OVERLAY_RGBA, 4 * i);
  }
  context.putImageData(pixels, 0, 0);
}

// ---- browser mode -----------------------------------------------------------------------------

const browserDecoder = () => import("/static/browser_decoder.mjs");

async function checkBrowserMode() {
  let info;
  try {
    const response = await fetch("/playground/browser-mode.json");
    info = await response.json();
  } catch (error) {
    info = { available: false, runtime: { reason: `cannot ask the server: ${error.message}` }, decoder: {} };
  }
  state.browserMode = info;
  const radio = document.querySelector('input[name="mode"][value="browser"]');
  radio.disabled = !info.available;
  $("browser-note").textContent = info.available
    ? `Browser mode available: onnxruntime-web ${info.runtime.version}, ${info.decoder.precision} decoder.`
    : `Browser mode unavailable: ${info.runtime.reason || info.decoder.reason}; server mode works.`;
}

async function setMode(mode) {
  state.mode = mode;
  $("cutout").hidden = true;
  if (state.taps.length) send();
}

// The photo's embedding, once per photo: one request with no taps.
async function fetchEmbedding(module) {
  setStatus("Fetching the photo's embedding (once)…");
  let request = module.embeddingRequest(state.file, state.imageId, RAW_TYPES);
  if (request === null) {
    const body = { image_base64: await fileAsBase64(state.file), points: [], outputs: module.embeddingOutputs() };
    request = { headers: { "Content-Type": "application/json", Accept: "application/json" }, body: JSON.stringify(body) };
  }
  const response = await fetch("/invocations", { method: "POST", ...request });
  const answer = await response.json().catch(() => ({ message: `HTTP ${response.status}` }));
  if (!response.ok) throw new Error(`the server refused the embedding: ${answer.message || answer.error}`);
  state.imageId = answer.image_id;
  return module.readEmbedding(answer.embedding);
}

async function browserRequest(taps) {
  const started = performance.now();
  let decoded;
  try {
    const module = await browserDecoder();
    const loaded = await module.loadDecoder(state.browserMode);
    state.decoderThreads = loaded.threads;
    if (!state.embedding) state.embedding = await fetchEmbedding(module);
    const outSize = module.outputSizeHw(state.embedding.originalSizeHw, Number($("max-side").value) || null);
    decoded = await module.decodeTaps(state.embedding, taps, outSize);
  } catch (error) {
    setStatus(`Browser mode failed: ${error.message}. Server mode still works.`, true);
    return;
  }
  const [height, width] = decoded.sizeHw;
  paintMask(width, height, (i) => decoded.mask[i] === 1);
  recordTap("browser", taps, started, { decoder_ms: decoded.decoderMs, prompts: decoded.prompts, width, height });
  setStatus(`${taps.length} tap${taps.length > 1 ? "s" : ""}: decoded in this page in ${Math.round(decoded.decoderMs)} ms ` +
            `(${state.decoderThreads} thread${state.decoderThreads > 1 ? "s" : ""}, no request).`);
}

function clearOverlay() {
  const overlay = $("overlay");
  overlay.getContext("2d").clearRect(0, 0, overlay.width, overlay.height);
  $("cutout").hidden = true;
  setStatus("No taps. Tap a hold.");
}

// One answered tap: its history entry (tests read window.playground.history) and latency row.
function recordTap(mode, taps, started, facts) {
  const entry = { index: state.history.length + 1, mode, points: taps.length,
                  round_trip_ms: Math.round(performance.now() - started), ...facts };
  state.history.push(entry);
  addLatencyRow(entry);
  return entry;
}

function latencyCells(entry) {
  if (entry.mode === "browser") {
    return [entry.index, "browser", entry.points, `${entry.round_trip_ms} ms`, "–", "–",
            `${Math.round(entry.decoder_ms)} ms`, "page"];
  }
  const timings = entry.timings_ms || {};
  const server = ["image_decode_ms", "preprocess_ms", "encoder_ms", "decoder_ms", "postprocess_ms",
                  "cutout_pixels_ms", "output_encode_ms"].reduce((sum, key) => sum + (timings[key] || 0), 0);
  return [entry.index, "server", entry.points, `${entry.round_trip_ms} ms`, `${Math.round(server)} ms`,
          timings.encoder_ms === undefined ? "–" : `${Math.round(timings.encoder_ms)} ms`,
          `${Math.round(timings.decoder_ms || 0)} ms`, entry.cache_hit ? "hit" : "miss"];
}

// Median round trip per mode over the taps so far, side by side.
function showLatencySummary() {
  const median = (values) => values.sort((a, b) => a - b)[Math.floor((values.length - 1) / 2)];
  const parts = ["server", "browser"].map((mode) => {
    const times = state.history.filter((entry) => entry.mode === mode).map((entry) => entry.round_trip_ms);
    return times.length ? `${mode}: ${median(times)} ms (${times.length} tap${times.length > 1 ? "s" : ""})` : `${mode}: –`;
  });
  $("latency-summary").textContent = `median per tap · ${parts.join(" · ")}`;
}

function addLatencyRow(entry) {
  const cells = latencyCells(entry);
  const row = document.createElement("tr");
  for (const value of cells) {
    const cell = document.createElement("td");
    cell.textContent = String(value);
    row.append(cell);
  }
  $("latency").tBodies[0].append(row);
  showLatencySummary();
}

function showWarnings(warnings) {
  const list = $("warnings");
  list.replaceChildren(...warnings.map((text) => Object.assign(document.createElement("li"), { textContent: text })));
  list.hidden = warnings.length === 0;
}

$("file").addEventListener("change", (event) => {
  const [file] = event.target.files;
  if (file) openPhoto(file);
});
$("stage").addEventListener("click", tapAt);
$("undo").addEventListener("click", () => { state.taps.pop(); drawMarkers(); send(); });
$("clear").addEventListener("click", () => { state.taps = []; drawMarkers(); send(); });
$("max-side").addEventListener("change", () => { if (state.taps.length) send(); });
for (const radio of document.querySelectorAll('input[name="mode"]')) {
  radio.addEventListener("change", (event) => setMode(event.target.value));
}
checkBrowserMode();
