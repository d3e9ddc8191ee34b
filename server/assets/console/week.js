// The week page: every station's schedule laid on a week in the district's time (the embedded
// 05–07 and 17–19 relays, campaigns, one-offs), with edit and delete for admins; for one station,
// each past slot says whether it aired, was cut short or never aired (from the agent's proof of
// play); and today's timeline per station: planned, aired and the outages, side by side.
"use strict";

addText({
  vi: {
    "week-prev": "‹ Tuần trước", "week-this": "Tuần này", "week-next": "Tuần sau ›",
    "today-timeline": "Hôm nay: dự kiến và đã phát", planned: "dự kiến", aired: "đã phát", outage: "mất tín hiệu",
    "all-stations-week": "Tất cả các đài", edit: "Sửa", "delete": "Xoá",
    "confirm-delete-entry": "Xoá “{name}” khỏi lịch? Mọi lần phát sau của nó bị bỏ.",
    "deleted": "Đã xoá “{name}” khỏi lịch.", "nothing-planned": "Không có chương trình.",
    "slot-aired": "đã phát", "slot-cut": "bị ngắt ({m} phút)", "slot-missed": "không phát",
    "extra-aired": "phát thêm", "week-of": "Tuần {from} – {to}",
    "level-normal-short": "thường", "level-priority-short": "ưu tiên", "level-emergency-short": "khẩn cấp", "level-live-short": "trực tiếp",
    weekday0: "Thứ hai", weekday1: "Thứ ba", weekday2: "Thứ tư", weekday3: "Thứ năm", weekday4: "Thứ sáu", weekday5: "Thứ bảy", weekday6: "Chủ nhật",
  },
  en: {
    "week-prev": "‹ Previous week", "week-this": "This week", "week-next": "Next week ›",
    "today-timeline": "Today: planned and aired", planned: "planned", aired: "aired", outage: "not heard",
    "all-stations-week": "All stations", edit: "Edit", "delete": "Delete",
    "confirm-delete-entry": "Delete “{name}” from the schedule? Every later airing of it is dropped.",
    "deleted": "“{name}” was deleted from the schedule.", "nothing-planned": "Nothing planned.",
    "slot-aired": "aired", "slot-cut": "cut short ({m} min)", "slot-missed": "did not air",
    "extra-aired": "also aired", "week-of": "Week {from} – {to}",
    "level-normal-short": "normal", "level-priority-short": "priority", "level-emergency-short": "emergency", "level-live-short": "live",
    weekday0: "Monday", weekday1: "Tuesday", weekday2: "Wednesday", weekday3: "Thursday", weekday4: "Friday", weekday5: "Saturday", weekday6: "Sunday",
  },
});

// The Monday the page shows, as YYYY-MM-DD in the district's zone.
let weekStart = null;

function addDays(date, n) {
  const d = new Date(`${date}T12:00:00Z`);
  d.setUTCDate(d.getUTCDate() + n);
  return d.toISOString().slice(0, 10);
}

function mondayOf(date) {
  const day = (new Date(`${date}T12:00:00Z`).getUTCDay() + 6) % 7;
  return addDays(date, -day);
}

// The district's date and time of an instant.
function districtParts(instant) {
  const f = new Intl.DateTimeFormat("en-CA", {
    timeZone: districtZone, year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", hourCycle: "h23",
  });
  const p = Object.fromEntries(f.formatToParts(new Date(instant)).map((x) => [x.type, x.value]));
  return { date: `${p.year}-${p.month}-${p.day}`, time: `${p.hour}:${p.minute}` };
}

