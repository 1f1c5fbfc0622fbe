// The atrous page: upload an image, draw the mask over it, list the classes and the timing.
"use strict";

const $ = (id) => document.getElementById(id);
let card = null;

function setState(state) {
  document.body.dataset.state = state;
}

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = false;
  setState("error");
}

async function loadCard() {
  const response = await fetch("/v1/model");
  card = await response.json();
  $("model").textContent = `${card.name} · ${card.classes.length} classes`;
}

function loadImage(img, url) {
  return new Promise((resolve, reject) => {
    img.onload = () => resolve(img);
    img.onerror = () => reject(new Error("the browser cannot display this image"));
    img.src = url;
  });
}

// Paint the palette mask on the canvas, with background pixels transparent.
function drawOverlay(mask, width, height) {
  const canvas = $("overlay");
  canvas.width = width;
  canvas.height = height;
  const ctx = canvas.getContext("2d");
  ctx.drawImage(mask, 0, 0);
  if (!card || card.classes[0] !== "background") return;
  const [r, g, b] = card.palette[0];
  const pixels = ctx.getImageData(0, 0, width, height);
  const d = pixels.data;
  for (let i = 0; i < d.length; i += 4) {
    if (d[i] === r && d[i + 1] === g && d[i + 2] === b) d[i + 3] = 0;
  }
  ctx.putImageData(pixels, 0, 0);
}

function renderLegend(classes) {
  const list = $("legend");
  list.replaceChildren();
  for (const c of classes) {
    const item = document.createElement("li");
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.style.background = `rgb(${c.color.join(",")})`;
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = c.name;
    const fraction = document.createElement("span");
    fraction.className = "fraction";
    fraction.textContent = `${(100 * c.fraction).toFixed(1)}%`;
    item.append(swatch, name, fraction);
    list.append(item);
  }
}

function renderTiming(timings, roundTrip) {
  const parts = ["decode", "queue", "preprocess", "infer", "postprocess", "encode"]
    .filter((k) => `${k}_ms` in timings)
    .map((k) => `${k} ${timings[`${k}_ms`].toFixed(1)}`);
  $("timing").textContent =
    `server ${timings.total_ms.toFixed(1)} ms (${parts.join(" · ")}) · ` +
    `round trip ${roundTrip.toFixed(0)} ms`;
}

async function segment(file) {
  $("error").hidden = true;
  setState("busy");
  const form = new FormData();
  form.append("image", file, file.name);
  const start = performance.now();
  let body;
  try {
    const response = await fetch("/v1/segment?format=json&mask=true", { method: "POST", body: form });
    body = await response.json();
    if (!response.ok) {
      showError(`${response.status}: ${body.detail || response.statusText}`);
      return;
    }
  } catch (err) {
    showError(`request failed: ${err.message}`);
    return;
  }
  const roundTrip = performance.now() - start;
  const mask = await loadImage(new Image(), body.mask_png);
  const photo = $("photo");
  photo.width = body.width;
  photo.height = body.height;
  try {
    await loadImage(photo, URL.createObjectURL(file));
  } catch (err) {
    photo.removeAttribute("src"); // e.g. TIFF: the mask is still shown over a grey box
  }
  drawOverlay(mask, body.width, body.height);
  renderLegend(body.classes);
  renderTiming(body.timings, roundTrip);
  $("result").hidden = false;
  setState("done");
}

function setOpacity() {
  const value = Number($("opacity").value);
  $("overlay").style.opacity = String(value / 100);
  $("opacity-value").textContent = `${value}%`;
}

$("file").addEventListener("change", (e) => {
  if (e.target.files.length) segment(e.target.files[0]);
});
$("opacity").addEventListener("input", setOpacity);
const drop = $("drop");
drop.addEventListener("dragover", (e) => {
  e.preventDefault();
  drop.classList.add("over");
});
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => {
  e.preventDefault();
  drop.classList.remove("over");
  if (e.dataTransfer.files.length) segment(e.dataTransfer.files[0]);
});
setOpacity();
loadCard().catch((err) => showError(`cannot read the model card: ${err.message}`));
