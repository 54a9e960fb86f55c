//! The api's REST API as an operator drives it: a token from the real `api token`, creating
//! configurations, reading history.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{Value, json};

use crate::procs::{Binaries, Binary, Env, ProcError};

/// Why a REST call did not give what was asked.
#[derive(Debug, thiserror::Error)]
pub enum RestError {
    /// `api token` failed.
    #[error("cannot get a token: {0}")]
    Token(#[from] ProcError),
    /// The request could not be sent or its answer read.
    #[error("{what}: {source}")]
    Http {
        /// The request.
        what: String,
        /// The transport error.
        #[source]
        source: reqwest::Error,
    },
    /// The api answered with an unexpected status.
    #[error("{what} answered {status}: {body}")]
    Status {
        /// The request.
        what: String,
        /// The HTTP status.
        status: u16,
        /// The answer's body.
        body: String,
    },
}

/// A configuration to create.
#[derive(Debug, Clone)]
pub struct NewConfig {
    pub name: String,
    /// Where deliveries go.
    pub url: String,
    /// Standard Webhooks secret (`whsec_…`).
    pub secret: String,
    /// The event types it receives.
    pub event_types: Vec<String>,
    /// `{}` matches everything.
    pub filters: Value,
}

impl NewConfig {
    /// An active configuration for `event_types`, without filters, with a fresh secret.
    pub fn new(name: &str, url: &str, event_types: &[&str]) -> Self {
        Self {
            name: name.to_owned(),
            url: url.to_owned(),
            secret: wirehook_core::signing::generate_secret(),
            event_types: event_types.iter().map(|t| (*t).to_owned()).collect(),
            filters: json!({}),
        }
    }
}

/// An authorized client of one running api.
#[derive(Clone)]
pub struct ApiClient {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl ApiClient {
    /// A client of the api at `addr` with a token signed by `jwt_secret` through `api token`.
    pub async fn new(
        binaries: &Binaries,
        addr: SocketAddr,
        jwt_secret: &str,
    ) -> Result<Self, RestError> {
        let env = Env::new().with("JWT_SECRET", jwt_secret);
        let token = binaries
            .output(
                Binary::Api,
                &["token", "--sub", "wirehook-harness", "--ttl", "24h"],
                &env,
            )
            .await?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|source| RestError::Http {
                what: "building the HTTP client".into(),
                source,
            })?;
        Ok(Self {
            base: format!("http://{addr}"),
            token,
            http,
        })
    }

    /// The api's base URL (`http://host:port`).
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The bearer token.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// `POST /api/webhooks/config`; returns the new configuration's id.
    pub async fn create_config(&self, config: &NewConfig) -> Result<i64, RestError> {
        let body = json!({
            "name": config.name,
            "url": config.url,
            "secret": config.secret,
            "eventTypes": config.event_types,
            "status": "active",
            "filters": config.filters,
        });
        let what = format!("creating configuration {}", config.name);
        let (status, answer) = self
            .send(
                self.http
                    .post(format!("{}/api/webhooks/config", self.base))
                    .json(&body),
                &what,
            )
            .await?;
        match (status, answer["webhook"]["id"].as_i64()) {
            (201, Some(id)) => Ok(id),
            _ => Err(RestError::Status {
                what,
                status,
                body: answer.to_string(),
            }),
        }
    }

    /// An authorized `POST` of the JSON `body` to `path`; returns status and JSON body
    /// (`Null` if the body is not JSON).
    pub async fn post(&self, path: &str, body: &Value) -> Result<(u16, Value), RestError> {
        self.send(
            self.http.post(format!("{}{path}", self.base)).json(body),
            path,
        )
        .await
    }

    /// An authorized `GET` of `path_and_query`; returns status and JSON body (`Null` if the
    /// body is not JSON).
    pub async fn get(&self, path_and_query: &str) -> Result<(u16, Value), RestError> {
        self.send(
            self.http.get(format!("{}{path_and_query}", self.base)),
            path_and_query,
        )
        .await
    }

    async fn send(
        &self,
        request: reqwest::RequestBuilder,
        what: &str,
    ) -> Result<(u16, Value), RestError> {
        let http_err = |source| RestError::Http {
            what: what.to_owned(),
            source,
        };
        let response = request
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(http_err)?;
        let status = response.status().as_u16();
        let text = response.text().await.map_err(http_err)?;
        Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
    }
}
