//! Webhook notifications of deployment events: queued, retried with backoff, never blocking.
