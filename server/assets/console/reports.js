// The reports page: uptime and the programme log for a chosen period, as a chart and tables and
// as downloads (CSV that opens in Excel with its diacritics, and JSON), and for admins and
// viewers the audit log, filtered by who and what.
"use strict";

addText({
  vi: {
    day: "ngày", show: "Xem", "download-csv": "Tải CSV (Excel)", "download-json": "Tải JSON",
    audit: "Nhật ký thao tác", "audit-actor": "Người làm", "audit-action": "Việc",
    "audit-what": "Đối tượng", "audit-result": "Kết quả", any: "(tất cả)", filter: "Lọc",
    time: "Giờ", "result-done": "đã làm", "result-refused": "bị từ chối",
    "bad-period": "Ngày “đến” phải sau ngày “từ”.", "audit-truncated": "Còn nhiều bản ghi hơn: hãy chọn khoảng ngày ngắn hơn.",
  },
  en: {
    day: "day", show: "Show", "download-csv": "Download CSV (Excel)", "download-json": "Download JSON",
    audit: "Audit log", "audit-actor": "Who", "audit-action": "Action",
    "audit-what": "Acted on", "audit-result": "Result", any: "(any)", filter: "Filter",
    time: "Time", "result-done": "done", "result-refused": "refused",
    "bad-period": "The “until” date must come after the “from” date.", "audit-truncated": "There are more records: choose a shorter period.",
  },
});

const AUDIT_ACTIONS = ["live-start", "live-stop", "emergency-start", "emergency-stop", "schedule-add",
  "schedule-remove", "schedule-replace", "bulletin-submit", "bulletin-accept", "bulletin-decline",
  "bulletin-cancel", "library-upload", "library-rename", "library-delete", "sign-in", "sign-out",
  "account-create", "account-disable", "account-enable", "account-password", "account-role",
  "health-warning", "health-cleared", "backup"];

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

// The period's query: the dates chosen, or this year (five years when by year).
function reportQuery(format) {
  const by = $("by").value;
  const to = $("report-to").value || districtToday();
  const year = Number(to.slice(0, 4));
  const from = $("report-from").value || (by === "year" ? `${year - 4}-01-01` : `${year}-01-01`);
  return `from=${from}&to=${to}&by=${by}&format=${format}`;
}

async function refreshReports() {
  await loadZone();
  if (!$("report-to").value) $("report-to").value = districtToday();
  if ($("report-from").value && $("report-from").value > $("report-to").value) {
    say("reports-message", t("bad-period"), false);
    return;
  }
  say("reports-message", "", true);
  for (const kind of ["uptime", "plays"]) {
    $(`${kind}-csv`).href = `/api/v1/reports/${kind}?${reportQuery("csv")}`;
    $(`${kind}-json`).href = `/api/v1/reports/${kind}?${reportQuery("json")}`;
  }
  drawUptime(await api("GET", `/api/v1/reports/uptime?${reportQuery("json")}`));
  const plays = await api("GET", `/api/v1/reports/plays?${reportQuery("json")}`);
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
  if (me?.role !== "operator") await refreshAudit();
}

function outcomeText(outcome) {
  if (outcome === "done") return t("result-done");
  const refused = outcome?.refused ?? outcome;
  return `${t("result-refused")} (${refused?.status ?? "?"}): ${refused?.error ?? ""}`;
}

function targetsText(targets) {
  if (!targets) return "";
  if (targets === "all") return t("all-stations");
  return [...(targets.stations ?? []), ...(targets.groups ?? [])].join(", ");
}

async function refreshAudit() {
  const select = $("audit-action");
  if (select.options.length === 1) for (const a of AUDIT_ACTIONS) select.add(new Option(a, a));
  const params = new URLSearchParams();
  if ($("report-from").value) params.set("from", $("report-from").value);
  if ($("report-to").value) params.set("to", $("report-to").value);
  if ($("audit-actor").value.trim()) params.set("actor", $("audit-actor").value.trim());
  if (select.value) params.set("action", select.value);
  const listing = await api("GET", `/api/v1/audit?${params}`);
  const body = $("audit").tBodies[0];
  body.replaceChildren();
  // Newest first: what someone looks for is nearly always what just happened.
  for (const r of [...listing.records].reverse()) {
    const row = body.insertRow();
    cell(row, r.local);
    cell(row, r.caller);
    cell(row, r.action);
    cell(row, [r.id, targetsText(r.targets)].filter(Boolean).join(" → "));
    cell(row, outcomeText(r.outcome), r.outcome === "done" ? "ok" : "bad");
  }
  if (listing.truncated) say("reports-message", t("audit-truncated"), false);
}

PAGES.reports = { refresh: refreshReports };
$("report-show").addEventListener("click", () => refreshReports().catch((e) => say("reports-message", explain(e), false)));
$("by").addEventListener("change", () => refreshReports().catch((e) => say("reports-message", explain(e), false)));
$("audit-show").addEventListener("click", () => refreshAudit().catch((e) => say("reports-message", explain(e), false)));
