use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait,
    FromQueryResult, JoinType, QueryFilter, QueryOrder, QuerySelect, RelationTrait, Set,
    TransactionTrait, sea_query::LockType,
};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{StoreError, UniqueRow};
use crate::entity::{session, session_family, user};

/// Stores a new refresh token of `family_id`.
pub(crate) async fn insert(
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
        created_at: Set(OffsetDateTime::now_utc()),
    };
    Ok(row.insert(db).await?)
}

/// The token with this hash, live or not.
pub(crate) async fn find_by_token_hash(
    db: &impl ConnectionTrait,
    refresh_token_hash: &str,
) -> Result<Option<session::Model>, StoreError> {
    Ok(session::Entity::find()
        .filter(session::Column::RefreshTokenHash.eq(refresh_token_hash))
        .unique(db)
        .await?)
}

/// How many tokens of a family are kept: the live one and the most recently rotated ones, which
/// reuse detection needs. Older ones are deleted as the family rotates, so a long-lived session
/// does not grow without bound; presenting one of those is simply refused.
pub(crate) const KEPT_GENERATIONS: u64 = 10;

/// Live sessions (refresh families) one account may have. A login beyond this ends the oldest,
/// so however often someone logs in, an account's sessions stay bounded.
pub(crate) const MAX_LIVE_SESSIONS: usize = 100;

/// A login's new family, and the account's oldest families that it ended to stay within
/// `MAX_LIVE_SESSIONS`.
pub struct Started {
    pub(crate) family_id: Uuid,
    pub(crate) ended: Vec<Uuid>,
}

/// Starts a family for a login, with its first refresh token, and ends the account's oldest
/// families beyond `MAX_LIVE_SESSIONS`, in one transaction.
///
/// Concurrent logins to one account take turns: on PostgreSQL the transaction locks the user's
/// row (a lock that does not conflict with the foreign-key checks of the inserts), and SQLite
/// runs one writing transaction at a time. So each counts the families the others started.
pub async fn start_family(
    db: &DatabaseConnection,
    user_id: Uuid,
    refresh_token_hash: String,
    expires_at: OffsetDateTime,
) -> Result<Started, StoreError> {
    let family_id = Uuid::now_v7();
    let now = OffsetDateTime::now_utc();
    let txn = db.begin().await?;
    session_family::ActiveModel {
        id: Set(family_id),
        user_id: Set(user_id),
        created_at: Set(now),
        last_refreshed_at: Set(None),
        revoked_at: Set(None),
    }
    .insert(&txn)
    .await?;
    insert(&txn, user_id, family_id, refresh_token_hash, expires_at).await?;
    user::Entity::find_by_id(user_id)
        .select_only()
        .column(user::Column::Id)
        .lock(LockType::NoKeyUpdate)
        .into_tuple::<Uuid>()
        .all(&txn)
        .await?;
    // Newest first (ids are time-ordered); the cap keeps this list at most one longer than it.
    let live: Vec<Uuid> = session_family::Entity::find()
        .select_only()
        .column(session_family::Column::Id)
        .filter(session_family::Column::UserId.eq(user_id))
        .filter(session_family::Column::RevokedAt.is_null())
        .order_by_desc(session_family::Column::Id)
        .into_tuple()
        .all(&txn)
        .await?;
    let ended: Vec<Uuid> = live.into_iter().skip(MAX_LIVE_SESSIONS).collect();
    if !ended.is_empty() {
        session_family::Entity::update_many()
            .col_expr(session_family::Column::RevokedAt, Some(now).into())
            .filter(session_family::Column::Id.is_in(ended.clone()))
            .exec(&txn)
            .await?;
    }
    txn.commit().await?;
    Ok(Started { family_id, ended })
}

/// Exchanges the live token `current` for a new one in one transaction. `None` when the family
/// was revoked, or `current` was rotated meanwhile (a concurrent use of the same token): the
/// caller treats that as reuse.
///
/// The transaction first updates the family's row, the row revocation updates too, so a
/// rotation and a revocation of one family never interleave: a revocation that comes first
/// makes the rotation fail, and one that comes second ends the token the rotation made.
pub(crate) async fn rotate(
    db: &DatabaseConnection,
    current: &session::Model,
    new_token_hash: String,
    expires_at: OffsetDateTime,
) -> Result<Option<session::Model>, StoreError> {
    let txn = db.begin().await?;
    let now = OffsetDateTime::now_utc();
    let family = session_family::Entity::update_many()
        .col_expr(session_family::Column::LastRefreshedAt, Some(now).into())
        .filter(session_family::Column::Id.eq(current.family_id))
        .filter(session_family::Column::RevokedAt.is_null())
        .exec(&txn)
        .await?;
    if family.rows_affected != 1 {
        return Ok(None);
    }
    let claimed = session::Entity::update_many()
        .col_expr(session::Column::RotatedAt, Some(now).into())
        .filter(session::Column::Id.eq(current.id))
        .filter(session::Column::RotatedAt.is_null())
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
    prune_family(&txn, current.family_id).await?;
    txn.commit().await?;
    Ok(Some(next))
}

