//! Turns the raw rows of a run into `latest.md` and one SVG chart per
//! scenario.
//!
//! Raw rows (tab-separated): `scenario target figure unit better round
//! value`, where `better` is `higher` or `lower` and `value` is a number or
//! `NA:<reason>` for a figure that could not be measured. `meta.txt` holds
//! `key: value` lines about the machine and the run, printed verbatim.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context as _;

struct Series {
    scenario: String,
    target: String,
    figure: String,
    unit: String,
    higher_better: bool,
    values: Vec<f64>,
    missing: Option<String>,
}

impl Series {
    fn median(&self) -> Option<f64> {
        median(&self.values)
    }
    fn min(&self) -> Option<f64> {
        self.values.iter().copied().reduce(f64::min)
    }
    fn max(&self) -> Option<f64> {
        self.values.iter().copied().reduce(f64::max)
    }
}

fn median(v: &[f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let m = s.len() / 2;
    if s.len() % 2 == 1 {
        s.get(m).copied()
    } else {
        Some((s.get(m - 1)? + s.get(m)?) / 2.0)
    }
}

fn fmt(v: f64) -> String {
    if v.abs() >= 1000.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

fn load(raw: &Path) -> anyhow::Result<Vec<Series>> {
    let text =
        std::fs::read_to_string(raw).with_context(|| format!("reading {}", raw.display()))?;
    let mut out: Vec<Series> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let f: Vec<&str> = line.split('\t').collect();
        let [scenario, target, figure, unit, better, _round, value] = f.as_slice() else {
            anyhow::bail!(
                "{}:{}: expected 7 tab-separated fields",
                raw.display(),
                i + 1
            );
        };
        let idx = match out
            .iter()
            .position(|s| s.scenario == *scenario && s.target == *target && s.figure == *figure)
        {
            Some(i) => i,
            None => {
                out.push(Series {
                    scenario: (*scenario).into(),
                    target: (*target).into(),
                    figure: (*figure).into(),
                    unit: (*unit).into(),
                    higher_better: *better == "higher",
                    values: Vec::new(),
                    missing: None,
                });
                out.len() - 1
            }
        };
        let Some(s) = out.get_mut(idx) else { continue };
        if let Some(reason) = value.strip_prefix("NA:") {
            s.missing = Some(reason.to_string());
        } else {
            let v: f64 = value
                .parse()
                .with_context(|| format!("{}:{}: value {value:?}", raw.display(), i + 1))?;
            s.values.push(v);
        }
    }
    Ok(out)
}

fn find<'a>(all: &'a [Series], scenario: &str, figure: &str, target: &str) -> Option<&'a Series> {
    all.iter()
        .find(|s| s.scenario == scenario && s.figure == figure && s.target == target)
}

fn ratio(all: &[Series], s: &Series, base: &str) -> String {
    match (
        find(all, &s.scenario, &s.figure, base).and_then(Series::median),
        s.median(),
    ) {
        (Some(b), Some(v)) if b != 0.0 => format!("{:.2}×", v / b),
        _ => "—".into(),
    }
}

/// One goal of issue 9, checked against the medians (reported, never asserted).
struct Goal {
    text: &'static str,
    scenario: &'static str,
    figure: &'static str,
    target: &'static str,
    base: &'static str,
    /// ratio must be ≥ this (or ≤ when `at_most`)
    bound: f64,
    at_most: bool,
}

const GOALS: &[Goal] = &[
    Goal {
        text: "gateway vs nginx, HTTP/1.1 keep-alive req/s ≥ 1.3×",
        scenario: "h1-keepalive",
        figure: "requests/s",
        target: "ward",
        base: "nginx",
        bound: 1.3,
        at_most: false,
    },
    Goal {
        text: "gateway vs nginx, new mTLS handshakes/s ≥ 1.5×",
        scenario: "handshake",
        figure: "full handshakes/s (ward-bench load)",
        target: "ward",
        base: "nginx",
        bound: 1.5,
        at_most: false,
    },
    Goal {
        text: "gateway vs nginx, p99 at a fixed rate ≤ 1×",
        scenario: "fixed-rate",
        figure: "p99 ms",
        target: "ward",
        base: "nginx",
        bound: 1.0,
        at_most: true,
    },
    Goal {
        text: "gateway vs nginx, memory per idle connection ≤ 1/3",
        scenario: "idle-memory",
        figure: "bytes/connection",
        target: "ward",
        base: "nginx",
        bound: 1.0 / 3.0,
        at_most: true,
    },
    Goal {
        text: "gateway vs direct, HTTP/1.1 keep-alive req/s ≥ 0.7×",
        scenario: "h1-keepalive",
        figure: "requests/s",
        target: "ward",
        base: "direct",
        bound: 0.7,
        at_most: false,
    },
    Goal {
        text: "CA issuance (log on) ≥ 80 % of raw HSM sign rate (2 sessions)",
        scenario: "ca",
        figure: "",
        target: "issue-log-on",
        base: "hsm-sign-2s",
        bound: 0.8,
        at_most: false,
    },
    Goal {
        text: "policy: median evaluation ≤ 1 µs (1000 ns) at 10,000 statements (allowed request)",
        scenario: "policy",
        figure: "allow 10000",
        target: "ward-policy",
        base: "",
        bound: 1000.0,
        at_most: true,
    },
    Goal {
        text: "policy: ≥ 3× faster than cedar-policy at 10,000 statements (cedar time / ward time)",
        scenario: "policy",
        figure: "allow 10000",
        target: "cedar",
        base: "ward-policy",
        bound: 3.0,
        at_most: false,
    },
];

