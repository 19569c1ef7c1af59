use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, Set,
};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{StoreError, UniqueRow};
use crate::entity::oauth_state;

/// Unfinished flows a user may have at once; starting another supersedes the oldest.
pub(crate) const MAX_OPEN_FLOWS_PER_USER: u64 = 5;

/// Stores a new state for `user_id`, and deletes the user's unclaimed states beyond the newest
/// `MAX_OPEN_FLOWS_PER_USER`. A claimed state (a callback is exchanging its code) is never
/// deleted here.
pub async fn insert(
    db: &impl ConnectionTrait,
    user_id: Uuid,
    state_hash: String,
    binding_hash: String,
    expires_at: OffsetDateTime,
) -> Result<oauth_state::Model, StoreError> {
    let stored = insert_one(db, user_id, state_hash, binding_hash, expires_at).await?;
    let open: Vec<Uuid> = oauth_state::Entity::find()
        .select_only()
        .column(oauth_state::Column::Id)
        .filter(oauth_state::Column::UserId.eq(user_id))
        .filter(oauth_state::Column::ConsumedAt.is_null())
        .order_by_desc(oauth_state::Column::Id)
        .limit(MAX_OPEN_FLOWS_PER_USER)
        .into_tuple()
        .all(db)
        .await?;
    if open.len() as u64 == MAX_OPEN_FLOWS_PER_USER {
        oauth_state::Entity::delete_many()
            .filter(oauth_state::Column::UserId.eq(user_id))
            .filter(oauth_state::Column::ConsumedAt.is_null())
            .filter(oauth_state::Column::Id.is_not_in(open))
            .exec(db)
            .await?;
    }
    Ok(stored)
}

async fn insert_one(
    db: &impl ConnectionTrait,
    user_id: Uuid,
    state_hash: String,
    binding_hash: String,
    expires_at: OffsetDateTime,
) -> Result<oauth_state::Model, StoreError> {
    let row = oauth_state::ActiveModel {
        id: Set(Uuid::now_v7()),
        state_hash: Set(state_hash),
        binding_hash: Set(binding_hash),
        user_id: Set(user_id),
        expires_at: Set(expires_at),
        consumed_at: Set(None),
        created_at: Set(OffsetDateTime::now_utc()),
    };
    Ok(row.insert(db).await?)
}

pub(crate) async fn find_by_hash(
    db: &impl ConnectionTrait,
    state_hash: &str,
) -> Result<Option<oauth_state::Model>, StoreError> {
    Ok(oauth_state::Entity::find()
        .filter(oauth_state::Column::StateHash.eq(state_hash))
        .unique(db)
        .await?)
}

/// Claims a state for the one callback that may exchange its code: marks it consumed,
/// atomically, so this is true for exactly one caller however many race.
pub(crate) async fn claim(db: &impl ConnectionTrait, id: Uuid) -> Result<bool, StoreError> {
    let result = oauth_state::Entity::update_many()
        .col_expr(
            oauth_state::Column::ConsumedAt,
            Some(OffsetDateTime::now_utc()).into(),
        )
        .filter(oauth_state::Column::Id.eq(id))
        .filter(oauth_state::Column::ConsumedAt.is_null())
        .exec(db)
        .await?;
    Ok(result.rows_affected == 1)
}

/// Ends a claimed flow by deleting its state. Meant to run in the transaction that stores the
/// flow's result: false (and the caller rolls back) when the state is gone, which happens when
/// its user was deleted meanwhile.
pub(crate) async fn finish(db: &impl ConnectionTrait, id: Uuid) -> Result<bool, StoreError> {
    let result = oauth_state::Entity::delete_many()
        .filter(oauth_state::Column::Id.eq(id))
        .filter(oauth_state::Column::ConsumedAt.is_not_null())
        .exec(db)
        .await?;
    Ok(result.rows_affected == 1)
}

/// Forgets states that expired before `cutoff`.
pub(crate) async fn delete_expired_before(
    db: &impl ConnectionTrait,
    cutoff: OffsetDateTime,
) -> Result<u64, StoreError> {
    let result = oauth_state::Entity::delete_many()
        .filter(oauth_state::Column::ExpiresAt.lt(cutoff))
        .exec(db)
        .await?;
    Ok(result.rows_affected)
}
