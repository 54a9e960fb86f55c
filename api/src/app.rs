//! Assembles the HTTP application: OpenAPI service, docs, auth data, limits, error mapping.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use poem::endpoint::make_sync;
use poem::http::header::CONTENT_LENGTH;
use poem::listener::TcpAcceptor;
use poem::web::Html;
use poem::{Endpoint, EndpointExt, IntoEndpoint, Request, Response, Route, Server};
use poem_openapi::OpenApiService;
use sea_orm::DatabaseConnection;

use wirehook_core::engine::Engine;
use wirehook_core::http_client::{ClientConfig, DeliveryClient};
use wirehook_core::secrets::Keyring;

use crate::allowed_methods::{AllowedMethods, with_allow_header};
use crate::auth::JwtVerifier;
use crate::config::{InboundConfig, JwtConfig, Limits};
use crate::connections::CappedAcceptor;
use crate::error::json_error;
use crate::ingest::Ingestor;
use crate::overload::Admission;
use crate::read_replica::Reads;
use crate::refusals::RefusalLimiter;
use crate::routes::{
    configs::ConfigsApi, configs::operations::ConfigOpsApi, events::EventsApi, health::HealthApi,
    inbound::InboundApi,
};

/// Largest request body the API reads (1 MiB).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

type Apis = (ConfigsApi, ConfigOpsApi, EventsApi, InboundApi, HealthApi);

/// The OpenAPI service for `db` (history lists read through `reads`); with a disconnected
/// database it still renders the spec.
pub fn openapi_service(
    db: DatabaseConnection,
    reads: Reads,
    engine: Option<Arc<Engine>>,
    keyring: Arc<Keyring>,
    inbound: Arc<InboundConfig>,
    limits: &Limits,
) -> OpenApiService<Apis, ()> {
    let ingestor = Ingestor::new(db.clone(), limits.ingest_in_flight);
    let apis = (
        ConfigsApi {
            db: db.clone(),
            reads: reads.clone(),
            engine,
            keyring: keyring.clone(),
        },
        ConfigOpsApi {
            db: db.clone(),
            keyring,
        },
        EventsApi {
            db: db.clone(),
            reads,
            ingestor: ingestor.clone(),
        },
        InboundApi {
            db: db.clone(),
            ingestor,
            refusals: Arc::new(RefusalLimiter::new(inbound.refusal_limit)),
            config: inbound,
        },
        HealthApi {
            db,
            metrics: crate::metrics::handle(),
        },
    );
    OpenApiService::new(apis, "wirehook", env!("CARGO_PKG_VERSION")).description(
        "Receives provider webhooks (SignalWire, ElevenLabs), delivers signed events to configured \
         endpoints, and exposes configuration and history. Errors are always \
         `{\"success\": false, \"error\": {\"code\", \"message\"}}`.",
    )
}

/// The OpenAPI document (what `api openapi` prints, `openapi.json` holds and the api serves).
pub fn openapi_spec() -> String {
    let base = url::Url::parse("http://127.0.0.1:8080").expect("a constant URL parses");
    let inbound = InboundConfig::unconfigured(base);
    let service = openapi_service(
        DatabaseConnection::default(),
        Reads::primary_only(DatabaseConnection::default()),
        None,
        Arc::new(Keyring::development()),
        Arc::new(inbound),
        &Limits::default(),
    );
    crate::openapi_doc::finish(&service.spec())
}

