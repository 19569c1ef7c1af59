use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, Set,
};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{StoreError, UniqueRow};
use crate::entity::user;

/// Creates an account: `username` as typed, `username_key` its case-insensitive key.
pub(crate) async fn create(
    db: &impl ConnectionTrait,
    username: &str,
    username_key: &str,
    password_hash: String,
    is_admin: bool,
) -> Result<user::Model, StoreError> {
    let now = OffsetDateTime::now_utc();
    let row = user::ActiveModel {
        id: Set(Uuid::now_v7()),
        username: Set(username.to_owned()),
        username_key: Set(username_key.to_owned()),
        password_hash: Set(password_hash),
        is_admin: Set(is_admin),
        created_at: Set(now),
        updated_at: Set(now),
    };
    Ok(row.insert(db).await?)
}

pub(crate) async fn find_by_key(
    db: &impl ConnectionTrait,
    username_key: &str,
) -> Result<Option<user::Model>, StoreError> {
    Ok(user::Entity::find()
        .filter(user::Column::UsernameKey.eq(username_key))
        .unique(db)
        .await?)
}

pub(crate) async fn find_by_id(
    db: &impl ConnectionTrait,
    id: Uuid,
) -> Result<Option<user::Model>, StoreError> {
    Ok(user::Entity::find_by_id(id).unique(db).await?)
}

/// Deletes an account; its sessions, OAuth states and connections go with it (foreign keys).
pub(crate) async fn delete(db: &impl ConnectionTrait, id: Uuid) -> Result<bool, StoreError> {
    Ok(user::Entity::delete_by_id(id).exec(db).await?.rows_affected == 1)
}

pub(crate) async fn update_password_hash(
    db: &impl ConnectionTrait,
    id: Uuid,
    password_hash: String,
) -> Result<(), StoreError> {
    user::Entity::update_many()
        .col_expr(user::Column::PasswordHash, password_hash.into())
        .col_expr(user::Column::UpdatedAt, OffsetDateTime::now_utc().into())
        .filter(user::Column::Id.eq(id))
        .exec(db)
        .await?;
    Ok(())
}

/// Up to `limit` users with ids greater than `after`, oldest first (ids are UUIDv7, so they
/// sort by creation time).
pub(crate) async fn page(
    db: &impl ConnectionTrait,
    after: Option<Uuid>,
    limit: u64,
) -> Result<Vec<user::Model>, StoreError> {
    let mut query = user::Entity::find().order_by_asc(user::Column::Id);
    if let Some(after) = after {
        query = query.filter(user::Column::Id.gt(after));
    }
    Ok(query.limit(limit).all(db).await?)
}

/// Usernames of the given users.
pub(crate) async fn names(
    db: &impl ConnectionTrait,
    ids: impl IntoIterator<Item = Uuid>,
) -> Result<std::collections::HashMap<Uuid, String>, StoreError> {
    let ids: Vec<Uuid> = ids.into_iter().collect();
    if ids.is_empty() {
        return Ok(Default::default());
    }
    Ok(user::Entity::find()
        .filter(user::Column::Id.is_in(ids))
        .all(db)
        .await?
        .into_iter()
        .map(|u| (u.id, u.username))
        .collect())
}
