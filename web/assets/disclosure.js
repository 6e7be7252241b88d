"use strict";

/* The public disclosure of a campaign: its money in total, by program area and by stream,
   the ledger digest fixed at close and any refunds after it. Totals only — the API it reads
   carries no donor name, message or id. */
(() => {
  const REFRESH_MS = 30_000;
  const RELOAD_MS = 3_000;
  const COPIED_MS = 2_500;
  const UNRESTRICTED = "unrestricted";
  const { t, money, byTestId, byRole } = LF;

  const state = { slug: null, disclosure: null, campaign: null, shown: false, timer: null };

  /* ---- Head ---- */

  function whenText(d, campaign) {
    switch (d.status) {
      case "closed":
        return d.closed_at ? t("when.closed", { date: LF.dateTime(d.closed_at) }) : "";
      case "ended":
        return campaign?.ends_at ? t("when.ended", { date: LF.dateTime(campaign.ends_at) }) : "";
      case "scheduled":
        return campaign?.starts_at ? t("when.starts", { date: LF.dateTime(campaign.starts_at) }) : "";
      default:
        return campaign?.ends_at ? t("when.ends", { date: LF.dateTime(campaign.ends_at) }) : "";
    }
  }

  function renderHead(d, campaign) {
    byTestId("disclosure-title").textContent = d.title;
    byTestId("disclosure-fund").textContent = `${d.fund_name} · ${d.charity}`;
    const status = byTestId("disclosure-status");
    status.dataset.status = d.status;
    status.textContent = t(`status.${d.status}`);
    byRole("when").textContent = whenText(d, campaign);
    byRole("state-note").textContent = t(`disclosure.state.${d.status}`);
    byRole("as-of").textContent = t("disclosure.as_of", { time: LF.dateTime(new Date().toISOString()) });
    byRole("print-url").textContent = t("disclosure.print_url", { url: location.href });
    document.title = `${d.title} · ${t("disclosure.title")}`;
  }

  /* ---- Totals ---- */

  function renderTotals(d, campaign) {
    const { totals, currency } = d;
    const m = (amount) => money(amount, currency);
    byTestId("total-net").textContent = m(totals.net);
    byRole("net-formula").textContent = t("disclosure.net_formula", {
      raised: m(totals.raised),
      refunded: m(totals.refunded),
    });
    byTestId("total-raised").textContent = m(totals.raised);
    byTestId("total-refunded").textContent = m(totals.refunded);
    byTestId("total-matched").textContent = m(totals.matched);
    byTestId("total-fees").textContent = m(totals.fees);
    byTestId("total-gifts").textContent = LF.count(totals.gifts);
    byTestId("total-donors").textContent = LF.count(totals.donors);
    const sponsor = campaign?.matching?.sponsor;
    byRole("matched-hint").textContent = sponsor
      ? t("disclosure.matched_hint", { sponsor })
      : t("disclosure.matched_hint_plain");
  }

  /* ---- By program area ---- */

  function areaName(code, area) {
    if (code === UNRESTRICTED) return t("area.unrestricted");
    return LF.designationName({ code, name: area.name });
  }

  /** Largest net first, the fund's own order among equals, unrestricted gifts last. */
  function orderedAreas(d, campaign) {
    const fundOrder = (campaign?.designations ?? []).map((designation) => designation.code);
    const rank = (code) => {
      const index = fundOrder.indexOf(code);
      return index < 0 ? fundOrder.length : index;
    };
    return Object.entries(d.by_designation).sort(([codeA, a], [codeB, b]) => {
      const lastA = codeA === UNRESTRICTED ? 1 : 0;
      const lastB = codeB === UNRESTRICTED ? 1 : 0;
      return lastA - lastB || b.net - a.net || rank(codeA) - rank(codeB) || codeA.localeCompare(codeB);
    });
  }

  /** The share of `part` in `whole` as "12.3%", or "—" when there is nothing to share. */
  function shareOf(part, whole) {
    if (!(whole > 0)) return { percent: 0, text: "—" };
    const percent = Math.max(0, Math.min(100, (part * 100) / whole));
    return { percent, text: `${percent.toFixed(1)}%` };
  }

  function renderAreas(d, campaign) {
    const body = byRole("areas");
    const rows = orderedAreas(d, campaign).map(([code, area]) => {
      const row = LF.cloneTemplate("area-template");
      row.dataset.code = code;
      byRole("name", row).textContent = areaName(code, area);
      byRole("gifts", row).textContent = LF.count(area.gifts);
      byRole("net", row).textContent = money(area.net, d.currency);
      const share = shareOf(area.net, d.totals.net);
      byRole("fill", row).style.width = `${share.percent}%`;
      byRole("share", row).textContent = share.text;
      return row;
    });
    body.replaceChildren(...rows);
    const areas = Object.values(d.by_designation);
    byRole("areas-gifts").textContent = LF.count(areas.reduce((sum, a) => sum + a.gifts, 0));
    byRole("areas-net").textContent = money(areas.reduce((sum, a) => sum + a.net, 0), d.currency);
  }

  /* ---- By stream ---- */

  /** Every stream of the campaign (those without gifts too), largest net first. */
  function orderedStreams(d, campaign) {
    const streams = new Map();
    (campaign?.streams ?? []).forEach((stream, index) => {
      streams.set(stream.slug, { slug: stream.slug, streamer: stream.streamer, gifts: 0, net: 0, index });
    });
    for (const [slug, share] of Object.entries(d.by_stream)) {
      const known = streams.get(slug) ?? { slug, streamer: null, index: streams.size };
      streams.set(slug, { ...known, gifts: share.gifts, net: share.net });
    }
    return [...streams.values()].sort((a, b) => b.net - a.net || a.index - b.index);
  }

  function renderStreams(d, campaign) {
    const streams = orderedStreams(d, campaign);
    const rows = streams.map((stream) => {
      const row = LF.cloneTemplate("stream-row-template");
      row.dataset.slug = stream.slug;
      const name = byRole("streamer", row);
      const slug = byRole("slug", row);
      name.textContent = stream.streamer ?? stream.slug;
      slug.textContent = stream.slug;
      slug.hidden = !stream.streamer;
      byRole("gifts", row).textContent = LF.count(stream.gifts);
      byRole("net", row).textContent = money(stream.net, d.currency);
      return row;
    });
    byRole("streams").replaceChildren(...rows);
    byRole("streams-gifts").textContent = LF.count(streams.reduce((sum, s) => sum + s.gifts, 0));
    byRole("streams-net").textContent = money(streams.reduce((sum, s) => sum + s.net, 0), d.currency);
    byRole("streams-empty").hidden = streams.length > 0;
    byRole("streams").closest("table").hidden = streams.length === 0;
  }

  /* ---- The ledger digest and what came after it ---- */

  function renderLedger(d) {
    const slot = byRole("ledger");
    const digest = d.ledger_digest;
    const adjustments = d.post_close_adjustments;

    let block = slot.querySelector(".digest-block");
    if (!digest) {
      block?.remove();
    } else {
      if (!block) {
        block = LF.cloneTemplate("digest-template");
        byTestId("copy-digest", block).addEventListener("click", () => copyDigest(block));
        slot.prepend(block);
      }
      byRole("closed", block).textContent = d.closed_at
        ? t("disclosure.digest_fixed", { date: LF.dateTime(d.closed_at) })
        : "";
      byTestId("ledger-digest", block).textContent = digest;
    }

    let aside = byTestId("adjustments", slot);
    if (!(adjustments?.count > 0)) {
      aside?.remove();
    } else {
      if (!aside) {
        aside = LF.cloneTemplate("adjustments-template");
        slot.append(aside);
      }
      byTestId("adjustments-count", aside).textContent = LF.count(adjustments.count);
      byTestId("adjustments-amount", aside).textContent = money(adjustments.amount, d.currency);
    }

    slot.classList.toggle("with-adjustments", Boolean(digest) && adjustments?.count > 0);
    slot.hidden = slot.childElementCount === 0;
    byRole("digest-pending").hidden = Boolean(digest);
  }

  /** Copies the digest; where the clipboard is refused, selects it for the reader to copy. */
  async function copyDigest(block) {
    const code = byTestId("ledger-digest", block);
    const status = byRole("copy-status", block);
    const button = byTestId("copy-digest", block);
    let copied = false;
    try {
      await navigator.clipboard.writeText(code.textContent);
      copied = true;
    } catch {
      selectText(code);
      try {
        copied = document.execCommand("copy");
      } catch {
        copied = false;
      }
    }
    clearTimeout(block.copiedTimer);
    status.dataset.kind = copied ? "good" : "bad";
    if (!copied) {
      button.textContent = t("disclosure.copy");
      status.textContent = t("disclosure.copy_failed");
      return;
    }
    button.textContent = t("disclosure.copied");
    status.textContent = t("disclosure.copied_status");
    block.copiedTimer = setTimeout(() => {
      button.textContent = t("disclosure.copy");
      status.textContent = "";
    }, COPIED_MS);
  }

  function selectText(node) {
    const range = document.createRange();
    range.selectNodeContents(node);
    const selection = getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
  }

  /* ---- Loading ---- */

  function render() {
    const { disclosure: d, campaign } = state;
    renderHead(d, campaign);
    renderTotals(d, campaign);
    renderAreas(d, campaign);
    renderStreams(d, campaign);
    renderLedger(d);
    byRole("content").hidden = false;
    state.shown = true;
  }

  function showNotFound() {
    byRole("loading").hidden = true;
    byRole("load-failed").hidden = true;
    byRole("content").hidden = true;
    const slot = byRole("not-found-slot");
    if (!byTestId("not-found", slot)) slot.replaceChildren(LF.cloneTemplate("not-found-template"));
    document.title = `${t("disclosure.not_found_title")} · livefund`;
    LF.markReady();
  }

  /** Reads the disclosure (the campaign itself only adds names: its failure is no matter). */
  async function load() {
    clearTimeout(state.timer);
    const slug = encodeURIComponent(state.slug);
    const [disclosure, campaign] = await Promise.allSettled([
      LF.api(`/api/v1/campaigns/${slug}/disclosure`),
      LF.api(`/api/v1/campaigns/${slug}`),
    ]);
    if (disclosure.status === "rejected") {
      if (disclosure.reason?.code === "not_found") {
        showNotFound();
        return;
      }
      byRole("loading").hidden = true;
      byRole("load-failed").hidden = state.shown;
      state.timer = setTimeout(load, state.shown ? REFRESH_MS : RELOAD_MS);
      return;
    }
    state.disclosure = disclosure.value;
    if (campaign.status === "fulfilled") state.campaign = campaign.value;
    byRole("loading").hidden = true;
    byRole("load-failed").hidden = true;
    render();
    LF.markReady();
    // Figures move until the campaign closes; after that only a late refund changes them.
    if (state.disclosure.status !== "closed") state.timer = setTimeout(load, REFRESH_MS);
  }

  document.addEventListener("DOMContentLoaded", () => {
    byRole("print").addEventListener("click", () => window.print());
    state.slug = LF.lastPathSegment();
    if (state.slug) load();
    else showNotFound();
  });
})();
