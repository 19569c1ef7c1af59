use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, Set,
    sea_query::{Expr, ExprTrait, OnConflict},
};
use time::OffsetDateTime;

use super::StoreError;
use crate::entity::login_attempt;

pub(crate) async fn find(
    db: &impl ConnectionTrait,
    username_key: &str,
) -> Result<Option<login_attempt::Model>, StoreError> {
    Ok(login_attempt::Entity::find_by_id(username_key.to_owned())
        .one(db)
        .await?)
}

/// Counts one more consecutive failure, atomically, whether or not the user exists.
pub async fn record_failure(
    db: &impl ConnectionTrait,
    username_key: &str,
) -> Result<(), StoreError> {
    let now = OffsetDateTime::now_utc();
    let row = login_attempt::ActiveModel {
        username_key: Set(username_key.to_owned()),
        failures: Set(1),
        last_failure_at: Set(now),
    };
    login_attempt::Entity::insert(row)
        .on_conflict(
            OnConflict::column(login_attempt::Column::UsernameKey)
                .value(
                    login_attempt::Column::Failures,
                    Expr::col((login_attempt::Entity, login_attempt::Column::Failures)).add(1),
                )
                .value(login_attempt::Column::LastFailureAt, now)
                .to_owned(),
        )
        .exec_without_returning(db)
        .await?;
    Ok(())
}

pub(crate) async fn clear(db: &impl ConnectionTrait, username_key: &str) -> Result<(), StoreError> {
    login_attempt::Entity::delete_many()
        .filter(login_attempt::Column::UsernameKey.eq(username_key))
        .exec(db)
        .await?;
    Ok(())
}

/// Forgets the failure counts of names whose latest failure came before `cutoff`, including the
/// names nobody has, so guessing at random names cannot grow the table without bound.
pub(crate) async fn forget_before(
    db: &impl ConnectionTrait,
    cutoff: OffsetDateTime,
) -> Result<u64, StoreError> {
    let result = login_attempt::Entity::delete_many()
        .filter(login_attempt::Column::LastFailureAt.lt(cutoff))
        .exec(db)
        .await?;
    Ok(result.rows_affected)
}