/// Why the application could not be assembled.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("JWT_SECRET is unusable: {0}")]
    Jwt(#[from] jsonwebtoken::errors::Error),
    #[error("cannot build the delivery HTTP client: {0}")]
    Client(#[from] wirehook_core::http_client::ClientBuildError),
}

/// A running-ready application: database, auth and the delivery engine (for test deliveries).
pub struct App {
    db: DatabaseConnection,
    reads: Reads,
    verifier: Arc<JwtVerifier>,
    engine: Arc<Engine>,
    keyring: Arc<Keyring>,
    inbound: Arc<InboundConfig>,
    limits: Limits,
}

impl App {
    /// Prepares the application; `keyring` encrypts and opens the configurations' secrets.
    pub fn new(
        db: DatabaseConnection,
        jwt: &JwtConfig,
        delivery: ClientConfig,
        keyring: Arc<Keyring>,
        inbound: InboundConfig,
    ) -> Result<Self, AppError> {
        let client = DeliveryClient::new(delivery)?;
        Ok(Self {
            inbound: Arc::new(inbound),
            verifier: Arc::new(JwtVerifier::new(jwt)?),
            engine: Arc::new(Engine::new(db.clone(), client, keyring.clone())),
            keyring,
            reads: Reads::primary_only(db.clone()),
            db,
            limits: Limits::default(),
        })
    }

    /// The application with `limits` instead of the defaults.
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// The application reading history lists from `standby` while it is at most `max_lag`
    /// behind (`DATABASE_READ_URL`; see [`crate::read_replica`]).
    pub fn with_read_replica(mut self, standby: DatabaseConnection, max_lag: Duration) -> Self {
        self.reads = Reads::with_standby(self.db.clone(), standby, max_lag);
        self
    }

    /// The complete endpoint with docs, limits and the uniform JSON error mapping.
    pub fn endpoint(&self) -> impl Endpoint + 'static {
        let service = openapi_service(
            self.db.clone(),
            self.reads.clone(),
            Some(self.engine.clone()),
            self.keyring.clone(),
            self.inbound.clone(),
            &self.limits,
        );
        let admission = Arc::new(Admission::new(&self.limits));
        let raw_spec = service.spec();
        let spec = crate::openapi_doc::finish(&raw_spec);
        // poem-openapi's Swagger UI page embeds its own document; show the finished one.
        let docs = service.swagger_ui_html().replacen(&raw_spec, &spec, 1);
        let routes = with_allow_header(service.into_endpoint(), AllowedMethods::of::<Apis>());
        Route::new()
            .nest(
                "/docs",
                Route::new().at("/", make_sync(move |_| Html(docs.clone()))),
            )
            .at(
                "/openapi.json",
                make_sync(move |_| {
                    Response::builder()
                        .content_type("application/json")
                        .body(spec.clone())
                }),
            )
            .nest("/console", crate::console::endpoint())
            .nest("/", routes)
            .before(limit_body)
            .catch_all_error(json_error)
            // Outside the body limit, so a request is refused before its body is read.
            .around(move |ep, req| {
                let admission = admission.clone();
                async move { Ok(admission.serve(&ep, req).await) }
            })
            // Outside the admission, so its refusals carry the headers too.
            .map(crate::response_headers::apply)
            .around(|ep, req| async move {
                let method = req.method().to_string();
                let result = ep.get_response(req).await;
                metrics::counter!("wirehook_http_requests_total",
                    "method" => method, "status" => result.status().as_u16().to_string())
                .increment(1);
                Ok(result)
            })
            .data(self.verifier.clone())
    }

    /// Serves on `acceptor`, capped at `MAX_CONNECTIONS`, until `shutdown` resolves, then
    /// drains for up to 10 s.
    pub async fn serve(
        self,
        acceptor: TcpAcceptor,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let acceptor = CappedAcceptor::new(acceptor, self.limits.max_connections);
        Server::new_with_acceptor(acceptor)
            .run_with_graceful_shutdown(self.endpoint(), shutdown, Some(Duration::from_secs(10)))
            .await
    }
}

/// Connections the kernel may hold completed but not yet accepted (capped by
/// `net.core.somaxconn`): past `MAX_CONNECTIONS` served and as many being refused, new
/// connections wait there, and tokio's default of 1,024 overflowed under the overload bench
/// (the kernel then drops the handshake and the client retries it seconds later).
pub const LISTEN_BACKLOG: u32 = 4096;

/// Binds `addr` (port 0 picks a free port) with [`LISTEN_BACKLOG`] and returns the acceptor
/// and its real address.
pub async fn bind(addr: SocketAddr) -> std::io::Result<(TcpAcceptor, SocketAddr)> {
    let socket = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    let listener = socket.listen(LISTEN_BACKLOG)?;
    let local = listener.local_addr()?;
    Ok((TcpAcceptor::from_tokio(listener)?, local))
}

/// Refuses bodies over [`MAX_BODY_BYTES`] with 413: by `Content-Length` before reading, and
/// chunked bodies by reading at most one byte past the limit.
async fn limit_body(mut req: Request) -> poem::Result<Request> {
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match declared {
        Some(len) if len > MAX_BODY_BYTES as u64 => Err(poem::Error::from_status(
            poem::http::StatusCode::PAYLOAD_TOO_LARGE,
        )),
        Some(_) => Ok(req),
        None => {
            let body = req.take_body().into_bytes_limit(MAX_BODY_BYTES).await?;
            req.set_body(body);
            Ok(req)
        }
    }
}
