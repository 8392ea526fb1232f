//! Routes and thin handlers: parse, authenticate, call one [`App`] method on a blocking thread,
//! serialise.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, MatchedPath, Request, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use cidrcast_config::{ExternalEventSpec, PoolSpec, Profile, RouterSpec, SubdivisionSpec};
use futures_util::StreamExt;
use ipnet::IpNet;
use serde::Serialize;
use utoipa::OpenApi;

use crate::api;
use crate::app::App;
use crate::auth::Principal;
use crate::error::{ErrorBody, ServerError};

/// Marker of the I/O error a history import gets when its body passes `max_import_bytes`.
pub const TOO_LARGE: &str = "request body too large";

type Shared = State<Arc<App>>;
type Result<T, E = ServerError> = std::result::Result<T, E>;

/// JSON body whose rejections are [`ServerError`]s (JSON errors, not text).
#[derive(FromRequest)]
#[from_request(via(axum::Json), rejection(ServerError))]
pub struct ApiJson<T>(pub T);

/// Path parameters whose rejections are [`ServerError`]s.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ServerError))]
pub struct ApiPath<T>(pub T);

/// Query parameters whose rejections are [`ServerError`]s.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ServerError))]
pub struct ApiQuery<T>(pub T);

impl FromRequestParts<Arc<App>> for Principal {
    type Rejection = ServerError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self> {
        let header = parts
            .headers
            .get(header::AUTHORIZATION)
            .map(|v| {
                v.to_str().map_err(|_| {
                    ServerError::Unauthenticated("the Authorization header is not ASCII".into())
                })
            })
            .transpose()?;
        app.auth.authenticate(header)
    }
}

/// Runs `f` on the blocking pool: the engine waits for fsyncs.
/// How long `/readyz` waits for the store before answering 503.
const READINESS_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ServerError::Internal(format!("a worker failed: {e}")))?
}

/// 201 with the body when `created`, else 200.
fn created_or_ok<T: Serialize>(created: bool, body: T) -> Response {
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    (status, Json(body)).into_response()
}

/// The whole API.
pub fn router(app: Arc<App>) -> Router {
    let max_body = app.settings.max_body_bytes;
    let v1 = Router::new()
        .route("/allocations", post(allocate).get(list_allocations))
        .route(
            "/allocations/{vm_id}",
            get(get_allocation).delete(release_allocation),
        )
        .route("/pools", get(list_pools).post(create_pool))
        .route(
            "/pools/{name}",
            get(get_pool).put(put_pool).delete(delete_pool),
        )
        .route(
            "/subdivisions",
            get(list_subdivisions).post(create_subdivision),
        )
        .route(
            "/subdivisions/{name}",
            get(get_subdivision)
                .put(put_subdivision)
                .delete(delete_subdivision),
        )
        .route("/profiles", get(list_profiles).post(create_profile))
        .route(
            "/profiles/{name}",
            get(get_profile).put(put_profile).delete(delete_profile),
        )
        .route("/routers", get(list_routers).post(create_router))
        .route(
            "/routers/{name}",
            get(get_router).put(put_router).delete(delete_router),
        )
        .route("/routers/{name}/config", get(router_config))
        .route("/events", get(list_events).post(create_event))
        .route(
            "/events/{name}",
            get(get_event).put(put_event).delete(delete_event),
        )
        .route(
            "/history",
            post(import_history).layer(DefaultBodyLimit::disable()),
        )
        .route("/forecasts", get(forecasts))
        .route("/plan", get(plan_dry_run).post(plan_apply))
        .route("/shards", get(list_shards))
        .route("/shards/{addr}/{len}", axum::routing::delete(release_shard))
        .route("/shards/{addr}/{len}/drain", post(drain_shard));
    Router::new()
        .nest("/v1", v1)
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi_json))
        .merge(
            utoipa_swagger_ui::SwaggerUi::new("/docs").url("/docs/openapi.json", ApiDoc::openapi()),
        )
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(max_body))
        .layer(middleware::from_fn_with_state(app.clone(), track))
        .with_state(app)
}

/// Records latency by method, route and status.
async fn track(State(app): Shared, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().as_str().to_string();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let resp = next.run(req).await;
    app.metrics.http(
        &method,
        &route,
        resp.status().as_u16(),
        start.elapsed().as_secs_f64(),
    );
    resp
}

async fn not_found(req: Request) -> ServerError {
    ServerError::NotFound(format!(
        "no route for {} {}",
        req.method(),
        req.uri().path()
    ))
}

// ----- allocations -----

