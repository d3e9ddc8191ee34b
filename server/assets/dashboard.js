// The district's dashboard: stations and their state (link, what airs, loudspeaker clusters),
// uptime per station, the programme log, and the live and emergency buttons. Vietnamese by default; the token stays in this tab only.
"use strict";

const TEXT = {
  vi: {
    title: "Truyền thanh thông minh", login: "Đăng nhập",
    "login-help": "Dán mã quản trị (tệp admin.token trên máy chủ).", "login-button": "Vào",
    "login-failed": "Mã không đúng hoặc máy chủ không trả lời.",
    controls: "Phát trực tiếp và khẩn cấp", "live-start": "Phát trực tiếp", "live-stop": "Dừng trực tiếp",
    "emergency-file": "Tệp bản tin khẩn cấp (trên máy chủ)", "emergency-start": "Phát khẩn cấp",
    "emergency-stop": "Dừng", emergencies: "Bản tin khẩn cấp đang phát",
    "no-emergency": "Không có bản tin khẩn cấp nào đang phát.", "emergency-name": "Bản tin",
    started: "Bắt đầu lúc", where: "Phát tới", "all-stations": "Tất cả các đài",
    "confirm-stop-emergency": "Dừng bản tin khẩn cấp “{name}”? Chương trình bị ngắt sẽ phát tiếp.",
    stations: "Các đài xã", station: "Đài", link: "Kết nối",
    heartbeat: "Tín hiệu gần nhất", "on-air": "Đang phát", level: "Mức", clusters: "Cụm loa",
    uptime: "Thời gian hoạt động", by: "Theo", year: "năm", month: "tháng",
    plays: "Nhật ký chương trình", programme: "Chương trình", count: "Số lần",
    seconds: "Thời lượng (giây)", connected: "có", disconnected: "mất", never: "chưa có",
    "seconds-ago": "giây trước", nothing: "—", lang: "English",
    "confirm-emergency": "Phát bản tin khẩn cấp này tới tất cả các đài?",
    "confirm-live": "Phát trực tiếp tới tất cả các đài?", done: "Đã thực hiện.",
    "no-file": "Hãy nhập đường dẫn tệp trên máy chủ.", availability: "Sẵn sàng (%)",
    "clusters-count": "{n} cụm", "clusters-up": "{n} tốt", "clusters-down": "{n} hỏng",
    "clusters-follow": "{n} theo đài", "cluster-up": "tốt", "cluster-down": "hỏng",
    "cluster-since": "từ {time}",
    "cluster-unknown": "không có trong danh sách cụm loa của đài này — kiểm tra cấu hình máy trạm",
    "clusters-help": "Cụm “theo đài” không được theo dõi riêng (loa dây, FM): cụm hoạt động khi đài hoạt động.",
  },
  en: {
    title: "Smart radio broadcast", login: "Sign in",
    "login-help": "Paste the admin token (the admin.token file on the server).", "login-button": "Enter",
    "login-failed": "Wrong token, or the server does not answer.",
    controls: "Live and emergency", "live-start": "Go live", "live-stop": "Stop live",
    "emergency-file": "Emergency recording (on the server)", "emergency-start": "Broadcast emergency",
    "emergency-stop": "Stop", emergencies: "Emergencies on air",
    "no-emergency": "No emergency is running.", "emergency-name": "Bulletin",
    started: "Started", where: "Where", "all-stations": "All stations",
    "confirm-stop-emergency": "Stop the emergency “{name}”? What it interrupted resumes.",
    stations: "Commune stations", station: "Station", link: "Link",
    heartbeat: "Last heartbeat", "on-air": "On air", level: "Level", clusters: "Clusters",
    uptime: "Uptime", by: "By", year: "year", month: "month",
    plays: "Programme log", programme: "Programme", count: "Plays",
    seconds: "Seconds aired", connected: "up", disconnected: "down", never: "never",
    "seconds-ago": "s ago", nothing: "—", lang: "Tiếng Việt",
    "confirm-emergency": "Broadcast this emergency to every station?",
    "confirm-live": "Go live on every station?", done: "Done.",
    "no-file": "Enter the path of a file on the server.", availability: "Availability (%)",
    "clusters-count": "{n} clusters", "clusters-up": "{n} up", "clusters-down": "{n} down",
    "clusters-follow": "{n} follow the station", "cluster-up": "up", "cluster-down": "down",
    "cluster-since": "since {time}",
    "cluster-unknown": "not a cluster of this station in the district's list — check the agent's configuration",
    "clusters-help": "Clusters that “follow the station” are not watched on their own (wired, FM): they work when the station works.",
  },
};

let lang = localStorage.getItem("radio-lang") || "vi";
let token = sessionStorage.getItem("radio-token") || "";
const $ = (id) => document.getElementById(id);
const t = (key) => TEXT[lang][key] ?? key;

function applyLanguage() {
  document.documentElement.lang = lang;
  for (const el of document.querySelectorAll("[data-t]")) el.textContent = t(el.dataset.t);
  $("lang").textContent = t("lang");
}

