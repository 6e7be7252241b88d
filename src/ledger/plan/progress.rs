//! Confirmed totals against their goals: a rise past 25, 50, 75 or 100 % of a goal, for
//! the first time, is a milestone.

use super::{Effect, Known, NewMilestone, Plan, Progress};

/// The milestones, in percent of a goal.
pub const MILESTONES: [i32; 4] = [25, 50, 75, 100];

/// Adds `delta` to the confirmed totals of a stream and of its campaign, and records the
/// milestones this reaches: the stream's first, then the campaign's.
pub(super) fn confirmed(
    known: &mut Known,
    plan: &mut Plan,
    campaign: i64,
    stream: i64,
    delta: i64,
) {
    if let Some(progress) = known.streams.get_mut(&stream) {
        for reached in rise(progress, delta) {
            milestone(plan, campaign, Some(stream), reached);
        }
    }
    if let Some(facts) = known.campaigns.get_mut(&campaign) {
        for reached in rise(&mut facts.progress, delta) {
            milestone(plan, campaign, None, reached);
        }
    }
}

fn milestone(plan: &mut Plan, campaign_id: i64, stream_id: Option<i64>, reached: i32) {
    plan.effects.push(Effect::Milestone(plan.milestones.len()));
    plan.milestones.push(NewMilestone {
        campaign_id,
        stream_id,
        reached,
    });
}

/// The milestones a total passes, for the first time, as it changes by `delta`.
fn rise(progress: &mut Progress, delta: i64) -> Vec<i32> {
    progress.confirmed += delta;
    let Some(goal) = progress.goal.filter(|g| *g > 0) else {
        return Vec::new();
    };
    if delta <= 0 {
        return Vec::new();
    }
    let total = i128::from(progress.confirmed) * 100;
    let passed: Vec<i32> = MILESTONES
        .into_iter()
        .filter(|pct| !progress.reached.contains(pct))
        .filter(|pct| total >= i128::from(goal) * i128::from(*pct))
        .collect();
    progress.reached.extend(&passed);
    passed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn progress(goal: i64, confirmed: i64, reached: &[i32]) -> Progress {
        Progress {
            goal: Some(goal),
            confirmed,
            reached: reached.iter().copied().collect(),
        }
    }

    #[test]
    fn a_rise_passes_each_milestone_once() {
        let mut p = progress(1000, 0, &[]);
        assert_eq!(rise(&mut p, 600), [25, 50]);
        assert_eq!(
            rise(&mut p, -400),
            Vec::<i32>::new(),
            "a fall reaches nothing"
        );
        assert_eq!(
            rise(&mut p, 300),
            Vec::<i32>::new(),
            "25 and 50 were reached before"
        );
        assert_eq!(rise(&mut p, 500), [75, 100]);
        assert_eq!(p.confirmed, 1000);
    }

    #[test]
    fn reached_milestones_and_missing_goals_stay_quiet() {
        let mut p = progress(1000, 0, &[25, 50, 75, 100]);
        assert!(rise(&mut p, 5000).is_empty());
        let mut none = Progress::default();
        assert!(rise(&mut none, 5000).is_empty());
        let mut exact = progress(400, 99, &[]);
        assert_eq!(rise(&mut exact, 1), [25], "exactly a quarter");
    }
}
