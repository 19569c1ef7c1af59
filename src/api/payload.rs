//! A JSON response body written straight from the value with serde.
//!
//! poem-openapi's `Json<T>` first converts the value into a `serde_json::Value` tree and then
//! serialises that tree: for a page of a hundred search results, building and dropping the tree
//! costs more than the rest of the request. [`SerdeJson`] keeps `T`'s schema in the spec and
//! serialises `T` directly; `T`'s serde attributes must describe the same JSON as its
//! poem-openapi ones, which a test of each such type checks.

use poem::{IntoResponse, Response, error::ResponseError, http::StatusCode};
use poem_openapi::{
    ApiResponse,
    payload::Payload,
    registry::{MetaMediaType, MetaResponse, MetaResponses, MetaSchemaRef, Registry},
    types::Type,
};
use serde::Serialize;

use crate::api::problem::ApiError;

pub(crate) struct SerdeJson<T>(pub T);

/// What poem-openapi's `Json` declares, so the spec does not change.
const JSON: &str = "application/json; charset=utf-8";

impl<T: Type> Payload for SerdeJson<T> {
    const CONTENT_TYPE: &'static str = JSON;

    fn schema_ref() -> MetaSchemaRef {
        T::schema_ref()
    }

    fn register(registry: &mut Registry) {
        T::register(registry);
    }
}

impl<T: Serialize + Send> IntoResponse for SerdeJson<T> {
    fn into_response(self) -> Response {
        match serde_json::to_vec(&self.0) {
            Ok(body) => Response::builder().content_type(JSON).body(body),
            // Only a failing `Serialize` impl gets here; answer like any other internal error.
            Err(e) => {
                tracing::error!(cause = %e, "serialising a response failed");
                ApiError::internal(e).as_response()
            }
        }
    }
}

impl<T: Type + Serialize + Send> ApiResponse for SerdeJson<T> {
    fn meta() -> MetaResponses {
        MetaResponses {
            responses: vec![MetaResponse {
                description: "",
                status: Some(StatusCode::OK.as_u16()),
                status_range: None,
                content: vec![MetaMediaType {
                    content_type: Self::CONTENT_TYPE,
                    schema: Self::schema_ref(),
                }],
                headers: vec![],
            }],
        }
    }

    fn register(registry: &mut Registry) {
        T::register(registry);
    }
}
