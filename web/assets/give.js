"use strict";

/* The pledge page, on a phone beside the stream: live progress, the pledge form (sent over
   the stream's socket), then the pledge's status until it is paid or lapses. */
(() => {
  const PRESETS = [500, 2000, 5000, 10000, 50000];
  const REPLY_TIMEOUT_MS = 10_000;
  const MAX_RETRIES = 3;
  const POLL_MS = 2_000;
  const RELOAD_MS = 3_000;
  const { t, money, byTestId, byRole } = LF;

  const state = {
    stream: null,
    campaign: null,
    preset: null,
    attemptKey: null,
    inFlight: null,
    pledge: null,
  };
  let live;
  let el;

  function lookUp() {
    el = {
      form: byRole("form"),
      presets: byRole("presets"),
      custom: byTestId("custom-amount"),
      designation: byTestId("designation"),
      name: byTestId("donor-name"),
      anonymous: byTestId("anonymous"),
      message: byTestId("message"),
      count: byTestId("message-count"),
      where: byTestId("where-money-goes"),
      errorSlot: byRole("error-slot"),
      submit: byTestId("submit"),
      panel: byRole("status-panel"),
      status: byTestId("pledge-status"),
      checkoutLink: byTestId("checkout-link"),
    };
  }

  function shortMoney(amount) {
    return money(amount, state.campaign.currency).replace(/\.00$/, "");
  }

  function designationByCode(code) {
    return state.campaign.designations.find((d) => d.code === code);
  }

  /* ---- Summary, kept live from the socket ---- */

  function renderSummary() {
    const { stream, campaign } = state;
    byRole("streamer").textContent = t("give.streamer", { name: stream.streamer });
    byTestId("campaign-title").textContent = campaign.title;
    byTestId("fund-name").textContent = `${campaign.fund_name} · ${campaign.charity}`;
    renderTotals(stream.totals, stream.campaign_totals);
    byRole("summary").hidden = false;
  }

  function renderTotals(totals, campaignTotals) {
    const currency = state.campaign.currency;
    const goal = totals.goal ?? campaignTotals.goal;
    LF.setBar(byRole("progress"), { confirmed: totals.confirmed, matched: totals.matched }, goal);
    const confirmed = money(totals.confirmed, currency);
    byTestId("stream-confirmed").textContent = goal
      ? t("give.confirmed_of_goal", { confirmed, goal: money(goal, currency) })
      : t("give.confirmed_only", { confirmed });
    byRole("donors").textContent = LF.plural("common.donors", totals.donors);
  }

  function showNotLive() {
    const { campaign } = state;
    const box = byTestId("not-live");
    const text = document.createElement("p");
    text.textContent = campaign.status === "scheduled" && campaign.starts_at
      ? t("give.not_live.scheduled", { date: LF.dateTime(campaign.starts_at) })
      : t(`give.not_live.${campaign.status === "closed" ? "closed" : "ended"}`);
    box.replaceChildren(text);
    if (campaign.disclosure_url) {
      const link = document.createElement("a");
      link.className = "back-link";
      link.setAttribute("href", LF.withLang(campaign.disclosure_url));
      link.textContent = t("landing.disclosure");
      box.append(link);
    }
    box.hidden = false;
  }

  /* ---- The form ---- */

  function buildForm() {
    const { campaign } = state;
    for (const amount of PRESETS) {
      const button = document.createElement("button");
      button.type = "button";
      button.className = "preset";
      button.dataset.testid = "preset";
      button.dataset.amount = String(amount);
      button.textContent = shortMoney(amount);
      button.disabled = amount < campaign.min_amount || amount > campaign.max_amount;
      button.setAttribute("aria-pressed", "false");
      button.addEventListener("click", () => choosePreset(amount));
      el.presets.append(button);
    }
    byRole("custom-label").textContent = `${t("give.custom")} ${LF.currencyMark(campaign.currency)}`;
    byRole("range-hint").textContent = t("give.range_hint", {
      min: money(campaign.min_amount, campaign.currency),
      max: money(campaign.max_amount, campaign.currency),
    });
    el.designation.append(new Option(t("area.unrestricted"), ""));
    for (const designation of campaign.designations) {
      el.designation.append(new Option(LF.designationName(designation), designation.code));
    }

    // Typing an amount drops the preset; the form's own listener then sees the change.
    el.custom.addEventListener("input", () => {
      state.preset = null;
    });
    el.form.addEventListener("input", formChanged);
    el.form.addEventListener("submit", (event) => {
      event.preventDefault();
      submit();
    });
    byTestId("again").addEventListener("click", startOver);
    refreshForm();
    el.form.hidden = false;
  }

  function choosePreset(amount) {
    state.preset = amount;
    el.custom.value = "";
    formChanged();
  }

  /** Any change makes the next submit a new attempt, with a new idempotency key. */
  function formChanged() {
    state.attemptKey = null;
    clearError();
    refreshForm();
  }

  function refreshForm() {
    for (const button of el.presets.children) {
      button.setAttribute("aria-pressed", String(Number(button.dataset.amount) === state.preset));
    }
    el.name.disabled = el.anonymous.checked;
    el.count.textContent = `${[...el.message.value].length}/140`;
    renderWhere();
    renderSubmit();
  }

  function renderWhere() {
    const { campaign } = state;
    const names = { fund: campaign.fund_name, charity: campaign.charity };
    const designation = designationByCode(el.designation.value);
    const main = document.createElement("p");
    main.textContent = designation
      ? t("give.where.area", { ...names, area: LF.designationName(designation) })
      : t("give.where.unrestricted", names);
    el.where.replaceChildren(main);
    if (campaign.matching && campaign.matching.remaining > 0) {
      const matching = document.createElement("p");
      matching.textContent = t("give.where.matching", {
        sponsor: campaign.matching.sponsor,
        ratio: campaign.matching.ratio_percent,
      });
      el.where.append(matching);
    }
  }

  function renderSubmit() {
    el.submit.disabled = Boolean(state.inFlight);
    if (state.inFlight) {
      el.submit.textContent = t("give.sending");
      return;
    }
    const { fen } = chosenAmount();
    el.submit.textContent = fen > 0
      ? t("give.submit_amount", { amount: money(fen, state.campaign.currency) })
      : t("give.submit");
  }

  function chosenAmount() {
    return state.preset != null ? { fen: state.preset } : LF.parseAmount(el.custom.value);
  }

  /** The pledge frame for the form as it stands, or the local reason it cannot be sent. */
  function readPledge() {
    const { campaign } = state;
    const amount = chosenAmount();
    if (amount.error) return { error: amount.error };
    if (amount.fen < campaign.min_amount || amount.fen > campaign.max_amount) {
      return { error: "amount_out_of_range" };
    }
    const frame = {
      type: "pledge",
      amount: amount.fen,
      currency: campaign.currency,
      anonymous: el.anonymous.checked,
      donor_ref: LF.donorRef(),
    };
    const name = el.name.value.trim();
    if (!frame.anonymous && name) frame.donor_name = name;
    const message = el.message.value.trim();
    if (message) frame.message = message;
    if (el.designation.value) frame.designation = el.designation.value;
    return { frame };
  }

  function showError(code, field) {
    clearError();
    const box = document.createElement("p");
    box.className = "form-error";
    box.setAttribute("role", "alert");
    box.dataset.testid = "error";
    box.dataset.code = code;
    box.textContent = LF.errorText(code, { field, campaign: state.campaign });
    el.errorSlot.append(box);
  }

  function clearError() {
    el.errorSlot.replaceChildren();
  }

  /* ---- Sending a pledge: one attempt, retried with the same key ---- */

  function submit() {
    if (state.inFlight) return;
    clearError();
    const { frame, error } = readPledge();
    if (error) {
      showError(error);
      return;
    }
    state.attemptKey ??= LF.randomHex(16);
    state.inFlight = {
      key: state.attemptKey,
      frame: { ...frame, idempotency_key: state.attemptKey },
      retries: 0,
      sent: false,
      timer: null,
    };
    renderSubmit();
    transmit(state.inFlight);
  }

  function transmit(attempt) {
    clearTimeout(attempt.timer);
    attempt.timer = setTimeout(() => retry(attempt), REPLY_TIMEOUT_MS);
    attempt.sent = live.send(attempt.frame);
  }

  function retry(attempt) {
    if (attempt !== state.inFlight) return;
    if (attempt.retries >= MAX_RETRIES) {
      // The key is kept: the pledge may exist, and submitting again must not make a second.
      finishAttempt(attempt);
      showError("unavailable");
      return;
    }
    attempt.retries += 1;
    transmit(attempt);
  }

  function finishAttempt(attempt) {
    clearTimeout(attempt.timer);
    state.inFlight = null;
    renderSubmit();
  }

  function onSocketOpen() {
    const attempt = state.inFlight;
    if (attempt && !attempt.sent) attempt.sent = live.send(attempt.frame);
  }

  function onSocketDown() {
    const attempt = state.inFlight;
    if (attempt?.sent) retry(attempt);
  }

  function onFrame(frame) {
    switch (frame.type) {
      case "snapshot":
      case "totals":
        renderTotals(frame.stream, frame.campaign);
        break;
      case "pledge_accepted":
        accepted(frame);
        break;
      case "error":
        refused(frame);
        break;
    }
  }

  function accepted(frame) {
    const attempt = state.inFlight;
    if (!attempt || frame.ref !== attempt.key) return;
    finishAttempt(attempt);
    state.attemptKey = null;
    showPledge(frame, attempt.frame);
  }

  function refused(frame) {
    const attempt = state.inFlight;
    // An error without `ref` answers a frame the server could not read: ours.
    if (!attempt || (frame.ref != null && frame.ref !== attempt.key)) return;
    if (frame.code === "unavailable") {
      retry(attempt);
      return;
    }
    finishAttempt(attempt);
    state.attemptKey = null;
    showError(frame.code, frame.field);
  }

  /* ---- After the pledge: pay, then follow its status ---- */

  function showPledge(reply, sent) {
    const checkoutUrl = LF.withLang(reply.checkout_url);
    state.pledge = { id: reply.pledge_id, amount: sent.amount, designation: sent.designation, timer: null };
    window.open(checkoutUrl, "_blank");
    el.checkoutLink.setAttribute("href", checkoutUrl);
    renderPledgeStatus("pending", reply.expires_at);
    el.form.hidden = true;
    el.panel.hidden = false;
    el.panel.scrollIntoView({ block: "nearest" });
    poll(state.pledge);
  }

  function purposeText(code) {
    const designation = designationByCode(code);
    return designation
      ? t("pledge.purpose.area", { area: LF.designationName(designation) })
      : t("pledge.purpose.unrestricted");
  }

  function renderPledgeStatus(status, expiresAt) {
    const { pledge } = state;
    el.panel.dataset.status = status;
    el.status.dataset.status = status;
    byRole("status-title").textContent = t(`pledge.title.${status}`);
    el.status.textContent = status === "confirmed"
      ? t("pledge.text.confirmed", {
        amount: money(pledge.amount, state.campaign.currency),
        purpose: purposeText(pledge.designation),
      })
      : t(`pledge.text.${status}`);
    const expires = byRole("expires");
    expires.hidden = status !== "pending" || !expiresAt;
    if (!expires.hidden) expires.textContent = t("pledge.expires", { time: LF.time(expiresAt) });
    el.checkoutLink.hidden = status !== "pending";
  }

  async function poll(pledge) {
    try {
      const view = await LF.api(`/api/v1/pledges/${encodeURIComponent(pledge.id)}`);
      if (pledge !== state.pledge) return;
      renderPledgeStatus(view.status, view.expires_at);
      if (LF.FINAL_PLEDGE_STATUSES.includes(view.status)) return;
    } catch {
      // A missed poll is retried below; the donor still has the checkout link.
    }
    if (pledge === state.pledge) pledge.timer = setTimeout(() => poll(pledge), POLL_MS);
  }

  function startOver() {
    clearTimeout(state.pledge?.timer);
    state.pledge = null;
    state.preset = null;
    el.form.reset();
    formChanged();
    el.panel.hidden = true;
    el.form.hidden = false;
    el.form.scrollIntoView({ block: "start" });
  }

  /* ---- Start ---- */

  function showNotFound() {
    byRole("loading").hidden = true;
    byTestId("not-found").hidden = false;
    LF.markReady();
  }

  async function load(slug) {
    try {
      state.stream = await LF.api(`/api/v1/streams/${encodeURIComponent(slug)}`);
      state.campaign = await LF.api(`/api/v1/campaigns/${encodeURIComponent(state.stream.campaign)}`);
    } catch (error) {
      if (error.code === "not_found") {
        showNotFound();
      } else {
        byRole("load-failed").hidden = false;
        setTimeout(() => load(slug), RELOAD_MS);
      }
      return;
    }
    byRole("loading").hidden = true;
    byRole("load-failed").hidden = true;
    renderSummary();
    if (state.campaign.status === "live") buildForm();
    else showNotLive();
    live = new LF.LiveSocket(slug, { onFrame, onOpen: onSocketOpen, onDown: onSocketDown });
    live.start();
    LF.markReady();
  }

  document.addEventListener("DOMContentLoaded", () => {
    lookUp();
    const slug = LF.lastPathSegment();
    if (slug) load(slug);
    else showNotFound();
  });
})();
