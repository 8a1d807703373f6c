//! Webhook delivery: `enclave serve` POSTs the events of the outbox (recorded in the metadata
//! database by whatever process changed the documents) to `webhooks.url`, signed.
//!
//! Each request carries the payload JSON as stored, with `Content-Type: application/json`,
//! `X-Enclave-Event` (the event name), `X-Enclave-Delivery` (the delivery id, also the payload's
//! `id`: the same on every attempt) and `X-Enclave-Signature: t=<unix seconds>,v1=<hex>`, where
//! `<hex>` is HMAC-SHA256 of `<t>.<body>` with `webhooks.secret`. A 2xx answer delivers it;
//! anything else (another status, a redirect, a connection error, no answer within
//! `webhooks.timeout_secs`) is a failed attempt, tried again after an exponential backoff
//! until `webhooks.max_attempts`, then `failed` until an administrator redelivers it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use enclave_settings::WebhookSettings;
use enclave_storage::{Delivery, DeliveryStatus, MetaStore, StorageError};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::sync::watch;

/// The header naming the event.
pub const EVENT_HEADER: &str = "X-Enclave-Event";
/// The header carrying the delivery id.
pub const DELIVERY_HEADER: &str = "X-Enclave-Delivery";
/// The header carrying the signature.
pub const SIGNATURE_HEADER: &str = "X-Enclave-Signature";

/// Deliveries claimed (and sent concurrently) at once.
const BATCH: i64 = 16;
/// How often an idle deliverer looks for due deliveries.
const POLL: Duration = Duration::from_secs(1);

/// The `X-Enclave-Signature` value of `body` sent at `timestamp` (Unix seconds):
/// `t=<timestamp>,v1=<hex HMAC-SHA256 of "<timestamp>.<body>" keyed with the secret>`.
pub fn signature(secret: &str, timestamp: u64, body: &str) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any size");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    format!(
        "t={timestamp},v1={}",
        hex::encode(mac.finalize().into_bytes())
    )
}

/// Claims due deliveries from the outbox and sends them.
pub struct Deliverer {
    meta: MetaStore,
    client: reqwest::Client,
    url: String,
    secret: String,
    max_attempts: i64,
    retry_base: Duration,
    lease: Duration,
    timeout: Duration,
    /// This deliverer's name in the leases it takes.
    name: String,
}

impl Deliverer {
    /// A deliverer for the settings, or `None` when webhooks are off.
    pub fn new(
        meta: MetaStore,
        settings: &WebhookSettings,
        name: String,
    ) -> Result<Option<Self>, String> {
        let Some(url) = settings.url.clone() else {
            return Ok(None);
        };
        let secret = settings
            .secret
            .clone()
            .ok_or("webhooks.secret must be set when webhooks.url is")?;
        let timeout = Duration::from_secs(settings.timeout_secs.max(1));
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("Enclave-Webhooks/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("the webhook client: {e}"))?;
        Ok(Some(Self {
            meta,
            client,
            url,
            secret,
            max_attempts: settings.max_attempts.max(1),
            retry_base: Duration::from_secs(settings.retry_base_secs),
            // Long enough for an attempt to end (time-out) and be recorded.
            lease: timeout * 2 + Duration::from_secs(30),
            timeout,
            name,
        }))
    }

    /// Claims the due deliveries (a batch) and sends them; returns how many it claimed.
    pub async fn run_once(&self) -> Result<usize, StorageError> {
        let claimed = self
            .meta
            .claim_deliveries(&self.name, self.lease, self.max_attempts, BATCH)
            .await?;
        let sent = futures::future::join_all(claimed.iter().map(|d| self.deliver(d))).await;
        for result in sent {
            result?;
        }
        Ok(claimed.len())
    }

    /// Sends until `shutdown` turns true; the deliveries in hand are finished first. Store
    /// errors are logged and retried after a pause.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        tracing::info!(url = %self.url, "webhook deliveries start");
        while !*shutdown.borrow() {
            match self.run_once().await {
                Ok(n) if n > 0 => continue,
                Ok(_) => {}
                Err(e) => tracing::error!(error = %e, "webhook deliveries"),
            }
            tokio::select! {
                _ = tokio::time::sleep(POLL) => {}
                _ = shutdown.changed() => {}
            }
        }
    }

    /// One attempt at one delivery, and its record.
    async fn deliver(&self, d: &Delivery) -> Result<(), StorageError> {
        let t = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let sent = self
            .client
            .post(&self.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(EVENT_HEADER, &d.event)
            .header(DELIVERY_HEADER, &d.id)
            .header(SIGNATURE_HEADER, signature(&self.secret, t, &d.payload))
            .body(d.payload.clone())
            .send()
            .await;
        let (error, code) = match sent {
            Ok(r) if r.status().is_success() => {
                let code = i64::from(r.status().as_u16());
                self.meta
                    .delivery_succeeded(&d.id, &self.name, code)
                    .await?;
                tracing::info!(delivery = %d.id, event = %d.event, attempt = d.attempts, code,
                    "webhook delivered");
                return Ok(());
            }
            Ok(r) => {
                let status = r.status();
                let body = r.text().await.unwrap_or_default();
                let body: String = body.trim().chars().take(200).collect();
                let error = if body.is_empty() {
                    format!("the receiver answered {status}")
                } else {
                    format!("the receiver answered {status}: {body}")
                };
                (error, Some(i64::from(status.as_u16())))
            }
            Err(e) if e.is_timeout() => (
                format!("no answer within {} s", self.timeout.as_secs()),
                None,
            ),
            Err(e) => (error_chain(&e), None),
        };
        let status = self
            .meta
            .delivery_failed(
                d,
                &self.name,
                &error,
                code,
                self.max_attempts,
                self.retry_base,
            )
            .await?;
        match status {
            Some(DeliveryStatus::Failed) => tracing::error!(delivery = %d.id, event = %d.event,
                attempts = d.attempts, %error, "webhook given up"),
            Some(_) => tracing::warn!(delivery = %d.id, event = %d.event, attempt = d.attempts,
                %error, "webhook attempt failed; retrying later"),
            None => {}
        }
        Ok(())
    }
}

/// An error with its causes (reqwest's own message rarely names the reason).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_are_stripe_style_hmac_sha256() {
        // HMAC-SHA256("key", "1700000000.{}"), checked with `openssl dgst -sha256 -hmac key`.
        let s = signature("key", 1_700_000_000, "{}");
        assert_eq!(
            s,
            "t=1700000000,v1=9d713ed406bb7076d4123f0dc2c39d2df5c654ed4b0cd56b52c8b4c940bd63ae"
        );
        assert_ne!(s, signature("other", 1_700_000_000, "{}"));
        assert_ne!(s, signature("key", 1_700_000_001, "{}"));
    }
}
