//! The metric catalog: every metric declared once (name, kind, unit, help, labels).
//!
//! The same declarations register the metrics at startup, drive `cargo xtask codegen`
//! (dashboards and alert rules) and are checked against a live `/metrics` scrape in tests:
//! nothing undeclared is exported, nothing declared is missing.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// The Prometheus type of a metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    /// Monotonic count, name ends in `_total`.
    Counter,
    /// A value that goes up and down.
    Gauge,
    /// Bucketed distribution with `_bucket`, `_sum` and `_count` series.
    Histogram,
}

impl MetricKind {
    /// The name used in a `# TYPE` line.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Counter => "counter",
            Self::Gauge => "gauge",
            Self::Histogram => "histogram",
        }
    }
}

/// The unit of a metric's values, in base units as Prometheus names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricUnit {
    /// Seconds.
    Seconds,
    /// Bytes.
    Bytes,
    /// A fraction between 0 and 1 (or of cores).
    Ratio,
    /// A plain count of things.
    Count,
    /// An info metric whose value is always 1.
    Info,
}

/// One metric's declaration.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MetricDef {
    /// Prometheus name, with unit suffix and `_total` for counters.
    pub name: &'static str,
    /// Prometheus type.
    pub kind: MetricKind,
    /// Unit of the values.
    pub unit: MetricUnit,
    /// Help text, one sentence.
    pub help: &'static str,
    /// Label names; every value of each must come from a bounded set.
    pub labels: &'static [&'static str],
    /// Bucket upper bounds, for histograms.
    pub buckets: Option<&'static [f64]>,
}

/// The metrics one crate or service declares.
#[derive(Debug, Clone, Copy)]
pub struct Catalog {
    /// Who declares them (crate or service name).
    pub owner: &'static str,
    /// The declarations.
    pub metrics: &'static [MetricDef],
}

impl MetricDef {
    /// A declaration without buckets (add them with [`MetricDef::with_buckets`]).
    ///
    /// ```
    /// use telemetry::metrics::{Catalog, MetricDef, MetricKind, MetricUnit};
    ///
    /// pub static CATALOG: Catalog = Catalog {
    ///     owner: "frame-processor",
    ///     metrics: &[MetricDef::new(
    ///         "frames_processed_total",
    ///         MetricKind::Counter,
    ///         MetricUnit::Count,
    ///         "Frames processed.",
    ///         &[],
    ///     )],
    /// };
    /// assert!(CATALOG.lint().is_empty());
    /// ```
    pub const fn new(
        name: &'static str,
        kind: MetricKind,
        unit: MetricUnit,
        help: &'static str,
        labels: &'static [&'static str],
    ) -> MetricDef {
        MetricDef {
            name,
            kind,
            unit,
            help,
            labels,
            buckets: None,
        }
    }

    /// The same declaration with histogram bucket upper bounds.
    pub const fn with_buckets(self, buckets: &'static [f64]) -> MetricDef {
        MetricDef {
            buckets: Some(buckets),
            ..self
        }
    }
}

impl Catalog {
    /// Looks a metric up by name.
    pub fn get(&self, name: &str) -> Option<&'static MetricDef> {
        self.metrics.iter().find(|m| m.name == name)
    }

    /// Checks that the declarations follow Prometheus naming rules.
    pub fn lint(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for m in self.metrics {
            let valid_name = m
                .name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
            if !valid_name {
                problems.push(format!("{}: name must be snake_case ascii", m.name));
            }
            match m.kind {
                MetricKind::Counter if !m.name.ends_with("_total") => {
                    problems.push(format!("{}: counter names end in _total", m.name));
                }
                MetricKind::Gauge | MetricKind::Histogram if m.name.ends_with("_total") => {
                    problems.push(format!("{}: only counters end in _total", m.name));
                }
                _ => {}
            }
            let suffix_ok = match m.unit {
                MetricUnit::Seconds => m.name.contains("_seconds"),
                MetricUnit::Bytes => m.name.contains("_bytes"),
                MetricUnit::Ratio => m.name.contains("_ratio"),
                MetricUnit::Info => m.name.ends_with("_info"),
                MetricUnit::Count => true,
            };
            if !suffix_ok {
                problems.push(format!(
                    "{}: name lacks the suffix of unit {:?}",
                    m.name, m.unit
                ));
            }
            if (m.kind == MetricKind::Histogram) != m.buckets.is_some() {
                problems.push(format!(
                    "{}: histograms, and only they, declare buckets",
                    m.name
                ));
            }
            if m.help.is_empty() {
                problems.push(format!("{}: help text is empty", m.name));
            }
        }
        problems
    }
}

