use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseTransaction, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, Set, sea_query::OnConflict,
};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{StoreError, UniqueRow};
use crate::entity::notion_connection::{self, ActiveModel, Column, Entity, Model};

pub(crate) use notion_connection::ConnectionStatus;

/// Everything about a connection except its identity and timestamps, with secrets already
/// encrypted.
pub(crate) struct SealedConnection {
    pub user_id: Uuid,
    pub bot_id: String,
    pub workspace_id: String,
    pub workspace_name: Option<String>,
    pub workspace_icon: Option<String>,
    pub owner: String,
    pub owner_email: Option<String>,
    pub duplicated_template_id: Option<String>,
    pub access_token: String,
    pub refresh_token: Option<String>,
    pub key_id: String,
}

/// Inserts the connection, or updates the row of the same user and bot (a re-authorization),
/// and returns the stored row. Two statements: run it in a transaction.
pub(crate) async fn upsert(
    txn: &DatabaseTransaction,
    sealed: SealedConnection,
) -> Result<Model, StoreError> {
    let now = OffsetDateTime::now_utc();
    let (user_id, bot_id) = (sealed.user_id, sealed.bot_id.clone());
    let row = ActiveModel {
        id: Set(Uuid::now_v7()),
        user_id: Set(sealed.user_id),
        bot_id: Set(sealed.bot_id),
        workspace_id: Set(sealed.workspace_id),
        workspace_name: Set(sealed.workspace_name),
        workspace_icon: Set(sealed.workspace_icon),
        owner: Set(sealed.owner),
        owner_email: Set(sealed.owner_email),
        duplicated_template_id: Set(sealed.duplicated_template_id),
        access_token: Set(sealed.access_token),
        refresh_token: Set(sealed.refresh_token),
        key_id: Set(sealed.key_id),
        status: Set(ConnectionStatus::Active),
        created_at: Set(now),
        updated_at: Set(now),
        last_used_at: Set(None),
        refreshing_until: Set(None),
    };
    Entity::insert(row)
        .on_conflict(
            OnConflict::columns([Column::UserId, Column::BotId])
                .update_columns([
                    Column::WorkspaceId,
                    Column::WorkspaceName,
                    Column::WorkspaceIcon,
                    Column::Owner,
                    Column::OwnerEmail,
                    Column::DuplicatedTemplateId,
                    Column::AccessToken,
                    Column::RefreshToken,
                    Column::KeyId,
                    Column::Status,
                    Column::UpdatedAt,
                ])
                .to_owned(),
        )
        .exec_without_returning(txn)
        .await?;
    Entity::find()
        .filter(Column::UserId.eq(user_id))
        .filter(Column::BotId.eq(bot_id))
        .unique(txn)
        .await?
        .ok_or_else(|| StoreError::Db(sea_orm::DbErr::RecordNotFound("upserted connection".into())))
}

pub(crate) async fn list_for_user(
    db: &impl ConnectionTrait,
    user_id: Uuid,
) -> Result<Vec<Model>, StoreError> {
    Ok(Entity::find()
        .filter(Column::UserId.eq(user_id))
        .order_by_asc(Column::Id)
        .all(db)
        .await?)
}

/// The connection `id` if it belongs to `user_id`; another user's connection is `None`, exactly
/// like a missing one.
pub(crate) async fn find_for_user(
    db: &impl ConnectionTrait,
    user_id: Uuid,
    id: Uuid,
) -> Result<Option<Model>, StoreError> {
    Ok(Entity::find_by_id(id)
        .filter(Column::UserId.eq(user_id))
        .unique(db)
        .await?)
}

/// Deletes the connection `id` if it belongs to `user_id`, and returns the row as the delete
/// found it. `DELETE … RETURNING` reads and removes the row in one step under the row's lock, so
/// the tokens returned are the last ones stored: a refresh that finishes later finds no row.
pub(crate) async fn delete_for_user(
    db: &impl ConnectionTrait,
    user_id: Uuid,
    id: Uuid,
) -> Result<Option<Model>, StoreError> {
    let deleted = Entity::delete_many()
        .filter(Column::Id.eq(id))
        .filter(Column::UserId.eq(user_id))
        .exec_with_returning(db)
        .await?;
    Ok(deleted.into_iter().next())
}

