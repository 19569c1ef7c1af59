use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, JoinType,
    QueryFilter, QuerySelect, RelationTrait, Set, TransactionTrait,
};
use time::OffsetDateTime;
use uuid::Uuid;

use super::StoreError;
use crate::entity::{session, user};

/// Stores a new refresh token of `family_id`.
pub async fn insert(
    db: &impl ConnectionTrait,
    user_id: Uuid,
    family_id: Uuid,
    refresh_token_hash: String,
    expires_at: OffsetDateTime,
) -> Result<session::Model, StoreError> {
    let row = session::ActiveModel {
        id: Set(Uuid::now_v7()),
        user_id: Set(user_id),
        family_id: Set(family_id),
        refresh_token_hash: Set(refresh_token_hash),
        expires_at: Set(expires_at),
        rotated_at: Set(None),
        revoked_at: Set(None),
        created_at: Set(OffsetDateTime::now_utc()),
    };
    Ok(row.insert(db).await?)
}

pub(crate) async fn find_by_token_hash(
    db: &impl ConnectionTrait,
    refresh_token_hash: &str,
) -> Result<Option<session::Model>, StoreError> {
    Ok(session::Entity::find()
        .filter(session::Column::RefreshTokenHash.eq(refresh_token_hash))
        .one(db)
        .await?)
}

/// Exchanges the live token `current` for a new one in one transaction. `None` when `current`
/// was rotated or revoked meanwhile (a concurrent use of the same token): the caller treats that
/// as reuse.
pub(crate) async fn rotate(
    db: &DatabaseConnection,
    current: &session::Model,
    new_token_hash: String,
    expires_at: OffsetDateTime,
) -> Result<Option<session::Model>, StoreError> {
    let txn = db.begin().await?;
    let now = OffsetDateTime::now_utc();
    let claimed = session::Entity::update_many()
        .col_expr(session::Column::RotatedAt, Some(now).into())
        .filter(session::Column::Id.eq(current.id))
        .filter(session::Column::RotatedAt.is_null())
        .filter(session::Column::RevokedAt.is_null())
        .exec(&txn)
        .await?;
    if claimed.rows_affected != 1 {
        return Ok(None);
    }
    let next = insert(
        &txn,
        current.user_id,
        current.family_id,
        new_token_hash,
        expires_at,
    )
    .await?;
    txn.commit().await?;
    Ok(Some(next))
}

/// Ends a family: its refresh tokens and every access token naming it stop working.
pub(crate) async fn revoke_family(
    db: &impl ConnectionTrait,
    family_id: Uuid,
) -> Result<(), StoreError> {
    session::Entity::update_many()
        .col_expr(
            session::Column::RevokedAt,
            Some(OffsetDateTime::now_utc()).into(),
        )
        .filter(session::Column::FamilyId.eq(family_id))
        .filter(session::Column::RevokedAt.is_null())
        .exec(db)
        .await?;
    Ok(())
}

/// The user behind an access token, if the user still exists and the token's family still has a
/// live (unrotated, unrevoked, unexpired) refresh token. One indexed query per request.
pub(crate) async fn user_of_live_family(
    db: &impl ConnectionTrait,
    user_id: Uuid,
    family_id: Uuid,
) -> Result<Option<user::Model>, StoreError> {
    Ok(user::Entity::find()
        .join(JoinType::InnerJoin, user::Relation::Session.def())
        .filter(user::Column::Id.eq(user_id))
        .filter(session::Column::FamilyId.eq(family_id))
        .filter(session::Column::RotatedAt.is_null())
        .filter(session::Column::RevokedAt.is_null())
        .filter(session::Column::ExpiresAt.gt(OffsetDateTime::now_utc()))
        .one(db)
        .await?)
}

/// Deletes refresh tokens past their expiry. An expired token is refused whether or not its row
/// exists, so nothing is lost but the row.
pub(crate) async fn delete_expired(db: &impl ConnectionTrait) -> Result<u64, StoreError> {
    let result = session::Entity::delete_many()
        .filter(session::Column::ExpiresAt.lt(OffsetDateTime::now_utc()))
        .exec(db)
        .await?;
    Ok(result.rows_affected)
}
