// The library page's «Soạn thông báo bằng chữ» panel: an announcement typed or pasted, spoken by
// the server (espeak-ng's Vietnamese voice, or the district's own engine), previewed in the
// browser, kept as a library item, or kept and handed to the send form at once. The server
// checks the text too; its refusals come back in Vietnamese.
"use strict";

addText({
  vi: {
    "tts-title": "Soạn thông báo bằng chữ (đọc tự động)", "tts-text": "Nội dung thông báo",
    "tts-placeholder": "Gõ hoặc dán nội dung cần đọc, ví dụ: Thông báo lịch tiêm phòng cho trẻ em…",
    "tts-count": "{n}/{max} ký tự", "tts-speed": "Tốc độ đọc", "tts-wpm": "{n} từ/phút",
    "tts-preview": "Nghe thử", "tts-name": "Tên bài trong thư viện", "tts-save": "Lưu vào thư viện",
    "tts-send": "Gửi ngay…", "tts-speaking": "Máy chủ đang đọc văn bản…",
    "tts-previewed": "Bản nghe thử đã sẵn sàng: bấm ▶ để nghe. Nếu được, hãy lưu vào thư viện hoặc gửi ngay.",
    "tts-saved": "Đã lưu “{name}” vào thư viện: dài {d}.",
    "tts-saved-send": "Đã lưu “{name}”. Hãy chọn mức, nơi phát và giờ phát rồi bấm Phát / Đặt lịch.",
    "tts-empty": "Chưa có nội dung thông báo — hãy gõ hoặc dán văn bản cần đọc.",
    "tts-too-long": "Văn bản quá dài: {n} ký tự, tối đa {max} ký tự — hãy rút gọn hoặc chia thành nhiều thông báo.",
    "tts-engine": "Giọng đọc: {engine}",
  },
  en: {
    "tts-title": "Write an announcement (read aloud automatically)", "tts-text": "Announcement",
    "tts-placeholder": "Type or paste what to read aloud, e.g. The children's vaccination schedule…",
    "tts-count": "{n}/{max} characters", "tts-speed": "Speed", "tts-wpm": "{n} words/min",
    "tts-preview": "Preview", "tts-name": "Name in the library", "tts-save": "Save to the library",
    "tts-send": "Send now…", "tts-speaking": "The server is reading the text…",
    "tts-previewed": "The preview is ready: press ▶ to listen. If it is right, save it or send it now.",
    "tts-saved": "“{name}” saved to the library: {d} long.",
    "tts-saved-send": "“{name}” saved. Choose the level, where and when, then press Broadcast / Schedule.",
    "tts-empty": "There is no text yet — type or paste the announcement.",
    "tts-too-long": "The text is too long: {n} characters, at most {max} — shorten it or split it into several announcements.",
    "tts-engine": "Voice: {engine}",
  },
});

// The server's limits (GET /api/v1/tts); the defaults it ships with until they arrive.
let ttsInfo = { max_chars: 2000, speed_min: 80, speed_max: 300, speed_default: 150, engine: "espeak-ng" };
let ttsInfoRead = false;
// The preview's object URL, released when the next one replaces it.
let ttsPreviewUrl = null;

async function refreshTts() {
  if (me?.role !== "admin") return;
  try {
    ttsInfo = await api("GET", "/api/v1/tts");
    const speed = $("tts-speed");
    speed.min = String(ttsInfo.speed_min);
    speed.max = String(ttsInfo.speed_max);
    if (!ttsInfoRead) speed.value = String(ttsInfo.speed_default);
    ttsInfoRead = true;
  } catch (_) { /* the defaults above; the server checks again */ }
  $("tts-text").placeholder = t("tts-placeholder");
  $("tts-engine").textContent = tf("tts-engine", { engine: ttsInfo.engine });
  countTts();
  showSpeed();
}

// Characters as the server counts them: code points, not UTF-16 units or bytes.
function ttsChars() {
  return [...$("tts-text").value].length;
}

function countTts() {
  const n = ttsChars();
  const count = $("tts-count");
  count.textContent = tf("tts-count", { n, max: ttsInfo.max_chars });
  count.className = n > ttsInfo.max_chars ? "bad" : "hint";
}

function showSpeed() {
  $("tts-speed-value").textContent = tf("tts-wpm", { n: $("tts-speed").value });
}