async function refreshWeek() {
  await loadZone();
  if (!weekStart) weekStart = mondayOf(districtToday());
  const [view, schedule] = await Promise.all([
    api("GET", `/api/v1/timeline?from=${weekStart}&days=7`), api("GET", "/api/v1/schedule")]);
  const select = $("week-station");
  const chosen = select.value;
  select.replaceChildren(new Option(t("all-stations-week"), ""), ...view.stations.map((s) => new Option(s.name, s.id)));
  // A commune operator's page opens on their own station.
  select.value = view.stations.some((s) => s.id === chosen) ? chosen : view.stations.length === 1 ? view.stations[0].id : "";
  $("week-title").textContent = tf("week-of", { from: weekStart, to: addDays(weekStart, 6) });
  drawWeek(view, new Map(schedule.entries.map((e) => [e.id, e])));
  await drawToday();
}

function drawWeek(view, entries) {
  const station = $("week-station").value;
  const shown = station ? view.stations.filter((s) => s.id === station) : view.stations;
  // One slot per occurrence, however many stations air it.
  const slots = new Map();
  for (const s of shown) {
    for (const p of s.planned) {
      const key = `${p.entry_id}@${p.start}`;
      if (!slots.has(key)) slots.set(key, { ...p, stations: [] });
      slots.get(key).stations.push(s.id);
    }
  }
  const aired = station ? shown[0]?.aired ?? [] : [];
  const now = Date.now();
  const grid = $("week-grid");
  grid.replaceChildren();
  const today = districtToday();
  for (let i = 0; i < 7; i++) {
    const date = addDays(weekStart, i);
    const day = document.createElement("div");
    day.className = date === today ? "day today" : "day";
    day.dataset.date = date;
    const title = document.createElement("h3");
    title.textContent = `${t(`weekday${i}`)} ${date.slice(8, 10)}/${date.slice(5, 7)}`;
    day.appendChild(title);
    const todays = [...slots.values()].filter((o) => districtParts(o.start).date === date)
      .sort((a, b) => a.start.localeCompare(b.start));
    for (const o of todays) day.appendChild(slotElement(o, entries.get(o.entry_id), aired, now, shown.length));
    // What aired that was not planned: bulletins, emergencies, live.
    for (const a of aired.filter((a) => districtParts(a.start).date === date && !todays.some((o) => overlapsSlot(a, o)))) {
      const el = document.createElement("div");
      el.className = `slot ${a.level}`;
      el.dataset.aired = a.name;
      el.textContent = `${districtParts(a.start).time}–${districtParts(a.end).time} ${a.name} · ${t(`level-${a.level}-short`)} · ${t("extra-aired")}`;
      day.appendChild(el);
    }
    if (day.childElementCount === 1) {
      const none = document.createElement("p");
      none.className = "hint";
      none.textContent = t("nothing-planned");
      day.appendChild(none);
    }
    grid.appendChild(day);
  }
}

function overlapsSlot(aired, slot) {
  return aired.name === slot.name && aired.start < slot.end && aired.end > slot.start;
}

function slotElement(o, entry, aired, now, stationCount) {
  const el = document.createElement("div");
  el.className = `slot ${o.level}`;
  el.dataset.entry = o.entry_id;
  const where = o.stations.length === stationCount ? "" : ` · ${o.stations.length}/${stationCount}`;
  el.textContent = `${districtParts(o.start).time}–${districtParts(o.end).time} ${o.name} · ${t(`level-${o.level}-short`)}${where}`;
  // Proof of play, for one station's past slots: what the agent journaled it aired.
  if (aired.length > 0 || (stationCount === 1 && Date.parse(o.end) < now)) {
    const heard = aired.filter((a) => overlapsSlot(a, o))
      .reduce((ms, a) => ms + Math.min(Date.parse(a.end), Date.parse(o.end)) - Math.max(Date.parse(a.start), Date.parse(o.start)), 0);
    const planned = Date.parse(o.end) - Date.parse(o.start);
    let state = null;
    if (Date.parse(o.end) < now) {
      state = heard === 0 ? t("slot-missed") : heard < planned - 60000 ? tf("slot-cut", { m: Math.round(heard / 60000) }) : t("slot-aired");
    } else if (heard > 0) {
      state = t("slot-aired");
    }
    if (state) {
      const s = document.createElement("div");
      s.className = heard === 0 ? "bad" : heard < planned - 60000 ? "bad" : "ok";
      s.dataset.state = state;
      s.textContent = state;
      el.appendChild(s);
    }
  }
  if (me?.role === "admin" && entry) {
    const edit = document.createElement("button");
    edit.type = "button";
    edit.className = "live";
    edit.textContent = t("edit");
    edit.addEventListener("click", () => {
      location.hash = "#/send";
      refreshSend().then(() => editEntry(entry)).catch((e) => say("send-message", explain(e), false));
    });
    const remove = document.createElement("button");
    remove.type = "button";
    remove.className = "stop";
    remove.dataset.action = "delete";
    remove.textContent = t("delete");
    remove.addEventListener("click", async () => {
      if (!window.confirm(tf("confirm-delete-entry", { name: entry.name }))) return;
      try {
        await api("DELETE", `/api/v1/schedule/entries/${encodeURIComponent(entry.id)}`);
        say("week-message", tf("deleted", { name: entry.name }), true);
        await refreshWeek();
      } catch (e) {
        say("week-message", explain(e), false);
      }
    });
    el.append(document.createElement("br"), edit, remove);
  }
  return el;
}

