// The page of serve.py: photos and the camera, through the same JSON API as any other client.
"use strict";

const EMOTIONS = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"];
const COLOURS = {angry: "#d92d20", disgust: "#7a9a01", fear: "#7f56d9", happy: "#f79009",
                 sad: "#2e90fa", surprise: "#ee46bc", neutral: "#667085"};
const CAMERA_INTERVAL_MS = 250;  // at most four frames a second, and never more than one in flight

const $ = (selector) => document.querySelector(selector);
const state = {token: sessionStorage.getItem("ferkit-token") || "", camera: null};

function setStatus(text, bad = false) {
  $("#status").textContent = text;
  $("#status").classList.toggle("bad", bad);
}

async function api(path, options = {}) {
  const headers = Object.assign({}, options.headers || {});
  if (state.token) headers.Authorization = "Bearer " + state.token;
  const response = await fetch(path, Object.assign({}, options, {headers}));
  let body = null;
  try { body = await response.json(); } catch (e) { /* not JSON: said below */ }
  if (!response.ok) {
    if (response.status === 401) $("#token-box").hidden = false;
    throw new Error((body && body.error) || `${response.status} ${response.statusText}`);
  }
  return body;
}

function recognize(blob, largest = false) {
  const query = new URLSearchParams({model: $("#model").value});
  if (largest) query.set("largest", "true");
  const form = new FormData();
  form.append("image", blob, blob.name || "frame.jpg");
  return api("/v1/recognize?" + query, {method: "POST", body: form});
}

function bars(probabilities) {
  const grid = document.createElement("div");
  grid.className = "bars";
  for (const emotion of EMOTIONS) {
    const p = probabilities[emotion];
    const name = document.createElement("span");
    name.textContent = emotion;
    const bar = document.createElement("span");
    bar.className = "bar";
    const fill = document.createElement("i");
    fill.style.width = (100 * p).toFixed(1) + "%";
    fill.style.background = COLOURS[emotion];
    bar.appendChild(fill);
    const value = document.createElement("span");
    value.className = "p";
    value.textContent = (100 * p).toFixed(0) + "%";
    grid.append(name, bar, value);
  }
  return grid;
}

// Boxes and labels over an image drawn at scale `scale` (image pixels -> canvas pixels).
function drawFaces(context, faces, scale) {
  const size = Math.max(12, Math.round(14 * Math.max(1, scale)));
  context.font = `bold ${size}px system-ui, sans-serif`;
  context.lineWidth = Math.max(2, 2 * scale);
  faces.forEach((face, i) => {
    const [x, y, w, h] = face.box.map((v) => v * scale);
    const colour = COLOURS[face.emotion];
    context.strokeStyle = colour;
    context.strokeRect(x, y, w, h);
    const label = `${i + 1} ${face.emotion} ${(100 * face.probabilities[face.emotion]).toFixed(0)}%`;
    const width = context.measureText(label).width + 8;
    const top = y > size + 6 ? y - size - 6 : y + h;
    context.fillStyle = colour;
    context.fillRect(x - context.lineWidth / 2, top, width, size + 6);
    context.fillStyle = "#fff";
    context.fillText(label, x + 4 - context.lineWidth / 2, top + size + 1);
  });
}

async function addPhoto(file) {
  const card = document.createElement("div");
  card.className = "card";
  const title = document.createElement("h3");
  title.textContent = file.name + ": …";
  card.appendChild(title);
  $("#results").prepend(card);
  try {
    const [answer, bitmap] = await Promise.all([recognize(file), createImageBitmap(file)]);
    // The server's boxes are in the upright image; createImageBitmap applies EXIF orientation too.
    const scale = Math.min(1, 476 / bitmap.width);
    const canvas = document.createElement("canvas");
    canvas.width = Math.round(bitmap.width * scale);
    canvas.height = Math.round(bitmap.height * scale);
    const context = canvas.getContext("2d");
    context.drawImage(bitmap, 0, 0, canvas.width, canvas.height);
    drawFaces(context, answer.faces, scale);
    const n = answer.faces.length;
    title.textContent = `${file.name}: ${n ? n + (n === 1 ? " face" : " faces") : "no face found"}`;
    card.appendChild(canvas);
    answer.faces.forEach((face, i) => {
      const block = document.createElement("div");
      block.className = "face";
      const heading = document.createElement("h4");
      heading.textContent = `face ${i + 1}: ${face.emotion}`;
      block.append(heading, bars(face.probabilities));
      card.appendChild(block);
    });
    setStatus(`ready: ${answer.model}`);
  } catch (e) {
    title.textContent = file.name;
    const message = document.createElement("p");
    message.className = "error";
    message.textContent = e.message;
    card.appendChild(message);
  }
}