#[utoipa::path(post, path = "/v1/allocations", request_body = api::AllocateRequest,
    responses((status = 201, description = "allocated", body = api::Allocation),
              (status = 200, description = "the VM already held this address (idempotent retry)", body = api::Allocation),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
async fn allocate(
    State(app): Shared,
    p: Principal,
    ApiJson(req): ApiJson<api::AllocateRequest>,
) -> Result<Response> {
    let (view, created) = app.allocate_async(&p, req).await?;
    Ok(created_or_ok(created, view))
}

#[utoipa::path(get, path = "/v1/allocations", params(api::AllocationFilter),
    responses((status = 200, body = api::AllocationList)), security(("bearer" = [])))]
async fn list_allocations(
    State(app): Shared,
    p: Principal,
    ApiQuery(f): ApiQuery<api::AllocationFilter>,
) -> Result<Json<api::AllocationList>> {
    Ok(Json(blocking(move || app.leases(&p, f)).await?))
}

#[utoipa::path(get, path = "/v1/allocations/{vm_id}",
    responses((status = 200, body = api::Allocation), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
async fn get_allocation(
    State(app): Shared,
    p: Principal,
    ApiPath(vm_id): ApiPath<String>,
) -> Result<Json<api::Allocation>> {
    Ok(Json(blocking(move || app.lease(&p, &vm_id)).await?))
}

#[utoipa::path(delete, path = "/v1/allocations/{vm_id}",
    responses((status = 200, body = api::Released), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
async fn release_allocation(
    State(app): Shared,
    p: Principal,
    ApiPath(vm_id): ApiPath<String>,
) -> Result<Json<api::Released>> {
    Ok(Json(app.release_async(&p, &vm_id).await?))
}

// ----- pools, subdivisions, profiles, routers, events: create, read, update, delete -----

/// `PUT /v1/{kind}/{name}`: the body's name must be the path's.
fn same_name(kind: &str, path: &str, body: &str) -> Result<()> {
    if path == body {
        Ok(())
    } else {
        Err(ServerError::Unprocessable(format!(
            "{kind} name in the path is {path:?} but the body names {body:?}"
        )))
    }
}

macro_rules! crud {
    ($kind:literal, $all:literal, $one:literal, $ty:ty, $view:ty, $list:ident, $get:ident, $create:ident, $put:ident, $delete:ident,
     $app_list:ident, $app_get:ident, $app_put:ident, $app_delete:ident) => {
        #[utoipa::path(get, path = $all,
            responses((status = 200, body = Vec<Object>)), security(("bearer" = [])))]
        async fn $list(State(app): Shared, p: Principal) -> Result<Json<Vec<$view>>> {
            Ok(Json(blocking(move || app.$app_list(&p)).await?))
        }

        #[utoipa::path(get, path = $one,
            responses((status = 200, body = Object), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
        async fn $get(
            State(app): Shared,
            p: Principal,
            ApiPath(name): ApiPath<String>,
        ) -> Result<Json<$view>> {
            Ok(Json(blocking(move || app.$app_get(&p, &name)).await?))
        }

        #[utoipa::path(post, path = $all, request_body = Object,
            responses((status = 201, body = Object), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)),
            security(("bearer" = [])))]
        async fn $create(
            State(app): Shared,
            p: Principal,
            ApiJson(spec): ApiJson<$ty>,
        ) -> Result<Response> {
            let body = spec.clone();
            blocking(move || app.$app_put(&p, spec, false)).await?;
            Ok(created_or_ok(true, body))
        }

        #[utoipa::path(put, path = $one, request_body = Object,
            responses((status = 200, body = Object), (status = 201, body = Object), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)),
            security(("bearer" = [])))]
        async fn $put(
            State(app): Shared,
            p: Principal,
            ApiPath(name): ApiPath<String>,
            ApiJson(spec): ApiJson<$ty>,
        ) -> Result<Response> {
            same_name($kind, &name, &spec.name)?;
            let body = spec.clone();
            let created = blocking(move || app.$app_put(&p, spec, true)).await?;
            Ok(created_or_ok(created, body))
        }

        #[utoipa::path(delete, path = $one,
            responses((status = 200, body = Object), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
            security(("bearer" = [])))]
        async fn $delete(
            State(app): Shared,
            p: Principal,
            ApiPath(name): ApiPath<String>,
        ) -> Result<Json<$ty>> {
            Ok(Json(blocking(move || app.$app_delete(&p, &name)).await?))
        }
    };
}

