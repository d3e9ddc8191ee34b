// The send page: one form for everything that airs. What (a library item, a stream, an upstream
// channel, or a file already on the server), the TT39 level, where (all, ticked communes, groups
// of communes and loudspeaker clusters), when (now, once, daily, on weekdays, from one date to
// another) and how many times. The form picks the API call: an emergency now, a bulletin now
// (normal ones wait for each commune to accept), or a schedule entry. The server validates as it
// does for the CLI; its refusal is shown next to the field it names, in the reader's language.
"use strict";

addText({
  vi: {
    "send-what": "Nội dung", "kind-library": "Bài trong thư viện",
    "kind-url": "Luồng phát trên mạng (địa chỉ http…)", "kind-upstream": "Kênh của đài tỉnh (máy chủ cấp trên)",
    "kind-file": "Tệp có sẵn trên máy chủ (nâng cao)", "send-item": "Bài",
    "send-no-items": "Thư viện chưa có bài nào: hãy tải bài lên ở trang Thư viện.",
    "send-url": "Địa chỉ luồng", "send-upstream": "Kênh", "send-file": "Đường dẫn tệp trên máy chủ",
    "send-name": "Tên bản tin (hiện trong lịch và báo cáo)",
    "level-normal": "Thường (gửi ngay thì xã nhận rồi mới phát)", "level-priority": "Ưu tiên (phát ngay sau bài đang phát)",
    "level-emergency": "Khẩn cấp (ngắt mọi chương trình)",
    "where-all": "Tất cả các xã", "where-stations": "Chọn xã", "where-groups": "Chọn nhóm (xã, cụm loa)",
    "where-clusters": "Chọn cụm loa của một xã", "need-clusters": "Hãy chọn ít nhất một cụm loa.",
    when: "Khi nào", "when-now": "Ngay bây giờ", "when-once": "Một lần, vào lúc", "when-daily": "Hằng ngày",
    "when-weekly": "Các ngày trong tuần", "when-period": "Từ ngày đến ngày", date: "Ngày",
    "from-date": "Từ ngày", "until-date": "Đến ngày", time: "Giờ",
    "send-times": "Số lần phát liền nhau", "send-minutes": "Thời lượng (phút)", "send-submit": "Phát",
    "schedule-submit": "Đặt lịch", "no-groups": "Chưa có nhóm nào trong lịch của huyện.",
    "need-item": "Hãy chọn một bài trong thư viện.", "need-url": "Hãy nhập địa chỉ luồng (http:// hoặc https://).",
    "need-upstream": "Máy chủ này chưa nối với đài cấp trên nào.", "need-file": "Hãy nhập đường dẫn tệp trên máy chủ.",
    "need-stations": "Hãy chọn ít nhất một xã.", "need-groups": "Hãy chọn ít nhất một nhóm.",
    "need-time": "Hãy chọn giờ phát.", "need-date": "Hãy chọn ngày.", "need-dates": "Hãy chọn ngày bắt đầu và ngày kết thúc.",
    "need-days": "Hãy chọn ít nhất một ngày trong tuần.", "need-minutes": "Hãy nhập thời lượng (số phút).",
    "bad-times": "Số lần phát từ 1 đến 10.",
    "emergency-now-only": "Bản tin khẩn cấp phát ngay, không đặt lịch trước được (TT39). Chọn “Ngay bây giờ”, hoặc chọn mức Ưu tiên.",
    "emergency-no-upstream": "Bản tin khẩn cấp phát từ bài trong thư viện hoặc từ luồng, không từ kênh cấp trên.",
    "confirm-send-emergency": "Phát khẩn cấp “{name}” tới {where} ngay bây giờ? Mọi chương trình ở đó bị ngắt.",
    "confirm-send": "Phát “{name}” ({level}) tới {where}?",
    "sent-emergency": "Đang phát khẩn cấp “{name}”. Dừng ở trang Tổng quan.",
    "sent-normal": "Đã gửi “{name}” tới các xã: bản tin phát ở xã nào nhận nó (trang Bản tin cho xã).",
    "sent-priority": "Đã gửi “{name}”: phát ở các xã ngay sau bài đang phát.",
    "scheduled": "Đã đặt lịch “{name}”. Xem ở trang Lịch tuần.", "overlaps": "Lưu ý, trùng giờ với: {list}",
    "n-communes": "{n} xã", "editing": "Đang sửa “{name}”.", "cancel-edit": "Huỷ sửa",
    "err-unknown-station": "Không có xã “{x}” trong huyện. Hãy chọn xã trong danh sách.",
    "err-unknown-group": "Không có nhóm “{x}”. Hãy chọn nhóm trong danh sách.",
    "err-past": "Giờ này đã qua. Hãy chọn giờ muộn hơn.",
    "err-no-file": "Không có tệp này trên máy chủ. Hãy chọn bài trong thư viện.",
    "err-overlap": "Trùng giờ với một chương trình cùng mức đã có trong lịch. Hãy đổi giờ hoặc đổi mức.",
    "err-url": "Địa chỉ luồng không dùng được (cần http:// hoặc https:// và tên máy).",
    "err-upstream": "Máy chủ này không có kênh cấp trên tên đó.",
    "err-busy": "Đã có bản tin cùng mã đang chạy. Hãy thử lại.",
    "err-other": "Máy chủ từ chối: {x}",
    mon: "T2", tue: "T3", wed: "T4", thu: "T5", fri: "T6", sat: "T7", sun: "CN",
  },
  en: {
    "send-what": "What", "kind-library": "A library item",
    "kind-url": "A stream on the network (http… address)", "kind-upstream": "A channel of the provincial station (upstream server)",
    "kind-file": "A file already on the server (advanced)", "send-item": "Item",
    "send-no-items": "The library is empty: upload a recording on the Library page.",
    "send-url": "Stream address", "send-upstream": "Channel", "send-file": "Path of the file on the server",
    "send-name": "Name (shown in the schedule and reports)",
    "level-normal": "Normal (sent now, it airs where a commune accepts it)", "level-priority": "Priority (airs right after what is playing)",
    "level-emergency": "Emergency (interrupts everything)",
    "where-all": "Every commune", "where-stations": "Choose communes", "where-groups": "Choose groups (communes, clusters)",
    "where-clusters": "Choose clusters of one commune", "need-clusters": "Tick one cluster at least.",
    when: "When", "when-now": "Now", "when-once": "Once, at", "when-daily": "Every day",
    "when-weekly": "On weekdays", "when-period": "From one date to another", date: "Date",
    "from-date": "From", "until-date": "Until", time: "Time",
    "send-times": "Times in a row", "send-minutes": "Length (minutes)", "send-submit": "Broadcast",
    "schedule-submit": "Schedule", "no-groups": "The district's schedule has no groups yet.",
    "need-item": "Choose a library item.", "need-url": "Enter the stream's address (http:// or https://).",
    "need-upstream": "This server has no upstream server.", "need-file": "Enter the path of a file on the server.",
    "need-stations": "Tick one commune at least.", "need-groups": "Tick one group at least.",
    "need-time": "Choose the time.", "need-date": "Choose the date.", "need-dates": "Choose the first and the last date.",
    "need-days": "Tick one weekday at least.", "need-minutes": "Enter the length in minutes.",
    "bad-times": "Times in a row: 1 to 10.",
    "emergency-now-only": "Emergencies air at once; they cannot be scheduled (TT39). Choose “Now”, or the priority level.",
    "emergency-no-upstream": "An emergency airs a library item or a stream, not an upstream channel.",
    "confirm-send-emergency": "Broadcast the emergency “{name}” to {where} now? Everything there is interrupted.",
    "confirm-send": "Broadcast “{name}” ({level}) to {where}?",
    "sent-emergency": "The emergency “{name}” is on air. Stop it on the Overview page.",
    "sent-normal": "“{name}” was offered to the communes: it airs where a commune accepts it (Commune inbox page).",
    "sent-priority": "“{name}” was sent: it airs right after what is playing.",
    "scheduled": "“{name}” is scheduled. See the Week page.", "overlaps": "Note, it overlaps: {list}",
    "n-communes": "{n} communes", "editing": "Editing “{name}”.", "cancel-edit": "Cancel editing",
    "err-unknown-station": "There is no commune “{x}” in the district. Choose one from the list.",
    "err-unknown-group": "There is no group “{x}”. Choose one from the list.",
    "err-past": "That time is past. Choose a later one.",
    "err-no-file": "There is no such file on the server. Choose a library item.",
    "err-overlap": "It overlaps a programme of the same level in the schedule. Change the time or the level.",
    "err-url": "That stream address is not usable (it needs http:// or https:// and a host).",
    "err-upstream": "This server has no upstream channel of that name.",
    "err-busy": "A bulletin with that id is running. Try again.",
    "err-other": "The server refused: {x}",
    mon: "Mon", tue: "Tue", wed: "Wed", thu: "Thu", fri: "Fri", sat: "Sat", sun: "Sun",
  },
});

const WEEKDAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"];
// The library as last read: id → item.
let libraryItems = new Map();
// Each station's loudspeaker clusters (`binh-trung/c03`), from the stations listing.
let stationClusters = new Map();
// The schedule entry being edited (replaced on submit), or null.
let editing = null;

// An id the API accepts (ASCII slug), readable in logs: the name without diacritics and the
// local time, so two sends of one recording never collide.
function slugId(name) {
  // Cut to 40 bytes before the trailing hyphen is dropped: a cut after a hyphen would leave
  // `--` once the time is added, which the server refuses.
  const base = name.normalize("NFD").replace(/[\u0300-\u036f]/g, "").replace(/[đĐ]/g, "d")
    .toLowerCase().replace(/[^a-z0-9]+/g, "-").slice(0, 40).replace(/^-+|-+$/g, "") || "ban-tin";
  const now = new Date();
  const pad = (n) => String(n).padStart(2, "0");
  return `${base}-${now.getFullYear()}${pad(now.getMonth() + 1)}${pad(now.getDate())}-${pad(now.getHours())}${pad(now.getMinutes())}${pad(now.getSeconds())}`;
}

function checkbox(container, value, label, name) {
  const l = document.createElement("label");
  const box = document.createElement("input");
  box.type = "checkbox";
  box.value = value;
  box.name = name;
  l.append(box, " ", label);
  container.appendChild(l);
}

