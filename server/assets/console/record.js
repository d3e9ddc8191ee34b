// «Ghi âm thông báo» on the library page: record an announcement with the microphone (its level
// shown before and during the take), listen back, take it again, and save it to the library
// through the same upload as a file, where the server checks it like any other recording.
"use strict";

addText({
  vi: {
    "record-title": "Ghi âm thông báo", "mic-on": "Bật micro", "mic-off": "Tắt micro",
    "record-start": "Ghi âm", "record-stop": "Dừng", "record-retake": "Ghi lại",
    "record-save": "Lưu vào thư viện", "record-name": "Tên bài",
    "record-help": "Bật micro, nói thử để xem mức âm (vạch đỏ là quá to: lùi ra xa micro), rồi bấm Ghi âm.",
    "record-on": "Đang ghi âm…", "record-ready": "Nghe lại bản ghi. Nếu chưa ổn, bấm Ghi lại.",
    "record-need-name": "Hãy đặt tên cho bản ghi.",
    "record-saving": "Đang lưu “{name}”…",
    "record-saved": "Đã lưu “{name}” vào thư viện: dài {d}.",
    "record-empty": "Bản ghi trống: micro không thu được gì. Kiểm tra micro rồi ghi lại.",
    "record-full": "Bản ghi đã gần tới giới hạn {mb} MB của thư viện nên đã dừng.",
    "record-default-name": "Ghi âm {time}",
  },
  en: {
    "record-title": "Record an announcement", "mic-on": "Microphone on", "mic-off": "Microphone off",
    "record-start": "Record", "record-stop": "Stop", "record-retake": "Record again",
    "record-save": "Save to the library", "record-name": "Name",
    "record-help": "Turn the microphone on and speak to check the level (red is too loud: move back from the microphone), then press Record.",
    "record-on": "Recording…", "record-ready": "Listen back. If it is not right, press Record again.",
    "record-need-name": "Give the recording a name.",
    "record-saving": "Saving “{name}”…",
    "record-saved": "“{name}” saved to the library: {d} long.",
    "record-empty": "The recording is empty: the microphone picked up nothing. Check it and record again.",
    "record-full": "The recording stopped near the library's {mb} MB limit.",
    "record-default-name": "Recording {time}",
  },
});

// What the recording is written as: Opus at a speech bitrate, in the container the browser has
// (Chromium and Safari: WebM or MP4; Firefox: Ogg). The server reads all of them.
const RECORD_TYPES = ["audio/webm;codecs=opus", "audio/ogg;codecs=opus", "audio/webm", "audio/mp4"];
const RECORD_BITS_PER_SECOND = 32000;

const recording = {
  mic: null,
  stopMeter: null,
  recorder: null,
  chunks: [],
  bytes: 0,
  started: 0,
  timer: null,
  take: null,
  url: null,
  // Stopped because the take neared the library's size limit.
  full: false,
};

function recordSay(text, ok) {
  say("record-message", text, ok);
}

function recordButtons() {
  const on = recording.recorder !== null;
  const taken = recording.take !== null;
  $("mic-on").textContent = t(recording.mic ? "mic-off" : "mic-on");
  $("mic-on").disabled = on;
  // One take at a time: it is saved or taken again (which discards it) before the next.
  $("record-start").hidden = on || taken;
  $("record-stop").hidden = !on;
  $("record-take").hidden = !taken;
  $("record-save-part").hidden = !taken;
}

function showElapsed(seconds) {
  const el = $("record-elapsed");
  el.dataset.seconds = seconds.toFixed(1);
  el.textContent = clock(Math.floor(seconds));
}

async function micOn() {
  if (recording.mic) return recording.mic;
  recording.mic = await openMicrophone();
  recording.stopMeter = levelMeter(recording.mic, $("mic-level"));
  recordButtons();
  return recording.mic;
}

function micOff() {
  recording.stopMeter?.();
  recording.stopMeter = null;
  closeMicrophone(recording.mic);
  recording.mic = null;
  $("mic-level").style.width = "0";
  recordButtons();
}

function discardTake() {
  if (recording.url) URL.revokeObjectURL(recording.url);
  recording.url = null;
  recording.take = null;
  const audio = $("record-take");
  audio.removeAttribute("src");
  audio.load();
  showElapsed(0);
  recordButtons();
}

async function startRecording() {
  if (recording.recorder || recording.take) return;
  if (typeof MediaRecorder === "undefined") { recordSay(t("mic-unsupported"), false); return; }
  let mic;
  // A second press while the browser asks for the microphone would start a second recorder.
  $("record-start").disabled = true;
  try {
    mic = await micOn();
  } catch (e) {
    recordSay(e.message, false);
    return;
  } finally {
    $("record-start").disabled = false;
  }
  const mimeType = RECORD_TYPES.find((type) => MediaRecorder.isTypeSupported(type));
  let recorder;
  try {
    recorder = new MediaRecorder(mic.stream, { mimeType, audioBitsPerSecond: RECORD_BITS_PER_SECOND });
  } catch (e) {
    recordSay(tf("mic-failed", { why: e?.message || e?.name || "?" }), false);
    return;
  }
  recording.recorder = recorder;
  recording.chunks = [];
  recording.bytes = 0;
  recording.full = false;
  recorder.addEventListener("dataavailable", (event) => {
    if (event.data.size === 0) return;
    recording.chunks.push(event.data);
    recording.bytes += event.data.size;
    // The server refuses a file over its limit, and the whole take would be lost with it.
    if (uploadLimitMb && recording.bytes > uploadLimitMb * 1024 * 1024 * 0.95 && recorder.state === "recording") {
      recording.full = true;
      recorder.stop();
    }
  });
  recorder.addEventListener("stop", () => finishTake(recorder));
  // A chunk every second: a long take is not held in one piece, and the size check above runs.
  recorder.start(1000);
  recording.started = performance.now();
  recording.timer = setInterval(() => showElapsed((performance.now() - recording.started) / 1000), 200);
  showElapsed(0);
  recordSay(t("record-on"), true);
  recordButtons();
}

