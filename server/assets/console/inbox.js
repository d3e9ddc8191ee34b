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
  if (s.state === "declined" && s.reason) return `${t("state-declined")}: ${s.reason}`;
  return t(`state-${s.state}`);
}

// One card per bulletin and station: on a phone, a table has no room for a time and two buttons.
function offerCard(b, s) {
  const card = document.createElement("div");
  card.className = `offer ${b.level}`;
  card.dataset.bulletin = b.id;
  card.dataset.station = s.station;
  const title = document.createElement("h3");
  title.textContent = b.name;
  const line = document.createElement("div");
  line.textContent = `${s.name ?? s.station} · ${levelWord(b.level)} · `;
  const state = document.createElement("span");
  state.className = s.state === "declined" ? "bad" : s.state === "awaiting" ? "" : "ok";
  state.dataset.state = s.state;
  state.textContent = stateText(s);
  line.appendChild(state);
  card.append(title, line);
  const mayAnswer = me?.role === "admin" || (me?.role === "operator" && (me.communes ?? []).includes(s.station));
  if (b.level === "normal" && mayAnswer && ["awaiting", "declined"].includes(s.state)) {
    const answer = document.createElement("div");
    answer.className = "answer";
    const label = document.createElement("label");
    const caption = document.createElement("span");
    caption.textContent = t("accept-at");
    const at = document.createElement("input");
    at.type = "time";
    at.dataset.role = "accept-at";
    label.append(caption, at);
    const accept = document.createElement("button");
    accept.type = "button";
    accept.className = "live";
    accept.dataset.action = "accept";
    accept.textContent = t("accept");
    accept.addEventListener("click", () => inboxAct(
      () => api("POST", `/api/v1/bulletins/${encodeURIComponent(b.id)}/accept`, at.value ? { station: s.station, at: at.value } : { station: s.station }),
      tf("accepted", { name: b.name, station: s.name ?? s.station })));
    answer.append(label, accept);
    if (s.state === "awaiting") {
      const decline = document.createElement("button");
      decline.type = "button";
      decline.className = "stop";
      decline.dataset.action = "decline";
      decline.textContent = t("decline");
      decline.addEventListener("click", () => {
        // One dialog: the question, and room for a reason the district will read.
        const reason = window.prompt(`${tf("confirm-decline", { name: b.name, station: s.name ?? s.station })}\n${t("ask-reason")}`, "");
        if (reason === null) return;
        const body = reason.trim() ? { station: s.station, reason: reason.trim() } : { station: s.station };
        inboxAct(() => api("POST", `/api/v1/bulletins/${encodeURIComponent(b.id)}/decline`, body),
          tf("declined", { name: b.name, station: s.name ?? s.station }));
      });
      answer.appendChild(decline);
    }
    card.appendChild(answer);
  }
  return card;
}

async function refreshInbox() {
  await loadZone();
  const [listing, today] = await Promise.all([api("GET", "/api/v1/bulletins"), api("GET", "/api/v1/timeline")]);
  const box = $("bulletins");
  box.replaceChildren();
  for (const b of listing.bulletins ?? []) {
    for (const s of b.stations ?? []) box.appendChild(offerCard(b, s));
    if (me?.role === "admin" && (b.stations ?? []).length > 0) {
      const withdraw = document.createElement("button");
      withdraw.type = "button";
      withdraw.className = "emergency";
      withdraw.dataset.action = "withdraw";
      withdraw.dataset.bulletin = b.id;
      withdraw.textContent = `${t("withdraw")}: ${b.name}`;
      withdraw.addEventListener("click", () => {
        if (!window.confirm(tf("confirm-withdraw", { name: b.name }))) return;
        inboxAct(() => api("DELETE", `/api/v1/bulletins/${encodeURIComponent(b.id)}`), t("done"));
      });
      const last = box.lastElementChild;
      const row = document.createElement("div");
      row.className = "answer";
      row.appendChild(withdraw);
      last.appendChild(row);
    }
  }
  box.hidden = box.childElementCount === 0;
  $("no-bulletins").hidden = box.childElementCount > 0;
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
