//! The C2SP tlog-tiles static endpoints of each chain, behind `TLOG_TILES_ENABLED`, so that
//! off-the-shelf clients and witnesses can follow a chain's log: `/tlog/<chain>/checkpoint` and
//! `/tlog/<chain>/tile/8/<L>/<N>[.p/<W>]` (the chain id percent-encoded as one path segment).

use agentidp_core::tiles::TileRef;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::routes::transparency;
use crate::state::AppState;

/// `GET /tlog/{chain}/checkpoint`: the latest signed checkpoint, cosignatures included.
pub async fn checkpoint(
    state: State<AppState>,
    chain: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    if !state.transparency.tlog_tiles {
        return Err(ApiError::NotFound);
    }
    transparency::checkpoint(state, chain).await
}

/// `GET /tlog/{chain}/tile/{*path}`: a tile at the width asked for, cut from the stored one.
pub async fn tile(
    State(state): State<AppState>,
    params: Result<Path<(String, String)>, PathRejection>,
) -> Result<Response, ApiError> {
    if !state.transparency.tlog_tiles {
        return Err(ApiError::NotFound);
    }
    let Ok(Path((chain, path))) = params else {
        return Err(ApiError::NotFound);
    };
    if chain.contains('\0') {
        return Err(ApiError::NotFound);
    }
    let tile = TileRef::from_path(&format!("tile/{path}")).ok_or(ApiError::NotFound)?;
    let hashes = state
        .transparency
        .api
        .tile(&chain, tile.level, tile.index, tile.width)
        .await
        .map_err(ApiError::internal)?
        .ok_or(ApiError::NotFound)?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream"),
            // A full tile never changes; a partial one's path names its width, so neither does it.
            (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
        ],
        hashes,
    )
        .into_response())
}
