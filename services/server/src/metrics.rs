//! Prometheus metrics, served at `/metrics`.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts,
    Registry, TextEncoder,
};

/// The server's metrics.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    pub requests: IntCounterVec,
    pub request_seconds: HistogramVec,
    pub answers: IntCounterVec,
    pub answers_in_flight: IntGauge,
    pub generated_tokens: IntCounter,
    pub time_to_first_token: Histogram,
    pub ingest_documents: IntCounterVec,
    pub ingest_pages: IntCounter,
    pub ingest_queue_depth: IntGauge,
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "enclave_http_requests_total",
                "HTTP requests by route and status",
            ),
            &["method", "route", "status"],
        )
        .expect("valid metric");
        let request_seconds = HistogramVec::new(
            HistogramOpts::new(
                "enclave_http_request_duration_seconds",
                "Time to the response head, by route",
            )
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
            ]),
            &["route"],
        )
        .expect("valid metric");
        let answers = IntCounterVec::new(
            Opts::new(
                "enclave_answers_total",
                "Asks by outcome: answered, refused, failed, busy",
            ),
            &["outcome"],
        )
        .expect("valid metric");
        let answers_in_flight = IntGauge::new(
            "enclave_answers_in_flight",
            "Answers being generated or waiting for a generation slot",
        )
        .expect("valid metric");
        let generated_tokens = IntCounter::new(
            "enclave_generated_tokens_total",
            "Tokens generated in answers",
        )
        .expect("valid metric");
        let time_to_first_token = Histogram::with_opts(
            HistogramOpts::new(
                "enclave_time_to_first_token_seconds",
                "From question to the first answer token (retrieval and queueing included)",
            )
            .buckets(vec![0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0, 120.0]),
        )
        .expect("valid metric");
        let ingest_documents = IntCounterVec::new(
            Opts::new(
                "enclave_ingest_documents_total",
                "Documents processed by the ingest worker, by outcome",
            ),
            &["outcome"],
        )
        .expect("valid metric");
        let ingest_pages =
            IntCounter::new("enclave_ingest_pages_total", "Pages ingested").expect("valid metric");
        let ingest_queue_depth = IntGauge::new(
            "enclave_ingest_queue_depth",
            "Documents waiting for the ingest worker",
        )
        .expect("valid metric");
        for m in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(request_seconds.clone()),
            Box::new(answers.clone()),
            Box::new(answers_in_flight.clone()),
            Box::new(generated_tokens.clone()),
            Box::new(time_to_first_token.clone()),
            Box::new(ingest_documents.clone()),
            Box::new(ingest_pages.clone()),
            Box::new(ingest_queue_depth.clone()),
        ] {
            registry.register(m).expect("metric registered once");
        }
        Self {
            registry,
            requests,
            request_seconds,
            answers,
            answers_in_flight,
            generated_tokens,
            time_to_first_token,
            ingest_documents,
            ingest_pages,
            ingest_queue_depth,
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }

    /// Records the end of an answer.
    pub fn answer_done(&self, answer: &enclave_answer::Answer) {
        let outcome = if answer.refused {
            "refused"
        } else {
            "answered"
        };
        self.answers.with_label_values(&[outcome]).inc();
        self.generated_tokens
            .inc_by(answer.timings.generated_tokens as u64);
        if let Some(ms) = answer.timings.time_to_first_token_ms {
            self.time_to_first_token.observe(ms / 1000.0);
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
