// The library page: recordings uploaded from a PC or a phone (drag and drop or the file picker),
// each checked by the server as it arrives (decoded in full: its length and level, or one clear
// refusal and nothing stored), listened to in the browser, renamed, and deleted unless the
// schedule or a bulletin still uses it.
"use strict";

addText({
  vi: {
    "drop-here": "Kéo tệp ghi âm vào đây, hoặc", "upload-name": "Tên bài", upload: "Tải lên",
    "item-name": "Tên", duration: "Thời lượng", "level-db": "Mức âm", listen: "Nghe",
    rename: "Đổi tên", "confirm-delete-item": "Xoá “{name}” khỏi thư viện?",
    "ask-name": "Tên mới cho “{name}”:", "need-upload-file": "Hãy chọn một tệp ghi âm.",
    uploading: "Đang tải lên “{name}”… (tệp lớn có thể mất vài phút)",
    uploaded: "Đã tải lên “{name}”: dài {d}, mức đỉnh {p} dBFS.",
    "upload-limit": "Định dạng: MP3, M4A/AAC (iPhone, Zalo), OGG/Opus, WebM, WAV, FLAC. Tối đa {mb} MB.",
    "too-large": "Tệp lớn hơn {mb} MB, máy chủ không nhận. Hãy cắt ngắn hoặc nén lại (MP3 64 kbit/s là đủ cho loa).",
    "library-empty": "Thư viện chưa có bài nào.", quiet: "rất nhỏ",
  },
  en: {
    "drop-here": "Drop a recording here, or", "upload-name": "Name", upload: "Upload",
    "item-name": "Name", duration: "Length", "level-db": "Level", listen: "Listen",
    rename: "Rename", "confirm-delete-item": "Delete “{name}” from the library?",
    "ask-name": "New name for “{name}”:", "need-upload-file": "Choose a recording.",
    uploading: "Uploading “{name}”… (a large file may take minutes)",
    uploaded: "“{name}” uploaded: {d} long, peak {p} dBFS.",
    "upload-limit": "Formats: MP3, M4A/AAC (iPhone, Zalo), OGG/Opus, WebM, WAV, FLAC. At most {mb} MB.",
    "too-large": "The file is larger than {mb} MB and the server refuses it. Cut it or compress it (64 kbit/s MP3 is plenty for loudspeakers).",
    "library-empty": "The library is empty.", quiet: "very quiet",
  },
});

let uploadLimitMb = null;

async function refreshLibrary() {
  const items = await api("GET", "/api/v1/library");
  // The server's limit comes with the listing (x-library-max-upload-mb).
  const limit = Number(lastHeaders?.get("x-library-max-upload-mb"));
  if (limit > 0) uploadLimitMb = limit;
  $("upload-limit").textContent = tf("upload-limit", { mb: uploadLimitMb ?? "?" });
  const body = $("library-items").tBodies[0];
  body.replaceChildren();
  for (const item of items) {
    const row = body.insertRow();
    row.dataset.item = item.id;
    const name = cell(row, item.name);
    name.title = item.original_name ?? "";
    cell(row, clock(item.duration_secs));
    const level = item.peak_dbfs == null ? "" : `${item.peak_dbfs.toFixed(1)} dBFS`;
    cell(row, item.peak_dbfs != null && item.peak_dbfs < -30 ? `${level} (${t("quiet")})` : level,
      item.peak_dbfs != null && item.peak_dbfs < -30 ? "bad" : "");
    // The player loads nothing until pressed: a phone on a commune's link should not fetch
    // every recording to draw the page.
    const audio = document.createElement("audio");
    audio.controls = true;
    audio.preload = "none";
    audio.src = `/api/v1/library/${encodeURIComponent(item.id)}/audio`;
    row.insertCell().appendChild(audio);
    const actions = row.insertCell();
    if (me?.role !== "admin") continue;
    const button = (key, className, handler) => {
      const b = document.createElement("button");
      b.type = "button";
      b.className = className;
      b.dataset.action = key;
      b.textContent = t(key);
      b.addEventListener("click", handler);
      actions.appendChild(b);
    };
    button("rename", "stop", async () => {
      const fresh = window.prompt(tf("ask-name", { name: item.name }), item.name);
      if (fresh === null || !fresh.trim()) return;
      await libraryAct(() => api("POST", `/api/v1/library/${encodeURIComponent(item.id)}/rename`, { name: fresh.trim() }));
    });
    button("delete", "emergency", async () => {
      if (!window.confirm(tf("confirm-delete-item", { name: item.name }))) return;
      await libraryAct(() => api("DELETE", `/api/v1/library/${encodeURIComponent(item.id)}`));
    });
  }
  if (items.length === 0) {
    const row = body.insertRow();
    const td = cell(row, t("library-empty"));
    td.colSpan = 5;
  }
}

async function libraryAct(action) {
  try {
    await action();
    say("library-message", t("done"), true);
  } catch (e) {
    say("library-message", e.vi && lang === "vi" ? e.vi : explain(e), false);
  }
  await refreshLibrary().catch(() => {});
}

async function upload(file) {
  if (!file) { say("library-message", t("need-upload-file"), false); return; }
  const name = $("upload-name").value.trim() || file.name.replace(/\.[^.]+$/, "");
  if (uploadLimitMb && file.size > uploadLimitMb * 1024 * 1024) {
    say("library-message", tf("too-large", { mb: uploadLimitMb }), false);
    return;
  }
  say("library-message", tf("uploading", { name }), true);
  $("upload-submit").disabled = true;
  try {
    const headers = { "Content-Type": file.type || "application/octet-stream", "X-File-Name": encodeURIComponent(file.name) };
    if (token) headers.Authorization = `Bearer ${token}`;
    if (csrf) headers["X-CSRF-Token"] = csrf;
    const response = await fetch(`/api/v1/library?name=${encodeURIComponent(name)}`, {
      method: "POST", headers, credentials: "same-origin", body: file,
    });
    const text = await response.text();
    let answer = null;
    try { answer = JSON.parse(text); } catch (_) { /* not JSON */ }
    if (!response.ok) {
      if (response.status === 401 && me) signedOut(t("session-ended"));
      const vi = answer?.message_vi;
      const message = response.status === 413 && !answer ? tf("too-large", { mb: uploadLimitMb ?? "?" })
        : lang === "vi" && vi ? vi : answer?.error ?? text;
      say("library-message", response.status === 403 ? t("forbidden") : message, false);
      $("library-message").title = answer?.error ?? "";
      return;
    }
    const item = answer?.item ?? answer;
    say("library-message", tf("uploaded", { name: item.name, d: clock(item.duration_secs), p: item.peak_dbfs?.toFixed(1) ?? "?" }), true);
    $("upload-form").reset();
    await refreshLibrary();
  } catch (_) {
    say("library-message", t("login-down"), false);
  } finally {
    $("upload-submit").disabled = false;
  }
}

PAGES.library = { refresh: refreshLibrary };
$("upload-form").addEventListener("submit", (event) => {
  event.preventDefault();
  upload($("upload-file").files[0]);
});
$("upload-file").addEventListener("change", () => {
  const file = $("upload-file").files[0];
  if (file && !$("upload-name").value) $("upload-name").value = file.name.replace(/\.[^.]+$/, "");
});
const drop = $("drop");
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => {
  e.preventDefault();
  drop.classList.remove("over");
  const file = e.dataTransfer?.files?.[0];
  if (file) {
    if (!$("upload-name").value) $("upload-name").value = file.name.replace(/\.[^.]+$/, "");
    upload(file);
  }
});