// Today's bars: a row per station, the day from 00:00 to 24:00.
async function drawToday() {
  const today = districtToday();
  const view = await api("GET", `/api/v1/timeline?from=${today}&days=1`);
  const box = $("timeline");
  box.replaceChildren();
  const dayStart = (() => {
    // Midnight in the district's zone: the first instant whose district date is today.
    let guess = Date.parse(`${today}T00:00:00Z`) - 14 * 3600000;
    while (districtParts(guess).date !== today) guess += 15 * 60000;
    return guess;
  })();
  const dayLength = 24 * 3600000;
  const bar = (className, from, to, title) => {
    const span = document.createElement("span");
    span.className = className;
    const left = Math.max(0, (Date.parse(from) - dayStart) / dayLength);
    const right = Math.min(1, (Date.parse(to) - dayStart) / dayLength);
    span.style.left = `${(left * 100).toFixed(2)}%`;
    span.style.width = `${(Math.max(right - left, 0.002) * 100).toFixed(2)}%`;
    span.title = title;
    return span;
  };
  const station = $("week-station").value;
  for (const s of view.stations.filter((s) => !station || s.id === station)) {
    const row = document.createElement("div");
    row.className = "timeline-row";
    row.dataset.station = s.id;
    const label = document.createElement("div");
    label.textContent = s.name;
    const bars = document.createElement("div");
    const planned = document.createElement("div");
    planned.className = "bars";
    for (const p of s.planned) planned.appendChild(bar("planned", p.start, p.end, `${p.name} ${districtParts(p.start).time}–${districtParts(p.end).time}`));
    const aired = document.createElement("div");
    aired.className = "bars";
    for (const a of s.aired) aired.appendChild(bar(`aired ${a.level}`, a.start, a.end, `${a.name} ${districtParts(a.start).time}–${districtParts(a.end).time}`));
    for (const o of s.outages) aired.appendChild(bar("outage", o.start, o.end, `${t("outage")} ${districtParts(o.start).time}–${districtParts(o.end).time}`));
    bars.append(planned, aired);
    row.append(label, bars);
    box.appendChild(row);
  }
}

PAGES.week = { refresh: refreshWeek };
$("week-prev").addEventListener("click", () => { weekStart = addDays(weekStart, -7); refreshWeek().catch((e) => say("week-message", explain(e), false)); });
$("week-next").addEventListener("click", () => { weekStart = addDays(weekStart, 7); refreshWeek().catch((e) => say("week-message", explain(e), false)); });
$("week-this").addEventListener("click", () => { weekStart = null; refreshWeek().catch((e) => say("week-message", explain(e), false)); });
$("week-station").addEventListener("change", () => refreshWeek().catch((e) => say("week-message", explain(e), false)));
