// The commune inbox: the bulletins the district sent, per station. A commune operator sees only
// their communes: normal bulletins are offered, to accept (now or at a time) or decline; priority
// and emergency ones are shown, not offered (they air by themselves). An admin sees every
// station's answer and may withdraw a bulletin. Below, what the stations air today.
"use strict";

addText({
  vi: {
    "inbox-help": "Bản tin thường huyện gửi: xã bấm Nhận (chọn giờ phát) hoặc Từ chối. Bản tin ưu tiên và khẩn cấp tự phát.",
    state: "Trạng thái", "no-bulletins": "Không có bản tin nào.", "today-airs": "Hôm nay đài phát",
    accept: "Nhận", decline: "Từ chối", withdraw: "Thu hồi", "accept-at": "Giờ phát (để trống: phát ngay)",
    "state-awaiting": "chờ xã nhận", "state-accepted": "đã nhận", "state-accepted-at": "đã nhận, phát lúc {time}",
    "state-declined": "đã từ chối", "state-airing": "đang phát", "state-done": "đã phát xong", "state-queued": "tự phát (ưu tiên)",
    "confirm-decline": "Từ chối bản tin “{name}” cho {station}? Bản tin sẽ không phát ở đó.",
    "confirm-withdraw": "Thu hồi bản tin “{name}” ở mọi xã? Nơi đang phát sẽ dừng.",
    accepted: "Đã nhận “{name}” cho {station}.", declined: "Đã từ chối “{name}” cho {station}.",
    "ask-reason": "Lý do từ chối (không bắt buộc):",
  },
  en: {
    "inbox-help": "Normal bulletins from the district: a commune Accepts (choosing when) or Declines. Priority and emergency bulletins air by themselves.",
    state: "State", "no-bulletins": "No bulletins.", "today-airs": "Airing today",
    accept: "Accept", decline: "Decline", withdraw: "Withdraw", "accept-at": "Air at (empty: now)",
    "state-awaiting": "awaiting the commune", "state-accepted": "accepted", "state-accepted-at": "accepted, airs at {time}",
    "state-declined": "declined", "state-airing": "airing", "state-done": "aired", "state-queued": "airs by itself (priority)",
    "confirm-decline": "Decline the bulletin “{name}” for {station}? It will not air there.",
    "confirm-withdraw": "Withdraw the bulletin “{name}” everywhere? Where it airs, it stops.",
    accepted: "“{name}” accepted for {station}.", declined: "“{name}” declined for {station}.",
    "ask-reason": "Why decline (optional):",
  },
});

function levelWord(level) {
  return t(`level-${level}-short`);
}

function stateText(s) {
  if (s.state === "accepted" && s.at) return tf("state-accepted-at", { time: districtParts(s.at).time });
  return t(`state-${s.state}`);
}

async function refreshInbox() {
  await loadZone();
  const [listing, today] = await Promise.all([api("GET", "/api/v1/bulletins"), api("GET", "/api/v1/timeline")]);
  const bulletins = Array.isArray(listing) ? listing : listing.bulletins ?? [];
  const body = $("bulletins").tBodies[0];
  body.replaceChildren();
  let rows = 0;
  for (const b of bulletins) {
    for (const s of b.stations ?? []) {
      const row = body.insertRow();
      rows += 1;
      row.dataset.bulletin = b.id;
      row.dataset.station = s.station;
      cell(row, b.name);
      cell(row, levelWord(b.level), b.level === "emergency" ? "level-khan" : "");
      cell(row, s.name ?? s.station);
      cell(row, stateText(s), s.state === "declined" ? "bad" : s.state === "awaiting" ? "" : "ok");
      const actions = row.insertCell();
      const mayAnswer = me?.role === "admin" || (me?.role === "operator" && (me.communes ?? me.stations ?? []).includes(s.station));
      if (b.level === "normal" && mayAnswer && ["awaiting", "declined"].includes(s.state)) {
        const at = document.createElement("input");
        at.type = "time";
        at.title = t("accept-at");
        at.setAttribute("aria-label", t("accept-at"));
        at.dataset.role = "accept-at";
        const accept = document.createElement("button");
        accept.type = "button";
        accept.className = "live";
        accept.dataset.action = "accept";
        accept.textContent = t("accept");
        accept.addEventListener("click", () => inboxAct(
          () => api("POST", `/api/v1/bulletins/${encodeURIComponent(b.id)}/accept`, at.value ? { station: s.station, at: at.value } : { station: s.station }),
          tf("accepted", { name: b.name, station: s.name ?? s.station })));
        actions.append(at, " ", accept);
        if (s.state === "awaiting") {
          const decline = document.createElement("button");
          decline.type = "button";
          decline.className = "stop";
          decline.dataset.action = "decline";
          decline.textContent = t("decline");
          decline.addEventListener("click", () => {
            if (!window.confirm(tf("confirm-decline", { name: b.name, station: s.name ?? s.station }))) return;
            inboxAct(() => api("POST", `/api/v1/bulletins/${encodeURIComponent(b.id)}/decline`, { station: s.station }),
              tf("declined", { name: b.name, station: s.name ?? s.station }));
          });
          actions.append(" ", decline);
        }
      }
    }
    if (me?.role === "admin" && body.rows.length > 0) {
      const last = body.rows[body.rows.length - 1];
      const withdraw = document.createElement("button");
      withdraw.type = "button";
      withdraw.className = "emergency";
      withdraw.dataset.action = "withdraw";
      withdraw.textContent = t("withdraw");
      withdraw.addEventListener("click", () => {
        if (!window.confirm(tf("confirm-withdraw", { name: b.name }))) return;
        inboxAct(() => api("DELETE", `/api/v1/bulletins/${encodeURIComponent(b.id)}`), t("done"));
      });
      last.cells[4].append(" ", withdraw);
    }
  }
  $("bulletins").hidden = rows === 0;
  $("no-bulletins").hidden = rows > 0;
  const todayBody = $("today").tBodies[0];
  todayBody.replaceChildren();
  for (const s of today.stations) {
    for (const p of s.planned) {
      const row = todayBody.insertRow();
      cell(row, s.name);
      cell(row, `${districtParts(p.start).time}–${districtParts(p.end).time}`);
      cell(row, p.name);
      cell(row, levelWord(p.level));
    }
  }
}

async function inboxAct(action, doneText) {
  try {
    await action();
    say("inbox-message", doneText, true);
  } catch (e) {
    // The server words an air time's refusal in Vietnamese first (“Giờ phát đã qua — hãy chọn
    // giờ sau 14:00 …”); a 409 says why the answer cannot change (priority, already aired).
    const text = e instanceof ApiError && (e.status === 400 || e.status === 409)
      ? e.message.replace(/^\d+: /, "").replace(/^.*field `at`: /, "") : explain(e);
    say("inbox-message", text, false);
  }
  await refreshInbox().catch(() => {});
}

PAGES.inbox = { refresh: refreshInbox };
