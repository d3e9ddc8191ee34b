// The district's console, core: sign-in, the pages and their tabs, the overview (stations and
// their state: link, what airs, loudspeaker clusters; the live and emergency buttons) and, for
// admins, the accounts. Each other page is its own script under /console/ (send, week, library,
// inbox, reports), which adds its words to TEXT and its refresh to PAGES. Vietnamese by default. A person signs in with a name and password: the session is
// an HttpOnly cookie this script never sees, and every change carries the session's CSRF token.
// A wall screen may still open `/#token=…` with a bearer token.
"use strict";

const TEXT = {
  vi: {
    title: "Truyền thanh thông minh", login: "Đăng nhập",
    "login-button": "Vào", "user-name": "Tên đăng nhập", password: "Mật khẩu",
    "login-failed": "Sai tên đăng nhập hoặc mật khẩu. Kiểm tra lại, hoặc hỏi quản trị viên của huyện.",
    "login-disabled": "Tài khoản này đã bị khoá. Hãy hỏi quản trị viên của huyện.",
    "login-locked": "Đăng nhập sai quá nhiều lần. Hãy đợi {s} giây rồi thử lại.",
    "login-down": "Máy chủ không trả lời. Kiểm tra mạng rồi thử lại.",
    "session-ended": "Phiên làm việc đã hết. Hãy đăng nhập lại.",
    "sign-out": "Đăng xuất", accounts: "Tài khoản", role: "Vai trò", communes: "Xã",
    "new-account": "Tạo tài khoản", "new-password": "Mật khẩu (ít nhất 10 ký tự)", create: "Tạo",
    "role-admin": "Quản trị", "role-operator": "Người vận hành xã", "role-viewer": "Người xem",
    "change-role": "Đổi vai trò", "confirm-role": "Đổi vai trò của {name}? Người này bị đăng xuất và đăng nhập lại với vai trò mới.",
    disable: "Khoá", enable: "Mở khoá", "reset-password": "Đặt lại mật khẩu", disabled: "đã khoá",
    "ask-password": "Mật khẩu mới cho {name} (ít nhất 10 ký tự):",
    "confirm-disable": "Khoá tài khoản {name}? Người này bị đăng xuất ngay.",
    "created": "Đã tạo tài khoản {name}.", "need-commune": "Người vận hành xã cần ít nhất một xã.",
    "short-password": "Mật khẩu cần ít nhất 10 ký tự.",
    "bad-name": "Tên đăng nhập chỉ gồm chữ thường không dấu, chữ số, dấu chấm, gạch ngang, gạch dưới.",
    "name-taken": "Tên đăng nhập này đã có. Hãy chọn tên khác.",
    "forbidden": "Tài khoản của bạn không được làm việc này.",
    "own-password": "Đổi mật khẩu", "current-password": "Mật khẩu hiện tại",
    "again-password": "Nhập lại mật khẩu mới", save: "Lưu",
    "own-new-password": "Mật khẩu mới (ít nhất 10 ký tự)",
    "passwords-differ": "Hai lần nhập mật khẩu mới không giống nhau.",
    "wrong-current": "Mật khẩu hiện tại không đúng. Không có gì thay đổi.",
    "password-changed": "Đã đổi mật khẩu. Các nơi khác đang đăng nhập bằng tài khoản này đã bị đăng xuất.",
    controls: "Phát trực tiếp và khẩn cấp", "live-start": "Phát trực tiếp", "live-stop": "Dừng trực tiếp",
    "emergency-new": "Phát khẩn cấp…",
    "page-overview": "Tổng quan", "page-send": "Phát bản tin", "page-week": "Lịch tuần",
    "page-library": "Thư viện", "page-inbox": "Bản tin cho xã", "page-reports": "Báo cáo",
    "page-accounts": "Tài khoản",
    "emergency-stop": "Dừng", emergencies: "Bản tin khẩn cấp đang phát",
    "no-emergency": "Không có bản tin khẩn cấp nào đang phát.", "emergency-name": "Bản tin",
    started: "Bắt đầu lúc", where: "Phát tới", "all-stations": "Tất cả các đài",
    "confirm-stop-emergency": "Dừng bản tin khẩn cấp “{name}”? Chương trình bị ngắt sẽ phát tiếp.",
    stations: "Các đài xã", station: "Đài", link: "Kết nối",
    heartbeat: "Tín hiệu gần nhất", "on-air": "Đang phát", level: "Mức", clusters: "Cụm loa",
    uptime: "Thời gian hoạt động", by: "Theo", year: "năm", month: "tháng",
    plays: "Nhật ký chương trình", programme: "Chương trình", count: "Số lần",
    seconds: "Thời lượng (giây)", connected: "có", disconnected: "mất", never: "chưa có",
    "seconds-ago": "giây trước", nothing: "—", lang: "English", "box-health": "Thiết bị",
    "confirm-live": "Phát trực tiếp tới tất cả các đài?", done: "Đã thực hiện.",
    availability: "Sẵn sàng (%)",
    "clusters-count": "{n} cụm", "clusters-up": "{n} tốt", "clusters-down": "{n} hỏng",
    "clusters-follow": "{n} theo đài", "cluster-up": "tốt", "cluster-down": "hỏng",
    "cluster-since": "từ {time}",
    amplifier: "Bộ khuếch đại", "amplifier-on": "bật", "amplifier-off": "tắt",
    "cluster-unknown": "không có trong danh sách cụm loa của đài này — kiểm tra cấu hình máy trạm",
    "clusters-help": "Cụm “theo đài” không được theo dõi riêng (loa dây, FM): cụm hoạt động khi đài hoạt động.",
  },
  en: {
    title: "Smart radio broadcast", login: "Sign in",
    "login-button": "Sign in", "user-name": "User name", password: "Password",
    "login-failed": "Wrong user name or password. Check them, or ask the district's administrator.",
    "login-disabled": "This account is disabled. Ask the district's administrator.",
    "login-locked": "Too many failed sign-ins. Wait {s} seconds and try again.",
    "login-down": "The server does not answer. Check the network and try again.",
    "session-ended": "Your session has ended. Sign in again.",
    "sign-out": "Sign out", accounts: "Accounts", role: "Role", communes: "Communes",
    "new-account": "New account", "new-password": "Password (10 characters or more)", create: "Create",
    "role-admin": "Administrator", "role-operator": "Commune operator", "role-viewer": "Viewer",
    "change-role": "Change role", "confirm-role": "Change the role of {name}? They are signed out and sign in again with the new role.",
    disable: "Disable", enable: "Enable", "reset-password": "Reset password", disabled: "disabled",
    "ask-password": "New password for {name} (10 characters or more):",
    "confirm-disable": "Disable {name}? They are signed out at once.",
    "created": "Account {name} created.", "need-commune": "A commune operator needs one commune at least.",
    "short-password": "The password needs 10 characters or more.",
    "bad-name": "User names are lowercase letters without accents, digits, dots, dashes and underscores.",
    "name-taken": "That user name is taken. Choose another.",
    "forbidden": "Your account may not do this.",
    "own-password": "Change password", "current-password": "Current password",
    "again-password": "New password again", save: "Save",
    "own-new-password": "New password (10 characters or more)",
    "passwords-differ": "The two new passwords differ.",
    "wrong-current": "The current password is wrong. Nothing was changed.",
    "password-changed": "Password changed. Everywhere else this account was signed in, it is signed out.",
    controls: "Live and emergency", "live-start": "Go live", "live-stop": "Stop live",
    "emergency-new": "Emergency…",
    "page-overview": "Overview", "page-send": "Broadcast", "page-week": "Week",
    "page-library": "Library", "page-inbox": "Commune inbox", "page-reports": "Reports",
    "page-accounts": "Accounts",
    "emergency-stop": "Stop", emergencies: "Emergencies on air",
    "no-emergency": "No emergency is running.", "emergency-name": "Bulletin",
    started: "Started", where: "Where", "all-stations": "All stations",
    "confirm-stop-emergency": "Stop the emergency “{name}”? What it interrupted resumes.",
    stations: "Commune stations", station: "Station", link: "Link",
    heartbeat: "Last heartbeat", "on-air": "On air", level: "Level", clusters: "Clusters",
    uptime: "Uptime", by: "By", year: "year", month: "month",
    plays: "Programme log", programme: "Programme", count: "Plays",
    seconds: "Seconds aired", connected: "up", disconnected: "down", never: "never",
    "seconds-ago": "s ago", nothing: "—", lang: "Tiếng Việt", "box-health": "Box",
    "confirm-live": "Go live on every station?", done: "Done.",
    availability: "Availability (%)",
    "clusters-count": "{n} clusters", "clusters-up": "{n} up", "clusters-down": "{n} down",
    "clusters-follow": "{n} follow the station", "cluster-up": "up", "cluster-down": "down",
    "cluster-since": "since {time}",
    amplifier: "Amplifier", "amplifier-on": "on", "amplifier-off": "off",
    "cluster-unknown": "not a cluster of this station in the district's list — check the agent's configuration",
    "clusters-help": "Clusters that “follow the station” are not watched on their own (wired, FM): they work when the station works.",
  },
};

