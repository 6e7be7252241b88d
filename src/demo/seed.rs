//! The demo's seed: the 慈爱助孤 fund with its six program areas, one live campaign
//! with a goal and sponsor matching, and three streams. Seeding twice changes nothing.

use sqlx::PgPool;

use crate::catalog::{
    self, CatalogError, ModerationKey, NewCampaign, NewDesignation, NewFund, NewStream,
};
use crate::domain::{
    CampaignWindow, Currency, DesignationCode, Invalid, MatchingTerms, Money, Slug,
};

pub const FUND: &str = "ciai-zhugu";
pub const CAMPAIGN: &str = "warm-winter-2026";
pub const STREAMS: [&str; 3] = ["xiangxi-live-01", "liangshan-live-02", "nujiang-live-03"];

/// The fund's program areas: code and name.
pub const DESIGNATIONS: [(&str, &str); 6] = [
    ("education", "教育助学"),
    ("daily_care", "生活照料"),
    ("counselling", "心理疏导"),
    ("enrichment", "兴趣拓展"),
    ("social_practice", "社会实践"),
    ("employment", "就业指导"),
];

/// What the seed created or found.
pub struct Seeded {
    pub campaign: String,
    pub streams: Vec<String>,
}

fn plan() -> Result<(NewFund, NewCampaign, Vec<NewStream>), Invalid> {
    let designations = DESIGNATIONS
        .iter()
        .map(|(code, name)| {
            Ok(NewDesignation {
                code: DesignationCode::parse("code", code)?,
                name: (*name).to_owned(),
            })
        })
        .collect::<Result<_, Invalid>>()?;
    let fund = NewFund {
        slug: Slug::parse("fund", FUND)?,
        name: "慈爱助孤基金".into(),
        charity: "慈爱助孤公益联合会".into(),
        designations,
    };
    let campaign = NewCampaign {
        slug: Slug::parse("campaign", CAMPAIGN)?,
        fund: fund.slug.clone(),
        title: "温暖冬日 · 为孤困儿童直播募捐".into(),
        currency: Currency::CNY,
        goal: Money::positive("goal", 50_000_000)?,
        min_amount: Money::positive("min_amount", 100)?,
        max_amount: Money::positive("max_amount", 5_000_000)?,
        window: CampaignWindow::new(None, None)?,
        matching: Some(MatchingTerms::new(
            "暖阳科技有限公司".into(),
            100,
            Money::positive("cap", 10_000_000)?,
        )?),
    };
    let streamers = ["湘西支教小队", "凉山公益主播", "怒江守望者"];
    let goals = [5_000_000, 3_000_000, 2_000_000];
    let streams = STREAMS
        .iter()
        .zip(streamers)
        .zip(goals)
        .map(|((slug, streamer), goal)| {
            Ok(NewStream {
                slug: Slug::parse("stream", slug)?,
                streamer: streamer.into(),
                goal: Some(Money::positive("goal", goal)?),
            })
        })
        .collect::<Result<_, Invalid>>()?;
    Ok((fund, campaign, streams))
}

fn existing_is_fine<T>(result: Result<T, CatalogError>) -> Result<(), CatalogError> {
    match result {
        Ok(_) | Err(CatalogError::AlreadyExists(_)) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Creates what is missing of the demo's fund, campaign and streams.
pub async fn seed(db: &PgPool) -> anyhow::Result<Seeded> {
    let (fund, campaign, streams) = plan()?;
    existing_is_fine(catalog::create_fund(db, &fund).await)?;
    existing_is_fine(catalog::create_campaign(db, &campaign).await)?;
    let stored = catalog::campaign_by_slug(db, &campaign.slug)
        .await?
        .ok_or_else(|| anyhow::anyhow!("the seeded campaign is missing"))?;
    for stream in &streams {
        // The streamers' keys are not needed in the demo: the operator token works too.
        let key = ModerationKey::generate();
        existing_is_fine(catalog::create_stream(db, stored.id, stream, &key).await)?;
    }
    Ok(Seeded {
        campaign: campaign.slug.to_string(),
        streams: streams.iter().map(|s| s.slug.to_string()).collect(),
    })
}