function ticked(id) {
  return [...$(id).querySelectorAll("input:checked")].map((b) => b.value);
}

async function refreshSend() {
  await loadZone();
  const [stations, schedule, status] = await Promise.all([
    api("GET", "/api/v1/stations"), api("GET", "/api/v1/schedule"), api("GET", "/api/v1/status")]);
  let items = [];
  try {
    items = await api("GET", "/api/v1/library");
  } catch (e) {
    if (!(e instanceof ApiError) || e.status !== 404) throw e;
  }
  libraryItems = new Map(items.map((i) => [i.id, i]));
  const select = $("send-item");
  const chosen = select.value;
  select.replaceChildren(...items.map((i) => new Option(`${i.name} (${clock(i.duration_secs)})`, i.id)));
  if (libraryItems.has(chosen)) select.value = chosen;
  $("send-no-items").hidden = items.length > 0;
  const upstream = $("send-upstream");
  upstream.replaceChildren(...(status.upstreams ?? []).map((n) => new Option(n, n)));
  if ($("send-stations").childElementCount === 0) {
    for (const s of stations) checkbox($("send-stations"), s.id, s.name, "send-station");
    for (const s of stations) $("send-cluster-station").add(new Option(s.name, s.id));
  }
  stationClusters = new Map(stations.map((s) => [s.id, (s.clusters ?? []).filter((c) => c.configured).map((c) => c.id)]));
  showClusters();
  const groups = Object.keys(schedule.groups ?? {});
  $("send-groups").replaceChildren();
  for (const g of groups) checkbox($("send-groups"), g, `${g} (${schedule.groups[g].length})`, "send-group");
  if (groups.length === 0) $("send-groups").textContent = t("no-groups");
  if ($("send-days").childElementCount === 0) {
    for (const d of WEEKDAYS) checkbox($("send-days"), d, t(d.slice(0, 3)), "send-day");
  }
  for (const box of $("send-days").querySelectorAll("input")) {
    box.parentElement.lastChild.textContent = t(box.value.slice(0, 3));
  }
  if (!$("send-date").value) $("send-date").value = districtToday();
  updateSendForm();
}

// The chosen station's clusters as checkboxes (`c03`), ticked ones kept while it stays chosen.
function showClusters() {
  const station = $("send-cluster-station").value;
  const box = $("send-clusters");
  if (box.dataset.station === station) return;
  box.dataset.station = station;
  box.replaceChildren();
  for (const id of stationClusters.get(station) ?? []) checkbox(box, id, id.slice(station.length + 1), "send-cluster");
}

