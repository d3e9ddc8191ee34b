// The microphone, shared by every page that listens to it (recording an announcement, speaking
// live): open it as it is (no echo cancelling, noise suppression or automatic gain, which make
// speech on a loudspeaker pump and hiss), show its level, close it. Errors come out already in
// the person's language, saying what to do.
"use strict";

addText({
  vi: {
    "mic-insecure": "Trình duyệt chỉ cho dùng micro trên trang an toàn (https). Hãy mở bảng điều khiển bằng địa chỉ https://.",
    "mic-unsupported": "Trình duyệt này không ghi âm được. Hãy dùng Chrome, Edge hoặc Firefox bản mới.",
    "mic-denied": "Trình duyệt chưa cho dùng micro. Bấm biểu tượng ổ khoá cạnh địa chỉ trang, chọn Cho phép micro, rồi bấm lại.",
    "mic-missing": "Không tìm thấy micro. Hãy cắm micro (hoặc tai nghe có micro) rồi bấm lại.",
    "mic-busy": "Micro đang bị chương trình khác dùng (Zalo, Zoom…). Hãy tắt chương trình đó rồi bấm lại.",
    "mic-failed": "Không mở được micro ({why}). Hãy thử lại, hoặc dùng trình duyệt khác.",
  },
  en: {
    "mic-insecure": "Browsers allow the microphone on secure pages only (https). Open the console at its https:// address.",
    "mic-unsupported": "This browser cannot record. Use a recent Chrome, Edge or Firefox.",
    "mic-denied": "The browser has not allowed the microphone. Click the padlock next to the address, allow the microphone, then try again.",
    "mic-missing": "No microphone was found. Plug one in (or a headset with one), then try again.",
    "mic-busy": "Another program is using the microphone (Zalo, Zoom…). Close it, then try again.",
    "mic-failed": "The microphone did not open ({why}). Try again, or use another browser.",
  },
});

// Below this the meter shows nothing: room noise of a quiet office.
const METER_FLOOR_DB = -60;
// A peak this close to full scale is clipping: the speaker is too close or too loud.
const CLIP_DB = -0.5;

async function openMicrophone() {
  if (!window.isSecureContext) throw new Error(t("mic-insecure"));
  if (!navigator.mediaDevices?.getUserMedia || !window.AudioContext) throw new Error(t("mic-unsupported"));
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({
      audio: { echoCancellation: false, noiseSuppression: false, autoGainControl: false, channelCount: 1 },
    });
  } catch (e) {
    const key = { NotAllowedError: "mic-denied", SecurityError: "mic-denied", NotFoundError: "mic-missing",
      OverconstrainedError: "mic-missing", NotReadableError: "mic-busy", AbortError: "mic-busy" }[e?.name];
    throw new Error(key ? t(key) : tf("mic-failed", { why: e?.message || e?.name || "?" }));
  }
  let context;
  try {
    // 48 kHz is what the stations play: nothing is resampled on the way.
    context = new AudioContext({ sampleRate: 48000 });
  } catch (_) {
    // Some browsers refuse a rate other than the sound card's.
    context = new AudioContext();
  }
  // A context made outside a click starts suspended in some browsers; the meter needs it
  // running. Not awaited: where the browser still refuses, the promise never settles.
  if (context.state === "suspended") context.resume().catch(() => {});
  const source = context.createMediaStreamSource(stream);
  return { stream, context, source };
}

// Draws the microphone's peak level into `element` about ten times a second: a <meter> gets its
// value in dBFS, any other element becomes a bar (its width the level, red when clipping). The
// level in words goes to its title and data-db. Returns the function that stops it.
function levelMeter(mic, element) {
  const analyser = mic.context.createAnalyser();
  analyser.fftSize = 2048;
  mic.source.connect(analyser);
  const samples = new Float32Array(analyser.fftSize);
  const isMeter = element instanceof HTMLMeterElement;
  if (isMeter) {
    element.min = METER_FLOOR_DB;
    element.max = 0;
    element.low = -20;
    element.high = -3;
    element.optimum = -12;
  }
  let loudest = 0;
  const draw = () => {
    analyser.getFloatTimeDomainData(samples);
    let peak = 0;
    for (const s of samples) peak = Math.max(peak, Math.abs(s));
    const db = peak > 0 ? Math.max(METER_FLOOR_DB, 20 * Math.log10(peak)) : METER_FLOOR_DB;
    const clipping = db >= CLIP_DB;
    loudest = Math.max(loudest, db);
    element.dataset.db = db.toFixed(1);
    element.dataset.clipping = String(clipping);
    element.title = `${db.toFixed(1)} dBFS`;
    if (isMeter) {
      element.value = db;
    } else {
      element.style.width = `${Math.round(100 * (db - METER_FLOOR_DB) / -METER_FLOOR_DB)}%`;
      element.style.background = clipping ? "#b42318" : db > -6 ? "#c98a00" : "#17803d";
    }
    element.classList.toggle("clipping", clipping);
  };
  const timer = setInterval(draw, 100);
  draw();
  return () => {
    clearInterval(timer);
    try { mic.source.disconnect(analyser); } catch (_) { /* already gone */ }
    element.dataset.loudest = loudest.toFixed(1);
  };
}

function closeMicrophone(mic) {
  if (!mic) return;
  for (const track of mic.stream?.getTracks() ?? []) track.stop();
  try { mic.source?.disconnect(); } catch (_) { /* already gone */ }
  mic.context?.close().catch(() => {});
}