async function api(method, path, body) {
  const response = await fetch(path, {
    method,
    headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  if (!response.ok) {
    let message = text;
    try { message = JSON.parse(text).error ?? text; } catch (_) { /* plain text */ }
    throw new Error(`${response.status}: ${message}`);
  }
  return text ? JSON.parse(text) : null;
}

function cell(row, text, className) {
  const td = row.insertCell();
  td.textContent = text;
  if (className) td.className = className;
  return td;
}

async function refreshStations() {
  const [stations, status] = await Promise.all([api("GET", "/api/v1/stations"), api("GET", "/api/v1/status")]);
  const airing = new Map(status.stations.map((s) => [s.station, s]));
  const body = $("stations").tBodies[0];
  body.replaceChildren();
  for (const s of stations) {
    const row = body.insertRow();
    row.dataset.station = s.id;
    cell(row, s.name);
    cell(row, s.connected ? t("connected") : t("disconnected"), s.connected ? "ok" : "bad");
    cell(row, s.heartbeat_age_s == null ? t("never") : `${Math.round(s.heartbeat_age_s)} ${t("seconds-ago")}`);
    const on = airing.get(s.id);
    cell(row, on?.name ?? t("nothing"));
    cell(row, on?.level ?? t("nothing"), on?.level === "khẩn cấp" ? "level-khan" : "");
    clusterCell(row, s.id, s.clusters ?? []);
  }
  showEmergencies(status.emergencies, new Map(stations.map((s) => [s.id, s.name])));
}

function localTime(unixMs) {
  return new Date(unixMs).toLocaleString(lang === "vi" ? "vi-VN" : "en-GB");
}

// A station's loudspeaker clusters in one cell: how many are up, down or simply follow the
// station, then each down cluster spelled out with why and since when, so the operator knows
// which one to send someone to without opening anything. A cluster the agent watches that the
// district does not list is shown too: it is a mistake in a configuration, not a healthy cluster.
function clusterCell(row, station, clusters) {
  const td = row.insertCell();
  td.className = "clusters";
  const short = (c) => (c.id.startsWith(`${station}/`) ? c.id.slice(station.length + 1) : c.id);
  const configured = clusters.filter((c) => c.configured);
  const count = (state) => configured.filter((c) => c.state === state).length;
  const parts = [["clusters-up", count("up")], ["clusters-down", count("down")],
    ["clusters-follow", count("follows_station")]]
    .filter(([, n]) => n > 0)
    .map(([key, n]) => t(key).replace("{n}", String(n)));
  const summary = document.createElement("div");
  summary.className = "cluster-summary";
  summary.textContent = `${t("clusters-count").replace("{n}", String(configured.length))}: ${parts.join(", ")}`;
  const watched = clusters.filter((c) => c.state !== "follows_station")
    .map((c) => `${short(c)}: ${t(`cluster-${c.state}`)} — ${c.reason}`);
  summary.title = [...watched, t("clusters-help")].join("\n");
  td.appendChild(summary);
  for (const c of clusters) {
    if (c.state !== "down" && c.configured) continue;
    const line = document.createElement("div");
    line.className = c.state === "down" ? "cluster-line bad" : "cluster-line";
    line.dataset.cluster = c.id;
    const since = c.since == null ? "" : ` (${t("cluster-since").replace("{time}", localTime(c.since))})`;
    const what = c.configured ? `${c.reason}${since}` : t("cluster-unknown");
    line.textContent = `${short(c)} ${t(`cluster-${c.state}`)}: ${what}`;
    td.appendChild(line);
  }
  if (clusters.some((c) => c.state === "down")) td.classList.add("cluster-down");
}

// Every emergency running, each with its own stop button: several can run at once (a storm
// warning on the coast, a fire warning inland), and the one to stop is chosen by name here,
// not by whichever this page happened to start.
function showEmergencies(emergencies, names) {
  const body = $("emergencies").tBodies[0];
  body.replaceChildren();
  $("emergencies").hidden = emergencies.length === 0;
  $("no-emergency").hidden = emergencies.length > 0;
  for (const e of emergencies) {
    const row = body.insertRow();
    row.dataset.emergency = e.id;
    const name = cell(row, e.name);
    name.title = e.id;
    const started = new Date(e.started);
    cell(row, Number.isNaN(started.getTime()) ? e.started
      : started.toLocaleString(lang === "vi" ? "vi-VN" : "en-GB"));
    cell(row, e.targets === "all" ? t("all-stations") : e.stations.map((id) => names.get(id) ?? id).join(", "));
    const button = document.createElement("button");
    button.type = "button";
    button.className = "stop";
    button.textContent = t("emergency-stop");
    button.addEventListener("click", () => act(t("confirm-stop-emergency").replace("{name}", e.name),
      () => api("POST", "/api/v1/emergency/stop", { id: e.id })));
    row.insertCell().appendChild(button);
  }
}

// One bar chart per period: a row per station, the bar its availability.
function drawUptime(report) {
  const chart = $("chart");
  chart.replaceChildren();
  const periods = report.periods ?? [];
  const stations = report.stations ?? [];
  const ns = "http://www.w3.org/2000/svg";
  const rowHeight = 16, labelWidth = 170, barWidth = 90, gap = 10;
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("width", String(labelWidth + periods.length * (barWidth + gap) + 10));
  svg.setAttribute("height", String((stations.length + 2) * rowHeight));
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", t("availability"));
  const text = (x, y, value, anchor) => {
    const el = document.createElementNS(ns, "text");
    el.setAttribute("x", String(x));
    el.setAttribute("y", String(y));
    if (anchor) el.setAttribute("text-anchor", anchor);
    el.textContent = value;
    svg.appendChild(el);
  };
  periods.forEach((p, i) => text(labelWidth + i * (barWidth + gap), rowHeight - 4, p.label ?? String(p)));
  stations.forEach((s, row) => {
    const y = (row + 1) * rowHeight;
    text(0, y + rowHeight - 4, s.name);
    (s.periods ?? []).forEach((p, i) => {
      const x = labelWidth + i * (barWidth + gap);
      const value = p?.availability_pct;
      if (value == null) { text(x, y + rowHeight - 4, "—"); return; }
      const bar = document.createElementNS(ns, "rect");
      bar.setAttribute("x", String(x));
      bar.setAttribute("y", String(y + 2));
      bar.setAttribute("width", String(Math.max(1, (barWidth * value) / 100)));
      bar.setAttribute("height", String(rowHeight - 4));
      bar.setAttribute("fill", value >= 99 ? "#17803d" : value >= 95 ? "#c98a00" : "#b42318");
      const title = document.createElementNS(ns, "title");
      title.textContent = `${s.name}: ${value.toFixed(2)} %`;
      bar.appendChild(title);
      svg.appendChild(bar);
    });
  });
  chart.appendChild(svg);
}

function range(by) {
  const today = new Date();
  const to = today.toISOString().slice(0, 10);
  const from = by === "year" ? `${today.getFullYear() - 4}-01-01` : `${today.getFullYear()}-01-01`;
  return `from=${from}&to=${to}&by=${by}&format=json`;
}

async function refreshReports() {
  const by = $("by").value;
  drawUptime(await api("GET", `/api/v1/reports/uptime?${range(by)}`));
  const plays = await api("GET", `/api/v1/reports/plays?${range(by)}`);
  const body = $("plays").tBodies[0];
  body.replaceChildren();
  for (const s of plays.stations ?? []) {
    for (const p of s.programmes ?? []) {
      if (!p.all) continue;
      const row = body.insertRow();
      cell(row, s.name);
      cell(row, p.name);
      cell(row, String(p.all.plays));
      cell(row, String(Math.round(p.all.aired_s)));
    }
  }
}

async function act(question, action) {
  if (question && !window.confirm(question)) return;
  try {
    await action();
    $("message").textContent = t("done");
    $("message").className = "ok";
    await refreshStations();
  } catch (e) {
    $("message").textContent = e.message;
    $("message").className = "bad";
  }
}

async function start() {
  try {
    await refreshStations();
  } catch (e) {
    $("login-error").textContent = t("login-failed");
    return;
  }
  sessionStorage.setItem("radio-token", token);
  $("login").hidden = true;
  $("app").hidden = false;
  refreshReports().catch((e) => { $("message").textContent = e.message; });
  setInterval(() => refreshStations().catch(() => {}), 5000);
}

$("lang").addEventListener("click", () => {
  lang = lang === "vi" ? "en" : "vi";
  localStorage.setItem("radio-lang", lang);
  applyLanguage();
  if (!$("app").hidden) refreshStations().catch(() => {});
});
$("login-button").addEventListener("click", () => { token = $("token").value.trim(); start(); });
$("by").addEventListener("change", () => refreshReports().catch((e) => { $("message").textContent = e.message; }));
$("live-start").addEventListener("click", () => act(t("confirm-live"), () => api("POST", "/api/v1/live/start", {})));
$("live-stop").addEventListener("click", () => act(null, () => api("POST", "/api/v1/live/stop", {})));
$("emergency-start").addEventListener("click", () => {
  const file = $("emergency-file").value.trim();
  if (!file) { $("message").textContent = t("no-file"); $("message").className = "bad"; return; }
  act(t("confirm-emergency"), () => api("POST", "/api/v1/emergency", { file }));
});

// A wall screen can open `/#token=…` and stay signed in; the hash never reaches the server,
// and it is taken out of the address bar at once.
if (location.hash.startsWith("#token=")) {
  token = decodeURIComponent(location.hash.slice("#token=".length));
  history.replaceState(null, "", location.pathname + location.search);
}
const wanted = new URLSearchParams(location.search).get("lang");
if (wanted === "vi" || wanted === "en") lang = wanted;
applyLanguage();
if (token) start();