// Minutes and seconds, or hours, for a duration in seconds.
function clock(seconds) {
  if (seconds == null) return "?";
  const s = Math.round(seconds);
  const pad = (n) => String(n).padStart(2, "0");
  return s >= 3600 ? `${Math.floor(s / 3600)}:${pad(Math.floor(s / 60) % 60)}:${pad(s % 60)}` : `${Math.floor(s / 60)}:${pad(s % 60)}`;
}

function sendLevel() {
  return document.querySelector('input[name="send-level"]:checked')?.value ?? "normal";
}

// Shows the inputs the choices need, and nothing else (a phone screen has no room to spare).
function updateSendForm() {
  const kind = $("send-kind").value;
  const when = $("send-when").value;
  const where = $("send-where").value;
  for (const el of $("send-form").querySelectorAll("[data-kind]")) {
    el.hidden = el.dataset.kind !== kind || (el.id === "send-no-items" && libraryItems.size > 0);
  }
  for (const el of $("send-form").querySelectorAll("[data-when]")) el.hidden = !el.dataset.when.split(" ").includes(when);
  for (const el of $("send-form").querySelectorAll("[data-where]")) el.hidden = el.dataset.where !== where;
  // A recording's length is known; a stream has none, and a scheduled slot needs one.
  const needsMinutes = kind === "url" || kind === "upstream" || (kind === "file" && when !== "now");
  $("send-minutes-label").hidden = !needsMinutes || sendLevel() === "emergency";
  $("send-submit").textContent = when === "now" ? t("send-submit") : t("schedule-submit");
  if (kind === "library" && !$("send-name").dataset.touched) {
    $("send-name").value = libraryItems.get($("send-item").value)?.name ?? "";
  }
}

function clearErrors() {
  for (const el of $("send-form").querySelectorAll(".field-error")) { el.textContent = ""; el.title = ""; }
  say("send-message", "", true);
}

function fieldError(field, text, detail) {
  const el = $("send-form").querySelector(`[data-error="${field}"]`);
  el.textContent = text;
  el.title = detail ?? "";
}