crud!(
    "pool",
    "/v1/pools",
    "/v1/pools/{name}",
    PoolSpec,
    api::Pool,
    list_pools,
    get_pool,
    create_pool,
    put_pool,
    delete_pool,
    pools,
    pool,
    put_pool,
    delete_pool
);
crud!(
    "subdivision",
    "/v1/subdivisions",
    "/v1/subdivisions/{name}",
    SubdivisionSpec,
    api::Subdivision,
    list_subdivisions,
    get_subdivision,
    create_subdivision,
    put_subdivision,
    delete_subdivision,
    subdivisions,
    subdivision,
    put_subdivision,
    delete_subdivision
);
crud!(
    "profile",
    "/v1/profiles",
    "/v1/profiles/{name}",
    Profile,
    Profile,
    list_profiles,
    get_profile,
    create_profile,
    put_profile,
    delete_profile,
    profiles,
    profile,
    put_profile,
    delete_profile
);
crud!(
    "router",
    "/v1/routers",
    "/v1/routers/{name}",
    RouterSpec,
    RouterSpec,
    list_routers,
    get_router,
    create_router,
    put_router,
    delete_router,
    routers,
    router,
    put_router,
    delete_router
);
crud!(
    "event",
    "/v1/events",
    "/v1/events/{name}",
    ExternalEventSpec,
    ExternalEventSpec,
    list_events,
    get_event,
    create_event,
    put_event,
    delete_event,
    events,
    event,
    put_event,
    delete_event
);

// ----- history -----

#[utoipa::path(post, path = "/v1/history",
    request_body(content = String, content_type = "text/csv",
        description = "VM lifecycle events in the canonical trace format (header `time_s,subdivision,event,vm_id,profile`), streamed"),
    responses((status = 200, body = api::ImportReport), (status = 413, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
async fn import_history(
    State(app): Shared,
    p: Principal,
    body: Body,
) -> Result<Json<api::ImportReport>> {
    let max = app.settings.max_import_bytes;
    let mut seen: u64 = 0;
    let stream = body.into_data_stream().map(move |chunk| {
        let chunk = chunk.map_err(std::io::Error::other)?;
        seen += chunk.len() as u64;
        if seen > max {
            return Err(std::io::Error::other(TOO_LARGE));
        }
        Ok(chunk)
    });
    let reader = tokio_util::io::SyncIoBridge::new(tokio_util::io::StreamReader::new(stream));
    Ok(Json(
        blocking(move || app.import_history(&p, reader)).await?,
    ))
}

#[utoipa::path(get, path = "/v1/routers/{name}/config",
    params(("name" = String, Path, description = "router name"), api::RouterConfigQuery),
    responses(
        (status = 200, description = "the router's configuration rendered from the current shard set (FRR or BIRD text, or the JSON form)", body = String, content_type = "text/plain"),
        (status = 400, description = "unknown format", body = ErrorBody),
        (status = 404, description = "unknown router", body = ErrorBody)),
    security(("bearer" = [])))]
async fn router_config(
    State(app): Shared,
    p: Principal,
    ApiPath(name): ApiPath<String>,
    ApiQuery(q): ApiQuery<api::RouterConfigQuery>,
) -> Result<Response> {
    let (text, content_type) =
        blocking(move || app.router_config(&p, &name, q.format.as_deref())).await?;
    Ok(([(header::CONTENT_TYPE, content_type)], text).into_response())
}

// ----- forecasts and plans -----

#[utoipa::path(get, path = "/v1/forecasts",
    responses((status = 200, body = api::Forecasts)), security(("bearer" = [])))]
async fn forecasts(State(app): Shared, p: Principal) -> Result<Json<api::Forecasts>> {
    Ok(Json(blocking(move || app.forecasts(&p)).await?))
}

#[utoipa::path(get, path = "/v1/plan",
    responses((status = 200, description = "what the planner would do now (nothing is changed)", body = api::Plan)),
    security(("bearer" = [])))]
async fn plan_dry_run(State(app): Shared, p: Principal) -> Result<Json<api::Plan>> {
    Ok(Json(blocking(move || app.plan(&p, true)).await?))
}

#[utoipa::path(post, path = "/v1/plan",
    responses((status = 200, description = "the plan, applied in one store transaction", body = api::Plan)),
    security(("bearer" = [])))]
async fn plan_apply(State(app): Shared, p: Principal) -> Result<Json<api::Plan>> {
    Ok(Json(blocking(move || app.plan(&p, false)).await?))
}

// ----- shards -----

#[utoipa::path(get, path = "/v1/shards", params(api::ShardFilter),
    responses((status = 200, body = Vec<api::Shard>)), security(("bearer" = [])))]
