// Browser mode of the playground: SAM's prompt decoder runs in this page (onnxruntime-web, WASM
// with SIMD and threads), on the photo's embedding fetched from this server once.
//
// decoder_web.onnx (export/web_decoder.py) is the server's decoder for one prompt, mask token 0,
// with the server's mask post-processing in the graph (upsample to the 1024 frame, crop to the
// resized image, resize to the output size). The prompts are built as runtime.holds.build_prompts
// builds them in the default "per_click" mode: every hold tap is its own prompt with every
// "not hold" tap as a negative point and a padding point (0, 0) labelled -1; without hold taps,
// one prompt of the negatives. Each prompt's logits are thresholded at the manifest's
// mask_threshold and the masks OR-ed, as the server's union mask is.
//
// The embedding is float32, the dtype the server decodes from, so the page's masks are the
// server's: float16 would round every value and move mask edges. It comes in a JSON answer:
// the request carries no taps and result_format "none", so the answer is the embedding alone,
// 4 MiB of float32 as 5.33 MiB of base64, under SageMaker's 6 MiB answer limit.

const EMBEDDING_OUTPUTS = { embedding: true, embedding_dtype: "float32", result_format: "none" };

let runtime = null; // {ort, session, threshold}: loaded once per page

// onnxruntime-web and decoder_web.onnx, as /playground/browser-mode.json names them.
export async function loadDecoder(info) {
  if (runtime) return runtime;
  const ort = await import(info.runtime.module);
  ort.env.wasm.wasmPaths = info.runtime.module.slice(0, info.runtime.module.lastIndexOf("/") + 1);
  ort.env.wasm.numThreads = crossOriginIsolated ? Math.min(4, navigator.hardwareConcurrency || 1) : 1;
  const response = await fetch(info.decoder.url);
  if (!response.ok) throw new Error(`GET ${info.decoder.url}: HTTP ${response.status}`);
  const model = new Uint8Array(await response.arrayBuffer());
  const session = await ort.InferenceSession.create(model, { executionProviders: ["wasm"] });
  runtime = { ort, session, threshold: info.decoder.mask_threshold, threads: ort.env.wasm.numThreads };
  return runtime;
}

// The request body for the embedding alone: the photo itself (raw) or, once known, its image_id.
export function embeddingRequest(file, imageId, rawTypes) {
  if (imageId) {
    return { headers: { "Content-Type": "application/json", Accept: "application/json" },
             body: JSON.stringify({ image_id: imageId, points: [], outputs: EMBEDDING_OUTPUTS }) };
  }
  if (!rawTypes.includes(file.type)) return null; // the caller sends it as JSON base64
  const attributes = Object.entries(EMBEDDING_OUTPUTS).map(([key, value]) => `${key}=${value}`).join("&");
  return { headers: { "Content-Type": file.type, Accept: "application/json",
                      "X-Amzn-SageMaker-Custom-Attributes": attributes }, body: file };
}

export const embeddingOutputs = () => ({ ...EMBEDDING_OUTPUTS });

// The answer's embedding object -> {data: Float32Array 1x256x64x64, shape, inputSizeHw, ...}.
export function readEmbedding(document) {
  if (document.dtype !== "float32") throw new Error(`expected a float32 embedding, got ${document.dtype}`);
  const binary = atob(document.data_base64);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i += 1) bytes[i] = binary.charCodeAt(i);
  return {
    data: new Float32Array(bytes.buffer), // little-endian, C order (the answer's contract)
    shape: document.shape,
    imageId: document.image_id,
    modelId: document.model_id,
    originalSizeHw: document.original_size_hw,
    inputSizeHw: document.input_size_hw,
    scaleX: document.point_transform.scale_x,
    scaleY: document.point_transform.scale_y,
  };
}

// runtime.holds.output_size_hw: the original size, or scaled so the long side is maxSide
// (Python's round: halves to even).
export function outputSizeHw([height, width], maxSide) {
  if (!maxSide || Math.max(height, width) <= maxSide) return [height, width];
  const scale = maxSide / Math.max(height, width);
  return [Math.max(1, roundHalfEven(height * scale)), Math.max(1, roundHalfEven(width * scale))];
}

function roundHalfEven(value) {
  const floor = Math.floor(value);
  const fraction = value - floor;
  if (fraction !== 0.5) return Math.round(value);
  return floor % 2 === 0 ? floor : floor + 1;
}

// runtime.holds.build_prompts, mode "per_click", no box: [[{x, y, label}, ...], ...].
export function perClickPrompts(taps) {
  const negatives = taps.filter((tap) => tap.label === 0);
  const holds = taps.filter((tap) => tap.label === 1);
  const groups = holds.length ? holds.map((tap) => [tap, ...negatives]) : [negatives];
  return groups.map((group) => [...group, { x: 0, y: 0, label: -1 }]);
}

// Decode the taps on the embedding: {mask: Uint8Array H*W (1 = hold), sizeHw, decoderMs, prompts}.
export async function decodeTaps(embedding, taps, outSizeHw) {
  const { ort, session, threshold } = runtime;
  const [height, width] = outSizeHw;
  const union = new Uint8Array(height * width);
  const feeds = {
    image_embeddings: new ort.Tensor("float32", embedding.data, embedding.shape),
    mask_input: new ort.Tensor("float32", new Float32Array(256 * 256), [1, 1, 256, 256]),
    has_mask_input: new ort.Tensor("float32", new Float32Array(1), [1]),
    input_size_hw: new ort.Tensor("int64", BigInt64Array.from(embedding.inputSizeHw.map(BigInt)), [2]),
    output_size_hw: new ort.Tensor("int64", BigInt64Array.from([BigInt(height), BigInt(width)]), [2]),
  };
  const prompts = perClickPrompts(taps);
  const started = performance.now();
  for (const prompt of prompts) {
    // x * scale_x in float64, then float32: runtime.preprocess.to_model_coords.
    const coords = Float32Array.from(prompt.flatMap((p) => [p.x * embedding.scaleX, p.y * embedding.scaleY]));
    const labels = Float32Array.from(prompt.map((p) => p.label));
    const result = await session.run({
      ...feeds,
      point_coords: new ort.Tensor("float32", coords, [1, prompt.length, 2]),
      point_labels: new ort.Tensor("float32", labels, [1, prompt.length]),
    });
    const logits = result.masks.data;
    for (let i = 0; i < logits.length; i += 1) if (logits[i] > threshold) union[i] = 1;
    for (const output of Object.values(result)) output.dispose();
  }
  return { mask: union, sizeHw: outSizeHw, decoderMs: performance.now() - started, prompts: prompts.length };
}
