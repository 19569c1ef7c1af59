//! Revocations waiting to be sent to Notion.

use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, Set,
};
use time::OffsetDateTime;
use uuid::Uuid;

use super::StoreError;
use crate::entity::{notion_connection, pending_revocation};

/// Queues the revocation of a connection's access token. Run it in the transaction that deletes
/// the connection or replaces its tokens.
pub(crate) async fn queue(
    db: &impl ConnectionTrait,
    connection: &notion_connection::Model,
) -> Result<(), StoreError> {
    queue_sealed(
        db,
        connection.user_id,
        &connection.bot_id,
        connection.access_token.clone(),
        &connection.key_id,
    )
    .await
}

/// Queues the revocation of an access token sealed for the connection of `user_id` and
/// `bot_id` (the binding every token of that connection is sealed with) with `key_id`.
pub(crate) async fn queue_sealed(
    db: &impl ConnectionTrait,
    user_id: Uuid,
    bot_id: &str,
    sealed_access_token: String,
    key_id: &str,
) -> Result<(), StoreError> {
    let now = OffsetDateTime::now_utc();
    pending_revocation::ActiveModel {
        id: Set(Uuid::now_v7()),
        user_id: Set(user_id),
        bot_id: Set(bot_id.to_owned()),
        access_token: Set(sealed_access_token),
        key_id: Set(key_id.to_owned()),
        attempts: Set(0),
        next_attempt_at: Set(now),
        created_at: Set(now),
    }
    .insert(db)
    .await?;
    Ok(())
}

/// Up to `limit` revocations that are due.
pub(crate) async fn due(
    db: &impl ConnectionTrait,
    limit: u64,
) -> Result<Vec<pending_revocation::Model>, StoreError> {
    Ok(pending_revocation::Entity::find()
        .filter(pending_revocation::Column::NextAttemptAt.lte(OffsetDateTime::now_utc()))
        .order_by_asc(pending_revocation::Column::NextAttemptAt)
        .limit(limit)
        .all(db)
        .await?)
}

/// Takes `row` for one attempt: counts it and sets when the next may start, unless another worker
/// took it since it was read. True for exactly one taker.
pub(crate) async fn claim(
    db: &impl ConnectionTrait,
    row: &pending_revocation::Model,
    next_attempt_at: OffsetDateTime,
) -> Result<bool, StoreError> {
    let result = pending_revocation::Entity::update_many()
        .col_expr(
            pending_revocation::Column::Attempts,
            (row.attempts + 1).into(),
        )
        .col_expr(
            pending_revocation::Column::NextAttemptAt,
            next_attempt_at.into(),
        )
        .filter(pending_revocation::Column::Id.eq(row.id))
        .filter(pending_revocation::Column::Attempts.eq(row.attempts))
        .exec(db)
        .await?;
    Ok(result.rows_affected == 1)
}

pub(crate) async fn delete(db: &impl ConnectionTrait, id: Uuid) -> Result<(), StoreError> {
    pending_revocation::Entity::delete_by_id(id)
        .exec(db)
        .await?;
    Ok(())
}

/// Up to `limit` revocations whose token is not sealed with `key_id`, after `after`.
pub(crate) async fn sealed_with_other_keys(
    db: &impl ConnectionTrait,
    key_id: &str,
    after: Option<Uuid>,
    limit: u64,
) -> Result<Vec<pending_revocation::Model>, StoreError> {
    let mut query = pending_revocation::Entity::find()
        .filter(pending_revocation::Column::KeyId.ne(key_id))
        .order_by_asc(pending_revocation::Column::Id);
    if let Some(after) = after {
        query = query.filter(pending_revocation::Column::Id.gt(after));
    }
    Ok(query.limit(limit).all(db).await?)
}

/// Replaces a revocation's sealed token if it is still the one that was read.
pub(crate) async fn reseal(
    db: &impl ConnectionTrait,
    row: &pending_revocation::Model,
    access_token: String,
    key_id: &str,
) -> Result<bool, StoreError> {
    let result = pending_revocation::Entity::update_many()
        .col_expr(pending_revocation::Column::AccessToken, access_token.into())
        .col_expr(pending_revocation::Column::KeyId, key_id.into())
        .filter(pending_revocation::Column::Id.eq(row.id))
        .filter(pending_revocation::Column::AccessToken.eq(row.access_token.clone()))
        .exec(db)
        .await?;
    Ok(result.rows_affected == 1)
}
