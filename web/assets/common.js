"use strict";

/* Shared by every page: language and dictionaries, money, dates, the API helper and the
   live socket. Exposed as the single global `LF`. */
const LF = (() => {
  const DICT = {
    zh: {
      "brand.tagline": "直播公益 · 为孤困儿童募捐",
      "lang.switch": "切换语言",
      "lang.zh": "中文",
      "lang.en": "English",
      "footer.note": "livefund 帮助儿童公益基金在直播中募捐。每一笔捐款都记入基金账本，活动结项后公开披露。",
      "common.back_home": "返回首页",
      "common.loading": "正在加载…",
      "common.load_failed": "暂时无法加载，正在重试…",
      "common.anonymous": "匿名",
      "common.donors.one": "{n} 位捐赠人",
      "common.donors.other": "{n} 位捐赠人",
      "common.gifts.one": "{n} 笔捐赠",
      "common.gifts.other": "{n} 笔捐赠",
      "progress.label": "已筹 {percent}%",

      "area.unrestricted": "不限定用途 · 最需要的地方",

      "status.live": "募捐进行中",
      "status.scheduled": "即将开始",
      "status.ended": "已结束",
      "status.closed": "已结项",
      "when.starts": "{date} 开始",
      "when.ends": "截至 {date}",
      "when.ended": "已于 {date} 结束",
      "when.closed": "已于 {date} 结项",

      "fig.confirmed": "已到账",
      "fig.matched": "企业配捐",
      "fig.goal": "目标",
      "fig.donors": "捐赠人",
      "matching.line": "爱心企业 {sponsor} 按 {ratio}% 配捐，剩余 {remaining}",
      "matching.used_up": "爱心企业 {sponsor} 的配捐额度已全部用完，感谢支持",

      "landing.title": "livefund · 直播公益募捐",
      "landing.headline": "在直播间，为孩子们汇聚每一份善意",
      "landing.lede": "livefund 帮助儿童公益基金在直播中募捐：观众用手机认捐，善款直接进入基金，每一笔都公开可查。",
      "landing.campaigns": "募捐活动",
      "landing.areas": "资助方向",
      "landing.streams": "直播间",
      "landing.stream_progress": "已筹 {raised}，目标 {goal}",
      "landing.stream_raised": "已筹 {raised}",
      "landing.give": "去捐款",
      "landing.overlay": "OBS 叠加层",
      "landing.overlay_hint": "供主播添加到 OBS 的浏览器源",
      "landing.disclosure": "资金公示",
      "landing.empty": "目前没有进行中的募捐活动，请稍后再来看看。",

      "disclosure.title": "资金公示 · livefund",
      "disclosure.eyebrow": "资金公示",
      "disclosure.not_found_title": "没有找到这个募捐活动",
      "disclosure.not_found_body": "链接可能有误，或这个募捐活动不存在。",
      "disclosure.state.scheduled": "募捐尚未开始，目前还没有捐赠。",
      "disclosure.state.live": "募捐正在进行，以下数字会随新的捐赠更新。",
      "disclosure.state.ended": "募捐已结束，正在对账；结项后，这里将公布账本摘要。",
      "disclosure.state.closed": "活动已结项，账目已定。结项后如有退款，会在账本摘要旁单独列出。",
      "disclosure.as_of": "数据截至 {time}",
      "disclosure.print": "打印本页",
      "disclosure.print_url": "本页地址：{url}",
      "disclosure.totals": "善款总览",
      "disclosure.net": "净筹善款",
      "disclosure.net_formula": "捐赠总额 {raised} − 退款 {refunded}",
      "disclosure.raised": "捐赠总额",
      "disclosure.raised_hint": "所有已到账的捐赠",
      "disclosure.refunded": "已退款",
      "disclosure.refunded_hint": "已原路退回捐赠人",
      "disclosure.matched": "企业配捐",
      "disclosure.matched_hint": "由 {sponsor} 另外捐出，不计入净筹善款",
      "disclosure.matched_hint_plain": "由爱心企业另外捐出，不计入净筹善款",
      "disclosure.fees": "支付手续费",
      "disclosure.fees_hint": "支付机构收取，单独列出，未从净筹善款中扣除",
      "disclosure.gifts": "捐赠笔数",
      "disclosure.gifts_hint": "含之后退款的捐赠",
      "disclosure.donors": "捐赠人",
      "disclosure.donors_hint": "同一捐赠人只计一次",
      "disclosure.by_area": "按资助方向",
      "disclosure.by_area_note": "每笔捐赠计入捐赠人选择的资助方向，未选择的计入「不限定用途」。金额为扣除退款后的净额。",
      "disclosure.by_stream": "按直播间",
      "disclosure.by_stream_note": "每笔捐赠计入捐赠人所在的直播间。金额为扣除退款后的净额。",
      "disclosure.col.area": "资助方向",
      "disclosure.col.stream": "直播间",
      "disclosure.col.gifts": "笔数",
      "disclosure.col.net": "净额",
      "disclosure.col.share": "占净筹善款",
      "disclosure.total_row": "合计",
      "disclosure.no_gifts": "目前还没有捐赠。",
      "disclosure.digest": "账本摘要",
      "disclosure.digest_fixed": "于 {date} 结项时确定，此后不再改变",
      "disclosure.digest_pending": "活动结项后，这里将公布账本摘要：对每一笔已结算捐赠计算的 SHA-256 哈希链，任何持有账本导出文件的人都可以自行核对。",
      "disclosure.digest_what": "账本摘要是按顺序对本次活动每一笔已结算捐赠计算的 SHA-256 哈希链，在结项时确定。任何一笔捐赠的记录被改动，或有捐赠被增加、删除，摘要都会完全不同。",
      "disclosure.digest_check": "任何持有账本导出文件的人都可以重新计算：结果与这里一致，就说明导出文件中的账目正是结项时确定的那一份。",
      "disclosure.digest_algo": "算法：livefund-ledger-v1，详见项目 README。",
      "disclosure.copy": "复制",
      "disclosure.copied": "已复制",
      "disclosure.copied_status": "账本摘要已复制到剪贴板。",
      "disclosure.copy_failed": "无法自动复制，已选中摘要，请手动复制。",
      "disclosure.adjustments": "结项后的调整",
      "disclosure.adjustments_count": "退款笔数",
      "disclosure.adjustments_amount": "退款金额",
      "disclosure.adjustments_note": "结项后，又有捐赠原路退回给捐赠人。这些退款不改变结项时确定的账本摘要，但已计入上方的「已退款」和「净筹善款」；这些捐赠得到的企业配捐也已从「企业配捐」中扣回。",
      "disclosure.privacy": "本页只公布汇总数字，不显示任何捐赠人的姓名、留言或编号。",

      "give.title": "捐一份心意 · livefund",
      "give.streamer": "直播间 · {name}",
      "give.confirmed_of_goal": "已筹 {confirmed}，目标 {goal}",
      "give.confirmed_only": "已筹 {confirmed}",
      "give.amount": "捐赠金额",
      "give.custom": "其他金额",
      "give.custom_placeholder": "例如 88.88",
      "give.range_hint": "单笔金额 {min} 至 {max}",
      "give.area": "资助方向",
      "give.name": "你的名字（选填）",
      "give.name_placeholder": "将显示在直播间",
      "give.anonymous": "匿名捐赠",
      "give.anonymous_hint": "勾选后，你的名字不会出现在任何公开页面。",
      "give.message": "留言（选填）",
      "give.message_placeholder": "写给孩子们的话…",
      "give.where.area": "你的善款将进入由{charity}管理的{fund}，专项用于「{area}」。",
      "give.where.unrestricted": "你的善款将进入由{charity}管理的{fund}，用于基金最需要的地方。",
      "give.where.matching": "爱心企业 {sponsor} 将额外按 {ratio}% 配捐，配捐额度用完即止。",
      "give.submit": "确认捐赠",
      "give.submit_amount": "确认捐赠 {amount}",
      "give.sending": "正在提交…",
      "give.fineprint": "提交后前往支付页面完成付款；未按时付款的认捐会自动失效，不会扣款。",
      "give.not_found_title": "没有找到这个直播间",
      "give.not_found_body": "链接可能有误，或这个直播间已不存在。",
      "give.not_live.scheduled": "本次募捐尚未开始，将于 {date} 开始接受捐赠。",
      "give.not_live.ended": "本次募捐已经结束，感谢每一位的支持。",
      "give.not_live.closed": "本次募捐已结项，账目已定，不再接受新的捐赠。",

      "pledge.title.pending": "认捐已登记",
      "pledge.title.confirmed": "谢谢你！",
      "pledge.title.failed": "支付未完成",
      "pledge.title.expired": "付款时限已过",
      "pledge.title.refunded": "已退款",
      "pledge.text.pending": "请在支付页面完成付款，付款后这里会自动更新。",
      "pledge.text.confirmed": "你的 {amount} 已经到账，将用于{purpose}。孩子们会感受到这份温暖。",
      "pledge.text.failed": "这笔付款没有成功，也没有扣款。你可以再试一次。",
      "pledge.text.expired": "这笔认捐没有在时限内付款，已自动失效，没有扣款。",
      "pledge.text.refunded": "这笔捐款已原路退回。",
      "pledge.purpose.area": "「{area}」",
      "pledge.purpose.unrestricted": "基金最需要的地方",
      "pledge.expires": "请在 {time} 前完成付款",
      "pledge.pay_now": "去支付",
      "pledge.again": "再捐一笔",

      "st.pending": "待支付",
      "st.confirmed": "已支付",
      "st.failed": "支付失败",
      "st.expired": "已过期",
      "st.refunded": "已退款",

      "err.invalid_request": "提交的内容有误，请检查后重试。",
      "err.invalid_request.amount": "请填写有效的捐赠金额。",
      "err.invalid_request.currency": "币种有误，请刷新页面后重试。",
      "err.invalid_request.donor_name": "名字最多 32 个字。",
      "err.invalid_request.message": "留言最多 140 个字。",
      "err.invalid_request.designation": "请选择有效的资助方向。",
      "err.invalid_request.donor_ref": "浏览器标识无效，请刷新页面后重试。",
      "err.invalid_request.idempotency_key": "提交标识无效，请重新提交。",
      "err.amount_out_of_range": "金额需在 {min} 到 {max} 之间。",
      "err.amount_required": "请选择或填写捐赠金额。",
      "err.amount_format": "金额格式不对，请填写如 12 或 12.34 的数字。",
      "err.amount_decimals": "金额最多保留两位小数（精确到分）。",
      "err.currency_mismatch": "币种与本次募捐不符，请刷新页面后重试。",
      "err.unknown_designation": "这个资助方向不存在，请重新选择。",
      "err.campaign_not_live": "本次募捐现在不在进行中，暂时不能捐赠。",
      "err.campaign_closed": "本次募捐已结项，不再接受捐赠。",
      "err.idempotency_conflict": "这次提交与之前的一次冲突，请重新提交。",
      "err.rate_limited": "操作太频繁了，请稍等片刻再试。",
      "err.payload_too_large": "提交的内容太长，请精简留言后重试。",
      "err.unavailable": "服务暂时繁忙，请稍后再试。",
      "err.not_found": "没有找到对应的内容。",
      "err.forbidden": "此页面无权进行这项操作。",
      "err.generic": "出了点问题，请稍后再试。",

      "overlay.title": "直播叠加层 · livefund",
      "overlay.goal_title": "直播间目标",
      "overlay.goal": "目标",
      "overlay.confirmed": "已到账",
      "overlay.matched": "配捐",
      "overlay.pledged": "已认捐",
      "overlay.raised": "已筹善款",
      "overlay.top": "爱心榜",
      "overlay.top_empty": "期待第一份爱心",
      "overlay.gave": "捐赠了",
      "overlay.for_area": "用于 {area}",
      "overlay.matched_by": "{sponsor} 配捐 +{amount}",
      "overlay.matched_plain": "配捐 +{amount}",
      "overlay.test": "测试",
      "overlay.summary": "又有 {count} 位爱心人士捐赠",
      "overlay.milestone.stream": "已达成直播间目标的 {reached}%！",
      "overlay.milestone.campaign": "已达成活动总目标的 {reached}%！",
      "overlay.reconnecting": "重新连接中…",
      "overlay.not_found": "没有找到这个直播间：{stream}",

      "checkout.title": "沙盒支付 · livefund",
      "checkout.banner": "沙盒支付 · 仅用于测试，不会扣款",
      "checkout.heading": "确认付款",
      "checkout.campaign": "募捐活动",
      "checkout.stream": "直播间",
      "checkout.area": "资助方向",
      "checkout.status": "状态",
      "checkout.pay": "支付",
      "checkout.fail": "模拟失败",
      "checkout.back": "返回捐赠页",
      "checkout.not_found_title": "没有找到这笔认捐",
      "checkout.not_found_body": "链接可能已失效，请回到捐赠页重新认捐。",
      "checkout.not_pending": "这笔认捐已不是待支付状态，无需再操作。",
      "outcome.gift": "支付成功，捐赠已入账。",
      "outcome.failed": "已模拟支付失败，没有扣款。",
      "outcome.ignored": "这条付款通知之前已经处理过。",
      "outcome.exception": "付款已记录为待核对的异常，不计入总额。",
      "outcome.other": "付款通知已送达。",
    },
    en: {
      "brand.tagline": "Live-stream giving for children in need",
      "lang.switch": "Language",
      "lang.zh": "中文",
      "lang.en": "English",
      "footer.note": "livefund helps children's funds raise money during live streams. Every gift is recorded in the fund's ledger and disclosed when the campaign closes.",
      "common.back_home": "Back to the home page",
      "common.loading": "Loading…",
      "common.load_failed": "Couldn't load just now — retrying…",
      "common.anonymous": "Anonymous",
      "common.donors.one": "{n} donor",
      "common.donors.other": "{n} donors",
      "common.gifts.one": "{n} gift",
      "common.gifts.other": "{n} gifts",
      "progress.label": "{percent}% raised",

      "area.unrestricted": "Unrestricted · where most needed",

      "status.live": "Live now",
      "status.scheduled": "Starting soon",
      "status.ended": "Ended",
      "status.closed": "Closed",
      "when.starts": "Starts {date}",
      "when.ends": "Until {date}",
      "when.ended": "Ended {date}",
      "when.closed": "Closed {date}",

      "fig.confirmed": "Received",
      "fig.matched": "Matched",
      "fig.goal": "Goal",
      "fig.donors": "Donors",
      "matching.line": "{sponsor} matches gifts at {ratio}% — {remaining} of matching left",
      "matching.used_up": "{sponsor}'s matching pool is fully used — thank you",

      "landing.title": "livefund · Live-stream fundraising",
      "landing.headline": "Every live stream, a little more care for children",
      "landing.lede": "livefund helps children's funds raise money during live streams: viewers pledge from their phones, the money goes straight to the fund, and every gift is accounted for in public.",
      "landing.campaigns": "Campaigns",
      "landing.areas": "Program areas",
      "landing.streams": "Live streams",
      "landing.stream_progress": "{raised} raised of {goal}",
      "landing.stream_raised": "{raised} raised",
      "landing.give": "Give",
      "landing.overlay": "OBS overlay",
      "landing.overlay_hint": "For streamers: add it to OBS as a browser source",
      "landing.disclosure": "Public disclosure",
      "landing.empty": "There are no campaigns running right now. Please check back soon.",

      "disclosure.title": "Public disclosure · livefund",
      "disclosure.eyebrow": "Public disclosure",
      "disclosure.not_found_title": "We couldn't find this campaign",
      "disclosure.not_found_body": "The link may be wrong, or there is no such campaign.",
      "disclosure.state.scheduled": "This campaign hasn't started yet; there are no gifts so far.",
      "disclosure.state.live": "This campaign is taking gifts now; the figures below update as gifts arrive.",
      "disclosure.state.ended": "This campaign has ended and its accounts are being reconciled; the ledger digest will be published here when it closes.",
      "disclosure.state.closed": "This campaign is closed and its accounts are final. Any refund after the close is listed beside the ledger digest.",
      "disclosure.as_of": "Figures as of {time}",
      "disclosure.print": "Print this page",
      "disclosure.print_url": "Page address: {url}",
      "disclosure.totals": "The money at a glance",
      "disclosure.net": "Net raised",
      "disclosure.net_formula": "Gifts received {raised} − refunds {refunded}",
      "disclosure.raised": "Gifts received",
      "disclosure.raised_hint": "Every gift that arrived",
      "disclosure.refunded": "Refunded",
      "disclosure.refunded_hint": "Returned to the donors",
      "disclosure.matched": "Matched by the sponsor",
      "disclosure.matched_hint": "Given on top by {sponsor}; not part of net raised",
      "disclosure.matched_hint_plain": "Given on top by the sponsor; not part of net raised",
      "disclosure.fees": "Payment fees",
      "disclosure.fees_hint": "Charged by the payment provider; shown apart, not deducted from net raised",
      "disclosure.gifts": "Gifts",
      "disclosure.gifts_hint": "Including gifts later refunded",
      "disclosure.donors": "Donors",
      "disclosure.donors_hint": "Each donor counted once",
      "disclosure.by_area": "By program area",
      "disclosure.by_area_note": "Each gift counts toward the program area its donor chose; gifts with no choice count as unrestricted. Amounts are net of refunds.",
      "disclosure.by_stream": "By stream",
      "disclosure.by_stream_note": "Each gift counts toward the stream it was given on. Amounts are net of refunds.",
      "disclosure.col.area": "Program area",
      "disclosure.col.stream": "Stream",
      "disclosure.col.gifts": "Gifts",
      "disclosure.col.net": "Net",
      "disclosure.col.share": "Share of net",
      "disclosure.total_row": "Total",
      "disclosure.no_gifts": "No gifts yet.",
      "disclosure.digest": "Ledger digest",
      "disclosure.digest_fixed": "Fixed at the close on {date}; never changed after",
      "disclosure.digest_pending": "When the campaign closes, its ledger digest will be published here: a SHA-256 hash chain over every settled gift that anyone holding the ledger export can check for themselves.",
      "disclosure.digest_what": "The ledger digest is a SHA-256 hash chain computed, in order, over every settled gift of this campaign, and fixed when the campaign closed. Changing any gift's record, or adding or removing a gift, gives a completely different digest.",
      "disclosure.digest_check": "Anyone holding the ledger export can compute it again: if the result matches the digest here, the export holds exactly the accounts fixed at the close.",
      "disclosure.digest_algo": "Algorithm: livefund-ledger-v1, documented in the project README.",
      "disclosure.copy": "Copy",
      "disclosure.copied": "Copied",
      "disclosure.copied_status": "The ledger digest is on your clipboard.",
      "disclosure.copy_failed": "Couldn't copy automatically; the digest is selected for you to copy.",
      "disclosure.adjustments": "Adjustments after the close",
      "disclosure.adjustments_count": "Refunds",
      "disclosure.adjustments_amount": "Amount refunded",
      "disclosure.adjustments_note": "After the close, some gifts were returned to their donors. These refunds don't change the digest fixed at the close, but they are included in “Refunded” and “Net raised” above, and any matching of those gifts is taken back from “Matched by the sponsor”.",
      "disclosure.privacy": "This page publishes totals only: no donor's name, message or id appears on it.",

      "give.title": "Give · livefund",
      "give.streamer": "Streaming: {name}",
      "give.confirmed_of_goal": "{confirmed} raised of {goal}",
      "give.confirmed_only": "{confirmed} raised",
      "give.amount": "Amount",
      "give.custom": "Other amount",
      "give.custom_placeholder": "e.g. 88.88",
      "give.range_hint": "From {min} to {max} per gift",
      "give.area": "Program area",
      "give.name": "Your name (optional)",
      "give.name_placeholder": "Shown on the stream",
      "give.anonymous": "Give anonymously",
      "give.anonymous_hint": "Your name won't appear anywhere public.",
      "give.message": "Message (optional)",
      "give.message_placeholder": "A few words for the children…",
      "give.where.area": "Your gift goes to {fund}, run by {charity}, for {area}.",
      "give.where.unrestricted": "Your gift goes to {fund}, run by {charity}, where it is needed most.",
      "give.where.matching": "{sponsor} adds {ratio}% on top while the matching pool lasts.",
      "give.submit": "Give",
      "give.submit_amount": "Give {amount}",
      "give.sending": "Sending…",
      "give.fineprint": "You'll pay on the next page. A pledge that isn't paid in time lapses by itself and nothing is charged.",
      "give.not_found_title": "We couldn't find this stream",
      "give.not_found_body": "The link may be wrong, or the stream no longer exists.",
      "give.not_live.scheduled": "This campaign hasn't started yet; giving opens {date}.",
      "give.not_live.ended": "This campaign has ended. Thank you to everyone who gave.",
      "give.not_live.closed": "This campaign is closed and its accounts are final; it no longer takes gifts.",

      "pledge.title.pending": "Pledge received",
      "pledge.title.confirmed": "Thank you!",
      "pledge.title.failed": "Payment not completed",
      "pledge.title.expired": "Time ran out",
      "pledge.title.refunded": "Refunded",
      "pledge.text.pending": "Please complete the payment on the checkout page; this updates by itself once you've paid.",
      "pledge.text.confirmed": "Your {amount} has arrived and will go to {purpose}. The children will feel the warmth.",
      "pledge.text.failed": "The payment didn't succeed and nothing was charged. You can try again.",
      "pledge.text.expired": "This pledge wasn't paid in time and has lapsed; nothing was charged.",
      "pledge.text.refunded": "This gift has been refunded.",
      "pledge.purpose.area": "{area}",
      "pledge.purpose.unrestricted": "wherever the fund needs it most",
      "pledge.expires": "Please pay before {time}",
      "pledge.pay_now": "Pay now",
      "pledge.again": "Give again",

      "st.pending": "Awaiting payment",
      "st.confirmed": "Paid",
      "st.failed": "Failed",
      "st.expired": "Expired",
      "st.refunded": "Refunded",

      "err.invalid_request": "Something in the form isn't right. Please check it and try again.",
      "err.invalid_request.amount": "Please enter a valid amount.",
      "err.invalid_request.currency": "The currency isn't right; please reload the page and try again.",
      "err.invalid_request.donor_name": "Names can be at most 32 characters.",
      "err.invalid_request.message": "Messages can be at most 140 characters.",
      "err.invalid_request.designation": "Please choose a valid program area.",
      "err.invalid_request.donor_ref": "Your browser's id isn't valid; please reload the page and try again.",
      "err.invalid_request.idempotency_key": "That submission couldn't be identified; please submit again.",
      "err.amount_out_of_range": "The amount must be between {min} and {max}.",
      "err.amount_required": "Please choose or enter an amount.",
      "err.amount_format": "Please enter an amount like 12 or 12.34.",
      "err.amount_decimals": "Amounts can have at most two decimal places.",
      "err.currency_mismatch": "That currency doesn't match this campaign; please reload the page and try again.",
      "err.unknown_designation": "That program area doesn't exist; please choose another.",
      "err.campaign_not_live": "This campaign isn't taking gifts right now.",
      "err.campaign_closed": "This campaign is closed and no longer takes gifts.",
      "err.idempotency_conflict": "This submission clashes with an earlier one; please submit again.",
      "err.rate_limited": "That's a lot of requests at once — please wait a moment and try again.",
      "err.payload_too_large": "That was too long; please shorten your message and try again.",
      "err.unavailable": "The service is busy right now; please try again shortly.",
      "err.not_found": "We couldn't find that.",
      "err.forbidden": "This page isn't allowed to do that.",
      "err.generic": "Something went wrong; please try again later.",

      "overlay.title": "Stream overlay · livefund",
      "overlay.goal_title": "Stream goal",
      "overlay.goal": "Goal",
      "overlay.confirmed": "Received",
      "overlay.matched": "Matched",
      "overlay.pledged": "Pledged",
      "overlay.raised": "Raised",
      "overlay.top": "Top donors",
      "overlay.top_empty": "Waiting for the first gift",
      "overlay.gave": "gave",
      "overlay.for_area": "for {area}",
      "overlay.matched_by": "+{amount} matched by {sponsor}",
      "overlay.matched_plain": "+{amount} matched",
      "overlay.test": "TEST",
      "overlay.summary": "{count} more gifts",
      "overlay.milestone.stream": "{reached}% of the stream goal reached!",
      "overlay.milestone.campaign": "{reached}% of the campaign goal reached!",
      "overlay.reconnecting": "Reconnecting…",
      "overlay.not_found": "No such stream: {stream}",

      "checkout.title": "Sandbox checkout · livefund",
      "checkout.banner": "Sandbox checkout · for testing only, no money is charged",
      "checkout.heading": "Confirm payment",
      "checkout.campaign": "Campaign",
      "checkout.stream": "Stream",
      "checkout.area": "Program area",
      "checkout.status": "Status",
      "checkout.pay": "Pay",
      "checkout.fail": "Simulate failure",
      "checkout.back": "Back to the giving page",
      "checkout.not_found_title": "We couldn't find this pledge",
      "checkout.not_found_body": "The link may be out of date; please pledge again from the giving page.",
      "checkout.not_pending": "This pledge is no longer awaiting payment; nothing more to do.",
      "outcome.gift": "Paid — the gift is recorded.",
      "outcome.failed": "Failure simulated; nothing was charged.",
      "outcome.ignored": "That payment notice had already been handled.",
      "outcome.exception": "The payment was recorded as an exception to reconcile; it isn't counted.",
      "outcome.other": "The payment notice was delivered.",
    },
  };

  // The fund names its program areas in Chinese; these are their English names.
  const AREA_EN = {
    education: "Education support",
    daily_care: "Daily care",
    counselling: "Counselling",
    enrichment: "Enrichment activities",
    social_practice: "Social practice",
    employment: "Career guidance",
  };

  const FINAL_PLEDGE_STATUSES = ["confirmed", "failed", "expired", "refunded"];

  const lang = new URLSearchParams(location.search).get("lang") === "en" ? "en" : "zh";
  const locale = lang === "en" ? "en-GB" : "zh-CN";

  function t(key, vars = {}) {
    const text = DICT[lang][key] ?? DICT.zh[key] ?? key;
    return text.replace(/\{(\w+)\}/g, (whole, name) => (name in vars ? String(vars[name]) : whole));
  }

  function count(n) {
    return n.toLocaleString(locale);
  }

  function plural(key, n) {
    return t(`${key}.${n === 1 ? "one" : "other"}`, { n: count(n) });
  }

  /** Adds `lang=en` to a link when the page is in English; a path stays a path. */
  function withLang(link) {
    if (lang !== "en") return link;
    const url = new URL(link, location.href);
    url.searchParams.set("lang", "en");
    return link.startsWith("/") ? url.pathname + url.search + url.hash : url.href;
  }

  function applyI18n(root = document) {
    if (root === document) {
      document.documentElement.lang = lang === "en" ? "en" : "zh-CN";
    }
    root.querySelectorAll("[data-i18n]").forEach((el) => {
      el.textContent = t(el.dataset.i18n);
    });
    root.querySelectorAll("[data-i18n-placeholder]").forEach((el) => {
      el.placeholder = t(el.dataset.i18nPlaceholder);
    });
    root.querySelectorAll("[data-i18n-label]").forEach((el) => {
      el.setAttribute("aria-label", t(el.dataset.i18nLabel));
    });
    root.querySelectorAll("[data-i18n-title]").forEach((el) => {
      el.title = t(el.dataset.i18nTitle);
    });
    root.querySelectorAll("a[data-href]").forEach((el) => {
      el.setAttribute("href", withLang(el.dataset.href));
    });
  }

  function setUpLanguageSwitch() {
    document.querySelectorAll("a[data-lang]").forEach((link) => {
      const url = new URL(location.href);
      if (link.dataset.lang === "en") url.searchParams.set("lang", "en");
      else url.searchParams.delete("lang");
      link.setAttribute("href", url.pathname + url.search);
      if (link.dataset.lang === lang) link.setAttribute("aria-current", "true");
    });
  }

  /** Integer minor units → "¥1,234.56" (CNY) or "USD 1,234.56"; integer maths only. */
  function money(amount, currency = "CNY") {
    const minor = Math.abs(amount);
    const cents = minor % 100;
    const units = (minor - cents) / 100;
    const grouped = String(units).replace(/\B(?=(\d{3})+(?!\d))/g, ",");
    const text = `${grouped}.${String(cents).padStart(2, "0")}`;
    const sign = amount < 0 ? "-" : "";
    return currency === "CNY" ? `${sign}¥${text}` : `${sign}${currency} ${text}`;
  }

  function currencyMark(currency) {
    return currency === "CNY" ? "¥" : currency;
  }

  /** "12", "12.3", "12.34" (yuan) → {fen}; otherwise {error} naming what is wrong.
      Parsed as text so no binary fraction ever touches the amount. */
  function parseAmount(text) {
    const value = text.trim().replace(/^[¥￥]\s*/, "");
    if (value === "") return { error: "amount_required" };
    const match = /^(\d+)(?:\.(\d*))?$/.exec(value);
    if (!match) return { error: "amount_format" };
    const [, whole, fraction = ""] = match;
    if (fraction.length > 2) return { error: "amount_decimals" };
    const digits = whole.replace(/^0+(?=\d)/, "");
    if (digits.length > 13) return { error: "amount_out_of_range" };
    return { fen: Number(digits) * 100 + Number(fraction.padEnd(2, "0")) };
  }

  function dateTime(iso) {
    return new Date(iso).toLocaleString(locale, { dateStyle: "medium", timeStyle: "short" });
  }

  function time(iso) {
    return new Date(iso).toLocaleTimeString(locale, { hour: "2-digit", minute: "2-digit" });
  }

  function designationName(designation) {
    return lang === "en" ? AREA_EN[designation.code] ?? designation.name : designation.name;
  }

  /** The human text of an error code, in the page's language; `field` names the field of
      an `invalid_request`, `campaign` gives the range of an amount out of it. */
  function errorText(code, { field, campaign } = {}) {
    if (code === "invalid_request" && field && DICT.zh[`err.invalid_request.${field}`]) {
      return t(`err.invalid_request.${field}`);
    }
    if (code === "amount_out_of_range" && campaign) {
      return t("err.amount_out_of_range", {
        min: money(campaign.min_amount, campaign.currency),
        max: money(campaign.max_amount, campaign.currency),
      });
    }
    return DICT.zh[`err.${code}`] ? t(`err.${code}`) : t("err.generic");
  }

  class ApiError extends Error {
    constructor(status, code, field) {
      super(code);
      this.status = status;
      this.code = code;
      this.field = field;
    }
  }

  /** Same-origin JSON call; any failure becomes an ApiError with the server's code. */
  async function api(path, options = {}) {
    let response;
    try {
      response = await fetch(path, { headers: { Accept: "application/json" }, ...options });
    } catch {
      throw new ApiError(0, "unavailable");
    }
    const body = await response.json().catch(() => null);
    if (!response.ok) {
      const error = body?.error ?? {};
      const fallback = response.status === 404 ? "not_found" : "unavailable";
      throw new ApiError(response.status, error.code ?? fallback, error.field);
    }
    return body;
  }

  function randomHex(bytes) {
    const values = crypto.getRandomValues(new Uint8Array(bytes));
    return Array.from(values, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  /** One random id per browser, so the fund can count unique donors without knowing who. */
  function donorRef() {
    const key = "livefund.donor_ref";
    try {
      const kept = localStorage.getItem(key);
      if (kept) return kept;
      const fresh = randomHex(16);
      localStorage.setItem(key, fresh);
      return fresh;
    } catch {
      return randomHex(16);
    }
  }

  function lastPathSegment() {
    const parts = location.pathname.split("/").filter(Boolean);
    return decodeURIComponent(parts[parts.length - 1] ?? "");
  }

  function percentOf(part, goal) {
    if (!goal || goal <= 0) return 0;
    return Math.max(0, Math.min(100, (part * 100) / goal));
  }

  /** Sizes the `[data-part]` segments of a bar; `parts` maps a part name to an amount. */
  function setBar(bar, parts, goal) {
    let total = 0;
    for (const [name, amount] of Object.entries(parts)) {
      const width = Math.min(percentOf(amount, goal), 100 - total);
      total += width;
      bar.querySelector(`[data-part="${name}"]`).style.width = `${width}%`;
    }
    bar.setAttribute("aria-valuenow", String(Math.round(total)));
    bar.setAttribute("aria-valuetext", t("progress.label", { percent: Math.floor(total) }));
  }

  function markReady() {
    document.body.dataset.ready = "1";
  }

  function cloneTemplate(id) {
    const fragment = document.getElementById(id).content.cloneNode(true);
    applyI18n(fragment);
    return fragment.firstElementChild;
  }

  function byTestId(id, root = document) {
    return root.querySelector(`[data-testid="${id}"]`);
  }

  function byRole(role, root = document) {
    return root.querySelector(`[data-role="${role}"]`);
  }

  const PING_EVERY_MS = 10_000;
  const SILENCE_LIMIT_MS = 25_000;
  const FIRST_BACKOFF_MS = 500;
  const MAX_BACKOFF_MS = 5_000;

  /** The stream's live socket: reconnects forever with backoff, pings, and treats a
      socket silent for too long as dropped (a half-open TCP never closes by itself). */
  class LiveSocket {
    constructor(stream, { onFrame, onOpen = () => {}, onDown = () => {}, since = () => null }) {
      this.stream = stream;
      this.onFrame = onFrame;
      this.onOpen = onOpen;
      this.onDown = onDown;
      this.since = since;
      this.backoff = FIRST_BACKOFF_MS;
      this.ws = null;
    }

    start() {
      this.connect();
    }

    get open() {
      return this.ws?.readyState === WebSocket.OPEN;
    }

    send(frame) {
      if (!this.open) return false;
      this.ws.send(JSON.stringify(frame));
      return true;
    }

    connect() {
      const scheme = location.protocol === "https:" ? "wss" : "ws";
      const seq = this.since();
      const query = seq == null ? "" : `?since=${seq}`;
      const ws = new WebSocket(
        `${scheme}://${location.host}/api/v1/streams/${encodeURIComponent(this.stream)}/live${query}`,
      );
      this.ws = ws;
      ws.onopen = () => this.opened(ws);
      ws.onmessage = (event) => this.received(ws, event.data);
      ws.onclose = () => this.lost(ws);
      this.heard();
    }

    opened(ws) {
      if (ws !== this.ws) return;
      this.pinger = setInterval(() => this.send({ type: "ping" }), PING_EVERY_MS);
      this.onOpen();
    }

    received(ws, text) {
      if (ws !== this.ws) return;
      this.heard();
      this.backoff = FIRST_BACKOFF_MS;
      let frame;
      try {
        frame = JSON.parse(text);
      } catch {
        return;
      }
      if (frame.type !== "pong") this.onFrame(frame);
    }

    heard() {
      clearTimeout(this.watchdog);
      this.watchdog = setTimeout(() => this.abandon(), SILENCE_LIMIT_MS);
    }

    abandon() {
      const ws = this.ws;
      this.lost(ws);
      ws?.close();
    }

    lost(ws) {
      if (ws !== this.ws) return;
      this.ws = null;
      clearInterval(this.pinger);
      clearTimeout(this.watchdog);
      this.onDown();
      setTimeout(() => this.connect(), this.backoff);
      this.backoff = Math.min(this.backoff * 2, MAX_BACKOFF_MS);
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    applyI18n();
    setUpLanguageSwitch();
  });

  return {
    t,
    count,
    plural,
    withLang,
    money,
    currencyMark,
    parseAmount,
    dateTime,
    time,
    designationName,
    errorText,
    api,
    randomHex,
    donorRef,
    lastPathSegment,
    setBar,
    markReady,
    cloneTemplate,
    byTestId,
    byRole,
    LiveSocket,
    FINAL_PLEDGE_STATUSES,
  };
})();
