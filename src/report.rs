//! What a person sees: logs, progress bars, the plan and the end-of-run summary.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use xlvlm_dag::{NodeReport, Observer, Outcome, Plan, PlanNode, Status};
use xlvlm_store::Column;

pub fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}

/// A progress bar over the stages that run (hidden when stderr is not a terminal).
pub struct Progress {
    bar: ProgressBar,
}

impl Progress {
    pub fn new(total: usize) -> Progress {
        let bar = if total == 0 {
            ProgressBar::hidden()
        } else {
            ProgressBar::new(total as u64)
        };
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} {msg}",
            )
            .expect("valid template"),
        );
        bar.enable_steady_tick(Duration::from_millis(120));
        Progress { bar }
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

impl Observer for Progress {
    fn started(&self, node: &PlanNode, _index: usize, _total: usize) {
        self.bar
            .set_message(format!("{} ({})", node.label, node.kind));
    }

    fn waiting_for_lock(&self, node: &PlanNode) {
        self.bar
            .set_message(format!("{}: waiting for another xlvlm process", node.label));
    }

    fn finished(&self, report: &NodeReport) {
        if report.outcome != Outcome::Cached {
            self.bar.inc(1);
        }
    }
}

pub fn print_plan(plan: &Plan, statuses: &[Status]) {
    let width = plan
        .nodes
        .iter()
        .map(|n| n.label.len())
        .max()
        .unwrap_or(5)
        .max(5);
    println!(
        "{:<8} {:<10} {:<width$} {:<12} why",
        "status", "kind", "stage", "key"
    );
    for (n, s) in plan.nodes.iter().zip(statuses) {
        let (status, why) = match s {
            Status::Cached => ("cached", String::new()),
            Status::New => ("run", "never run".to_string()),
            Status::Stale(r) => ("run", r.join("; ")),
            Status::Missing => (
                "run",
                "output missing (removed, or an interrupted run to resume)".to_string(),
            ),
            Status::Forced => ("run", "--force".to_string()),
        };
        println!(
            "{status:<8} {:<10} {:<width$} {:<12} {why}",
            n.kind.name(),
            n.label,
            n.key.short()
        );
    }
    let to_run = statuses.iter().filter(|s| s.will_run()).count();
    println!("{} to run, {} cached", to_run, statuses.len() - to_run);
}

pub fn print_summary(reports: &[NodeReport]) {
    if reports.is_empty() {
        return;
    }
    let ran = reports
        .iter()
        .filter(|r| r.outcome != Outcome::Cached)
        .count();
    if ran == 0 {
        println!("all {} stages cached; nothing to run", reports.len());
        return;
    }
    let width = reports
        .iter()
        .map(|r| r.label.len())
        .max()
        .unwrap_or(5)
        .max(5);
    println!(
        "{:<width$} {:<10} {:<8} {:>10} {:>9}",
        "stage", "kind", "", "rows", "time"
    );
    for r in reports {
        let outcome = match r.outcome {
            Outcome::Cached => "cached",
            Outcome::Ran => "ran",
            Outcome::RanElsewhere => "shared",
        };
        let rows = r.rows.map_or("-".to_string(), |n| n.to_string());
        println!(
            "{:<width$} {:<10} {outcome:<8} {rows:>10} {:>8.2}s",
            r.label, r.kind, r.seconds
        );
    }
    let secs: f64 = reports.iter().map(|r| r.seconds).sum();
    println!(
        "{ran} ran, {} cached, {secs:.2}s of stage time",
        reports.len() - ran
    );
}

/// One cell of a table preview.
pub fn cell(c: &Column, r: usize) -> String {
    match c {
        Column::Utf8(v) => {
            let s = &v[r];
            if s.chars().count() > 32 {
                format!("{}…", s.chars().take(31).collect::<String>())
            } else {
                s.clone()
            }
        }
        Column::Int64(v) => v[r].to_string(),
        Column::Float64(v) => format!("{:.6}", v[r]),
        Column::Bool(v) => v[r].to_string(),
        Column::Vector { dim, values, .. } => {
            let row = &values[r * dim..(r + 1) * dim];
            let head: Vec<String> = row.iter().take(4).map(|x| format!("{x:.4}")).collect();
            if *dim > 4 {
                format!("[{}, …]", head.join(", "))
            } else {
                format!("[{}]", head.join(", "))
            }
        }
    }
}

pub fn bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 30 => format!("{:.1} GiB", n as f64 / (1u64 << 30) as f64),
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / (1u64 << 20) as f64),
        n if n >= 1 << 10 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{n} B"),
    }
}