let lang = localStorage.getItem("radio-lang") || "vi";
// A bearer token only for a wall screen opened with `/#token=…`; people have a session cookie.
let token = "";
let csrf = "";
let me = null;
const $ = (id) => document.getElementById(id);
const t = (key) => TEXT[lang][key] ?? key;
// `t` with `{name}` placeholders filled in.
const tf = (key, values) => Object.entries(values)
  .reduce((text, [name, value]) => text.split(`{${name}}`).join(String(value)), t(key));

// A page script's words, in both languages.
function addText(words) {
  Object.assign(TEXT.vi, words.vi);
  Object.assign(TEXT.en, words.en);
}

// Each page's refresh, called when the page is shown (and after a language change).
const PAGES = {
  overview: { refresh: () => refreshStations() },
  accounts: { refresh: () => refreshUsers() },
};
let page = "overview";

function applyLanguage() {
  document.documentElement.lang = lang;
  for (const el of document.querySelectorAll("[data-t]")) el.textContent = t(el.dataset.t);
  $("lang").textContent = t("lang");
}

class ApiError extends Error {
  constructor(status, message, retryAfter) {
    super(message);
    this.status = status;
    this.retryAfter = retryAfter;
  }
}

// The headers of the last answer, for the few pages that read one (the library's upload limit).
let lastHeaders = null;

