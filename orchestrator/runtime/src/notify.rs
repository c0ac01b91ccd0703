//! Notifications: what the daemon tells people (failed runs, stale assets), posted as JSON to
//! a webhook. The body carries a `text` field, so Slack and Mattermost incoming webhooks show it
//! as is, plus the details for other receivers. The webhook URL is a secret: it is never logged
//! or shown, only its host.

use std::time::Duration;

use async_trait::async_trait;

/// One thing to tell.
#[derive(Clone, Debug, PartialEq)]
pub struct Notification {
    /// `run_failure`, `freshness_violation`, `freshness_recovered`.
    pub kind: String,
    /// One line for people.
    pub text: String,
    /// Everything else, for programs.
    pub details: serde_json::Value,
}

/// Why a notification could not be delivered.
#[derive(Debug, thiserror::Error)]
#[error("cannot notify the webhook at {host}: {message}")]
pub struct NotifyError {
    host: String,
    message: String,
}

/// Where notifications go.
#[async_trait]
pub trait Notifier: Send + Sync + 'static {
    async fn notify(&self, notification: &Notification) -> Result<(), NotifyError>;
}

/// Posts each notification as JSON to a URL, retrying a few times.
pub struct WebhookNotifier {
    url: String,
    host: String,
    client: reqwest::Client,
}

impl std::fmt::Debug for WebhookNotifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WebhookNotifier({})", self.host)
    }
}

impl WebhookNotifier {
    pub fn new(url: &str) -> Result<WebhookNotifier, String> {
        let parsed = reqwest::Url::parse(url)
            .map_err(|e| format!("the webhook URL is not a valid URL: {e}"))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err("the webhook URL must be http:// or https://".into());
        }
        let host = parsed.host_str().unwrap_or("?").to_owned();
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(WebhookNotifier {
            url: url.to_owned(),
            host,
            client,
        })
    }
}

#[async_trait]
impl Notifier for WebhookNotifier {
    async fn notify(&self, notification: &Notification) -> Result<(), NotifyError> {
        let body = serde_json::json!({
            "text": notification.text,
            "kind": notification.kind,
            "details": notification.details,
        });
        let mut last = String::new();
        for attempt in 0..3u32 {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(500 * u64::from(attempt))).await;
            }
            match self.client.post(&self.url).json(&body).send().await {
                Ok(response) if response.status().is_success() => return Ok(()),
                Ok(response) => last = format!("it answered {}", response.status()),
                // The error's text may hold the URL; keep only what kind of failure it was.
                Err(e) if e.is_timeout() => last = "it timed out".into(),
                Err(e) if e.is_connect() => last = "cannot connect".into(),
                Err(_) => last = "the request failed".into(),
            }
        }
        Err(NotifyError {
            host: self.host.clone(),
            message: last,
        })
    }
}