// Why the text cannot be spoken as it is, or null.
function ttsProblem() {
  const text = $("tts-text").value;
  if (!text.trim()) return t("tts-empty");
  const n = ttsChars();
  if (n > ttsInfo.max_chars) return tf("tts-too-long", { n, max: ttsInfo.max_chars });
  return null;
}

function ttsRequest() {
  return { text: $("tts-text").value, speed: Number($("tts-speed").value) };
}

// A refusal in the reader's language: the server's Vietnamese where it has one.
function ttsRefusal(e) {
  $("tts-message").title = e instanceof ApiError ? e.message : "";
  say("tts-message", explain(e), false);
}

function ttsBusy(busy) {
  for (const id of ["tts-preview", "tts-save", "tts-send"]) $(id).disabled = busy;
}

async function previewTts() {
  const problem = ttsProblem();
  if (problem) { say("tts-message", problem, false); return; }
  say("tts-message", t("tts-speaking"), true);
  ttsBusy(true);
  try {
    // Audio, not JSON: `api()` would try to parse it.
    const headers = { "Content-Type": "application/json" };
    if (token) headers.Authorization = `Bearer ${token}`;
    if (csrf) headers["X-CSRF-Token"] = csrf;
    const response = await fetch("/api/v1/tts/preview", {
      method: "POST", headers, credentials: "same-origin", body: JSON.stringify(ttsRequest()),
    });
    if (!response.ok) {
      const text = await response.text();
      let answer = null;
      try { answer = JSON.parse(text); } catch (_) { /* not JSON */ }
      if (response.status === 401 && me) signedOut(t("session-ended"));
      const error = new ApiError(response.status, `${response.status}: ${answer?.error ?? text}`, null);
      error.vi = answer?.message_vi ?? null;
      ttsRefusal(error);
      return;
    }
    const blob = await response.blob();
    if (ttsPreviewUrl) URL.revokeObjectURL(ttsPreviewUrl);
    ttsPreviewUrl = URL.createObjectURL(blob);
    const audio = $("tts-audio");
    audio.src = ttsPreviewUrl;
    audio.hidden = false;
    audio.load();
    say("tts-message", t("tts-previewed"), true);
    // A browser may refuse to start sound by itself; the player's ▶ is there.
    audio.play().catch(() => {});
  } catch (_) {
    say("tts-message", t("login-down"), false);
  } finally {
    ttsBusy(false);
  }
}

// The name typed, or the text's first words.
function ttsName() {
  const typed = $("tts-name").value.trim();
  if (typed) return typed;
  const words = $("tts-text").value.trim().split(/\s+/).slice(0, 8).join(" ");
  return [...words].slice(0, 60).join("") || "Thông báo";
}

// Speaks and keeps the text; the item, or null after saying why not.
async function saveTts() {
  const problem = ttsProblem();
  if (problem) { say("tts-message", problem, false); return null; }
  say("tts-message", t("tts-speaking"), true);
  ttsBusy(true);
  try {
    const item = await api("POST", "/api/v1/library/tts", { name: ttsName(), ...ttsRequest() });
    say("tts-message", tf("tts-saved", { name: item.name, d: clock(item.duration_secs) }), true);
    $("tts-name").value = "";
    await refreshLibrary().catch(() => {});
    return item;
  } catch (e) {
    ttsRefusal(e);
    return null;
  } finally {
    ttsBusy(false);
  }
}

// Keeps the text, then opens the send form with it chosen, as the overview's emergency button
// opens it with the level chosen.
async function sendTts() {
  const item = await saveTts();
  if (!item) return;
  if (typeof stopEditing === "function") stopEditing();
  $("send-kind").value = "library";
  // The send page keeps the chosen item across its refresh only if the list had it.
  const select = $("send-item");
  if (![...select.options].some((o) => o.value === item.id)) select.add(new Option(item.name, item.id));
  select.value = item.id;
  $("send-name").value = item.name;
  delete $("send-name").dataset.touched;
  say("send-message", tf("tts-saved-send", { name: item.name }), true);
  location.hash = "#/send";
}

const libraryRefresh = PAGES.library.refresh;
PAGES.library = { ...PAGES.library, refresh: () => Promise.all([libraryRefresh(), refreshTts()]) };
$("tts-text").addEventListener("input", countTts);
$("tts-speed").addEventListener("input", showSpeed);
$("tts-preview").addEventListener("click", previewTts);
$("tts-send").addEventListener("click", sendTts);
$("tts-form").addEventListener("submit", (event) => {
  event.preventDefault();
  saveTts();
});