/// Deletes every connection of `user_id` and returns them as the delete found them (see
/// [`delete_for_user`]).
pub(crate) async fn delete_all_for_user(
    db: &impl ConnectionTrait,
    user_id: Uuid,
) -> Result<Vec<Model>, StoreError> {
    Ok(Entity::delete_many()
        .filter(Column::UserId.eq(user_id))
        .exec_with_returning(db)
        .await?)
}

/// The user's connection to the bot `bot_id`, locked until the transaction ends (on
/// PostgreSQL; SQLite has only one writer at a time, so a transaction that has written already
/// holds the whole database).
pub(crate) async fn find_by_bot_for_update(
    txn: &DatabaseTransaction,
    user_id: Uuid,
    bot_id: &str,
) -> Result<Option<Model>, StoreError> {
    Ok(Entity::find()
        .filter(Column::UserId.eq(user_id))
        .filter(Column::BotId.eq(bot_id))
        .lock_exclusive()
        .unique(txn)
        .await?)
}

/// A page of every user's connections for administrators, optionally of one user.
pub(crate) async fn page(
    db: &impl ConnectionTrait,
    after: Option<Uuid>,
    user_id: Option<Uuid>,
    limit: u64,
) -> Result<Vec<Model>, StoreError> {
    let mut query = Entity::find().order_by_asc(Column::Id);
    if let Some(after) = after {
        query = query.filter(Column::Id.gt(after));
    }
    if let Some(user_id) = user_id {
        query = query.filter(Column::UserId.eq(user_id));
    }
    Ok(query.limit(limit).all(db).await?)
}

/// Up to `limit` rows whose ciphertexts are not sealed with `key_id`.
pub(crate) async fn sealed_with_other_keys(
    db: &impl ConnectionTrait,
    key_id: &str,
    after: Option<Uuid>,
    limit: u64,
) -> Result<Vec<Model>, StoreError> {
    let mut query = Entity::find()
        .filter(Column::KeyId.ne(key_id))
        .order_by_asc(Column::Id);
    if let Some(after) = after {
        query = query.filter(Column::Id.gt(after));
    }
    Ok(query.limit(limit).all(db).await?)
}

/// Replaces a row's ciphertexts if they are still the ones that were read (`expected_key_id`),
/// so a concurrent re-authorization is never overwritten with older tokens.
pub(crate) async fn reseal(
    db: &impl ConnectionTrait,
    row: &Model,
    access_token: String,
    refresh_token: Option<String>,
    owner_email: Option<String>,
    key_id: &str,
) -> Result<bool, StoreError> {
    let result = Entity::update_many()
        .col_expr(Column::AccessToken, access_token.into())
        .col_expr(Column::RefreshToken, refresh_token.into())
        .col_expr(Column::OwnerEmail, owner_email.into())
        .col_expr(Column::KeyId, key_id.into())
        .filter(Column::Id.eq(row.id))
        .filter(Column::AccessToken.eq(row.access_token.clone()))
        .exec(db)
        .await?;
    Ok(result.rows_affected == 1)
}

/// A stored connection, as the database holds it (its secrets sealed).
pub(crate) use notion_connection::Model as ConnectionRow;

/// How many connections are sealed with each key, by status: `(key_id, status, count)`.
pub(crate) async fn count_by_key_and_status(
    db: &impl ConnectionTrait,
) -> Result<Vec<(String, ConnectionStatus, i64)>, StoreError> {
    Ok(Entity::find()
        .select_only()
        .column(Column::KeyId)
        .column(Column::Status)
        .column_as(Column::Id.count(), "count")
        .group_by(Column::KeyId)
        .group_by(Column::Status)
        .into_tuple()
        .all(db)
        .await?)
}

/// The `limit` most recently created connections (ids are time-ordered).
pub(crate) async fn newest(
    db: &impl ConnectionTrait,
    limit: u64,
) -> Result<Vec<Model>, StoreError> {
    Ok(Entity::find()
        .order_by_desc(Column::Id)
        .limit(limit)
        .all(db)
        .await?)
}

