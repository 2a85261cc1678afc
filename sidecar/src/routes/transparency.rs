//! The transparency log over HTTP (sidecar/spec/transparency-openapi.yaml): the verifier key and
//! the latest signed checkpoints are public, as are consistency proofs (hashes only); an event's
//! inclusion proof and the export carry the events' fields, so they need `audit:read`.

use agentidp_core::export::{ConsistencyProof, InclusionProof};
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use serde_json::value::RawValue;
use uuid::Uuid;

use crate::error::ApiError;
use crate::routes::params;
use crate::state::AppState;
use crate::transparency_api::ProofError;
use crate::transparency_sql::Filed;

/// Lines an export request returns at most: a longer range is fetched page by page.
pub const EXPORT_PAGE: i64 = 10_000;

fn text(body: String) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response()
}

fn proof_error(e: ProofError) -> ApiError {
    match e {
        ProofError::NotFound => ApiError::NotFound,
        ProofError::NotYetSigned => ApiError::NotYetSigned,
        ProofError::Db(e) => ApiError::internal(e),
    }
}

/// The filed note with its cosignatures, as the log serves it; as filed when the lines do not
/// assemble, since the log's own signature still verifies.
fn cosigned(filed: &Filed) -> String {
    agentidp_core::witness::with_cosignatures(&filed.note, &filed.cosignatures)
        .unwrap_or_else(|_| filed.note.clone())
}

/// `GET /api/v1/transparency/verifier-key`: the log's key, `<name>+<key id>+<base64>`.
pub async fn verifier_key(State(state): State<AppState>) -> Result<Response, ApiError> {
    let signer = state.transparency.signer.get().ok_or(ApiError::NotFound)?;
    Ok(text(format!("{}\n", signer.verifier_key())))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckpointSummary {
    chain_id: String,
    tree_size: u64,
    root: String,
    signed_at: String,
    cosignatures: usize,
    note: String,
}

/// `GET /api/v1/transparency/checkpoints`: every chain's latest signed checkpoint.
pub async fn checkpoints(
    State(state): State<AppState>,
) -> Result<Json<Vec<CheckpointSummary>>, ApiError> {
    let latest = state
        .transparency
        .api
        .latest_checkpoints()
        .await
        .map_err(ApiError::internal)?;
    Ok(Json(
        latest
            .into_iter()
            .map(|f| CheckpointSummary {
                note: cosigned(&f),
                chain_id: f.chain_id,
                tree_size: f.head.size,
                root: f.head.root.to_string(),
                signed_at: f
                    .signed_at
                    .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                cosignatures: f.cosignatures.len(),
            })
            .collect(),
    ))
}

/// `GET /api/v1/transparency/checkpoints/{chainId}`: the chain's latest signed checkpoint as its
/// note text, cosignatures included.
pub async fn checkpoint(
    State(state): State<AppState>,
    chain_id: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let chain_id = params::chain_id(chain_id)?;
    let filed = state
        .transparency
        .api
        .latest_checkpoint(&chain_id)
        .await
        .map_err(ApiError::internal)?
        .ok_or(ApiError::NotFound)?;
    Ok(text(cosigned(&filed)))
}

fn size(value: Option<&String>, field: &'static str) -> Result<u64, ApiError> {
    value
        .and_then(|v| params::positive(v))
        .ok_or(ApiError::InvalidParameter {
            field,
            reason: "Must be a tree size: a whole number of at least 1.",
        })
}

/// `GET /api/v1/transparency/consistency/{chainId}?oldSize=&newSize=`: RFC 9162 §2.1.4.
pub async fn consistency(
    State(state): State<AppState>,
    chain_id: Result<Path<String>, PathRejection>,
    RawQuery(raw): RawQuery,
) -> Result<Json<ConsistencyProof>, ApiError> {
    let chain_id = params::chain_id(chain_id)?;
    let query = params::query(raw.as_deref(), &["oldSize", "newSize"])?;
    let old_size = size(query.get("oldSize"), "oldSize")?;
    let new_size = size(query.get("newSize"), "newSize")?;
    if old_size > new_size {
        return Err(ApiError::InvalidParameter {
            field: "oldSize",
            reason: "Must be at most newSize.",
        });
    }
    let proof = state
        .transparency
        .api
        .consistency(&chain_id, old_size, new_size)
        .await
        .map_err(proof_error)?;
    Ok(Json(ConsistencyProof {
        old_size,
        new_size,
        proof,
    }))
}

#[derive(Serialize)]
pub struct InclusionResponse {
    /// The event's evidence-bundle line, as a JSON object.
    event: Box<RawValue>,
    proof: InclusionProof,
    checkpoint: String,
}

/// `GET /api/v1/audit/events/{eventId}/proof` (`audit:read`): the event's hashed fields, its
/// inclusion proof, and the signed checkpoint it leads to.
pub async fn inclusion(
    State(state): State<AppState>,
    event_id: Result<Path<String>, PathRejection>,
) -> Result<Json<InclusionResponse>, ApiError> {
    let event_id = event_id
        .ok()
        .and_then(|Path(id)| Uuid::parse_str(&id).ok())
        .ok_or(ApiError::InvalidParameter {
            field: "eventId",
            reason: "Must be a UUID.",
        })?;
    let found = state
        .transparency
        .api
        .inclusion(event_id)
        .await
        .map_err(proof_error)?;
    Ok(Json(InclusionResponse {
        event: RawValue::from_string(found.event_line).map_err(ApiError::internal)?,
        proof: InclusionProof {
            leaf_index: found.leaf_index,
            tree_size: found.tree_size,
            proof: found.proof,
        },
        checkpoint: found.checkpoint,
    }))
}

/// `GET /api/v1/audit/export?chainId=&fromSeq=&limit=` (`audit:read`): the chain's events as
/// evidence-bundle lines (`application/x-ndjson`), at most `limit` (and [`EXPORT_PAGE`]) from
/// `fromSeq`; the next page starts after the last line's `seq`.
pub async fn export(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let query = params::query(raw.as_deref(), &["chainId", "fromSeq", "limit"])?;
    let chain_id =
        query
            .get("chainId")
            .filter(|c| !c.is_empty())
            .ok_or(ApiError::InvalidParameter {
                field: "chainId",
                reason: "Required: the chain to export, such as global or org:<org id>.",
            })?;
    let from_seq = match query.get("fromSeq") {
        None => 1,
        Some(v) => params::positive(v)
            .and_then(|n| i64::try_from(n).ok())
            .ok_or(ApiError::InvalidParameter {
                field: "fromSeq",
                reason: "Must be a sequence number: a whole number of at least 1.",
            })?,
    };
    let limit = match query.get("limit") {
        None => EXPORT_PAGE,
        Some(v) => params::positive(v)
            .and_then(|n| i64::try_from(n).ok())
            .filter(|n| *n <= EXPORT_PAGE)
            .ok_or(ApiError::InvalidParameter {
                field: "limit",
                reason: "Must be a whole number from 1 to 10000.",
            })?,
    };
    // No chain's id holds a NUL, which PostgreSQL's text refuses: an unknown chain, no lines.
    if chain_id.contains('\0') {
        return Ok((
            [(header::CONTENT_TYPE, "application/x-ndjson")],
            String::new(),
        )
            .into_response());
    }
    let lines = state
        .transparency
        .api
        .export(chain_id, from_seq, limit)
        .await
        .map_err(ApiError::internal)?;
    let mut body = String::with_capacity(lines.iter().map(|l| l.len() + 1).sum());
    for line in lines {
        body.push_str(&line);
        body.push('\n');
    }
    Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], body).into_response())
}