function stopRecording() {
  if (recording.recorder?.state === "recording") recording.recorder.stop();
}

function finishTake(recorder) {
  clearInterval(recording.timer);
  recording.timer = null;
  const seconds = (performance.now() - recording.started) / 1000;
  recording.recorder = null;
  const blob = new Blob(recording.chunks, { type: recorder.mimeType || "audio/webm" });
  recording.chunks = [];
  if (blob.size === 0) {
    recordButtons();
    recordSay(t("record-empty"), false);
    return;
  }
  recording.take = blob;
  recording.url = URL.createObjectURL(blob);
  showElapsed(seconds);
  const audio = $("record-take");
  audio.src = recording.url;
  // Chromium writes no duration into a WebM it records, and its player then shows none and
  // cannot seek; seeking far past the end once makes it read to the end and learn it.
  audio.addEventListener("loadedmetadata", () => {
    if (audio.duration !== Infinity) return;
    audio.addEventListener("durationchange", () => { audio.currentTime = 0; }, { once: true });
    audio.currentTime = 1e101;
  }, { once: true });
  if (!$("record-name").value.trim()) {
    const now = new Date();
    const pad = (n) => String(n).padStart(2, "0");
    $("record-name").value = tf("record-default-name",
      { time: `${pad(now.getDate())}/${pad(now.getMonth() + 1)} ${pad(now.getHours())}:${pad(now.getMinutes())}` });
  }
  // Stopped at the size limit: why it stopped matters more than the usual hint.
  if (recording.full) recordSay(tf("record-full", { mb: uploadLimitMb }), false);
  else recordSay(t("record-ready"), true);
  recordButtons();
}

// The file name the server keeps as the original: the container the browser recorded in.
function takeFileName(blob) {
  const ext = blob.type.includes("ogg") ? "ogg" : blob.type.includes("mp4") ? "m4a" : "webm";
  const now = new Date();
  const pad = (n) => String(n).padStart(2, "0");
  return `ghi-am-${now.getFullYear()}${pad(now.getMonth() + 1)}${pad(now.getDate())}-${pad(now.getHours())}${pad(now.getMinutes())}${pad(now.getSeconds())}.${ext}`;
}

async function saveTake() {
  const blob = recording.take;
  if (!blob) return;
  const name = $("record-name").value.trim();
  if (!name) { recordSay(t("record-need-name"), false); $("record-name").focus(); return; }
  if (uploadLimitMb && blob.size > uploadLimitMb * 1024 * 1024) {
    recordSay(tf("too-large", { mb: uploadLimitMb }), false);
    return;
  }
  recordSay(tf("record-saving", { name }), true);
  $("record-save").disabled = true;
  try {
    const headers = { "Content-Type": blob.type || "application/octet-stream", "X-File-Name": encodeURIComponent(takeFileName(blob)) };
    if (token) headers.Authorization = `Bearer ${token}`;
    if (csrf) headers["X-CSRF-Token"] = csrf;
    const response = await fetch(`/api/v1/library?name=${encodeURIComponent(name)}`, {
      method: "POST", headers, credentials: "same-origin", body: blob,
    });
    const text = await response.text();
    let answer = null;
    try { answer = JSON.parse(text); } catch (_) { /* not JSON */ }
    if (!response.ok) {
      if (response.status === 401 && me) signedOut(t("session-ended"));
      const vi = answer?.message_vi;
      recordSay(response.status === 403 ? t("forbidden")
        : response.status === 413 && !answer ? tf("too-large", { mb: uploadLimitMb ?? "?" })
          : lang === "vi" && vi ? vi : answer?.error ?? text, false);
      return;
    }
    const item = answer?.item ?? answer;
    discardTake();
    $("record-name").value = "";
    recordSay(tf("record-saved", { name: item.name, d: clock(item.duration_secs) }), true);
    await refreshLibrary().catch(() => {});
  } catch (_) {
    recordSay(t("login-down"), false);
  } finally {
    $("record-save").disabled = false;
  }
}

$("mic-on").addEventListener("click", async () => {
  if (recording.mic) { micOff(); return; }
  try {
    await micOn();
    recordSay(t("record-help"), true);
  } catch (e) {
    recordSay(e.message, false);
  }
});
$("record-start").addEventListener("click", startRecording);
$("record-stop").addEventListener("click", stopRecording);
$("record-retake").addEventListener("click", () => {
  discardTake();
  recordSay(t("record-help"), true);
});
$("record-save").addEventListener("click", saveTake);
// Its text says what a click does (turn on or off), which the page's language switch, run
// before this, does not know.
$("lang").addEventListener("click", recordButtons);
window.addEventListener("beforeunload", (event) => {
  if (recording.take || recording.recorder) event.preventDefault();
});
recordButtons();
