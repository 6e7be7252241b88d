"use strict";

/* The landing page: every open campaign with its progress, program areas and streams. */
(() => {
  const REFRESH_MS = 10_000;
  const STATUS_ORDER = ["live", "scheduled", "ended", "closed"];
  const { t, money, byTestId, byRole } = LF;

  const cards = new Map();
  let list;

  function whenText(campaign) {
    switch (campaign.status) {
      case "scheduled":
        return campaign.starts_at ? t("when.starts", { date: LF.dateTime(campaign.starts_at) }) : "";
      case "ended":
        return campaign.ends_at ? t("when.ended", { date: LF.dateTime(campaign.ends_at) }) : "";
      case "closed":
        return campaign.closed_at ? t("when.closed", { date: LF.dateTime(campaign.closed_at) }) : "";
      default:
        return campaign.ends_at ? t("when.ends", { date: LF.dateTime(campaign.ends_at) }) : "";
    }
  }

  function matchingText(campaign) {
    const { matching, currency } = campaign;
    if (matching.remaining <= 0) return t("matching.used_up", { sponsor: matching.sponsor });
    return t("matching.line", {
      sponsor: matching.sponsor,
      ratio: matching.ratio_percent,
      remaining: money(matching.remaining, currency),
    });
  }

  function createCard(campaign) {
    const card = LF.cloneTemplate("campaign-template");
    card.dataset.slug = campaign.slug;
    const areas = byRole("areas", card);
    for (const designation of campaign.designations) {
      const chip = document.createElement("li");
      chip.dataset.testid = "designation";
      chip.dataset.code = designation.code;
      chip.textContent = LF.designationName(designation);
      areas.append(chip);
    }
    cards.set(campaign.slug, card);
    return card;
  }

  function fillCard(card, campaign) {
    const { totals, currency } = campaign;
    card.dataset.status = campaign.status;
    const status = byRole("status", card);
    status.dataset.status = campaign.status;
    status.textContent = t(`status.${campaign.status}`);
    byRole("when", card).textContent = whenText(campaign);
    byRole("title", card).textContent = campaign.title;
    byRole("fund", card).textContent = `${campaign.fund_name} · ${campaign.charity}`;

    const goal = totals.goal ?? campaign.goal;
    LF.setBar(byTestId("campaign-progress", card), {
      confirmed: totals.confirmed,
      matched: totals.matched,
    }, goal);
    byTestId("campaign-confirmed", card).textContent = money(totals.confirmed, currency);
    byRole("matched", card).textContent = money(totals.matched, currency);
    byRole("goal", card).textContent = money(goal, currency);
    byRole("donors", card).textContent = LF.count(totals.donors);

    const matching = byRole("matching", card);
    matching.hidden = !campaign.matching;
    if (campaign.matching) matching.textContent = matchingText(campaign);

    syncStreams(byRole("streams", card), campaign);
  }

  function createStreamRow(stream) {
    const row = LF.cloneTemplate("stream-template");
    row.dataset.slug = stream.slug;
    const slug = encodeURIComponent(stream.slug);
    byTestId("give-link", row).setAttribute("href", LF.withLang(`/give/${slug}`));
    byTestId("overlay-link", row).setAttribute("href", LF.withLang(`/overlay/${slug}`));
    return row;
  }

  function fillStreamRow(row, stream, campaign) {
    const { totals } = stream;
    const currency = campaign.currency;
    const goal = totals.goal ?? stream.goal;
    const raised = money(totals.confirmed + totals.matched, currency);
    byRole("streamer", row).textContent = stream.streamer;

    const bar = byRole("progress", row);
    bar.hidden = !goal;
    if (goal) LF.setBar(bar, { confirmed: totals.confirmed, matched: totals.matched }, goal);
    const progress = goal
      ? t("landing.stream_progress", { raised, goal: money(goal, currency) })
      : t("landing.stream_raised", { raised });
    byRole("figures", row).textContent = `${progress} · ${LF.plural("common.donors", totals.donors)}`;

    syncDisclosureLink(byRole("actions", row), campaign.disclosure_url);
  }

  /** The disclosure link exists only while the campaign publishes one. */
  function syncDisclosureLink(actions, url) {
    let link = byTestId("disclosure-link", actions);
    if (!url) {
      link?.remove();
      return;
    }
    if (!link) {
      link = document.createElement("a");
      link.className = "text-link";
      link.dataset.testid = "disclosure-link";
      link.textContent = t("landing.disclosure");
      actions.append(link);
    }
    link.setAttribute("href", LF.withLang(url));
  }

  function syncStreams(container, campaign) {
    const existing = new Map([...container.children].map((row) => [row.dataset.slug, row]));
    campaign.streams.forEach((stream, index) => {
      const row = existing.get(stream.slug) ?? createStreamRow(stream);
      existing.delete(stream.slug);
      fillStreamRow(row, stream, campaign);
      placeAt(container, row, index);
    });
    existing.forEach((row) => row.remove());
  }

  /** Moves a node only when it is out of place, so a focused link keeps its focus. */
  function placeAt(container, node, index) {
    const current = container.children[index];
    if (current !== node) container.insertBefore(node, current ?? null);
  }

  function byStatus(campaigns) {
    const rank = (c) => {
      const index = STATUS_ORDER.indexOf(c.status);
      return index < 0 ? STATUS_ORDER.length : index;
    };
    return campaigns
      .map((campaign, index) => ({ campaign, index }))
      .sort((a, b) => rank(a.campaign) - rank(b.campaign) || a.index - b.index)
      .map(({ campaign }) => campaign);
  }

  function render(campaigns) {
    const ordered = byStatus(campaigns);
    const gone = new Set(cards.keys());
    ordered.forEach((campaign, index) => {
      const card = cards.get(campaign.slug) ?? createCard(campaign);
      gone.delete(campaign.slug);
      fillCard(card, campaign);
      placeAt(list, card, index);
    });
    gone.forEach((slug) => {
      cards.get(slug).remove();
      cards.delete(slug);
    });
    byTestId("empty").hidden = ordered.length > 0;
  }

  async function refresh() {
    const loading = byRole("loading");
    const failed = byRole("load-failed");
    try {
      const { campaigns } = await LF.api("/api/v1/campaigns");
      render(campaigns);
      failed.hidden = true;
      LF.markReady();
    } catch {
      failed.hidden = cards.size > 0;
    } finally {
      loading.hidden = true;
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    list = byRole("campaigns");
    refresh();
    setInterval(refresh, REFRESH_MS);
  });
})();