fn goal_line(all: &[Series], g: &Goal) -> String {
    let get = |t: &str| {
        all.iter()
            .find(|s| {
                s.scenario == g.scenario
                    && s.target == t
                    && (g.figure.is_empty() || s.figure == g.figure)
            })
            .and_then(Series::median)
    };
    if g.base.is_empty() {
        return match get(g.target) {
            Some(v) => {
                let met = if g.at_most {
                    v <= g.bound
                } else {
                    v >= g.bound
                };
                format!(
                    "| {} | {} | {} |\n",
                    g.text,
                    fmt(v),
                    if met { "met" } else { "not met" }
                )
            }
            None => format!("| {} | — | not measured |\n", g.text),
        };
    }
    match (get(g.target), get(g.base)) {
        (Some(v), Some(b)) if b != 0.0 => {
            let r = v / b;
            let met = if g.at_most {
                r <= g.bound
            } else {
                r >= g.bound
            };
            format!(
                "| {} | {:.2}× | {} |\n",
                g.text,
                r,
                if met { "met" } else { "not met" }
            )
        }
        _ => format!("| {} | — | not measured |\n", g.text),
    }
}

/// The best keep-alive ratio to nginx that ward could reach on this run's
/// topology if its own user-space work cost nothing: nginx's whole server
/// CPU per request divided by what ward's requests cost the kernel and the
/// upstream. Why report it: with proxy and upstream sharing the server
/// CPUs, throughput is the inverse of CPU per request, and the kernel's
/// loopback TCP work and the upstream's parsing are paid by every proxy, so
/// a goal above this bound cannot be met by optimising ward alone.
fn cpu_bound(all: &[Series]) -> String {
    let get = |t: &str, f: &str| find(all, "h1-keepalive", f, t).and_then(Series::median);
    let total = "server CPU µs/request (proxy + upstream)";
    match (
        get("nginx", total),
        get("ward", "proxy kernel CPU µs/request"),
        get("ward", "upstream CPU µs/request"),
    ) {
        (Some(n), Some(k), Some(u)) if k + u > 0.0 => format!(
            "| bound, not a goal: ward vs nginx HTTP/1.1 keep-alive req/s if ward's user-space CPU were zero (nginx server CPU ÷ (ward's kernel + upstream CPU) per request) | {:.2}× | — |\n",
            n / (k + u)
        ),
        _ => String::new(),
    }
}

const COLORS: &[(&str, &str)] = &[
    ("direct", "#7f7f7f"),
    ("ward", "#1f77b4"),
    ("nginx", "#2ca02c"),
    ("haproxy", "#ff7f0e"),
    ("ward-policy", "#1f77b4"),
    ("cedar", "#2ca02c"),
    ("issue-log-on", "#1f77b4"),
    ("issue-log-off", "#aec7e8"),
];

