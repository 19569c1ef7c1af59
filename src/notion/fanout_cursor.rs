//! The cursor of a search across workspaces: where each workspace's results go on, signed so
//! that a client can neither forge nor alter one, nor use one that another user was given, nor
//! one of a different search.
//!
//! A cursor is `payload.signature`: the payload is JSON in URL-safe base64, the signature an
//! HMAC-SHA256 over the user's id and the payload, with a key derived from `JWT_SECRET`.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::search::{Direction, ObjectFilter};
use crate::crypto::{derive_key, hex};

type HmacSha256 = Hmac<Sha256>;

/// Where one workspace's results go on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct LanePosition {
    #[serde(rename = "c")]
    pub connection: Uuid,
    /// Notion's cursor for the page that holds the workspace's next result; `None` for the
    /// first page.
    #[serde(rename = "p", default, skip_serializing_if = "Option::is_none")]
    pub page: Option<String>,
    /// That result's place in its page.
    #[serde(rename = "o", default)]
    pub offset: u16,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct FanoutCursor {
    /// Which search this continues (see [`search_digest`]).
    #[serde(rename = "s")]
    pub search: String,
    /// Pages served so far; interleaving starts with a different workspace on each.
    #[serde(rename = "r")]
    pub round: u32,
    /// Names the results fetched but not yet returned, which the instance that served the page
    /// keeps for a while (see [`super::leftovers`]).
    #[serde(rename = "k", default, skip_serializing_if = "Option::is_none")]
    pub leftovers: Option<String>,
    /// The workspaces that have more, in the search's order.
    #[serde(rename = "l")]
    pub lanes: Vec<LanePosition>,
}

/// The key that signs cursors.
pub(crate) struct CursorKey([u8; 32]);

impl CursorKey {
    /// The key for cursors, derived from `JWT_SECRET`.
    pub(crate) fn derive(secret: &[u8]) -> Self {
        Self(derive_key(secret, "notion-connect/search-cursor"))
    }

    fn mac(&self, user_id: Uuid, payload: &str) -> HmacSha256 {
        let mut mac =
            <HmacSha256 as Mac>::new_from_slice(&self.0).expect("HMAC takes keys of any length");
        mac.update(user_id.as_bytes());
        mac.update(payload.as_bytes());
        mac
    }

    /// The cursor as the client gets it, good for `user_id` only.
    pub(crate) fn seal(&self, user_id: Uuid, cursor: &FanoutCursor) -> String {
        let json = serde_json::to_vec(cursor).expect("a cursor serialises");
        let payload = URL_SAFE_NO_PAD.encode(json);
        let signature = URL_SAFE_NO_PAD.encode(self.mac(user_id, &payload).finalize().into_bytes());
        format!("{payload}.{signature}")
    }

    /// The cursor `raw` stands for, if this service gave it to `user_id` and nobody changed it.
    pub(crate) fn open(&self, user_id: Uuid, raw: &str) -> Option<FanoutCursor> {
        let (payload, signature) = raw.split_once('.')?;
        let signature = URL_SAFE_NO_PAD.decode(signature).ok()?;
        // Constant time: `verify_slice` compares without an early exit.
        self.mac(user_id, payload).verify_slice(&signature).ok()?;
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()
    }
}

/// Names one search: its query, filter, order and the connections it was asked for (`[]`: all
/// of them), so a cursor is only ever continued by the same search.
pub(crate) fn search_digest(
    query: Option<&str>,
    filter: Option<ObjectFilter>,
    order: Option<Direction>,
    connections: &[Uuid],
) -> String {
    let mut ids: Vec<Uuid> = connections.to_vec();
    ids.sort();
    ids.dedup();
    let canonical = serde_json::json!([query, filter, order, ids]).to_string();
    hex(&Sha256::digest(canonical.as_bytes())[..16])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cursor() -> FanoutCursor {
        FanoutCursor {
            search: search_digest(Some("roadmap"), None, None, &[]),
            round: 3,
            leftovers: None,
            lanes: vec![LanePosition {
                connection: Uuid::from_u128(7),
                page: Some("notion-cursor".into()),
                offset: 12,
            }],
        }
    }

    #[test]
    fn a_cursor_opens_for_its_user_only_and_not_once_changed() {
        let key = CursorKey::derive(b"a secret of the service, long enough");
        let (owner, stranger) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let sealed = key.seal(owner, &cursor());
        assert_eq!(key.open(owner, &sealed), Some(cursor()));
        assert_eq!(key.open(stranger, &sealed), None, "another user's");

        let other_key = CursorKey::derive(b"another service's secret, long enough");
        assert_eq!(other_key.open(owner, &sealed), None, "another key");

        let (payload, signature) = sealed.split_once('.').unwrap();
        let mut forged = cursor();
        forged.lanes[0].offset = 0;
        let forged_payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&forged).unwrap());
        assert_eq!(
            key.open(owner, &format!("{forged_payload}.{signature}")),
            None
        );
        for broken in ["", ".", "x.y", payload, &format!("{payload}.")] {
            assert_eq!(key.open(owner, broken), None, "{broken:?}");
        }
    }

    #[test]
    fn the_digest_names_the_search_whatever_the_order_of_its_connections() {
        let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let digest = |query, order, ids: &[Uuid]| search_digest(query, None, order, ids);
        assert_eq!(digest(None, None, &[a, b]), digest(None, None, &[b, a, b]));
        assert_ne!(digest(None, None, &[a]), digest(None, None, &[a, b]));
        assert_ne!(digest(Some("x"), None, &[]), digest(None, None, &[]));
        assert_ne!(
            digest(None, Some(Direction::Ascending), &[]),
            digest(None, Some(Direction::Descending), &[])
        );
    }
}