/// What a scrape had that the catalogs did not say, or the reverse.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CatalogMismatch {
    /// Families exported but declared nowhere.
    pub undeclared: Vec<String>,
    /// Declared families the scrape did not contain.
    pub missing: Vec<String>,
    /// Families whose type or label names differ from the declaration.
    pub different: Vec<String>,
}

impl CatalogMismatch {
    /// True when scrape and catalogs agree.
    pub fn is_empty(&self) -> bool {
        self.undeclared.is_empty() && self.missing.is_empty() && self.different.is_empty()
    }
}

impl fmt::Display for CatalogMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "undeclared: {:?}; missing: {:?}; different: {:?}",
            self.undeclared, self.missing, self.different
        )
    }
}

/// A metric family as found in Prometheus text exposition.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ScrapedFamily {
    /// `# TYPE` of the family.
    pub kind: String,
    /// Label names seen on its samples (without `le`).
    pub labels: BTreeSet<String>,
    /// Number of distinct label sets (series), `_bucket`/`_sum`/`_count` counted once.
    pub series: usize,
}

/// Parses Prometheus text exposition into families by name.
pub fn parse_exposition(text: &str) -> BTreeMap<String, ScrapedFamily> {
    let mut families: BTreeMap<String, ScrapedFamily> = BTreeMap::new();
    let mut series: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split_whitespace();
            if let (Some(name), Some(kind)) = (parts.next(), parts.next()) {
                families.entry(name.to_owned()).or_default().kind = kind.to_owned();
            }
            continue;
        }
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let name_end = line.find(['{', ' ']).unwrap_or(line.len());
        let sample_name = &line[..name_end];
        let family_name = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| {
                let base = sample_name.strip_suffix(suffix)?;
                (families.get(base).map(|f| f.kind.as_str()) == Some("histogram")).then_some(base)
            })
            .unwrap_or(sample_name);
        let labels_text = line[name_end..]
            .strip_prefix('{')
            .and_then(|rest| rest.rfind('}').map(|end| &rest[..end]))
            .unwrap_or("");
        let mut names = BTreeSet::new();
        let mut identity = Vec::new();
        for (label, value) in split_labels(labels_text) {
            if label != "le" {
                identity.push(format!("{label}={value}"));
                names.insert(label);
            }
        }
        let family = families.entry(family_name.to_owned()).or_default();
        family.labels.extend(names);
        series
            .entry(family_name.to_owned())
            .or_default()
            .insert(identity.join(","));
    }
    for (name, set) in series {
        if let Some(family) = families.get_mut(&name) {
            family.series = set.len();
        }
    }
    families
}

/// Splits `a="x",b="y\"z"` into (name, raw value) pairs.
fn split_labels(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(eq) = rest.find('=') {
        let name = rest[..eq].trim().trim_start_matches(',').trim().to_owned();
        let after = &rest[eq + 1..];
        let Some(body) = after.strip_prefix('"') else {
            break;
        };
        let mut end = None;
        let mut escaped = false;
        for (i, c) in body.char_indices() {
            match c {
                '\\' if !escaped => escaped = true,
                '"' if !escaped => {
                    end = Some(i);
                    break;
                }
                _ => escaped = false,
            }
        }
        let Some(end) = end else { break };
        out.push((name, body[..end].to_owned()));
        rest = &body[end + 1..];
    }
    out
}

