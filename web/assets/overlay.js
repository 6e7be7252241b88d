"use strict";

/* The streamer's OBS overlay: goal bar, totals, gift alerts, top donors and milestones,
   fed by the stream's live socket. It resumes after a drop with `?since=` so every gift
   is alerted exactly once. */
(() => {
  const PANELS = ["goal", "totals", "alerts", "top", "milestones"];
  const TOP_SIZE = 5;
  const MILESTONE_MS = 5_000;
  const LEAVE_MS = 400;
  // A busy stream: the more alerts wait, the shorter each one's turn, never below this...
  const MIN_ALERT_MS = 1_500;
  // ...and past this many waiting, further gifts join one summary alert rather than
  // falling ever further behind the stream.
  const MAX_WAITING = 8;
  const BADGE_DELAY_MS = 5_000;
  const RELOAD_MS = 3_000;
  const { t, money, byTestId, byRole } = LF;

  const options = readOptions();
  const state = {
    campaign: null,
    lastSeq: null,
    snapshotSeq: null,
    seenGifts: new Set(),
    top: [],
    alerts: [],
    currentAlert: null,
    milestones: [],
    currentMilestone: null,
    badgeTimer: null,
  };
  let audio;

  function readOptions() {
    const params = new URLSearchParams(location.search);
    const show = params.has("show")
      ? params.get("show").split(",").map((p) => p.trim()).filter((p) => PANELS.includes(p))
      : PANELS;
    const seconds = Number.parseInt(params.get("alert_seconds") ?? "", 10);
    return {
      theme: params.get("theme") === "light" ? "light" : "dark",
      show: new Set(show),
      alertSeconds: Number.isInteger(seconds) ? Math.min(60, Math.max(1, seconds)) : 6,
      sound: params.get("sound") === "1",
    };
  }

  function applyOptions() {
    document.body.className = `theme-${options.theme}`;
    byTestId("goal-panel").hidden = !options.show.has("goal");
    byTestId("totals-panel").hidden = !options.show.has("totals");
    byTestId("alerts-panel").hidden = !options.show.has("alerts");
    byTestId("top-panel").hidden = !options.show.has("top");
    byRole("milestones").hidden = !options.show.has("milestones");
  }

  /* ---- Totals and goal ---- */

  function renderTotals(stream, campaign) {
    const currency = state.campaign.currency;
    const goal = stream.goal ?? campaign.goal;
    LF.setBar(byTestId("goal-bar"), {
      confirmed: stream.confirmed,
      matched: stream.matched,
      pledged: Math.max(0, stream.pledged - stream.confirmed),
    }, goal);
    byTestId("goal").textContent = goal ? money(goal, currency) : "—";
    byTestId("total-confirmed").textContent = money(stream.confirmed, currency);
    byTestId("total-matched").textContent = money(stream.matched, currency);
    byTestId("total-pledged").textContent = money(stream.pledged, currency);
    byTestId("total-raised").textContent = money(stream.confirmed + stream.matched, currency);
    byTestId("donors").textContent = LF.plural("common.donors", stream.donors);
    byRole("gifts").textContent = LF.plural("common.gifts", stream.gifts);
  }

  /* ---- Top donors ---- */

  function renderTop() {
    const rows = state.top.map(({ donor, amount }) => {
      const row = document.createElement("li");
      row.dataset.testid = "top-donor";
      const name = document.createElement("span");
      name.className = "top-name";
      name.textContent = donor ?? t("common.anonymous");
      const sum = document.createElement("span");
      sum.className = "top-amount";
      sum.textContent = money(amount, state.campaign.currency);
      row.append(name, sum);
      return row;
    });
    if (rows.length === 0) {
      const waiting = document.createElement("li");
      waiting.className = "top-empty";
      waiting.textContent = t("overlay.top_empty");
      rows.push(waiting);
    }
    byRole("top-list").replaceChildren(...rows);
  }

  /** Counts a new gift into the board; anonymous gifts never merge with anyone. */
  function addToTop(gift) {
    const entry = gift.donor == null ? null : state.top.find((e) => e.donor === gift.donor);
    if (entry) entry.amount += gift.amount;
    else state.top.push({ donor: gift.donor, amount: gift.amount });
    state.top.sort((a, b) => b.amount - a.amount);
    state.top = state.top.slice(0, TOP_SIZE);
    renderTop();
  }

  /* ---- Alerts, one at a time ---- */

  function designationName(code) {
    const designation = state.campaign.designations.find((d) => d.code === code);
    return designation ? LF.designationName(designation) : null;
  }

  function buildAlert(gift) {
    const node = LF.cloneTemplate("alert-template");
    if (gift.gift_id != null) node.dataset.giftId = gift.gift_id;
    const part = (id) => byTestId(id, node);
    if (gift.test) node.dataset.test = "1";
    else part("alert-test").remove();
    part("alert-donor").textContent = gift.donor ?? t("common.anonymous");
    part("alert-amount").textContent = money(gift.amount, gift.currency);

    const matched = byRole("matched", node);
    if (gift.matched > 0) {
      const amount = money(gift.matched, gift.currency);
      const sponsor = state.campaign.matching?.sponsor;
      matched.textContent = sponsor
        ? t("overlay.matched_by", { sponsor, amount })
        : t("overlay.matched_plain", { amount });
    } else {
      matched.remove();
    }

    const area = gift.designation ? designationName(gift.designation) : null;
    if (area) part("alert-designation").textContent = t("overlay.for_area", { area });
    else part("alert-designation").remove();

    if (gift.message != null) part("alert-message").textContent = gift.message;
    else part("alert-message").remove();
    return node;
  }

  function enqueueAlert(gift) {
    if (!options.show.has("alerts")) return;
    const last = state.alerts[state.alerts.length - 1];
    if (last?.summary && !gift.test) {
      joinSummary(last, gift);
    } else if (state.alerts.length >= MAX_WAITING && !gift.test) {
      const summary = { summary: true, count: 0, amount: 0, currency: gift.currency, gifts: [] };
      joinSummary(summary, gift);
      state.alerts.push(summary);
    } else {
      state.alerts.push(gift);
    }
    showNextAlert();
  }

  function joinSummary(summary, gift) {
    summary.count += 1;
    summary.amount += gift.amount;
    if (gift.gift_id != null) summary.gifts.push(gift.gift_id);
  }

  /** Several gifts that arrived faster than they could each be shown, shown together. */
  function buildSummary(summary) {
    const node = document.createElement("article");
    node.className = "alert alert-summary";
    node.dataset.testid = "alert-summary";
    node.dataset.giftIds = summary.gifts.join(" ");
    const line = document.createElement("p");
    line.className = "alert-line";
    line.textContent = t("overlay.summary", { count: summary.count });
    const amount = document.createElement("p");
    amount.className = "alert-amount";
    amount.textContent = money(summary.amount, summary.currency);
    node.append(line, amount);
    return node;
  }

  function showNextAlert() {
    if (state.currentAlert || state.alerts.length === 0) return;
    const gift = state.alerts.shift();
    const node = gift.summary ? buildSummary(gift) : buildAlert(gift);
    byTestId("alerts-panel").append(node);
    state.currentAlert = { gift, node };
    chime();
    const turn = Math.max(MIN_ALERT_MS, (options.alertSeconds * 1000) / (1 + state.alerts.length));
    playOut(node, Math.min(turn, options.alertSeconds * 1000), () => {
      state.currentAlert = null;
      showNextAlert();
    });
  }

  /** Shows `node` for `ms`, lets it fade out, removes it, then calls `done`. */
  function playOut(node, ms, done) {
    setTimeout(() => node.classList.add("leaving"), Math.max(0, ms - LEAVE_MS));
    setTimeout(() => {
      node.remove();
      done();
    }, ms);
  }

  function hideMessage(giftId) {
    for (const gift of state.alerts) {
      if (gift.gift_id === giftId) gift.message = null;
    }
    const current = state.currentAlert;
    if (current?.gift.gift_id === giftId) {
      current.gift.message = null;
      byTestId("alert-message", current.node)?.remove();
    }
  }

  /** A short two-note chime made on the spot; the overlay ships no audio files. */
  function chime() {
    if (!options.sound) return;
    audio ??= new AudioContext();
    const start = audio.currentTime;
    [[659.25, 0], [987.77, 0.14]].forEach(([frequency, delay]) => {
      const oscillator = audio.createOscillator();
      const gain = audio.createGain();
      oscillator.type = "sine";
      oscillator.frequency.value = frequency;
      gain.gain.setValueAtTime(0.0001, start + delay);
      gain.gain.exponentialRampToValueAtTime(0.2, start + delay + 0.02);
      gain.gain.exponentialRampToValueAtTime(0.0001, start + delay + 0.9);
      oscillator.connect(gain).connect(audio.destination);
      oscillator.start(start + delay);
      oscillator.stop(start + delay + 1);
    });
  }

  /* ---- Milestones ---- */

  function enqueueMilestone(frame) {
    if (!options.show.has("milestones")) return;
    state.milestones.push(frame);
    showNextMilestone();
  }

  function showNextMilestone() {
    if (state.currentMilestone || state.milestones.length === 0) return;
    const frame = state.milestones.shift();
    const node = document.createElement("p");
    node.className = "milestone";
    node.dataset.testid = "milestone";
    node.dataset.scope = frame.scope;
    node.dataset.reached = String(frame.reached);
    node.textContent = t(`overlay.milestone.${frame.scope === "campaign" ? "campaign" : "stream"}`, {
      reached: frame.reached,
    });
    byRole("milestones").append(node);
    state.currentMilestone = node;
    playOut(node, MILESTONE_MS, () => {
      state.currentMilestone = null;
      showNextMilestone();
    });
  }

  /* ---- The live feed ---- */

  /** True once per seq: events at or below the last one handled were shown already. */
  function isNewEvent(seq) {
    if (seq == null || (state.lastSeq != null && seq <= state.lastSeq)) return false;
    state.lastSeq = seq;
    return true;
  }

  /** Remembers a gift id; false when it was known already. */
  function firstSight(giftId) {
    if (giftId == null) return true;
    if (state.seenGifts.has(giftId)) return false;
    state.seenGifts.add(giftId);
    return true;
  }

  function onSnapshot(frame) {
    // The first snapshot's gifts are history, and after a gap (or a store that began its
    // seqs again) the replay is incomplete: start afresh from this snapshot. Otherwise the
    // replay that follows brings the missed events, some of them also in `recent`.
    if (state.lastSeq == null || frame.gap) {
      state.lastSeq = frame.seq;
      for (const gift of frame.recent ?? []) firstSight(gift.gift_id);
    }
    state.snapshotSeq = frame.seq;
    state.top = (frame.top ?? []).slice(0, TOP_SIZE);
    renderTop();
    renderTotals(frame.stream, frame.campaign);
    connected();
    LF.markReady();
  }

  function onGift(gift) {
    if (!gift.test && !isNewEvent(gift.seq)) return;
    if (!firstSight(gift.gift_id)) return;
    // Gifts up to the snapshot's seq are already in its board.
    if (!gift.test && gift.seq > state.snapshotSeq) addToTop(gift);
    enqueueAlert(gift);
  }

  function onFrame(frame) {
    switch (frame.type) {
      case "snapshot":
        onSnapshot(frame);
        break;
      case "totals":
        renderTotals(frame.stream, frame.campaign);
        break;
      case "gift":
        onGift(frame);
        break;
      case "refund":
        isNewEvent(frame.seq);
        break;
      case "milestone":
        if (isNewEvent(frame.seq)) enqueueMilestone(frame);
        break;
      case "message_hidden":
        hideMessage(frame.gift_id);
        break;
    }
  }

  /* ---- Connection badge: never a frozen picture without it ---- */

  function scheduleBadge() {
    const badge = byTestId("reconnecting");
    if (state.badgeTimer != null || !badge.hidden) return;
    state.badgeTimer = setTimeout(() => {
      state.badgeTimer = null;
      badge.hidden = false;
    }, BADGE_DELAY_MS);
  }

  function connected() {
    clearTimeout(state.badgeTimer);
    state.badgeTimer = null;
    byTestId("reconnecting").hidden = true;
  }

  /* ---- Start ---- */

  async function load(slug) {
    let stream;
    try {
      stream = await LF.api(`/api/v1/streams/${encodeURIComponent(slug)}`);
      state.campaign = await LF.api(`/api/v1/campaigns/${encodeURIComponent(stream.campaign)}`);
    } catch (error) {
      if (error.code === "not_found") showNotFound(slug);
      else setTimeout(() => load(slug), RELOAD_MS);
      return;
    }
    renderTotals(stream.totals, stream.campaign_totals);
    const live = new LF.LiveSocket(slug, {
      onFrame,
      onDown: scheduleBadge,
      since: () => state.lastSeq,
    });
    live.start();
  }

  function showNotFound(slug) {
    connected();
    const box = byTestId("not-found");
    box.textContent = t("overlay.not_found", { stream: slug });
    box.hidden = false;
    for (const id of ["goal-panel", "totals-panel", "top-panel"]) byTestId(id).hidden = true;
    LF.markReady();
  }

  document.addEventListener("DOMContentLoaded", () => {
    applyOptions();
    scheduleBadge();
    load(LF.lastPathSegment());
  });
})();