/// Deletes a family's tokens beyond the newest [`KEPT_GENERATIONS`].
async fn prune_family(db: &impl ConnectionTrait, family_id: Uuid) -> Result<(), StoreError> {
    let kept: Vec<Uuid> = session::Entity::find()
        .select_only()
        .column(session::Column::Id)
        .filter(session::Column::FamilyId.eq(family_id))
        .order_by_desc(session::Column::Id)
        .limit(KEPT_GENERATIONS)
        .into_tuple()
        .all(db)
        .await?;
    if kept.len() as u64 == KEPT_GENERATIONS {
        session::Entity::delete_many()
            .filter(session::Column::FamilyId.eq(family_id))
            .filter(session::Column::Id.is_not_in(kept))
            .exec(db)
            .await?;
    }
    Ok(())
}

/// Ends a family: its refresh tokens and every access token naming it stop working, at once.
pub(crate) async fn revoke_family(
    db: &impl ConnectionTrait,
    family_id: Uuid,
) -> Result<(), StoreError> {
    session_family::Entity::update_many()
        .col_expr(
            session_family::Column::RevokedAt,
            Some(OffsetDateTime::now_utc()).into(),
        )
        .filter(session_family::Column::Id.eq(family_id))
        .filter(session_family::Column::RevokedAt.is_null())
        .exec(db)
        .await?;
    Ok(())
}

/// The unexpired token with this hash, if its family is live.
pub(crate) async fn find_live(
    db: &impl ConnectionTrait,
    refresh_token_hash: &str,
) -> Result<Option<session::Model>, StoreError> {
    Ok(session::Entity::find()
        .join(JoinType::InnerJoin, session::Relation::Family.def())
        .filter(session::Column::RefreshTokenHash.eq(refresh_token_hash))
        .filter(session::Column::ExpiresAt.gt(OffsetDateTime::now_utc()))
        .filter(session_family::Column::RevokedAt.is_null())
        .unique(db)
        .await?)
}

/// The user behind an access token, if the user still exists and the token's family is live
/// and still has a live (unrotated, unexpired) refresh token. One indexed query per request.
pub(crate) async fn user_of_live_family(
    db: &impl ConnectionTrait,
    user_id: Uuid,
    family_id: Uuid,
) -> Result<Option<SessionUser>, StoreError> {
    Ok(user::Entity::find()
        .select_only()
        .columns([
            user::Column::Id,
            user::Column::Username,
            user::Column::UsernameKey,
            user::Column::IsAdmin,
            user::Column::CreatedAt,
        ])
        .join(JoinType::InnerJoin, user::Relation::Session.def())
        .join(JoinType::InnerJoin, session::Relation::Family.def())
        .filter(user::Column::Id.eq(user_id))
        .filter(session::Column::FamilyId.eq(family_id))
        .filter(session::Column::RotatedAt.is_null())
        .filter(session::Column::ExpiresAt.gt(OffsetDateTime::now_utc()))
        .filter(session_family::Column::RevokedAt.is_null())
        .into_model::<SessionUser>()
        .all(db)
        .await?
        .into_iter()
        .next())
}

/// What a request made with a live session needs of its user: not the password hash, which
/// the session check (about once a second per session) has no use for.
#[derive(Clone, Debug, PartialEq, Eq, FromQueryResult)]
pub(crate) struct SessionUser {
    pub id: Uuid,
    pub username: String,
    pub username_key: String,
    pub is_admin: bool,
    pub created_at: OffsetDateTime,
}

/// Deletes families none of whose tokens are left (the sweep deletes expired tokens first).
pub(crate) async fn delete_empty_families(db: &impl ConnectionTrait) -> Result<u64, StoreError> {
    use sea_orm::sea_query::Query;
    let result = session_family::Entity::delete_many()
        .filter(
            session_family::Column::Id.not_in_subquery(
                Query::select()
                    .column(session::Column::FamilyId)
                    .from(session::Entity)
                    .to_owned(),
            ),
        )
        .exec(db)
        .await?;
    Ok(result.rows_affected)
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