fn color(target: &str, i: usize) -> &'static str {
    const OTHERS: &[&str] = &[
        "#ff7f0e", "#9467bd", "#8c564b", "#d62728", "#17becf", "#bcbd22",
    ];
    COLORS
        .iter()
        .find(|(t, _)| *t == target)
        .map(|(_, c)| *c)
        .unwrap_or_else(|| OTHERS.get(i % OTHERS.len()).copied().unwrap_or("#333"))
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A hand-written SVG: one panel per figure, a bar per target at the
/// median with a min–max whisker.
fn svg(scenario: &str, series: &[&Series]) -> String {
    let mut figures: Vec<&str> = Vec::new();
    for s in series {
        if !figures.contains(&s.figure.as_str()) {
            figures.push(&s.figure);
        }
    }
    let (w, label_w, bar_h, gap) = (760.0, 170.0, 22.0, 6.0);
    let plot_w = w - label_w - 110.0;
    let mut y = 40.0;
    let mut body = String::new();
    for fig in &figures {
        let rows: Vec<&&Series> = series.iter().filter(|s| s.figure == *fig).collect();
        let top = rows
            .iter()
            .filter_map(|s| s.max())
            .fold(0.0_f64, f64::max)
            .max(f64::MIN_POSITIVE);
        let better = if rows.first().is_some_and(|s| s.higher_better) {
            "higher is better"
        } else {
            "lower is better"
        };
        let _ = writeln!(
            body,
            "<text x=\"10\" y=\"{y}\" font-weight=\"bold\">{} <tspan font-weight=\"normal\" fill=\"#555\">({better}; bar = median, line = min–max)</tspan></text>",
            esc(fig)
        );
        y += 10.0;
        for (i, s) in rows.iter().enumerate() {
            let yb = y;
            let _ = writeln!(
                body,
                "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>",
                label_w - 8.0,
                yb + bar_h * 0.7,
                esc(&s.target)
            );
            match (s.median(), s.min(), s.max()) {
                (Some(m), Some(lo), Some(hi)) => {
                    let x = |v: f64| label_w + plot_w * (v / top);
                    let _ = write!(
                        body,
                        "<rect x=\"{label_w}\" y=\"{yb}\" width=\"{:.1}\" height=\"{bar_h}\" fill=\"{}\"/>\n\
                         <line x1=\"{:.1}\" x2=\"{:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"#000\" stroke-width=\"1.5\"/>\n\
                         <text x=\"{:.1}\" y=\"{:.1}\">{} {}</text>\n",
                        (x(m) - label_w).max(1.0),
                        color(&s.target, i),
                        x(lo),
                        x(hi),
                        yb + bar_h / 2.0,
                        yb + bar_h / 2.0,
                        x(hi) + 6.0,
                        yb + bar_h * 0.7,
                        fmt(m),
                        esc(&s.unit)
                    );
                }
                _ => {
                    let why = s.missing.as_deref().unwrap_or("no data");
                    let _ = writeln!(
                        body,
                        "<text x=\"{}\" y=\"{}\" fill=\"#a00\">not available: {}</text>",
                        label_w + 4.0,
                        yb + bar_h * 0.7,
                        esc(why)
                    );
                }
            }
            y += bar_h + gap;
        }
        y += 24.0;
    }
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{y}\" viewBox=\"0 0 {w} {y}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"#fff\"/>\n\
         <text x=\"10\" y=\"20\" font-size=\"15\" font-weight=\"bold\">ward bench: {}</text>\n{body}</svg>\n",
        esc(scenario)
    )
}