async fn list_shards(
    State(app): Shared,
    p: Principal,
    ApiQuery(f): ApiQuery<api::ShardFilter>,
) -> Result<Json<Vec<api::Shard>>> {
    Ok(Json(blocking(move || app.shards(&p, f)).await?))
}

/// The shard prefix of `/v1/shards/{addr}/{len}`.
fn shard_prefix(addr: &str, len: &str) -> Result<IpNet> {
    let a: IpAddr = addr
        .parse()
        .map_err(|_| ServerError::BadRequest(format!("{addr:?} is not an IPv4 or IPv6 address")))?;
    let l: u8 = len
        .parse()
        .map_err(|_| ServerError::BadRequest(format!("prefix length {len:?} is not a number")))?;
    let net = IpNet::new(a, l).map_err(|_| {
        ServerError::BadRequest(format!("{addr}/{len}: prefix length out of range"))
    })?;
    if net.network() != a {
        return Err(ServerError::BadRequest(format!(
            "{addr}/{len} has host bits set (the network is {})",
            net.trunc()
        )));
    }
    Ok(net)
}

#[utoipa::path(post, path = "/v1/shards/{addr}/{len}/drain",
    responses((status = 200, body = Option<api::Shard>), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
async fn drain_shard(
    State(app): Shared,
    p: Principal,
    ApiPath((addr, len)): ApiPath<(String, String)>,
) -> Result<Json<Option<api::Shard>>> {
    let prefix = shard_prefix(&addr, &len)?;
    Ok(Json(blocking(move || app.drain_shard(&p, prefix)).await?))
}

#[utoipa::path(delete, path = "/v1/shards/{addr}/{len}",
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, description = "it still holds leases", body = ErrorBody)),
    security(("bearer" = [])))]
async fn release_shard(
    State(app): Shared,
    p: Principal,
    ApiPath((addr, len)): ApiPath<(String, String)>,
) -> Result<StatusCode> {
    let prefix = shard_prefix(&addr, &len)?;
    blocking(move || app.release_shard(&p, prefix)).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ----- health, metrics, docs -----

#[utoipa::path(get, path = "/healthz", responses((status = 200, body = api::Health)))]
async fn healthz() -> Json<api::Health> {
    Json(api::Health {
        status: "ok".into(),
    })
}

#[utoipa::path(get, path = "/readyz",
    responses((status = 200, body = api::Health), (status = 503, body = ErrorBody)))]
async fn readyz(State(app): Shared) -> Result<Json<api::Health>> {
    // A store that does not answer (etcd without quorum retries for its timeouts) is not ready:
    // say so within READINESS_TIMEOUT rather than when its retries run out.
    match tokio::time::timeout(READINESS_TIMEOUT, blocking(move || app.readiness())).await {
        Ok(ready) => ready?,
        Err(_) => {
            return Err(ServerError::Unavailable(format!(
                "the store did not answer within {} s",
                READINESS_TIMEOUT.as_secs()
            )))
        }
    }
    Ok(Json(api::Health {
        status: "ok".into(),
    }))
}

#[utoipa::path(get, path = "/metrics",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
async fn metrics(State(app): Shared) -> Result<Response> {
    let text = blocking(move || app.metrics_text()).await?;
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response())
}

async fn openapi_json() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], openapi_text()).into_response()
}

/// The OpenAPI document, as served at `/openapi.json` and checked in as `openapi.json`.
pub fn openapi_text() -> String {
    let mut s = ApiDoc::openapi()
        .to_pretty_json()
        .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
    s.push('\n');
    s
}

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The OpenAPI document of the API, generated from the handlers.
#[derive(OpenApi)]
#[openapi(
    info(title = "cidrcast", description = "Predictive IP address manager: allocations, pools, subdivisions, profiles, routers, events, history, forecasts, plans, shards."),
    paths(allocate, list_allocations, get_allocation, release_allocation,
        list_pools, get_pool, create_pool, put_pool, delete_pool,
        list_subdivisions, get_subdivision, create_subdivision, put_subdivision, delete_subdivision,
        list_profiles, get_profile, create_profile, put_profile, delete_profile,
        list_routers, get_router, create_router, put_router, delete_router, router_config,
        list_events, get_event, create_event, put_event, delete_event,
        import_history, forecasts, plan_dry_run, plan_apply,
        list_shards, drain_shard, release_shard, healthz, readyz, metrics),
    components(schemas(ErrorBody, api::AllocateRequest, api::Allocation, api::Released,
        api::AllocationList, api::Shard, api::Pool, api::Subdivision, api::ImportReport,
        api::Plan, api::Forecast, api::Forecasts, api::Health)),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;
