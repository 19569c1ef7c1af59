use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, Set, sea_query::OnConflict};
use time::OffsetDateTime;

use super::{StoreError, UniqueRow};
use crate::entity::login_attempt;

pub(crate) async fn find(
    db: &impl ConnectionTrait,
    username_key: &str,
) -> Result<Option<login_attempt::Model>, StoreError> {
    Ok(login_attempt::Entity::find_by_id(username_key.to_owned())
        .unique(db)
        .await?)
}

/// Counts one more attempt against `key` if its wait has passed, before the password is checked;
/// otherwise says how long to wait. `wait_after(attempts)` is the wait that follows that many
/// attempts since the last success.
///
/// The count is compared and set in one statement, so of many attempts made at once only as many
/// as the rules allow get through, however they are spread over addresses and instances.
pub async fn claim(
    db: &impl ConnectionTrait,
    key: &str,
    wait_after: impl Fn(i32) -> std::time::Duration,
) -> Result<Result<(), std::time::Duration>, StoreError> {
    loop {
        let now = OffsetDateTime::now_utc();
        let Some(seen) = find(db, key).await? else {
            let first = login_attempt::ActiveModel {
                username_key: Set(key.to_owned()),
                failures: Set(1),
                last_failure_at: Set(now),
            };
            let inserted = login_attempt::Entity::insert(first)
                .on_conflict(
                    OnConflict::column(login_attempt::Column::UsernameKey)
                        .do_nothing()
                        .to_owned(),
                )
                .exec_without_returning(db)
                .await?;
            if inserted == 1 {
                return Ok(Ok(()));
            }
            continue;
        };
        let ready_at = seen.last_failure_at + wait_after(seen.failures);
        if now < ready_at {
            let wait = std::time::Duration::try_from(ready_at - now).unwrap_or_default();
            return Ok(Err(wait));
        }
        let counted = login_attempt::Entity::update_many()
            .col_expr(login_attempt::Column::Failures, (seen.failures + 1).into())
            .col_expr(login_attempt::Column::LastFailureAt, now.into())
            .filter(login_attempt::Column::UsernameKey.eq(key))
            .filter(login_attempt::Column::Failures.eq(seen.failures))
            .exec(db)
            .await?;
        if counted.rows_affected == 1 {
            return Ok(Ok(()));
        }
        // Another attempt was counted in between: look again.
    }
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