/// Writes `latest.md` and `<scenario>.svg` into `out`.
pub fn run(raw: &Path, meta: &Path, out: &Path) -> anyhow::Result<()> {
    let all = load(raw)?;
    let meta = std::fs::read_to_string(meta).unwrap_or_default();
    std::fs::create_dir_all(out)?;
    let mut scenarios: Vec<&str> = Vec::new();
    for s in &all {
        if !scenarios.contains(&s.scenario.as_str()) {
            scenarios.push(&s.scenario);
        }
    }
    let mut md = String::new();
    md.push_str("# ward bench: latest results\n\n");
    md.push_str("Generated by `bench/run`; see `bench/README.md` for how to read this. ");
    md.push_str("Medians over the rounds (targets alternate every round); ratios are medians divided by the nginx / direct median of the same figure. ");
    md.push_str("For latency and memory figures lower is better, so a ratio below 1× favours the target.\n\n");
    md.push_str("## Run\n\n```\n");
    md.push_str(meta.trim_end());
    md.push_str("\n```\n\n## Goals (reported, not asserted)\n\n| goal | measured | status |\n|---|---|---|\n");
    for g in GOALS {
        md.push_str(&goal_line(&all, g));
    }
    md.push_str(&cpu_bound(&all));
    let mut by_scenario: BTreeMap<&str, Vec<&Series>> = BTreeMap::new();
    for s in &all {
        by_scenario.entry(&s.scenario).or_default().push(s);
    }
    for sc in &scenarios {
        let Some(series) = by_scenario.get(sc) else {
            continue;
        };
        // Table rows grouped by figure (first-seen order), targets in
        // run order within each figure, so ratios read down a column.
        let mut figures: Vec<&str> = Vec::new();
        for s in series {
            if !figures.contains(&s.figure.as_str()) {
                figures.push(&s.figure);
            }
        }
        let rows: Vec<&Series> = figures
            .iter()
            .flat_map(|f| series.iter().copied().filter(move |s| s.figure == *f))
            .collect();
        let _ = write!(
            md,
            "\n## {sc}\n\n![{sc}]({sc}.svg)\n\n| target | figure | median | min | max | rounds | ratio to nginx | ratio to direct |\n|---|---|---|---|---|---|---|---|\n"
        );
        for s in &rows {
            let figure = format!(
                "{} ({}, {} is better)",
                s.figure,
                s.unit,
                if s.higher_better { "higher" } else { "lower" }
            );
            match (s.median(), s.min(), s.max()) {
                (Some(m), Some(lo), Some(hi)) => {
                    let _ = writeln!(
                        md,
                        "| {} | {figure} | {} | {} | {} | {} | {} | {} |",
                        s.target,
                        fmt(m),
                        fmt(lo),
                        fmt(hi),
                        s.values.len(),
                        ratio(&all, s, "nginx"),
                        ratio(&all, s, "direct")
                    );
                }
                _ => {
                    let _ = writeln!(
                        md,
                        "| {} | {figure} | not available: {} | | | 0 | | |",
                        s.target,
                        s.missing.as_deref().unwrap_or("no data")
                    );
                }
            }
        }
        if *sc == "policy" {
            let mut lines = String::new();
            for s in series.iter().filter(|s| s.target == "ward-policy") {
                let cedar = find(&all, "policy", &s.figure, "cedar").and_then(Series::median);
                if let (Some(c), Some(w)) = (cedar, s.median())
                    && w > 0.0
                {
                    let _ = write!(lines, "{} {:.1}×; ", s.figure, c / w);
                }
            }
            if !lines.is_empty() {
                let _ = writeln!(
                    md,
                    "\nward-policy speed-up over cedar-policy (cedar median / ward median): {lines}"
                );
            }
        }
        if *sc == "ca" {
            md.push_str("\nCA ratios: issuance divided by the raw 2-session sign rate: ");
            for t in ["issue-log-off", "issue-log-on"] {
                let v = all
                    .iter()
                    .find(|s| s.scenario == "ca" && s.target == t)
                    .and_then(Series::median);
                let b = all
                    .iter()
                    .find(|s| s.scenario == "ca" && s.target == "hsm-sign-2s")
                    .and_then(Series::median);
                if let (Some(v), Some(b)) = (v, b) {
                    let _ = write!(md, "{t} {:.2}×; ", v / b);
                }
            }
            md.push('\n');
        }
        let path = out.join(format!("{sc}.svg"));
        std::fs::write(&path, svg(sc, series))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    let path = out.join("latest.md");
    std::fs::write(&path, md).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
    }

    #[test]
    fn report_has_ratios_goals_and_a_chart_per_scenario() {
        let dir = std::env::temp_dir().join(format!("ward-bench-report-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let raw = dir.join("raw.tsv");
        let rows = [
            "h1-keepalive\tdirect\trequests/s\treq/s\thigher\t1\t300",
            "h1-keepalive\tward\trequests/s\treq/s\thigher\t1\t200",
            "h1-keepalive\tward\trequests/s\treq/s\thigher\t2\t220",
            "h1-keepalive\tward\trequests/s\treq/s\thigher\t3\t210",
            "h1-keepalive\tnginx\trequests/s\treq/s\thigher\t1\t100",
            "h3\tnginx\trequests/s\treq/s\thigher\t0\tNA:no HTTP/3",
        ];
        std::fs::write(&raw, rows.join("\n")).unwrap();
        std::fs::write(dir.join("meta.txt"), "cpus: 2\n").unwrap();
        run(&raw, &dir.join("meta.txt"), &dir).unwrap();
        let md = std::fs::read_to_string(dir.join("latest.md")).unwrap();
        assert!(md.contains("| ward | requests/s (req/s, higher is better) | 210.0 | 200.0 | 220.0 | 3 | 2.10× | 0.70× |"), "{md}");
        assert!(
            md.contains("gateway vs nginx, HTTP/1.1 keep-alive req/s ≥ 1.3× | 2.10× | met"),
            "{md}"
        );
        assert!(md.contains("not available: no HTTP/3"), "{md}");
        let svg = std::fs::read_to_string(dir.join("h1-keepalive.svg")).unwrap();
        assert!(
            svg.starts_with("<svg") && svg.contains("210.0 req/s"),
            "{svg}"
        );
        assert!(dir.join("h3.svg").exists());
        assert!(
            !md.contains("bound, not a goal"),
            "no CPU rows, no bound: {md}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn cpu_rows_give_the_user_space_bound() {
        let row = |t: &str, f: &str, v: f64| Series {
            scenario: "h1-keepalive".into(),
            target: t.into(),
            figure: f.into(),
            unit: "µs".into(),
            higher_better: false,
            values: vec![v],
            missing: None,
        };
        let all = vec![
            row("nginx", "server CPU µs/request (proxy + upstream)", 36.0),
            row("ward", "proxy kernel CPU µs/request", 20.0),
            row("ward", "upstream CPU µs/request", 10.0),
        ];
        // 36 / (20 + 10) = 1.2: a 1.3× goal is out of reach on that run.
        assert!(cpu_bound(&all).contains("| 1.20× |"), "{}", cpu_bound(&all));
        assert_eq!(cpu_bound(&all[..2]), "");
    }
}
