//! What a scenario found: named figures, each maybe against a baseline from the same run,
//! printed as a table and written as JSON; several runs reduced to their median.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Latencies in microseconds, from 1 µs to 10 minutes.
pub struct Latency(Histogram<u64>);

impl Latency {
    pub fn new() -> Latency {
        Latency(Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds"))
    }

    pub fn record(&mut self, took: Duration) {
        let micros = took.as_micros().clamp(1, 600_000_000) as u64;
        self.0.saturating_record(micros);
    }

    pub fn add(&mut self, other: &Latency) {
        let _ = self.0.add(&other.0);
    }

    pub fn count(&self) -> u64 {
        self.0.len()
    }

    /// The `q` quantile (0.5, 0.99) in milliseconds; 0 when nothing was recorded.
    pub fn ms(&self, q: f64) -> f64 {
        if self.0.is_empty() {
            return 0.0;
        }
        self.0.value_at_quantile(q) as f64 / 1000.0
    }
}

impl Default for Latency {
    fn default() -> Self {
        Latency::new()
    }
}

/// One figure: livefund's value, and the baseline's when the scenario has one.
#[derive(Debug, Clone, Serialize)]
pub struct Figure {
    pub name: String,
    pub unit: String,
    pub value: f64,
    pub baseline: Option<f64>,
    /// Whether a larger value is the better one (throughput) or the worse (latency, cost).
    pub higher_is_better: bool,
}

impl Figure {
    /// livefund's value over the baseline's.
    pub fn ratio(&self) -> Option<f64> {
        self.baseline.filter(|b| *b != 0.0).map(|b| self.value / b)
    }
}

/// A scenario's figures and notes from one run.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Report {
    pub scenario: String,
    pub figures: Vec<Figure>,
    pub notes: Vec<String>,
}

impl Report {
    pub fn new(scenario: &str) -> Report {
        Report {
            scenario: scenario.to_owned(),
            ..Report::default()
        }
    }

    /// A figure with no baseline.
    pub fn figure(&mut self, name: &str, unit: &str, value: f64) {
        self.push(name, unit, value, None, true);
    }

    /// A throughput against its baseline.
    pub fn faster(&mut self, name: &str, unit: &str, value: f64, baseline: f64) {
        self.push(name, unit, value, Some(baseline), true);
    }

    /// A cost (time, CPU, memory) against its baseline.
    pub fn cheaper(&mut self, name: &str, unit: &str, value: f64, baseline: f64) {
        self.push(name, unit, value, Some(baseline), false);
    }

    fn push(&mut self, name: &str, unit: &str, value: f64, baseline: Option<f64>, higher: bool) {
        self.figures.push(Figure {
            name: name.to_owned(),
            unit: unit.to_owned(),
            value,
            baseline,
            higher_is_better: higher,
        });
    }

    pub fn note(&mut self, text: impl Into<String>) {
        self.notes.push(text.into());
    }

    /// The median of each figure over `runs` (figures matched by name); notes of every run.
    pub fn median(runs: &[Report]) -> Report {
        let Some(first) = runs.first() else {
            return Report::default();
        };
        let mut out = Report::new(&first.scenario);
        for figure in &first.figures {
            let same: Vec<&Figure> = runs
                .iter()
                .filter_map(|r| r.figures.iter().find(|f| f.name == figure.name))
                .collect();
            let value = median(same.iter().map(|f| f.value).collect());
            let baselines: Vec<f64> = same.iter().filter_map(|f| f.baseline).collect();
            out.figures.push(Figure {
                value,
                baseline: (!baselines.is_empty()).then(|| median(baselines)),
                ..figure.clone()
            });
        }
        for (i, run) in runs.iter().enumerate() {
            for note in &run.notes {
                out.notes.push(format!("run {}: {note}", i + 1));
            }
        }
        out
    }

    /// The report as a Markdown table, as BENCHMARKS.md holds it.
    pub fn table(&self) -> String {
        let mut out = format!(
            "### {}\n\n| figure | livefund | baseline | ratio |\n|---|---:|---:|---:|\n",
            self.scenario
        );
        for f in &self.figures {
            let baseline = f
                .baseline
                .map(|b| format!("{} {}", number(b), f.unit))
                .unwrap_or_else(|| "–".into());
            let ratio = f
                .ratio()
                .map(|r| format!("{r:.2}×"))
                .unwrap_or_else(|| "–".into());
            out.push_str(&format!(
                "| {} | {} {} | {baseline} | {ratio} |\n",
                f.name,
                number(f.value),
                f.unit
            ));
        }
        for note in &self.notes {
            out.push_str(&format!("\n- {note}"));
        }
        out.push('\n');
        out
    }

    /// Writes `runs` and their median as JSON into `folder`, named by scenario and time.
    pub fn write(folder: &Path, runs: &[Report], median: &Report) -> anyhow::Result<String> {
        std::fs::create_dir_all(folder)?;
        #[derive(Serialize)]
        struct Written<'a> {
            scenario: &'a str,
            finished_at: String,
            machine: BTreeMap<&'static str, String>,
            median: &'a Report,
            runs: &'a [Report],
        }
        let finished_at = chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string();
        let path = folder.join(format!("{}-{finished_at}.json", median.scenario));
        let written = Written {
            scenario: &median.scenario,
            finished_at,
            machine: machine(),
            median,
            runs,
        };
        std::fs::write(&path, serde_json::to_vec_pretty(&written)?)?;
        Ok(path.display().to_string())
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    }
}

/// A figure rounded for reading: three significant digits, thousands kept whole.
fn number(value: f64) -> String {
    let magnitude = value.abs();
    if magnitude >= 1000.0 {
        format!("{value:.0}")
    } else if magnitude >= 100.0 {
        format!("{value:.1}")
    } else if magnitude >= 1.0 {
        format!("{value:.2}")
    } else {
        format!("{value:.3}")
    }
}

/// What the figures were measured on.
fn machine() -> BTreeMap<&'static str, String> {
    let mut out = BTreeMap::new();
    let cpu = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpu
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).to_owned())
        .unwrap_or_default();
    out.insert("cpu", model);
    out.insert(
        "cores",
        std::thread::available_parallelism()
            .map(|n| n.get().to_string())
            .unwrap_or_default(),
    );
    let mem = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    out.insert("memory", mem.lines().next().unwrap_or_default().to_owned());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_runs_takes_each_figure_and_baseline_apart() {
        let run = |value: f64, baseline: f64| {
            let mut r = Report::new("x");
            r.faster("rate", "/s", value, baseline);
            r
        };
        let m = Report::median(&[run(3.0, 10.0), run(1.0, 30.0), run(2.0, 20.0)]);
        assert_eq!(m.figures[0].value, 2.0);
        assert_eq!(m.figures[0].baseline, Some(20.0));
        assert_eq!(m.figures[0].ratio(), Some(0.1));
    }

    #[test]
    fn latency_quantiles_are_in_milliseconds() {
        let mut l = Latency::new();
        for ms in 1..=100 {
            l.record(Duration::from_millis(ms));
        }
        assert!((l.ms(0.5) - 50.0).abs() < 0.5);
        assert!((l.ms(0.99) - 99.0).abs() < 0.5);
    }
}
