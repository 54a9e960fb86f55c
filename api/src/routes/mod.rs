//! HTTP routes, one module per resource.

pub mod configs;
pub mod events;
pub mod health;

use poem_openapi::Tags;

/// OpenAPI tags grouping the operations.
#[derive(Tags)]
pub enum ApiTags {
    /// Outbound webhook configurations.
    Configs,
    /// Webhook event history.
    Events,
    /// Liveness, readiness and metrics.
    Operations,
}
