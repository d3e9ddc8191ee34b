// The live page: a district or commune operator speaks to the villages from a PC or phone
// microphone. The browser encodes Opus itself (WebCodecs' AudioEncoder, 40 ms packets at
// 24 kb/s: about 40 kb/s with the WebSocket, TLS and TCP/IP around it, which a 4G uplink carries)
// and sends each packet over a WebSocket to the server's live input, where it gets the studio's
// jitter buffer, levels and ladder (`server/src/operator/live_routes.rs` says the conversation).
// Closing the tab or losing the connection ends the broadcast; what it interrupted resumes.
// A browser without WebCodecs (Firefox for Android, for one) sends its MediaRecorder's live WebM
// instead, in 100 ms pieces, which the server unpacks into the same Opus packets.
"use strict";

addText({
  vi: {
    "page-live": "Nói trực tiếp", "live-title": "Nói trực tiếp tới loa",
    "live-hint": "Bật micro, xem mức âm, chọn nơi phát rồi bấm «Bắt đầu phát trực tiếp». Bấm «Dừng phát» khi nói xong. Đóng trang cũng dừng phát.",
    "live-some": "Các xã được chọn", "mic-level": "Mức micro", "mic-on": "Bật micro", "mic-off": "Tắt micro",
    "live-go": "Bắt đầu phát trực tiếp", "live-end": "Dừng phát",
    "live-on-air": "ĐANG PHÁT TRỰC TIẾP tới {where} · {time}",
    "live-confirm": "Phát trực tiếp giọng nói của bạn tới {where}?",
    "live-connecting": "Đang kết nối tới máy chủ…",
    "live-no-stations": "Hãy chọn ít nhất một xã.",
    "live-busy": "{user} đang phát trực tiếp từ bảng điều khiển tới {where} (từ {time}).",
    "live-you": "Bạn đang phát trực tiếp.",
    "live-unavailable": "Máy chủ này không nhận phát trực tiếp từ trình duyệt (đầu vào trực tiếp là bàn trộn). Hãy phát từ phòng thu.",
    "live-unsupported": "Trình duyệt này chưa gửi được giọng nói trực tiếp. Hãy dùng Chrome, Edge hoặc Firefox bản mới.",
    "live-ended": "Đã dừng phát trực tiếp sau {s} giây.",
    "live-ended-admin": "Quản trị viên đã dừng buổi phát trực tiếp của bạn.",
    "live-ended-silent": "Máy chủ không nhận được âm thanh nữa nên đã dừng phát. Kiểm tra mạng rồi thử lại.",
    "live-lost": "Mất kết nối tới máy chủ: buổi phát đã dừng. Kiểm tra mạng rồi bấm «Bắt đầu phát trực tiếp» lại.",
    "live-encoder-failed": "Trình duyệt không mã hoá được âm thanh: {e}. Hãy tải lại trang.",
  },
  en: {
    "page-live": "Speak live", "live-title": "Speak live to the loudspeakers",
    "live-hint": "Turn the microphone on, check the level, choose where, then press «Go live». Press «Stop» when you are done. Closing the page stops it too.",
    "live-some": "Chosen communes", "mic-level": "Microphone level", "mic-on": "Microphone on", "mic-off": "Microphone off",
    "live-go": "Go live", "live-end": "Stop",
    "live-on-air": "LIVE to {where} · {time}",
    "live-confirm": "Broadcast your voice live to {where}?",
    "live-connecting": "Connecting to the server…",
    "live-no-stations": "Choose at least one commune.",
    "live-busy": "{user} is live from the console to {where} (since {time}).",
    "live-you": "You are live.",
    "live-unavailable": "This server cannot take live audio from a browser (its live input is a mixer pipe). Broadcast from the studio.",
    "live-unsupported": "This browser cannot send live audio. Use a current Chrome, Edge or Firefox.",
    "live-ended": "Live broadcast stopped after {s} s.",
    "live-ended-admin": "An administrator stopped your live broadcast.",
    "live-ended-silent": "The server stopped receiving audio, so the broadcast ended. Check the network and try again.",
    "live-lost": "Connection to the server lost: the broadcast has stopped. Check the network and press «Go live» again.",
    "live-encoder-failed": "The browser could not encode the audio: {e}. Reload the page.",
  },
});

const LIVE_BITRATE = 24000;
const LIVE_FRAME_US = 40000;
// Audio waiting in the socket beyond this (about 3 s at 24 kb/s) is stale: newer packets are
// dropped rather than queued, so a slow uplink costs words, never a growing delay.
const LIVE_MAX_BACKLOG = 9000;
const LIVE_WEBM = "audio/webm;codecs=opus";
const LIVE_RECORDER_SLICE_MS = 100;

