//! The daemon's one error type, and how each error becomes an HTTP status and a JSON body
//! `{ "code": ..., "message": ... }`.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use cidrcast_core::CoreError;
use cidrcast_engine::EngineError;
use serde::Serialize;

/// What went wrong while serving a request.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The request is malformed (JSON syntax, a path or query parameter that does not parse).
    #[error("{0}")]
    BadRequest(String),
    /// No credentials, or credentials that match no token.
    #[error("{0}")]
    Unauthenticated(String),
    /// The token's role or scope does not allow this.
    #[error("{0}")]
    Forbidden(String),
    /// The named thing does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The request conflicts with the current state.
    #[error("{0}")]
    Conflict(String),
    /// The request body is larger than allowed.
    #[error("{0}")]
    TooLarge(String),
    /// The request is well-formed but its content is invalid (a field's value).
    #[error("{0}")]
    Unprocessable(String),
    /// The daemon cannot serve this now (store failure, shutting down, not ready).
    #[error("{0}")]
    Unavailable(String),
    /// The allocator or the store refused or failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// A bug: something that should not happen did.
    #[error("internal error: {0}")]
    Internal(String),
}

/// The JSON body of every error response.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// Stable, machine-readable, snake_case.
    pub code: String,
    /// For people: names the field, the value or the thing that was refused.
    pub message: String,
}

impl ServerError {
    /// HTTP status and error code.
    pub fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ServerError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            ServerError::Unauthenticated(_) => (StatusCode::UNAUTHORIZED, "unauthenticated"),
            ServerError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            ServerError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ServerError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            ServerError::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            ServerError::Unprocessable(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid"),
            ServerError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            ServerError::Engine(e) => engine_status(e),
            ServerError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

fn engine_status(e: &EngineError) -> (StatusCode, &'static str) {
    use StatusCode as S;
    match e {
        EngineError::Core(c) => core_status(c),
        EngineError::Store(_) | EngineError::CommitFailed(_) => {
            (S::SERVICE_UNAVAILABLE, "store_failed")
        }
        EngineError::Unavailable(_) => (S::SERVICE_UNAVAILABLE, "unavailable"),
        EngineError::Conflict(_) => (S::SERVICE_UNAVAILABLE, "conflict"),
        EngineError::Reloading => (S::SERVICE_UNAVAILABLE, "reloading"),
        EngineError::ConfigMismatch { .. } => (S::CONFLICT, "config_mismatch"),
    }
}

/// Status and code of an allocator refusal.
pub fn core_status(e: &CoreError) -> (StatusCode, &'static str) {
    use StatusCode as S;
    match e {
        CoreError::UnknownPool(_) => (S::NOT_FOUND, "unknown_pool"),
        CoreError::UnknownSubdivision(_) => (S::NOT_FOUND, "unknown_subdivision"),
        CoreError::UnknownLease(_) => (S::NOT_FOUND, "unknown_lease"),
        CoreError::UnknownShard(_) => (S::NOT_FOUND, "unknown_shard"),
        CoreError::UnknownEvent(_) => (S::NOT_FOUND, "unknown_event"),
        CoreError::PoolExists(_) => (S::CONFLICT, "pool_exists"),
        CoreError::PoolOverlap { .. } => (S::CONFLICT, "pool_overlap"),
        CoreError::PoolInUse(_) => (S::CONFLICT, "pool_in_use"),
        CoreError::SubdivisionExists(_) => (S::CONFLICT, "subdivision_exists"),
        CoreError::SubdivisionInUse { .. } => (S::CONFLICT, "subdivision_in_use"),
        CoreError::PoolExhausted { .. } => (S::CONFLICT, "pool_exhausted"),
        CoreError::MaxShards { .. } => (S::CONFLICT, "max_shards"),
        CoreError::LeaseConflict { .. } => (S::CONFLICT, "lease_conflict"),
        CoreError::InvalidTransition { .. } => (S::CONFLICT, "invalid_transition"),
        CoreError::ShardBusy { .. } => (S::CONFLICT, "shard_busy"),
        CoreError::ShardCooling { .. } => (S::CONFLICT, "shard_cooling"),
        CoreError::Limit(_) => (S::CONFLICT, "limit"),
        CoreError::HostBitsSet { .. } => (S::UNPROCESSABLE_ENTITY, "host_bits_set"),
        CoreError::InvalidPool { .. } => (S::UNPROCESSABLE_ENTITY, "invalid_pool"),
        CoreError::InvalidSubdivision { .. } => (S::UNPROCESSABLE_ENTITY, "invalid_subdivision"),
        CoreError::ShardSizeNotAllowed { .. } => {
            (S::UNPROCESSABLE_ENTITY, "shard_size_not_allowed")
        }
        CoreError::InvalidVmId(_) => (S::UNPROCESSABLE_ENTITY, "invalid_vm_id"),
        CoreError::InvalidEvent { .. } => (S::UNPROCESSABLE_ENTITY, "invalid_event"),
        CoreError::UnknownProfile(_) => (S::NOT_FOUND, "unknown_profile"),
        CoreError::UnknownRouter(_) => (S::NOT_FOUND, "unknown_router"),
        CoreError::InvalidProfile { .. } => (S::UNPROCESSABLE_ENTITY, "invalid_profile"),
        CoreError::InvalidRouter { .. } => (S::UNPROCESSABLE_ENTITY, "invalid_router"),
        CoreError::Corrupt(_) => (S::INTERNAL_SERVER_ERROR, "corrupt"),
    }
}

impl IntoResponse for ServerError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let body = ErrorBody {
            code: code.to_string(),
            message: self.to_string(),
        };
        (status, axum::Json(body)).into_response()
    }
}

impl From<JsonRejection> for ServerError {
    fn from(r: JsonRejection) -> Self {
        let message = r.body_text();
        match r.status() {
            StatusCode::PAYLOAD_TOO_LARGE => ServerError::TooLarge(message),
            StatusCode::UNPROCESSABLE_ENTITY => ServerError::Unprocessable(message),
            _ => ServerError::BadRequest(message),
        }
    }
}

impl From<CoreError> for ServerError {
    fn from(e: CoreError) -> Self {
        ServerError::Engine(EngineError::Core(e))
    }
}

impl From<PathRejection> for ServerError {
    fn from(r: PathRejection) -> Self {
        ServerError::BadRequest(r.body_text())
    }
}

impl From<QueryRejection> for ServerError {
    fn from(r: QueryRejection) -> Self {
        ServerError::BadRequest(r.body_text())
    }
}