async function api(method, path, body) {
  const headers = { "Content-Type": "application/json" };
  if (token) headers.Authorization = `Bearer ${token}`;
  if (csrf && method !== "GET") headers["X-CSRF-Token"] = csrf;
  const response = await fetch(path, {
    method,
    headers,
    credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  lastHeaders = response.headers;
  const text = await response.text();
  if (!response.ok) {
    let message = text;
    let vi = null;
    try {
      const answer = JSON.parse(text);
      message = answer.error ?? text;
      vi = answer.message_vi ?? null;
    } catch (_) { /* plain text */ }
    if (response.status === 401 && me) signedOut(t("session-ended"));
    const error = new ApiError(response.status, `${response.status}: ${message}`, response.headers.get("Retry-After"));
    // The server's own Vietnamese, where it has one (the library's upload check).
    error.vi = vi;
    throw error;
  }
  return text ? JSON.parse(text) : null;
}

// What a refusal means to the person who clicked, in their language; the server's own words
// (English) follow for whoever has to look into it.
function explain(e) {
  if (!(e instanceof ApiError)) return t("login-down");
  if (e.status === 403) return `${t("forbidden")} (${e.message})`;
  if (lang === "vi" && e.vi) return e.vi;
  return e.message;
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
  // A commune operator's overview is their own communes: the district's other 20 are someone
  // else's work, and on a phone they would bury the one that matters.
  const own = me?.role === "operator" ? new Set(me.communes ?? []) : null;
  for (const s of stations.filter((s) => !own || own.has(s.id))) {
    const row = body.insertRow();
    row.dataset.station = s.id;
    cell(row, s.name);
    cell(row, s.connected ? t("connected") : t("disconnected"), s.connected ? "ok" : "bad");
    cell(row, s.heartbeat_age_s == null ? t("never") : `${Math.round(s.heartbeat_age_s)} ${t("seconds-ago")}`);
    const on = airing.get(s.id);
    cell(row, on?.name ?? t("nothing"));
    cell(row, on?.level ?? t("nothing"), on?.level === "khẩn cấp" ? "level-khan" : "");
    clusterCell(row, s.id, s.clusters ?? []);
    amplifierLines(row.cells[row.cells.length - 1], s.amplifiers ?? []);
    healthCell(row, s.health);
  }
  showEmergencies(status.emergencies, new Map(stations.map((s) => [s.id, s.name])));
}

// The box's health in one compact line, in the page's language; highlighted while a warning
// (too hot, disk nearly full, an output failing) is on, each warning's figure in the tooltip.
function healthCell(row, health) {
  if (!health) {
    cell(row, t("nothing"));
    return;
  }
  const warnings = Object.entries(health.warnings ?? {});
  const td = cell(row, lang === "vi" ? health.line_vi : health.line_en, warnings.length ? "bad health-warning" : "");
  td.title = warnings.map(([, detail]) => detail).join("\n");
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

// Each amplifier the station switches, under its clusters: «Bộ khuếch đại: bật», with the
// output's name when the station has one per output, and since when.
function amplifierLines(td, amplifiers) {
  for (const a of amplifiers) {
    const line = document.createElement("div");
    line.className = "amplifier-line";
    line.dataset.amplifier = a.output;
    const name = a.output === "box" ? t("amplifier") : `${t("amplifier")} ${a.output}`;
    line.textContent = `${name}: ${t(a.on ? "amplifier-on" : "amplifier-off")}`;
    line.title = `${a.reason} — ${t("cluster-since").replace("{time}", localTime(a.since))}`;
    td.appendChild(line);
  }
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

// The district's own time zone (the schedule's), which report dates are in: a browser on UTC
// or abroad would otherwise ask for yesterday between 17:00 and 24:00 UTC.
let districtZone = "Asia/Ho_Chi_Minh";

// Today in the district's zone, as YYYY-MM-DD.
function districtToday() {
  try {
    return new Intl.DateTimeFormat("en-CA", { timeZone: districtZone, year: "numeric", month: "2-digit", day: "2-digit" })
      .format(new Date());
  } catch (_) {
    return new Date().toISOString().slice(0, 10);
  }
}

// The schedule's zone, read once per page load.
let zoneLoaded = false;
async function loadZone() {
  if (zoneLoaded) return;
  try {
    districtZone = (await api("GET", "/api/v1/schedule")).timezone || districtZone;
    zoneLoaded = true;
  } catch (_) { /* the default zone */ }
}

function signedOut(why) {
  me = null;
  csrf = "";
  $("app").hidden = true;
  $("nav").hidden = true;
  $("login").hidden = false;
  $("sign-out").hidden = true;
  $("who").textContent = "";
  $("login-error").textContent = why ?? "";
}

// What a role sees: a viewer and a commune operator see no control they may not use.
function allowed(el, role) {
  return !el.dataset.needs || el.dataset.needs.split(" ").includes(role);
}

function showRole() {
  const role = me?.role ?? "viewer";
  for (const el of document.querySelectorAll("[data-needs]")) {
    if (!el.classList.contains("page")) el.hidden = !allowed(el, role);
  }
  for (const el of document.querySelectorAll("section.page")) {
    el.hidden = el.dataset.page !== page || !allowed(el, role);
  }
  for (const b of document.querySelectorAll("#nav button")) {
    if (b.dataset.page === page) b.setAttribute("aria-current", "page");
    else b.removeAttribute("aria-current");
  }
  $("who").textContent = me ? `${me.name} · ${t(`role-${role}`)}` : "";
  $("sign-out").hidden = !csrf;
  $("own-password-button").hidden = !csrf;
}

// The page named in the address (`#/week`), or the overview; a page the role may not open falls
// back to the overview, so a link sent to a colleague never shows a dead page.
function pageFromAddress() {
  const wanted = location.hash.startsWith("#/") ? location.hash.slice(2) : "overview";
  const button = document.querySelector(`#nav button[data-page="${CSS.escape(wanted)}"]`);
  return button && allowed(button, me?.role ?? "viewer") ? wanted : "overview";
}

function showPage(name) {
  page = name;
  showRole();
  const refresh = PAGES[name]?.refresh;
  const status = name === "overview" ? "message" : `${name}-message`;
  if (refresh) refresh().catch((e) => say(status, explain(e), false));
}

// A status line: the message and whether it is good news.
function say(id, text, ok) {
  const el = $(id);
  if (!el) return;
  el.textContent = text;
  el.className = ok ? "ok" : "bad";
}

async function changeOwnPassword(event) {
  event.preventDefault();
  const say = (text, ok) => {
    $("own-password-message").textContent = text;
    $("own-password-message").className = ok ? "ok" : "bad";
  };
  const current = $("current-password").value;
  const fresh = $("own-new-password").value;
  if ([...fresh].length < 10) { say(t("short-password"), false); return; }
  if (fresh !== $("own-again-password").value) { say(t("passwords-differ"), false); return; }
  try {
    const session = await api("POST", "/api/v1/session/password", { current, new: fresh });
    // The server ended every session of the account and started this one afresh.
    csrf = session.csrf ?? "";
    $("own-password-form").reset();
    say(t("password-changed"), true);
  } catch (e) {
    say(e instanceof ApiError && e.message.includes("current password is wrong") ? t("wrong-current") : explain(e), false);
  }
}

async function refreshUsers() {
  if (me?.role !== "admin") return;
  const [users, stations] = await Promise.all([api("GET", "/api/v1/users"), api("GET", "/api/v1/stations")]);
  const names = new Map(stations.map((s) => [s.id, s.name]));
  const select = $("new-communes");
  if (select.options.length === 0) {
    for (const s of stations) select.add(new Option(s.name, s.id));
  }
  const body = $("users").tBodies[0];
  body.replaceChildren();
  for (const u of users) {
    const row = body.insertRow();
    row.dataset.user = u.name;
    cell(row, u.disabled ? `${u.name} (${t("disabled")})` : u.name, u.disabled ? "bad" : "");
    cell(row, t(`role-${u.role}`));
    cell(row, u.communes.map((c) => names.get(c) ?? c).join(", "));
    const actions = row.insertCell();
    if (u.name === me.name) continue;
    const button = (key, className, handler) => {
      const b = document.createElement("button");
      b.type = "button";
      b.className = className;
      b.dataset.action = key;
      b.textContent = t(key);
      b.addEventListener("click", handler);
      actions.appendChild(b);
    };
    if (u.disabled) {
      button("enable", "live", () => userAct(null, () => api("POST", `/api/v1/users/${u.name}/enable`, {})));
    } else {
      button("disable", "stop", () => userAct(t("confirm-disable").replace("{name}", u.name),
        () => api("POST", `/api/v1/users/${u.name}/disable`, {})));
    }
    button("change-role", "stop", () => roleEditor(actions, u, stations));
    button("reset-password", "stop", () => {
      const password = window.prompt(t("ask-password").replace("{name}", u.name));
      if (password === null) return;
      if ([...password].length < 10) { userMessage(t("short-password"), false); return; }
      userAct(null, () => api("POST", `/api/v1/users/${u.name}/password`, { password }));
    });
  }
}

// An account's role and communes, changed in its own row: the person is signed out everywhere
// and signs in again with the new role.
function roleEditor(where, user, stations) {
  where.querySelector(".role-editor")?.remove();
  const box = document.createElement("div");
  box.className = "role-editor form";
  const role = document.createElement("select");
  role.dataset.role = "role";
  for (const r of ["operator", "viewer", "admin"]) role.add(new Option(t(`role-${r}`), r));
  role.value = user.role;
  const communes = document.createElement("select");
  communes.multiple = true;
  communes.size = 4;
  communes.dataset.role = "communes";
  for (const s of stations) {
    const option = new Option(s.name, s.id);
    option.selected = user.communes.includes(s.id);
    communes.add(option);
  }
  const show = () => { communes.hidden = role.value !== "operator"; };
  role.addEventListener("change", show);
  show();
  const save = document.createElement("button");
  save.type = "button";
  save.className = "live";
  save.dataset.action = "save-role";
  save.textContent = t("save");
  save.addEventListener("click", () => {
    const chosen = [...communes.selectedOptions].map((o) => o.value);
    if (role.value === "operator" && chosen.length === 0) { userMessage(t("need-commune"), false); return; }
    userAct(tf("confirm-role", { name: user.name }), () => api("POST", `/api/v1/users/${user.name}/role`,
      { role: role.value, communes: role.value === "operator" ? chosen : [] }));
  });
  box.append(role, communes, save);
  where.appendChild(box);
}

function userMessage(text, ok) {
  $("accounts-message").textContent = text;
  $("accounts-message").className = ok ? "ok" : "bad";
}

async function userAct(question, action, doneText) {
  if (question && !window.confirm(question)) return;
  try {
    await action();
    userMessage(doneText ?? t("done"), true);
    await refreshUsers();
  } catch (e) {
    userMessage(e instanceof ApiError && e.status === 409 ? t("name-taken") : explain(e), false);
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
    $("message").textContent = explain(e);
    $("message").className = "bad";
  }
}

let refresher = null;

// After a sign-in, or on a page load with a live session (or a wall screen's token).
async function start() {
  try {
    me = await api("GET", "/api/v1/session");
    csrf = me.csrf ?? "";
    await refreshStations();
  } catch (e) {
    me = null;
    if (token) $("login-error").textContent = t("login-failed");
    return;
  }
  $("login").hidden = true;
  $("app").hidden = false;
  $("nav").hidden = false;
  showPage(pageFromAddress());
  if (refresher === null) {
    refresher = setInterval(() => {
      if (me && page === "overview") refreshStations().catch(() => {});
      if (me && PAGES[page]?.tick) PAGES[page].tick().catch(() => {});
    }, 5000);
  }
}

async function signIn(event) {
  event.preventDefault();
  $("login-error").textContent = "";
  let response;
  try {
    response = await fetch("/api/v1/sign-in", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      credentials: "same-origin",
      body: JSON.stringify({ name: $("name").value.trim(), password: $("password").value }),
    });
  } catch (_) {
    $("login-error").textContent = t("login-down");
    return;
  }
  if (!response.ok) {
    let error = "";
    try { error = (await response.json()).error ?? ""; } catch (_) { /* not JSON */ }
    const key = response.status === 429 ? "login-locked" : error.includes("disabled") ? "login-disabled" : "login-failed";
    $("login-error").textContent = t(key).replace("{s}", response.headers.get("Retry-After") ?? "60");
    return;
  }
  $("password").value = "";
  await start();
}

async function createUser(event) {
  event.preventDefault();
  const name = $("new-name").value.trim();
  const role = $("new-role").value;
  const communes = [...$("new-communes").selectedOptions].map((o) => o.value);
  const password = $("new-password").value;
  if (!/^[a-z0-9][a-z0-9._-]{0,31}$/.test(name)) { userMessage(t("bad-name"), false); return; }
  if (role === "operator" && communes.length === 0) { userMessage(t("need-commune"), false); return; }
  if ([...password].length < 10) { userMessage(t("short-password"), false); return; }
  await userAct(null, () => api("POST", "/api/v1/users",
    { name, role, communes: role === "operator" ? communes : [], password }),
  t("created").replace("{name}", name));
  if ($("accounts-message").className === "ok") $("new-user").reset();
}

$("lang").addEventListener("click", () => {
  lang = lang === "vi" ? "en" : "vi";
  localStorage.setItem("radio-lang", lang);
  applyLanguage();
  if (!$("app").hidden) showPage(page);
});
for (const b of document.querySelectorAll("#nav button")) {
  // The tab already open reloads its data: there is no other way on a phone.
  b.addEventListener("click", () => {
    if (b.dataset.page === page) showPage(page);
    else location.hash = `#/${b.dataset.page}`;
  });
}
window.addEventListener("hashchange", () => { if (me) showPage(pageFromAddress()); });
$("login-form").addEventListener("submit", signIn);
$("own-password-form").addEventListener("submit", changeOwnPassword);
$("own-password-button").addEventListener("click", () => {
  $("own-password").hidden = !$("own-password").hidden;
  if (!$("own-password").hidden) $("current-password").focus();
});
$("new-user").addEventListener("submit", createUser);
$("new-role").addEventListener("change", () => { $("new-communes-label").hidden = $("new-role").value !== "operator"; });
$("sign-out").addEventListener("click", async () => {
  try { await api("POST", "/api/v1/sign-out", {}); } catch (_) { /* signed out all the same */ }
  signedOut("");
});
$("live-start").addEventListener("click", () => act(t("confirm-live"), () => api("POST", "/api/v1/live/start", {})));
$("live-stop").addEventListener("click", () => act(null, () => api("POST", "/api/v1/live/stop", {})));
// The emergency form is the send page with the level set: one form for everything that airs.
$("emergency-new").addEventListener("click", () => {
  if (typeof prepareEmergency === "function") prepareEmergency();
  location.hash = "#/send";
});

// After every page script has added its words and its page.
window.addEventListener("load", () => {
  // A wall screen can open `/#token=…` and stay signed in; the hash never reaches the server,
  // and it is taken out of the address bar at once.
  if (location.hash.startsWith("#token=")) {
    token = decodeURIComponent(location.hash.slice("#token=".length));
    history.replaceState(null, "", location.pathname + location.search);
  }
  const wanted = new URLSearchParams(location.search).get("lang");
  if (wanted === "vi" || wanted === "en") lang = wanted;
  applyLanguage();
  start();
});
