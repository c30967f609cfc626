"use strict";
// The csnet page. One request per image and mask setting: POST /v1/saliency?output=cutout returns the RGBA
// cutout, whose alpha is the mask, so the mask and every background are made here from that one answer.
// Changing the threshold or the refinement asks again (the server computes those); the background
// (transparent, a colour, the photo blurred) is composed in the page, without a request.
(function () {
  const $ = (id) => document.getElementById(id);
  const PREVIEW_SIDE = 2048; // backgrounds are previewed at most this large; downloads are full size
  let file = null;
  let original = null; // ImageBitmap of the upload
  let cutout = null; // ImageBitmap of the answer
  let cutoutBlob = null;
  let urls = [];
  let generation = 0; // answers to superseded requests are dropped

  function setStatus(text, isError) {
    $("status").textContent = text;
    $("status").classList.toggle("error", Boolean(isError));
  }

  function objectUrl(blob) {
    const url = URL.createObjectURL(blob);
    urls.push(url);
    return url;
  }

  function clearResults() {
    urls.forEach((url) => URL.revokeObjectURL(url));
    urls = [];
    [original, cutout].forEach((bitmap) => bitmap && bitmap.close());
    original = cutout = cutoutBlob = null;
    $("results").hidden = true;
    ["original", "mask", "cutout"].forEach((id) => $(id).removeAttribute("src"));
    ["download", "download-mask", "download-composite"].forEach((id) => $(id).setAttribute("href", "#"));
    $("composite-link").hidden = true;
    delete $("cutout").dataset.backdrop;
  }

  function canvasOf(width, height) {
    const canvas = document.createElement("canvas");
    canvas.width = width;
    canvas.height = height;
    return canvas;
  }

  function toBlob(canvas) {
    return new Promise((resolve, reject) => canvas.toBlob(
      (blob) => (blob ? resolve(blob) : reject(new Error("the browser could not encode the image"))), "image/png"));
  }

  // The mask as an opaque gray image: the cutout's alpha copied into red, green and blue.
  async function maskFrom(bitmap) {
    const canvas = canvasOf(bitmap.width, bitmap.height);
    const context = canvas.getContext("2d", { willReadFrequently: true });
    context.drawImage(bitmap, 0, 0);
    const pixels = context.getImageData(0, 0, canvas.width, canvas.height);
    const d = pixels.data;
    for (let i = 0; i < d.length; i += 4) {
      d[i] = d[i + 1] = d[i + 2] = d[i + 3];
      d[i + 3] = 255;
    }
    context.putImageData(pixels, 0, 0);
    return toBlob(canvas);
  }

  function backdrop() {
    return document.querySelector("input[name=backdrop]:checked").value;
  }

  // The object over the chosen background at `scale` of the full size. For blur, the background is blurred
  // with the object cut out of it (the canvas blurs premultiplied colours, so the object does not smear
  // into a halo), over the whole photo blurred (which fills where the object was) and the photo itself.
  function render(scale) {
    const width = Math.max(1, Math.round(cutout.width * scale));
    const height = Math.max(1, Math.round(cutout.height * scale));
    const canvas = canvasOf(width, height);
    const context = canvas.getContext("2d");
    if (backdrop() === "color" || !original) {
      context.fillStyle = backdrop() === "color" ? $("color").value : "#fff";
      context.fillRect(0, 0, width, height);
    } else {
      const radius = (Number($("blur").value) / 100) * Math.max(width, height);
      const background = canvasOf(width, height);
      const cut = background.getContext("2d");
      cut.drawImage(original, 0, 0, width, height);
      cut.globalCompositeOperation = "destination-out";
      cut.drawImage(cutout, 0, 0, width, height);
      context.drawImage(original, 0, 0, width, height);
      context.filter = "blur(" + radius + "px)";
      context.drawImage(original, 0, 0, width, height);
      context.drawImage(background, 0, 0);
      context.filter = "none";
    }
    context.drawImage(cutout, 0, 0, width, height);
    return canvas;
  }

  async function compose() {
    if (!cutout) { return; }
    const kind = backdrop();
    const image = $("cutout");
    if (kind === "transparent") {
      image.src = objectUrl(cutoutBlob);
      $("composite-link").hidden = true;
    } else {
      const scale = Math.min(1, PREVIEW_SIDE / Math.max(cutout.width, cutout.height));
      image.src = objectUrl(await toBlob(render(scale)));
      $("composite-link").hidden = false;
    }
    image.dataset.backdrop = kind + (kind === "color" ? $("color").value : kind === "blur" ? $("blur").value : "");
  }

  function requestUrl() {
    const params = new URLSearchParams({ output: "cutout", refine: $("refine").value });
    if ($("binarize").checked) { params.set("threshold", $("threshold").value); }
    return "/v1/saliency?" + params.toString();
  }

  async function errorMessage(response) {
    try {
      return (await response.json()).error.message;
    } catch (ignored) {
      return response.status + " " + response.statusText; // not the service's JSON (e.g. a proxy's page)
    }
  }

  async function run() {
    if (!file) { return; }
    const mine = ++generation;
    document.body.dataset.state = "working";
    setStatus("Finding the salient object in " + (file.name || "the image") + "…");
    const start = performance.now();
    try {
      const form = new FormData();
      form.append("image", file, file.name || "image");
      const response = await fetch(requestUrl(), { method: "POST", body: form });
      if (!response.ok) { throw new Error(await errorMessage(response)); }
      const blob = await response.blob();
      // a TIFF the server reads may be one the browser cannot: then the blur has no photo to blur
      const [photo, answer] = await Promise.all([createImageBitmap(file).catch(() => null), createImageBitmap(blob)]);
      const mask = await maskFrom(answer);
      if (mine !== generation) { [photo, answer].forEach((b) => b && b.close()); return; }
      clearResults();
      original = photo;
      cutout = answer;
      cutoutBlob = blob;
      $("original").src = objectUrl(file);
      $("mask").src = $("download-mask").href = objectUrl(mask);
      $("download").href = objectUrl(blob);
      await compose();
      $("results").hidden = false;
      setStatus("Done in " + Math.round(performance.now() - start) + " ms (" + answer.width + " × " +
                answer.height + ").");
      document.body.dataset.state = "done";
    } catch (error) {
      if (mine !== generation) { return; }
      clearResults(); // old results must not pass for the answer to this image
      setStatus((file.name ? file.name + ": " : "") + error.message, true);
      document.body.dataset.state = "error";
    }
  }

  function choose(chosen) {
    if (!chosen) { return; }
    file = chosen;
    run();
  }

  async function recompose() {
    if (!cutout) { return; }
    document.body.dataset.state = "composing";
    await compose();
    document.body.dataset.state = "done";
  }

  $("file").addEventListener("change", (event) => choose(event.target.files[0]));
  $("binarize").addEventListener("change", () => { $("threshold").disabled = !$("binarize").checked; run(); });
  $("threshold").addEventListener("input", () => { $("threshold-value").textContent = Number($("threshold").value).toFixed(2); });
  $("threshold").addEventListener("change", run);
  $("refine").addEventListener("change", run);
  document.querySelectorAll("input[name=backdrop]").forEach((radio) => radio.addEventListener("change", recompose));
  $("color").addEventListener("input", () => { $("controls").backdrop.value = "color"; recompose(); });
  $("blur").addEventListener("change", () => { $("controls").backdrop.value = "blur"; recompose(); });
  $("download-composite").addEventListener("click", async (event) => {
    event.preventDefault();
    const link = document.createElement("a");
    link.download = "composite.png";
    link.href = objectUrl(await toBlob(render(1)));
    link.click();
  });

  const drop = $("drop");
  ["dragenter", "dragover"].forEach((name) => drop.addEventListener(name, (event) => {
    event.preventDefault();
    drop.classList.add("over");
  }));
  ["dragleave", "drop"].forEach((name) => drop.addEventListener(name, () => drop.classList.remove("over")));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    choose(event.dataTransfer.files[0]);
  });
  document.addEventListener("paste", (event) => choose(Array.from(event.clipboardData.files || [])[0]));

  fetch("/v1/models").then((r) => r.json()).then((data) => {
    const m = data.models[0];
    $("model").textContent = "Model " + m.name + " (" + (m.runtime || m.backend) + " on " + m.device + ").";
    const available = (m.refine && m.refine.available) || [];
    Array.from($("refine").options).forEach((option) => {
      option.disabled = option.value !== "none" && !available.includes(option.value);
    });
    const preferred = m.refine && m.refine.default !== "none" ? m.refine.default : "guided";
    $("refine").value = available.includes(preferred) ? preferred : "none";
  }).catch(() => {});
})();
