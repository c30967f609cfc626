"use strict";
// The csnet page: send the chosen image to /v1/saliency twice (mask and cutout) and show the results.
(function () {
  const $ = (id) => document.getElementById(id);
  let objectUrls = [];

  function setStatus(text, isError) {
    $("status").textContent = text;
    $("status").classList.toggle("error", Boolean(isError));
  }

  function show(id, blob) {
    const url = URL.createObjectURL(blob);
    objectUrls.push(url);
    $(id).src = url;
    return url;
  }

  async function request(file, output) {
    const form = new FormData();
    form.append("image", file, file.name || "image");
    const response = await fetch("/v1/saliency?output=" + output, { method: "POST", body: form });
    if (!response.ok) {
      let message = response.status + " " + response.statusText;
      try { message = (await response.json()).error.message; } catch (ignored) { /* not JSON */ }
      throw new Error(message);
    }
    return response.blob();
  }

  async function handle(file) {
    if (!file) { return; }
    objectUrls.forEach((url) => URL.revokeObjectURL(url));
    objectUrls = [];
    document.body.dataset.state = "working";
    ["mask", "cutout"].forEach((id) => $(id).removeAttribute("src"));
    show("original", file);
    $("results").hidden = false;
    setStatus("Finding the salient object in " + (file.name || "the image") + "…");
    const start = performance.now();
    try {
      const [mask, cutout] = await Promise.all([request(file, "mask"), request(file, "cutout")]);
      show("mask", mask);
      $("download").href = show("cutout", cutout);
      setStatus("Done in " + Math.round(performance.now() - start) + " ms.");
      document.body.dataset.state = "done";
    } catch (error) {
      setStatus(error.message, true);
      document.body.dataset.state = "error";
    }
  }

  $("file").addEventListener("change", (event) => handle(event.target.files[0]));
  const drop = $("drop");
  ["dragenter", "dragover"].forEach((name) => drop.addEventListener(name, (event) => {
    event.preventDefault();
    drop.classList.add("over");
  }));
  ["dragleave", "drop"].forEach((name) => drop.addEventListener(name, () => drop.classList.remove("over")));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    handle(event.dataTransfer.files[0]);
  });
  document.addEventListener("paste", (event) => {
    const item = Array.from(event.clipboardData.files || [])[0];
    if (item) { handle(item); }
  });
  fetch("/v1/models").then((r) => r.json()).then((data) => {
    const m = data.models[0];
    $("model").textContent = "Model " + m.name + " (" + m.backend + " on " + m.device + ").";
  }).catch(() => {});
})();