/// Compares a scrape with the union of `catalogs`.
///
/// Metrics with labels appear only once something recorded them, so callers exercise
/// them before scraping.
pub fn check_exposition(text: &str, catalogs: &[&Catalog]) -> CatalogMismatch {
    let scraped = parse_exposition(text);
    let declared: BTreeMap<&str, &MetricDef> = catalogs
        .iter()
        .flat_map(|c| c.metrics.iter())
        .map(|m| (m.name, m))
        .collect();
    let mut mismatch = CatalogMismatch::default();
    for (name, family) in &scraped {
        match declared.get(name.as_str()) {
            None => mismatch.undeclared.push(name.clone()),
            Some(def) => {
                let labels: BTreeSet<String> = def.labels.iter().map(|l| (*l).to_owned()).collect();
                if family.kind != def.kind.as_str()
                    || (family.series > 0 && family.labels != labels)
                {
                    mismatch.different.push(format!(
                        "{name}: declared {} {:?}, exported {} {:?}",
                        def.kind.as_str(),
                        labels,
                        family.kind,
                        family.labels
                    ));
                }
            }
        }
    }
    for name in declared.keys() {
        if !scraped.contains_key(*name) {
            mismatch.missing.push((*name).to_owned());
        }
    }
    mismatch
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# HELP http_server_request_duration_seconds d\n\
        # TYPE http_server_request_duration_seconds histogram\n\
        http_server_request_duration_seconds_bucket{method=\"GET\",route=\"/a\",status_code=\"200\",le=\"0.1\"} 1\n\
        http_server_request_duration_seconds_bucket{method=\"GET\",route=\"/a\",status_code=\"200\",le=\"+Inf\"} 1\n\
        http_server_request_duration_seconds_sum{method=\"GET\",route=\"/a\",status_code=\"200\"} 0.01\n\
        http_server_request_duration_seconds_count{method=\"GET\",route=\"/a\",status_code=\"200\"} 1\n\
        # TYPE odd_total counter\n\
        odd_total{x=\"a,\\\"b=\"} 3\n";

    #[test]
    fn histogram_series_fold_into_one_family() {
        let families = parse_exposition(TEXT);
        let h = &families["http_server_request_duration_seconds"];
        assert_eq!(h.kind, "histogram");
        assert_eq!(h.series, 1);
        assert_eq!(
            h.labels.iter().map(String::as_str).collect::<Vec<_>>(),
            vec!["method", "route", "status_code"]
        );
        assert_eq!(families["odd_total"].labels.len(), 1);
    }

    #[test]
    fn check_reports_undeclared_missing_and_different() {
        static DEFS: &[MetricDef] = &[
            MetricDef {
                name: "http_server_request_duration_seconds",
                kind: MetricKind::Histogram,
                unit: MetricUnit::Seconds,
                help: "d",
                labels: &["method", "route"],
                buckets: Some(&[0.1]),
            },
            MetricDef {
                name: "never_seen_total",
                kind: MetricKind::Counter,
                unit: MetricUnit::Count,
                help: "n",
                labels: &[],
                buckets: None,
            },
        ];
        let catalog = Catalog {
            owner: "t",
            metrics: DEFS,
        };
        let m = check_exposition(TEXT, &[&catalog]);
        assert_eq!(m.undeclared, vec!["odd_total"]);
        assert_eq!(m.missing, vec!["never_seen_total"]);
        assert_eq!(m.different.len(), 1, "{m}");
    }

    #[test]
    fn lint_catches_bad_names() {
        static DEFS: &[MetricDef] = &[MetricDef {
            name: "requestCount",
            kind: MetricKind::Counter,
            unit: MetricUnit::Seconds,
            help: "",
            labels: &[],
            buckets: Some(&[1.0]),
        }];
        let problems = Catalog {
            owner: "t",
            metrics: DEFS,
        }
        .lint();
        assert_eq!(problems.len(), 5, "{problems:?}");
    }
}
