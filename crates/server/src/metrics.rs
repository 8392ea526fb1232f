//! Prometheus metrics in the text exposition format (version 0.0.4).
//!
//! Counters and histograms are kept here as requests and reconciler runs happen; gauges of the
//! allocator (ready and idle addresses, shards by state) are computed from the state when
//! `/metrics` is scraped.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

/// Upper bounds (seconds) of the latency histograms' buckets.
const BUCKETS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// A cumulative histogram with [`BUCKETS`].
#[derive(Clone, Debug, Default)]
pub struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    pub fn observe(&mut self, seconds: f64) {
        for (i, b) in BUCKETS.iter().enumerate() {
            if seconds <= *b {
                self.counts[i] += 1;
            }
        }
        self.count += 1;
        self.sum += seconds;
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        for (i, b) in BUCKETS.iter().enumerate() {
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{b}\"}} {}",
                self.counts[i]
            );
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}",
            self.count
        );
        let _ = writeln!(out, "{name}_sum{{{labels}}} {}", self.sum);
        let _ = writeln!(out, "{name}_count{{{labels}}} {}", self.count);
    }
}

#[derive(Default)]
struct Inner {
    /// (subdivision, path: prefetched | slow) → allocations.
    allocations: BTreeMap<(String, &'static str), u64>,
    releases: BTreeMap<String, u64>,
    /// (method, route, status) → latency.
    http: BTreeMap<(String, String, u16), Histogram>,
    reconcile: Histogram,
    /// outcome (ok | error) → runs.
    reconcile_runs: BTreeMap<&'static str, u64>,
    imported_events: u64,
    /// outcome (retried | gave_up) → operations whose commit conflicted with another daemon's.
    conflicts: BTreeMap<&'static str, u64>,
    /// (router, outcome: applied | unchanged | failed) → deployments of its configuration.
    router_applies: BTreeMap<(String, &'static str), u64>,
    /// router → prefixes its deployed configuration announces.
    router_prefixes: BTreeMap<String, usize>,
}

/// What the daemon counts while it runs.
#[derive(Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

/// Per-subdivision gauges computed at scrape time.
#[derive(Clone, Debug, Default)]
pub struct SubGauges {
    pub subdivision: String,
    /// Addresses that can be leased now (free, not cooling, in active shards).
    pub ready: u128,
    /// Usable addresses of non-free shards less leases.
    pub idle: u128,
    pub leases: u64,
    pub reserved: u64,
    pub active: u64,
    pub draining: u64,
}

/// The forecaster's view of how good it is, per subdivision or overall.
#[derive(Clone, Debug, Default)]
pub struct ForecastGauges {
    /// Share of past lead windows whose realised rise stayed within the upper bound.
    pub coverage: Option<f64>,
    /// Mean absolute error of the rise over the lead window, in VMs.
    pub mean_abs_error: Option<f64>,
    /// The quantile the prefetcher uses now.
    pub quantile: f64,
}

impl Metrics {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// One allocation served (`prefetched`: from a ready address).
    pub fn allocation(&self, subdivision: &str, prefetched: bool) {
        let path = if prefetched { "prefetched" } else { "slow" };
        *self
            .lock()
            .allocations
            .entry((subdivision.to_string(), path))
            .or_default() += 1;
    }

    pub fn release(&self, subdivision: &str) {
        *self
            .lock()
            .releases
            .entry(subdivision.to_string())
            .or_default() += 1;
    }

    pub fn http(&self, method: &str, route: &str, status: u16, seconds: f64) {
        self.lock()
            .http
            .entry((method.to_string(), route.to_string(), status))
            .or_default()
            .observe(seconds);
    }

    pub fn reconcile(&self, ok: bool, seconds: f64) {
        let mut m = self.lock();
        m.reconcile.observe(seconds);
        *m.reconcile_runs
            .entry(if ok { "ok" } else { "error" })
            .or_default() += 1;
    }

    pub fn imported(&self, events: u64) {
        self.lock().imported_events += events;
    }

    /// An operation's commit conflicted with another daemon's writes; `gave_up`: it was refused
    /// (503) after its last attempt, else it is tried again.
    pub fn conflict(&self, gave_up: bool) {
        *self
            .lock()
            .conflicts
            .entry(if gave_up { "gave_up" } else { "retried" })
            .or_default() += 1;
    }

    /// One deployment of a router's configuration (`outcome`: applied | unchanged | failed);
    /// `prefixes` is what the deployed file announces now (`None`: unchanged by this outcome).
    pub fn router_apply(&self, router: &str, outcome: &'static str, prefixes: Option<usize>) {
        let mut m = self.lock();
        *m.router_applies
            .entry((router.to_string(), outcome))
            .or_default() += 1;
        if let Some(n) = prefixes {
            m.router_prefixes.insert(router.to_string(), n);
        }
    }

    /// The exposition text: the counters and histograms, then the gauges given.
    pub fn render(
        &self,
        subs: &[SubGauges],
        forecast: &ForecastGauges,
        ready: bool,
        leader: bool,
    ) -> String {
        let m = self.lock();
        let mut out = String::with_capacity(4096);
        let o = &mut out;
        family(o, "cidrcast_allocations_total", "counter", "Allocations by subdivision and path (prefetched: a ready address; slow: a shard had to be claimed or activated first).");
        for ((sub, path), n) in &m.allocations {
            sample(
                o,
                "cidrcast_allocations_total",
                &format!("subdivision=\"{}\",path=\"{path}\"", escape(sub)),
                n,
            );
        }
        family(
            o,
            "cidrcast_allocation_misses_total",
            "counter",
            "Allocations that found no ready address, by subdivision.",
        );
        for ((sub, _), n) in m.allocations.iter().filter(|((_, p), _)| *p == "slow") {
            sample(o, "cidrcast_allocation_misses_total", &sub_label(sub), n);
        }
        family(
            o,
            "cidrcast_releases_total",
            "counter",
            "Releases by subdivision.",
        );
        for (sub, n) in &m.releases {
            sample(o, "cidrcast_releases_total", &sub_label(sub), n);
        }
        family(
            o,
            "cidrcast_history_imported_events_total",
            "counter",
            "VM lifecycle events imported through /v1/history.",
        );
        sample(
            o,
            "cidrcast_history_imported_events_total",
            "",
            m.imported_events,
        );
        family(
            o,
            "cidrcast_store_conflicts_total",
            "counter",
            "Operations whose commit conflicted with another daemon's writes on a shared store, by outcome (retried: tried again after a reload; gave_up: refused with 503).",
        );
        for outcome in ["retried", "gave_up"] {
            let n = m.conflicts.get(outcome).copied().unwrap_or(0);
            sample(
                o,
                "cidrcast_store_conflicts_total",
                &format!("outcome=\"{outcome}\""),
                n,
            );
        }
        let per_sub: [(&str, &str, SubValue); 3] = [
            (
                "cidrcast_ready_addresses",
                "Addresses ready to lease now (free, not cooling, in active shards), by subdivision.",
                |s| s.ready,
            ),
            (
                "cidrcast_idle_addresses",
                "Usable addresses of non-free shards less leases, by subdivision.",
                |s| s.idle,
            ),
            ("cidrcast_leases", "Live leases by subdivision.", |s| {
                u128::from(s.leases)
            }),
        ];
        for (name, text, value) in per_sub {
            family(o, name, "gauge", text);
            for s in subs {
                sample(o, name, &sub_label(&s.subdivision), value(s));
            }
        }
        family(
            o,
            "cidrcast_shards",
            "gauge",
            "Non-free shards by subdivision and state.",
        );
        for s in subs {
            for (state, n) in [
                ("reserved", s.reserved),
                ("active", s.active),
                ("draining", s.draining),
            ] {
                let labels = format!(
                    "subdivision=\"{}\",state=\"{state}\"",
                    escape(&s.subdivision)
                );
                sample(o, "cidrcast_shards", &labels, n);
            }
        }
        let scalars = [
            ("cidrcast_forecast_coverage", "Share of past lead windows whose realised rise stayed within the forecast's upper bound.", forecast.coverage),
            ("cidrcast_forecast_abs_error", "Mean absolute error of the forecast rise over the lead window, in VMs.", forecast.mean_abs_error),
            ("cidrcast_prefetch_quantile", "Quantile of the forecast the prefetcher holds ready addresses for.", Some(forecast.quantile)),
        ];
        for (name, text, value) in scalars {
            family(o, name, "gauge", text);
            if let Some(v) = value {
                sample(o, name, "", v);
            }
        }
        family(
            o,
            "cidrcast_reconcile_runs_total",
            "counter",
            "Reconciler runs by outcome.",
        );
        for outcome in ["ok", "error"] {
            let n = m.reconcile_runs.get(outcome).copied().unwrap_or(0);
            sample(
                o,
                "cidrcast_reconcile_runs_total",
                &format!("outcome=\"{outcome}\""),
                n,
            );
        }
        family(
            o,
            "cidrcast_reconcile_duration_seconds",
            "histogram",
            "Duration of reconciler runs.",
        );
        m.reconcile
            .render(o, "cidrcast_reconcile_duration_seconds", "");
        family(
            o,
            "cidrcast_http_request_duration_seconds",
            "histogram",
            "HTTP request latency by method, route and status.",
        );
        for ((method, route, status), h) in &m.http {
            let labels = format!(
                "method=\"{method}\",route=\"{}\",status=\"{status}\"",
                escape(route)
            );
            h.render(o, "cidrcast_http_request_duration_seconds", &labels);
        }
        family(
            o,
            "cidrcast_router_applies_total",
            "counter",
            "Deployments of router configurations by router and outcome (applied: written and reloaded; unchanged; failed: refused by the daemon's parser or the reload failed, previous configuration kept).",
        );
        for ((router, outcome), n) in &m.router_applies {
            let labels = format!("router=\"{}\",outcome=\"{outcome}\"", escape(router));
            sample(o, "cidrcast_router_applies_total", &labels, n);
        }
        family(
            o,
            "cidrcast_router_announced_prefixes",
            "gauge",
            "Prefixes the deployed configuration of each router announces.",
        );
        for (router, n) in &m.router_prefixes {
            sample(
                o,
                "cidrcast_router_announced_prefixes",
                &format!("router=\"{}\"", escape(router)),
                n,
            );
        }
        family(
            o,
            "cidrcast_ready",
            "gauge",
            "1 when the daemon is ready to serve.",
        );
        sample(o, "cidrcast_ready", "", u8::from(ready));
        family(
            o,
            "cidrcast_leader",
            "gauge",
            "1 when this daemon runs the reconciler and the router deployer (always, alone on its store; the elected one, on a shared store).",
        );
        sample(o, "cidrcast_leader", "", u8::from(leader));
        out
    }
}

/// Reads one per-subdivision gauge.
type SubValue = fn(&SubGauges) -> u128;

/// `# HELP` and `# TYPE` of a metric family.
fn family(out: &mut String, name: &str, kind: &str, text: &str) {
    let _ = writeln!(out, "# HELP {name} {text}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// One sample line (`labels` without braces; empty for none).
fn sample(out: &mut String, name: &str, labels: &str, value: impl std::fmt::Display) {
    if labels.is_empty() {
        let _ = writeln!(out, "{name} {value}");
    } else {
        let _ = writeln!(out, "{name}{{{labels}}} {value}");
    }
}

fn sub_label(sub: &str) -> String {
    format!("subdivision=\"{}\"", escape(sub))
}

/// Escapes a label value (backslash, double quote, newline).
fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