// The form's field a server refusal is about, from the field it names (as the CLI prints it).
function fieldOf(message) {
  const named = /field `([^`]+)`/.exec(message)?.[1] ?? "";
  if (named.startsWith("targets")) return "where";
  if (named.startsWith("source") || named === "file" || named === "url") return "what";
  if (named === "start" || named.startsWith("recurrence")) return "when";
  if (named === "level") return "level";
  if (named.startsWith("end") || named === "duration" || named === "repeat") return "times";
  if (named === "name") return "name";
  if (/unknown station|unknown group/.test(message)) return "where";
  if (/overlap/.test(message)) return "when";
  return null;
}

// A refusal in the reader's language; the server's words stay in the tooltip for whoever has to
// look into it.
function translate(message) {
  let m;
  if ((m = /unknown station `([^`]+)`/.exec(message))) return tf("err-unknown-station", { x: m[1] });
  if ((m = /unknown group `([^`]+)`/.exec(message))) return tf("err-unknown-group", { x: m[1] });
  if (/already over|already past/.test(message)) return t("err-past");
  if (/does not exist|no such file|cannot open/.test(message)) return t("err-no-file");
  if (/overlap/.test(message)) return t("err-overlap");
  if (/relay URL|stream URL|not a usable/.test(message)) return t("err-url");
  if (/upstream/.test(message)) return t("err-upstream");
  if (/already active|already exists/.test(message)) return t("err-busy");
  if (/emergency/.test(message) && /level/.test(message)) return t("emergency-now-only");
  return tf("err-other", { x: message });
}

// The request the form describes, or the errors that keep it from being sent.
function readSendForm() {
  const errors = {};
  const kind = $("send-kind").value;
  const level = sendLevel();
  const when = $("send-when").value;
  const times = Number($("send-times").value || "1");
  if (!Number.isInteger(times) || times < 1 || times > 10) errors.times = t("bad-times");
  let path = null, source = null, seconds = null;
  if (kind === "library") {
    const item = libraryItems.get($("send-item").value);
    if (!item) errors.what = t("need-item");
    else { path = item.path; seconds = item.duration_secs * times; }
  } else if (kind === "file") {
    path = $("send-file").value.trim();
    if (!path) errors.what = t("need-file");
  } else if (kind === "url") {
    const url = $("send-url").value.trim();
    if (!/^https?:\/\/./.test(url)) errors.what = t("need-url");
    source = { kind: "relay", url };
  } else {
    const name = $("send-upstream").value;
    if (!name) errors.what = t("need-upstream");
    source = { kind: "upstream", name };
  }
  if (path) source = times > 1 ? { kind: "playlist", paths: Array(times).fill(path) } : { kind: "file", path };
  if (!$("send-minutes-label").hidden) {
    const minutes = Number($("send-minutes").value);
    if (!(minutes > 0)) errors.times = t("need-minutes");
    else seconds = minutes * 60;
  }
  const where = $("send-where").value;
  let targets = "all";
  if (where === "stations") {
    const stations = ticked("send-stations");
    if (stations.length === 0) errors.where = t("need-stations");
    targets = { stations };
  } else if (where === "groups") {
    const groups = ticked("send-groups");
    if (groups.length === 0) errors.where = t("need-groups");
    targets = { groups };
  } else if (where === "clusters") {
    const clusters = ticked("send-clusters");
    if (clusters.length === 0) errors.where = t("need-clusters");
    targets = { stations: clusters };
  }
  if (level === "emergency" && when !== "now") errors.when = t("emergency-now-only");
  if (level === "emergency" && kind === "upstream") errors.what = t("emergency-no-upstream");
  let recurrence = null;
  const days = ticked("send-days");
  if (when === "once") {
    if (!$("send-date").value) errors.when = t("need-date");
    recurrence = { once: { date: $("send-date").value } };
  } else if (when === "daily") {
    recurrence = "daily";
  } else if (when === "weekly") {
    if (days.length === 0) errors.when = t("need-days");
    recurrence = { weekly: { days } };
  } else if (when === "period") {
    if (!$("send-from").value || !$("send-until").value) errors.when = t("need-dates");
    recurrence = { period: { from: $("send-from").value, until: $("send-until").value, days } };
  }
  if (when !== "now" && !$("send-time").value) errors.when = errors.when ?? t("need-time");
  // What the server would call it: the item's name, or the file's (as the CLI's emergency does).
  const typed = $("send-name").value.trim();
  const fallback = kind === "library" ? libraryItems.get($("send-item").value)?.name
    : kind === "file" ? path?.split("/").pop().replace(/\.[^.]+$/, "")
      : kind === "url" ? $("send-url").value.trim() : $("send-upstream").value;
  const name = typed || fallback || "Bản tin";
  const duration = seconds == null ? undefined : `PT${Math.ceil(seconds)}S`;
  let call;
  if (level === "emergency") {
    // The server names the emergency's id (khan-cap-DATE-TIME-…), as for the CLI.
    const body = { name, targets };
    if (path) { body.file = path; body.repeat = times; } else body.url = source?.url;
    call = { method: "POST", path: "/api/v1/emergency", body };
  } else if (when === "now") {
    call = { method: "POST", path: "/api/v1/bulletins", body: { id: slugId(name), name, source, level, targets, duration } };
  } else {
    call = {
      method: "POST", path: "/api/v1/schedule/entries",
      body: { id: slugId(name), name, recurrence, start: $("send-time").value, end: { duration }, source, targets, level },
    };
  }
  return { errors, call, name, level, when, targets };
}

function whereText(targets) {
  if (targets === "all") return t("all-stations");
  if (targets.stations) return targets.stations.length > 3 ? tf("n-communes", { n: targets.stations.length }) : targets.stations.join(", ");
  return targets.groups.join(", ");
}

async function submitSend(event) {
  event.preventDefault();
  clearErrors();
  const form = readSendForm();
  if (Object.keys(form.errors).length > 0) {
    for (const [field, text] of Object.entries(form.errors)) fieldError(field, text);
    return;
  }
  const where = whereText(form.targets);
  const question = form.level === "emergency"
    ? tf("confirm-send-emergency", { name: form.name, where })
    : tf("confirm-send", { name: form.name, where, level: t(`level-${form.level}`).split(" (")[0] });
  if (!window.confirm(question)) return;
  try {
    const answer = await sendCall(form.call);
    const done = form.level === "emergency" ? "sent-emergency" : form.when !== "now" ? "scheduled" : `sent-${form.level}`;
    let text = tf(done, { name: form.name });
    if (answer?.overlaps?.length) text += ` ${tf("overlaps", { list: answer.overlaps.join("; ") })}`;
    say("send-message", text, true);
    $("send-name").value = "";
    delete $("send-name").dataset.touched;
    stopEditing();
  } catch (e) {
    const message = e instanceof ApiError ? e.message.replace(/^\d+: /, "") : "";
    const field = e instanceof ApiError && e.status === 400 ? fieldOf(message) : null;
    const text = e instanceof ApiError && e.status !== 403 ? translate(message) : explain(e);
    if (field) fieldError(field, text, message);
    say("send-message", text, false);
    $("send-message").title = message;
  }
}

// A schedule entry being edited is replaced: the old one goes first (two same-level entries at
// one time would be refused as overlapping), and comes back if the new one is refused.
async function sendCall(call) {
  if (!editing || call.path !== "/api/v1/schedule/entries") return api(call.method, call.path, call.body);
  const old = editing;
  await api("DELETE", `/api/v1/schedule/entries/${encodeURIComponent(old.id)}`);
  try {
    return await api(call.method, call.path, call.body);
  } catch (e) {
    await api("POST", "/api/v1/schedule/entries", old).catch(() => {});
    throw e;
  }
}

function stopEditing() {
  editing = null;
  $("send-editing")?.remove();
}

// Opens the form on an entry of the schedule (from the week page).
function editEntry(entry) {
  stopEditing();
  editing = entry;
  const note = document.createElement("p");
  note.id = "send-editing";
  note.className = "hint";
  note.textContent = `${tf("editing", { name: entry.name })} `;
  const cancel = document.createElement("button");
  cancel.type = "button";
  cancel.className = "stop";
  cancel.textContent = t("cancel-edit");
  cancel.addEventListener("click", stopEditing);
  note.appendChild(cancel);
  $("send-form").prepend(note);
  const src = entry.source;
  const path = src.kind === "file" ? src.path : src.kind === "playlist" ? src.paths[0] : null;
  const item = [...libraryItems.values()].find((i) => i.path === path);
  $("send-kind").value = item ? "library" : path ? "file" : src.kind === "relay" ? "url" : "upstream";
  if (item) $("send-item").value = item.id;
  if (path && !item) $("send-file").value = path;
  if (src.kind === "relay") $("send-url").value = src.url;
  if (src.kind === "upstream") $("send-upstream").value = src.name;
  $("send-times").value = String(src.kind === "playlist" ? src.paths.length : 1);
  $("send-name").value = entry.name;
  $("send-name").dataset.touched = "1";
  for (const r of document.querySelectorAll('input[name="send-level"]')) r.checked = r.value === (entry.level ?? "normal");
  const targets = entry.targets;
  const clusterTargets = (targets.stations ?? []).filter((id) => id.includes("/"));
  $("send-where").value = targets === "all" ? "all" : clusterTargets.length > 0 ? "clusters" : targets.stations ? "stations" : "groups";
  if (clusterTargets.length > 0) {
    $("send-cluster-station").value = clusterTargets[0].split("/")[0];
    showClusters();
    for (const b of $("send-clusters").querySelectorAll("input")) b.checked = clusterTargets.includes(b.value);
  }
  for (const b of document.querySelectorAll("#send-stations input, #send-groups input")) {
    b.checked = (targets.stations ?? targets.groups ?? []).includes(b.value);
  }
  const r = entry.recurrence;
  $("send-when").value = r === "daily" ? "daily" : r.weekly ? "weekly" : r.once ? "once" : "period";
  if (r.once) $("send-date").value = r.once.date;
  if (r.period) { $("send-from").value = r.period.from; $("send-until").value = r.period.until; }
  const days = r.weekly?.days ?? r.period?.days ?? [];
  for (const b of $("send-days").querySelectorAll("input")) b.checked = days.includes(b.value);
  $("send-time").value = entry.start.slice(0, 5);
  updateSendForm();
}

// The overview's emergency button: the same form, set for an emergency now.
function prepareEmergency() {
  stopEditing();
  for (const r of document.querySelectorAll('input[name="send-level"]')) r.checked = r.value === "emergency";
  $("send-when").value = "now";
  updateSendForm();
}

PAGES.send = { refresh: refreshSend };
for (const id of ["send-kind", "send-when", "send-where", "send-item"]) $(id).addEventListener("change", updateSendForm);
$("send-cluster-station").addEventListener("change", showClusters);
for (const r of document.querySelectorAll('input[name="send-level"]')) r.addEventListener("change", updateSendForm);
$("send-name").addEventListener("input", () => { $("send-name").dataset.touched = "1"; });
$("send-form").addEventListener("submit", submitSend);
