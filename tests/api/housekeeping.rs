use notion_connect::{
    auth::hash_token,
    entity::{login_attempt, oauth_state, session},
    housekeeping::{self, Swept},
    store::{login_attempts, oauth_states, sessions},
};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, PaginatorTrait, QueryFilter, Statement,
    sea_query::Expr,
};
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use crate::helpers::{Backend, on_both_databases, spawn_app};

on_both_databases!(the_sweep_deletes_only_what_has_expired);

async fn the_sweep_deletes_only_what_has_expired(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = app.signed_in("iris").await;
    let me: serde_json::Value = app
        .get_as("/api/v1/me", &user.access)
        .await
        .json()
        .await
        .unwrap();
    let user_id: Uuid = me["id"].as_str().unwrap().parse().unwrap();
    let past = OffsetDateTime::now_utc() - Duration::minutes(1);

    // A family whose only token has expired: both go.
    sessions::start_family(&app.db, user_id, hash_token("old"), past)
        .await
        .unwrap();
    app.start_flow(&user.access).await;
    let just_expired = past;
    let long_expired = past - Duration::hours(2);
    for (name, expires_at) in [("just", just_expired), ("long", long_expired)] {
        oauth_states::insert(
            &app.db,
            user_id,
            hash_token(name),
            hash_token(name),
            expires_at,
        )
        .await
        .unwrap();
    }
    assert_eq!(
        app.login("recent-ghost", "wrong password").await.status(),
        401
    );
    login_attempts::claim(&app.db, "old-ghost", |_| std::time::Duration::ZERO)
        .await
        .unwrap()
        .unwrap();
    login_attempt::Entity::update_many()
        .col_expr(
            login_attempt::Column::LastFailureAt,
            Expr::value(OffsetDateTime::now_utc() - Duration::days(2)),
        )
        .filter(login_attempt::Column::UsernameKey.eq("old-ghost"))
        .exec(&app.db)
        .await
        .unwrap();

    // Rate budgets: one whose last turn ended two hours ago goes; one whose turn came a minute
    // ago and one paused into the future stay.
    let micros = |at: OffsetDateTime| at.unix_timestamp_nanos() / 1000;
    let now = OffsetDateTime::now_utc();
    app.db
        .execute_unprepared(&format!(
            "INSERT INTO notion_rate_budgets (key, next_at, paused_until) VALUES \
             ('c:old', {}, 0), ('c:recent', {}, 0), ('w:paused', 0, {})",
            micros(now - Duration::hours(2)),
            micros(now - Duration::minutes(1)),
            micros(now + Duration::hours(2)),
        ))
        .await
        .unwrap();
    // An instance that stopped renewing its lease two hours ago goes; this one's (on
    // PostgreSQL) stays.
    let gone = Uuid::now_v7();
    app.db
        .execute_unprepared(&format!(
            "INSERT INTO notion_instances (id, registered_at, lease_until, acked_at) VALUES \
             ('{gone}', 0, {}, 0)",
            micros(now - Duration::hours(2)),
        ))
        .await
        .unwrap();

    let swept = housekeeping::sweep(&app.db).await.unwrap();

    assert_eq!(
        swept,
        Swept {
            sessions: 1,
            session_families: 1,
            oauth_states: 1,
            login_attempts: 1,
            rate_budgets: 1,
            instances: 1,
        }
    );
    let instances = app
        .db
        .query_all_raw(Statement::from_string(
            app.db.get_database_backend(),
            "SELECT id FROM notion_instances",
        ))
        .await
        .unwrap();
    let live = match app.db.get_database_backend() {
        DbBackend::Postgres => 1,
        _ => 0,
    };
    assert_eq!(instances.len(), live, "only the live instance is left");
    let budgets = app
        .db
        .query_all_raw(Statement::from_string(
            app.db.get_database_backend(),
            "SELECT key FROM notion_rate_budgets ORDER BY key",
        ))
        .await
        .unwrap();
    let kept: Vec<String> = budgets
        .iter()
        .map(|row| row.try_get("", "key").unwrap())
        .collect();
    assert_eq!(kept, ["c:recent", "w:paused"]);
    assert_eq!(session::Entity::find().count(&app.db).await.unwrap(), 1);
    assert_eq!(
        oauth_state::Entity::find().count(&app.db).await.unwrap(),
        2,
        "the live state and the one that expired only just now are kept"
    );
    let remembered = login_attempt::Entity::find().all(&app.db).await.unwrap();
    assert_eq!(remembered.len(), 1);
    assert_eq!(remembered[0].username_key, "recent-ghost");
    let refreshed = app
        .post_with_cookie("/api/v1/auth/refresh", &user.refresh)
        .await;
    assert_eq!(refreshed.status(), 200, "the live session survives");
    assert_eq!(
        housekeeping::sweep(&app.db).await.unwrap(),
        Swept::default(),
        "a second sweep finds nothing"
    );
}