function addPhotos(files) {
  for (const file of files) addPhoto(file);
}

// The camera: the video plays at its own rate; frames go out one at a time, at most every
// CAMERA_INTERVAL_MS, and the latest answer's boxes are drawn over every video frame.
function startCamera() {
  const video = $("#video");
  const overlay = $("#overlay");
  const grab = document.createElement("canvas");
  const camera = {stream: null, faces: [], inFlight: false, last: 0, answers: [], running: true};
  state.camera = camera;
  $("#camera-toggle").textContent = "Stop the camera";
  navigator.mediaDevices.getUserMedia({video: {width: 640, height: 480}, audio: false}).then((stream) => {
    camera.stream = stream;
    video.srcObject = stream;
    return video.play();
  }).then(() => requestAnimationFrame(tick)).catch((e) => {
    setStatus(`camera: ${e.message}`, true);
    stopCamera();
  });

  function send(now) {
    camera.inFlight = true;
    camera.last = now;
    grab.width = video.videoWidth;
    grab.height = video.videoHeight;
    grab.getContext("2d").drawImage(video, 0, 0);
    grab.toBlob((blob) => {
      recognize(blob).then((answer) => {
        camera.faces = answer.faces;
        camera.answers.push(performance.now());
        $("#live-bars").replaceChildren(...(answer.faces.length ? [bars(answer.faces[0].probabilities)] : []));
      }).catch((e) => setStatus(`camera: ${e.message}`, true)).finally(() => { camera.inFlight = false; });
    }, "image/jpeg", 0.85);
  }

  function tick(now) {
    if (!camera.running) return;
    if (video.videoWidth && !camera.inFlight && now - camera.last >= CAMERA_INTERVAL_MS) send(now);
    overlay.width = video.videoWidth;
    overlay.height = video.videoHeight;
    const context = overlay.getContext("2d");
    context.clearRect(0, 0, overlay.width, overlay.height);
    drawFaces(context, camera.faces, 1);
    const second = performance.now() - 1000;
    camera.answers = camera.answers.filter((t) => t > second);
    $("#fps").textContent = `${camera.answers.length} frames/s analysed`;
    requestAnimationFrame(tick);
  }
}

function stopCamera() {
  const camera = state.camera;
  if (!camera) return;
  camera.running = false;
  if (camera.stream) camera.stream.getTracks().forEach((track) => track.stop());
  $("#video").srcObject = null;
  $("#overlay").getContext("2d").clearRect(0, 0, $("#overlay").width, $("#overlay").height);
  $("#camera-toggle").textContent = "Start the camera";
  $("#fps").textContent = "–";
  state.camera = null;
}

function showTab(name) {
  for (const tab of ["photos", "camera"]) {
    $("#" + tab).hidden = tab !== name;
    $("#tab-" + tab).classList.toggle("active", tab === name);
  }
  if (name !== "camera") stopCamera();
}

async function loadModels() {
  try {
    const listing = await api("/v1/models");
    const select = $("#model");
    select.replaceChildren();
    for (const model of listing.models) {
      const option = document.createElement("option");
      option.value = model.name;
      const figures = Object.entries(model.accuracy).map(([labels, f]) => `${labels} ${f.accuracy.toFixed(3)}`);
      option.textContent = model.name + (figures.length ? ` (${figures.join(", ")})` : "");
      option.selected = model.name === listing.default;
      select.appendChild(option);
    }
    setStatus(`ready: ${listing.default}`);
  } catch (e) {
    setStatus(e.message, true);
  }
}

async function init() {
  $("#token").value = state.token;
  $("#token").addEventListener("change", () => {
    state.token = $("#token").value.trim();
    sessionStorage.setItem("ferkit-token", state.token);
    loadModels();
  });
  $("#tab-photos").addEventListener("click", () => showTab("photos"));
  $("#tab-camera").addEventListener("click", () => showTab("camera"));
  $("#camera-toggle").addEventListener("click", () => (state.camera ? stopCamera() : startCamera()));
  $("#files").addEventListener("change", (event) => { addPhotos(event.target.files); event.target.value = ""; });
  const drop = $("#drop");
  drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    addPhotos(event.dataTransfer.files);
  });
  try {
    const health = await api("/v1/health");
    if (health.auth) $("#token-box").hidden = false;
  } catch (e) {
    setStatus(`the server is not ready: ${e.message}`, true);
    return;
  }
  await loadModels();
}

init();
