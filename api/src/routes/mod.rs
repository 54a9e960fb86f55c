//! HTTP routes, one module per resource.

pub mod configs;
pub mod events;
pub mod health;
pub mod inbound;

use poem_openapi::Tags;

/// OpenAPI tags grouping the operations.
#[derive(Tags)]
pub enum ApiTags {
    /// Outbound webhook configurations.
    Configs,
    /// Webhook event history, publishing platform events, retries.
    Events,
    /// Webhooks received from providers (SignalWire, ElevenLabs).
    Inbound,
    /// Liveness, readiness and metrics.
    Operations,
}
