//! The `[telemetry]` section: where the gateway's OpenTelemetry traces go
//! (OTLP over HTTP, protobuf), under which service name, how many of the
//! requests that start a trace are traced, and how much may wait for the
//! collector. No section: no spans are made.

use serde::Deserialize;
use toml::Spanned;

use super::report::{plain_http_url, timeout_ms, HttpUrlProblem, Report};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTelemetry {
    pub otlp_endpoint: Spanned<String>,
    pub service_name: Option<Spanned<String>>,
    pub sample_ratio: Option<Spanned<f64>>,
    pub queue_bytes_max: Option<Spanned<u64>>,
    pub timeout_ms: Option<Spanned<u64>>,
}

/// A validated `[telemetry]` (read at start).
#[derive(Clone, Debug, PartialEq)]
pub struct Telemetry {
    /// `host:port` of the collector's OTLP/HTTP receiver.
    pub authority: String,
    /// The traces path: as written, or `/v1/traces` when the URL has none
    /// (OTLP's rule for a base endpoint).
    pub path: String,
    /// The resource's `service.name`.
    pub service_name: String,
    /// Of the requests that arrive without a sampled parent, the share
    /// traced (by trace id, so every node agrees). A request whose
    /// `traceparent` is sampled is traced; one whose parent is not, is not.
    pub sample_ratio: f64,
    /// Encoded spans waiting for the exporter, at most: past it, spans are
    /// dropped (and counted), never waited for.
    pub queue_bytes_max: usize,
    /// Connect, write and read time-out of one export.
    pub timeout: std::time::Duration,
}

/// Four of a worker's batches (`engine::otel::export`).
pub const QUEUE_BYTES_MIN: u64 = 256 * 1024;

pub(super) fn validate(raw: &RawTelemetry, report: &mut Report<'_>) -> Telemetry {
    let url = raw.otlp_endpoint.get_ref();
    let shown = super::report::shown_url(url);
    let span = raw.otlp_endpoint.span();
    let (authority, path) = match plain_http_url(url) {
        // Without a path, OTLP's for traces.
        Ok((authority, path)) => (authority.to_string(), if path.is_empty() { "/v1/traces" } else { path }.to_string()),
        Err(problem) => {
            report.add(span, match problem {
                HttpUrlProblem::NotHttp => format!(
                    "otlp_endpoint {shown:?} must be http://host:port[/path]: send to an OpenTelemetry Collector beside the gateway, which forwards over TLS"
                ),
                HttpUrlProblem::Unclean => format!(
                    "otlp_endpoint {shown:?} holds spaces, control characters or user@: http://host:4318/v1/traces"
                ),
                HttpUrlProblem::NoHostPort => {
                    format!("otlp_endpoint {shown:?} needs a host and a port: http://host:4318/v1/traces")
                }
            });
            (String::new(), String::new())
        }
    };
    let service_name = raw.service_name.as_ref().map_or("tollgate".to_string(), |s| {
        if s.get_ref().trim().is_empty() {
            report.add(s.span(), "service_name is empty; name the service, or remove it for \"tollgate\"".to_string());
        }
        s.get_ref().clone()
    });
    let sample_ratio = raw.sample_ratio.as_ref().map_or(1.0, |r| {
        let v = *r.get_ref();
        if !(0.0..=1.0).contains(&v) {
            report.add(r.span(), format!("sample_ratio {v} must be between 0 and 1 (1: every request is traced)"));
        }
        v
    });
    let queue_bytes_max = raw.queue_bytes_max.as_ref().map_or(16 << 20, |q| {
        let v = *q.get_ref();
        if v < QUEUE_BYTES_MIN {
            report.add(
                q.span(),
                format!("queue_bytes_max {v} is below {QUEUE_BYTES_MIN} (four of a worker's 64 KiB batches); raise it"),
            );
        }
        v as usize
    });
    let timeout = timeout_ms(raw.timeout_ms.as_ref(), 5_000, report);
    Telemetry { authority, path, service_name, sample_ratio, queue_bytes_max, timeout }
}