pub(crate) async fn find(db: &impl ConnectionTrait, id: Uuid) -> Result<Option<Model>, StoreError> {
    Ok(Entity::find_by_id(id).unique(db).await?)
}

/// Takes the refresh lease of a connection until `until`, unless another holder's lease is
/// still running or the row no longer holds `sealed_access_token`, the access token the caller
/// saw rejected. True for exactly one caller at a time, across instances; the second condition
/// stops a caller that read the row just before another finished refreshing from spending the
/// refresh token it read, which Notion has already rotated away.
pub async fn claim_refresh_lease(
    db: &impl ConnectionTrait,
    id: Uuid,
    sealed_access_token: &str,
    until: OffsetDateTime,
) -> Result<bool, StoreError> {
    let now = OffsetDateTime::now_utc();
    let result = Entity::update_many()
        .col_expr(Column::RefreshingUntil, Some(until).into())
        .filter(Column::Id.eq(id))
        .filter(Column::AccessToken.eq(sealed_access_token))
        .filter(
            sea_orm::Condition::any()
                .add(Column::RefreshingUntil.is_null())
                .add(Column::RefreshingUntil.lt(now)),
        )
        .exec(db)
        .await?;
    Ok(result.rows_affected == 1)
}

/// Gives back the refresh lease `lease`, if it is still the caller's.
pub(crate) async fn release_refresh_lease(
    db: &impl ConnectionTrait,
    id: Uuid,
    lease: OffsetDateTime,
) -> Result<(), StoreError> {
    Entity::update_many()
        .col_expr(
            Column::RefreshingUntil,
            Option::<OffsetDateTime>::None.into(),
        )
        .filter(Column::Id.eq(id))
        .filter(Column::RefreshingUntil.eq(lease))
        .exec(db)
        .await?;
    Ok(())
}

/// A refreshed, sealed token pair.
pub(crate) struct Refreshed<'a> {
    pub access_token: String,
    pub refresh_token: String,
    pub key_id: &'a str,
}

/// Stores a refreshed token pair and releases the lease, in one statement, only while the
/// caller's lease (`lease`) is still the row's and the row still holds the access token that was
/// refreshed. True when stored.
pub(crate) async fn store_refreshed(
    db: &impl ConnectionTrait,
    row: &Model,
    lease: OffsetDateTime,
    refreshed: Refreshed<'_>,
) -> Result<bool, StoreError> {
    let result = Entity::update_many()
        .col_expr(Column::AccessToken, refreshed.access_token.into())
        .col_expr(Column::RefreshToken, Some(refreshed.refresh_token).into())
        .col_expr(Column::KeyId, refreshed.key_id.into())
        .col_expr(Column::Status, ConnectionStatus::Active.as_str().into())
        .col_expr(Column::UpdatedAt, OffsetDateTime::now_utc().into())
        .col_expr(
            Column::RefreshingUntil,
            Option::<OffsetDateTime>::None.into(),
        )
        .filter(Column::Id.eq(row.id))
        .filter(Column::AccessToken.eq(row.access_token.clone()))
        .filter(Column::RefreshingUntil.eq(lease))
        .exec(db)
        .await?;
    Ok(result.rows_affected == 1)
}

pub(crate) async fn mark_needs_reauth(
    db: &impl ConnectionTrait,
    id: Uuid,
) -> Result<(), StoreError> {
    Entity::update_many()
        .col_expr(
            Column::Status,
            ConnectionStatus::NeedsReauth.as_str().into(),
        )
        .col_expr(Column::UpdatedAt, OffsetDateTime::now_utc().into())
        .col_expr(
            Column::RefreshingUntil,
            Option::<OffsetDateTime>::None.into(),
        )
        .filter(Column::Id.eq(id))
        .exec(db)
        .await?;
    Ok(())
}

/// Sets the connection's `last_used_at` to now, and returns it.
pub(crate) async fn touch_last_used(
    db: &impl ConnectionTrait,
    id: Uuid,
) -> Result<OffsetDateTime, StoreError> {
    let now = OffsetDateTime::now_utc();
    Entity::update_many()
        .col_expr(Column::LastUsedAt, Some(now).into())
        .filter(Column::Id.eq(id))
        .exec(db)
        .await?;
    Ok(now)
}
