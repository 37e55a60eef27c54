//! Counters for `GET /metrics`, in the Prometheus text format.
//!
//! Every label value comes from a finite set (kernel actions and reasons, error codes,
//! configured providers and tenants), so the series are bounded by the configuration.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use parking_lot::Mutex;

/// The gateway's counters.
#[derive(Debug, Default)]
pub struct Metrics {
    counters: Mutex<BTreeMap<(&'static str, String), u64>>,
}

/// A label value escaped for the text format.
#[must_use]
pub fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

const HELP: &[(&str, &str)] = &[
    (
        "calybris_gateway_decisions_total",
        "Gate decisions by kernel action, reason and budget outcome.",
    ),
    (
        "calybris_gateway_refusals_total",
        "Requests answered with an error, by HTTP status and code.",
    ),
    (
        "calybris_gateway_rate_limited_total",
        "Requests refused by a rate limit, by scope and kind.",
    ),
    (
        "calybris_gateway_provider_requests_total",
        "Provider attempts by provider and outcome.",
    ),
    (
        "calybris_gateway_provider_streams_cut_total",
        "Streams a provider failed after their first event (each a breaker failure), by provider and reason.",
    ),
    (
        "calybris_gateway_provider_latency_ms_sum",
        "Total provider attempt latency in milliseconds, by provider.",
    ),
    (
        "calybris_gateway_provider_latency_ms_count",
        "Provider attempts timed, by provider.",
    ),
    (
        "calybris_gateway_fallbacks_total",
        "Requests served by a model after the decision's failed, by the serving model.",
    ),
    (
        "calybris_gateway_breaker_transitions_total",
        "Circuit breaker state changes, by provider, from and to.",
    ),
    (
        "calybris_gateway_attempts_skipped_total",
        "Providers of a chain passed over without a call, by provider and reason.",
    ),
    (
        "calybris_gateway_internal_failures_total",
        "Unexpected internal failures after an admitted decision (each logged as an InternalError execution).",
    ),
    (
        "calybris_gateway_probes_total",
        "Health probes, by provider and outcome.",
    ),
];

impl Metrics {
    /// Adds `by` to the series `name{labels}` (`labels` already formatted).
    pub fn add(&self, name: &'static str, labels: String, by: u64) {
        *self.counters.lock().entry((name, labels)).or_insert(0) += by;
    }

    /// Adds one.
    pub fn inc(&self, name: &'static str, labels: String) {
        self.add(name, labels, 1);
    }

    /// The counters, then `gauges` (name, labels, value), in the text format.
    #[must_use]
    pub fn render(&self, gauges: &[(&'static str, &'static str, String, i64)]) -> String {
        let counters = self.counters.lock().clone();
        let mut out = String::new();
        for (name, help) in HELP {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} counter");
            for ((series, labels), value) in &counters {
                if series == name {
                    let _ = writeln!(out, "{name}{{{labels}}} {value}");
                }
            }
        }
        let mut last = "";
        for (name, help, labels, value) in gauges {
            if *name != last {
                let _ = writeln!(out, "# HELP {name} {help}");
                let _ = writeln!(out, "# TYPE {name} gauge");
                last = name;
            }
            let _ = writeln!(out, "{name}{{{labels}}} {value}");
        }
        out
    }
}