// The page's state: the microphone (`openMicrophone`, microphone.js) and, while live, the rest.
const live = { mic: null, meterStop: null, socket: null, encoder: null, node: null, recorder: null, started: 0, timer: null, where: "", stations: [] };

// How this browser sends: Opus packets from WebCodecs, else a WebM recording, else not at all.
function liveUplink() {
  if (typeof AudioEncoder !== "undefined" && typeof AudioData !== "undefined" && typeof AudioWorkletNode !== "undefined") return "opus";
  if (typeof MediaRecorder !== "undefined" && MediaRecorder.isTypeSupported(LIVE_WEBM)) return "webm";
  return null;
}

function liveSupported() {
  return liveUplink() !== null;
}

async function refreshLive() {
  const [stations, status] = await Promise.all([api("GET", "/api/v1/stations"), api("GET", "/api/v1/live/console")]);
  live.stations = stations;
  const own = me?.role === "operator" ? new Set(me.communes ?? []) : null;
  const box = $("live-stations");
  if (box.children.length === 0 || box.dataset.role !== (me?.role ?? "")) {
    box.replaceChildren();
    box.dataset.role = me?.role ?? "";
    for (const s of stations.filter((s) => !own || own.has(s.id))) {
      const label = document.createElement("label");
      const check = document.createElement("input");
      check.type = "checkbox";
      check.value = s.id;
      check.checked = !!own;
      label.append(check, ` ${s.name}`);
      box.append(label);
    }
  }
  // A commune operator speaks to their own communes only.
  $("live-all-label").hidden = !!own;
  if (own) document.querySelector('input[name="live-where"][value="stations"]').checked = true;
  showLiveStatus(status);
}

function liveWhere(targets) {
  if (targets === "all") return t("all-stations");
  const names = new Map(live.stations.map((s) => [s.id, s.name]));
  const ids = targets.stations ?? targets.groups ?? [];
  return ids.map((id) => names.get(id) ?? id).join(", ");
}

function showLiveStatus(status) {
  const busy = status.speaker && !live.socket;
  $("live-go").disabled = !status.available || !liveSupported() || !!busy;
  if (!status.available) say("live-message", t("live-unavailable"), false);
  else if (!liveSupported()) say("live-message", t("live-unsupported"), false);
  else if (busy) {
    const s = status.speaker;
    say("live-message", tf("live-busy", { user: s.user, where: liveWhere(s.targets), time: new Date(s.since).toLocaleTimeString(lang) }), false);
  } else if (!live.socket && $("live-message").dataset.kept !== "1") say("live-message", "", true);
}

function liveTargets() {
  if (document.querySelector('input[name="live-where"]:checked')?.value === "all") return "all";
  const stations = Array.from(document.querySelectorAll("#live-stations input:checked")).map((c) => c.value);
  return stations.length ? { stations } : null;
}

async function liveMicOn() {
  if (live.mic) return;
  live.mic = await openMicrophone();
  live.meterStop = levelMeter(live.mic, $("live-meter"));
  $("live-mic").textContent = t("mic-off");
}

function liveMicOff() {
  if (live.socket) return;
  live.meterStop?.();
  live.meterStop = null;
  if (live.mic) closeMicrophone(live.mic);
  live.mic = null;
  $("live-mic").textContent = t("mic-on");
}

async function goLive() {
  $("live-message").dataset.kept = "";
  const targets = liveTargets();
  if (!targets) { say("live-message", t("live-no-stations"), false); return; }
  const where = liveWhere(targets);
  if (!confirm(tf("live-confirm", { where }))) return;
  try {
    await liveMicOn();
  } catch (e) {
    say("live-message", e.message, false);
    return;
  }
  say("live-message", t("live-connecting"), true);
  $("live-go").disabled = true;
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const socket = new WebSocket(`${scheme}://${location.host}/api/v1/live/console`);
  socket.binaryType = "arraybuffer";
  live.socket = socket;
  live.where = where;
  let welcomed = false;
  const format = liveUplink();
  socket.onopen = () => socket.send(JSON.stringify({ csrf, targets, format }));
  socket.onmessage = (event) => {
    let answer = {};
    try { answer = JSON.parse(event.data); } catch (_) { return; }
    if (!welcomed && answer.ok === true) {
      welcomed = true;
      (format === "webm" ? startRecording(socket) : startEncoding(socket)).catch((e) => endLive(tf("live-encoder-failed", { e: e.message }), false));
    } else if (answer.ok === false) {
      endLive(lang === "vi" && answer.message_vi ? answer.message_vi : answer.error, false);
    } else if (answer.ended) {
      const why = { "stopped-by-admin": t("live-ended-admin"), "no-audio": t("live-ended-silent") }[answer.ended];
      endLive(why ?? tf("live-ended", { s: Math.round(answer.seconds) }), !why);
    }
  };
  socket.onclose = () => {
    if (live.socket === socket) endLive(t("live-lost"), false);
  };
}

