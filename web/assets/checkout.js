"use strict";

/* The sandbox checkout: shows a pledge and pays or fails it through the sandbox provider,
   which sends the service the same signed webhook a real provider would. */
(() => {
  const KNOWN_OUTCOMES = ["gift", "failed", "ignored", "exception"];
  const GOOD_OUTCOMES = ["gift", "ignored"];
  const SETTLE_POLL_MS = 1_000;
  const SETTLE_POLLS = 15;
  const RELOAD_MS = 3_000;
  const { t, byTestId, byRole } = LF;

  const state = { id: null, pledge: null, busy: false };

  function renderPledge() {
    const { pledge } = state;
    byTestId("checkout-amount").textContent = LF.money(pledge.amount, pledge.currency);
    byRole("campaign").textContent = pledge.campaign;
    byRole("stream").textContent = pledge.stream;
    byRole("area").textContent = pledge.designation ?? t("area.unrestricted");
    byRole("back").setAttribute("href", LF.withLang(`/give/${encodeURIComponent(pledge.stream)}`));
    renderStatus();
  }

  /** Replaces the slugs and codes by the names people know, when they can be read. */
  async function describe() {
    const { pledge } = state;
    const [campaign, stream] = await Promise.allSettled([
      LF.api(`/api/v1/campaigns/${encodeURIComponent(pledge.campaign)}`),
      LF.api(`/api/v1/streams/${encodeURIComponent(pledge.stream)}`),
    ]);
    if (campaign.status === "fulfilled") {
      byRole("campaign").textContent = campaign.value.title;
      const designation = campaign.value.designations.find((d) => d.code === pledge.designation);
      if (designation) byRole("area").textContent = LF.designationName(designation);
    }
    if (stream.status === "fulfilled") byRole("stream").textContent = stream.value.streamer;
  }

  function renderStatus() {
    const { status, expires_at: expiresAt } = state.pledge;
    const pill = byTestId("checkout-status");
    pill.dataset.status = status;
    pill.textContent = t(`st.${status}`);
    const pending = status === "pending";
    byTestId("pay").disabled = state.busy || !pending;
    byTestId("fail").disabled = state.busy || !pending;
    const expires = byRole("expires");
    expires.hidden = !pending || !expiresAt;
    if (!expires.hidden) expires.textContent = t("pledge.expires", { time: LF.time(expiresAt) });
  }

  function showResult(outcome, text, good) {
    const box = document.createElement("p");
    box.className = "checkout-result";
    box.dataset.testid = "checkout-result";
    box.dataset.outcome = outcome;
    box.dataset.kind = good ? "good" : "bad";
    box.textContent = text;
    byRole("result-slot").replaceChildren(box);
  }

  async function act(action) {
    state.busy = true;
    renderStatus();
    let settles = false;
    try {
      const reply = await LF.api(`/sandbox/checkout/${encodeURIComponent(state.id)}/${action}`, { method: "POST" });
      const outcome = reply.webhook_response?.outcome ?? "other";
      const key = KNOWN_OUTCOMES.includes(outcome) ? outcome : "other";
      showResult(outcome, t(`outcome.${key}`), GOOD_OUTCOMES.includes(outcome));
      settles = outcome === "gift" || outcome === "failed";
    } catch (error) {
      const text = error.status === 409 ? t("checkout.not_pending") : LF.errorText(error.code);
      showResult(error.code, text, false);
    }
    await reread(settles ? SETTLE_POLLS : 1);
    state.busy = false;
    renderStatus();
  }

  /** Reads the pledge again; a settled payment can take a moment to move it on. */
  async function reread(tries) {
    for (let i = 0; i < tries; i += 1) {
      if (i > 0) await new Promise((resolve) => setTimeout(resolve, SETTLE_POLL_MS));
      try {
        state.pledge = await LF.api(`/api/v1/pledges/${encodeURIComponent(state.id)}`);
      } catch {
        continue;
      }
      renderStatus();
      if (state.pledge.status !== "pending") return;
    }
  }

  async function load() {
    try {
      state.pledge = await LF.api(`/api/v1/pledges/${encodeURIComponent(state.id)}`);
    } catch (error) {
      if (error.code === "not_found") {
        byRole("loading").hidden = true;
        byTestId("not-found").hidden = false;
        LF.markReady();
      } else {
        byRole("load-failed").hidden = false;
        setTimeout(load, RELOAD_MS);
      }
      return;
    }
    byRole("loading").hidden = true;
    byRole("load-failed").hidden = true;
    renderPledge();
    byRole("content").hidden = false;
    LF.markReady();
    describe();
  }

  document.addEventListener("DOMContentLoaded", () => {
    state.id = LF.lastPathSegment();
    byTestId("pay").addEventListener("click", () => act("pay"));
    byTestId("fail").addEventListener("click", () => act("fail"));
    load();
  });
})();