async function startEncoding(socket) {
  const context = live.mic.context;
  const config = {
    codec: "opus", sampleRate: context.sampleRate, numberOfChannels: 1, bitrate: LIVE_BITRATE,
    opus: { frameDuration: LIVE_FRAME_US, signal: "voice", application: "voip" },
  };
  const support = await AudioEncoder.isConfigSupported(config);
  if (!support.supported) throw new Error(`Opus ${context.sampleRate} Hz`);
  live.encoder = new AudioEncoder({
    output: (chunk) => {
      if (socket.readyState !== WebSocket.OPEN || socket.bufferedAmount > LIVE_MAX_BACKLOG) return;
      const packet = new Uint8Array(chunk.byteLength);
      chunk.copyTo(packet);
      socket.send(packet);
    },
    error: (e) => endLive(tf("live-encoder-failed", { e: e.message }), false),
  });
  live.encoder.configure(config);
  await context.audioWorklet.addModule("/console/live-worklet.js");
  live.node = new AudioWorkletNode(context, "live-capture", { numberOfOutputs: 1 });
  let samples = 0;
  live.node.port.onmessage = (event) => {
    if (!live.encoder || live.encoder.state !== "configured") return;
    const block = event.data;
    const data = new AudioData({
      format: "f32-planar", sampleRate: context.sampleRate, numberOfFrames: block.length,
      numberOfChannels: 1, timestamp: Math.round((samples * 1e6) / context.sampleRate), data: block,
    });
    samples += block.length;
    live.encoder.encode(data);
    data.close();
  };
  live.mic.source.connect(live.node);
  // The worklet writes nothing to its output; being connected keeps it pulled by the graph.
  live.node.connect(context.destination);
  showOnAir();
}

// Without WebCodecs: the recorder's WebM, piece by piece. Nothing may be dropped from it (the
// pieces are one stream), so a slow uplink delays it instead; the server's jitter buffer then
// skips silent frames to catch up.
async function startRecording(socket) {
  live.recorder = new MediaRecorder(live.mic.stream, { mimeType: LIVE_WEBM, audioBitsPerSecond: LIVE_BITRATE });
  live.recorder.ondataavailable = (event) => {
    if (event.data.size > 0 && socket.readyState === WebSocket.OPEN) socket.send(event.data);
  };
  live.recorder.start(LIVE_RECORDER_SLICE_MS);
  showOnAir();
}

function showOnAir() {
  live.started = Date.now();
  $("live-go").hidden = true;
  $("live-end").hidden = false;
  $("live-mic").disabled = true;
  $("live-where-set").disabled = true;
  const banner = $("live-banner");
  banner.hidden = false;
  const tickBanner = () => {
    const s = Math.floor((Date.now() - live.started) / 1000);
    banner.textContent = tf("live-on-air", { where: live.where, time: `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}` });
  };
  tickBanner();
  live.timer = setInterval(tickBanner, 1000);
  say("live-message", t("live-you"), true);
}

function stopLive() {
  const socket = live.socket;
  if (!socket) return;
  if (socket.readyState === WebSocket.OPEN) socket.send("stop");
  else endLive(t("live-lost"), false);
}

// Ends the page's side of a broadcast (the server has ended or will end its own).
function endLive(message, ok) {
  const socket = live.socket;
  live.socket = null;
  if (socket && socket.readyState <= WebSocket.OPEN) socket.close();
  if (live.node) {
    live.node.port.onmessage = null;
    live.node.disconnect();
    live.node = null;
  }
  if (live.encoder && live.encoder.state !== "closed") live.encoder.close();
  live.encoder = null;
  if (live.recorder) {
    live.recorder.ondataavailable = null;
    if (live.recorder.state !== "inactive") live.recorder.stop();
    live.recorder = null;
  }
  clearInterval(live.timer);
  $("live-banner").hidden = true;
  $("live-go").hidden = false;
  $("live-go").disabled = false;
  $("live-end").hidden = true;
  $("live-mic").disabled = false;
  $("live-where-set").disabled = false;
  say("live-message", message, ok);
  $("live-message").dataset.kept = "1";
}

$("live-mic").addEventListener("click", () => {
  if (live.mic) liveMicOff();
  else liveMicOn().catch((e) => say("live-message", e.message, false));
});
$("live-go").addEventListener("click", () => goLive());
$("live-end").addEventListener("click", () => stopLive());

PAGES.live = {
  refresh: () => refreshLive(),
  tick: () => api("GET", "/api/v1/live/console").then(showLiveStatus),
};
